#!/usr/bin/env bash
# A killed `icd-bench score` resumes to the uninterrupted value, at paper scale, as a user would meet it:
# `icd-bench score RUN --metrics fid:whole:icd` once uninterrupted, once killed with SIGKILL halfway and run
# again; the two FID values are printed and compared. The FID Inception and the reference statistics are
# random (tests/conformance/golden_inputs: no real weights are reachable offline), at their real sizes.
#
#   bash tools/perf/score_kill_resume.sh RUN_DIR [WORK_DIR]
#
# RUN_DIR: a run of generated images, e.g. the 5,000-image run of tests/bench/test_score_memory.py
# (ICD_SCORE_BENCH_DIR=DIR python -m pytest -m bench tests/bench/test_score_memory.py keeps it in DIR/run-5000).
set -euo pipefail
RUN=${1:?usage: score_kill_resume.sh RUN_DIR [WORK_DIR]}
WORK=${2:-$(mktemp -d)}
cd "$(dirname "$0")/../.."
export HF_HUB_OFFLINE=1 ICD_BENCH_WEIGHTS="$WORK/weights"
python - "$WORK/weights" <<'PY'
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, "tests/conformance")
import golden_inputs as gi

root = Path(sys.argv[1])
(root / "fid-inception-pytorch").mkdir(parents=True, exist_ok=True)
torch.save(gi.fid_inception_state_dict(), root / "fid-inception-pytorch" / "pt_inception-2015-12-05-6726825d.pth")
(root / "fid-stats-mscoco512-val").mkdir(parents=True, exist_ok=True)
np.savez(root / "fid-stats-mscoco512-val" / "fid_stats_mscoco512_val.npz", **gi.icd_fid_reference())
PY
score() { icd-bench score "$RUN" --metrics fid:whole:icd --batch-size 32 --device cpu -q "$@"; }
batches=$(python -c "import sys; from icd_bench.store import RunStore; print(-(-len(RunStore(sys.argv[1]).finished_ids(False)) // 32))" "$RUN")
start=$(date +%s); score --restart > "$WORK/whole.txt"; end=$(date +%s)
echo "uninterrupted: $((end - start)) s"
cp "$RUN/metrics.parquet" "$WORK/whole.parquet"
rm -rf "$RUN/scoring" "$RUN/metrics.parquet"
score > "$WORK/killed.txt" 2>&1 &
pid=$!
while [ "$(ls "$RUN"/scoring/*/features/ 2>/dev/null | wc -l)" -lt $((batches / 2)) ]; do sleep 1; done
kill -9 "$pid"; wait "$pid" 2>/dev/null || true
echo "killed with SIGKILL after $(ls "$RUN"/scoring/*/features/ | wc -l) of $batches batches"
start=$(date +%s); score > "$WORK/resumed.txt"; end=$(date +%s)
echo "resumed: $((end - start)) s, $(ls "$RUN"/scoring/*/features/ | wc -l) batches stored"
python - "$WORK/whole.parquet" "$RUN/metrics.parquet" <<'PY'
import sys

import pandas as pd

whole, resumed = (pd.read_parquet(p).value.iloc[0] for p in sys.argv[1:])
print(f"FID uninterrupted {whole!r}, killed and resumed {resumed!r}: {'equal' if whole == resumed else 'DIFFERENT'}")
sys.exit(0 if whole == resumed else 1)
PY
