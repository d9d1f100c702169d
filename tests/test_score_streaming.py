"""`score_run` streams a run batch by batch: values are saved as they are computed under RUN/scoring/, a
set metric keeps one row of features per image and reduces them at the end, and a killed or repeated
scoring computes only what is missing — to the same value as an uninterrupted one."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from icd_bench.metrics.score import SCORING, SET_ID, score_run

from conftest import REPO
from helpers import write_image_run

CALLS: list[int] = []


def counting_extractor(device):
    """A fixed random projection of 8×8-pooled pixels (clean-fid's 299² input in [0, 255]); counts images."""
    proj = torch.randn(3 * 8 * 8, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def run(x: torch.Tensor) -> torch.Tensor:
        CALLS.append(len(x))
        if os.environ.get("ICD_TEST_SLOW_EXTRACTOR"):
            time.sleep(float(os.environ["ICD_TEST_SLOW_EXTRACTOR"]))
        return torch.nn.functional.adaptive_avg_pool2d(x.double() / 255.0, 8).flatten(1) @ proj

    return run


def images(n: int, seed: int = 0, side: int = 24) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(3, side, side, generator=g) for _ in range(n)]


def reference(tmp_path: Path) -> Path:
    from icd_bench.metrics.fid import save_reference_stats

    folder = tmp_path / "ref"
    write_image_run(tmp_path / "ref-run", images(30, seed=9))
    shutil.copytree(tmp_path / "ref-run" / "images", folder)
    return save_reference_stats(folder, tmp_path / "ref.npz", extractor=f"{__name__}:counting_extractor")


def options(ref: Path) -> dict[str, str]:
    return {"fid_ref": str(ref), "fid_extractor": f"{__name__}:counting_extractor"}


def values(frame) -> dict[tuple[str, str], float]:
    return {(r.id, r.metric): r.value for r in frame.itertuples()}


def test_values_are_saved_per_batch_and_a_second_scoring_computes_only_what_is_missing(tmp_path):
    run = write_image_run(tmp_path / "run", images(20), sources=images(20, seed=1))
    ref = reference(tmp_path)
    CALLS.clear()
    frame, summary = score_run(run, ["psnr", "fid"], batch_size=6, options=options(ref))
    assert sum(CALLS) == 20 and max(CALLS) <= 6  # every image once, six at a time
    folders = {json.loads((d / "metric.json").read_text())["metric"]: d
               for d in (run / SCORING).iterdir() if d.is_dir()}
    assert set(folders) == {"psnr", "fid"}
    assert len((folders["psnr"] / "rows.jsonl").read_text().splitlines()) == 20
    assert len(list((folders["fid"] / "features").glob("*.npz"))) == 4  # one file per batch: 6 + 6 + 6 + 2
    fid = frame[frame.metric == "fid"]
    assert list(fid.id) == [SET_ID] and math.isfinite(fid.value.iloc[0])
    assert dict(zip(summary.metric, summary.n_ok, strict=True)) == {"psnr": 20, "fid": 1}

    # a scoring killed after two batches: its saved values stay, the rest is computed
    for f in sorted((folders["fid"] / "features").glob("*.npz"))[2:]:
        f.unlink()
    rows = (folders["psnr"] / "rows.jsonl").read_text().splitlines()
    # a torn last line
    (folders["psnr"] / "rows.jsonl").write_text("\n".join(rows[:12]) + "\n" + rows[12][:10])
    (run / "metrics.parquet").unlink()
    CALLS.clear()
    again, _ = score_run(run, ["psnr", "fid"], batch_size=6, options=options(ref))
    assert sum(CALLS) == 8  # only the images of the lost batches
    assert values(again) == pytest.approx(values(frame), rel=1e-12)

    # nothing missing: nothing computed; --restart: everything again
    CALLS.clear()
    score_run(run, ["psnr", "fid"], batch_size=6, options=options(ref))
    assert CALLS == []
    score_run(run, ["fid"], batch_size=5, options=options(ref), restart=True)
    assert sum(CALLS) == 20


def test_the_set_value_does_not_depend_on_the_batch_size(tmp_path):
    ref = reference(tmp_path)
    run = write_image_run(tmp_path / "run", images(23))
    frames = []
    for batch in (1, 4, 23):
        shutil.rmtree(run / SCORING, ignore_errors=True)
        frames.append(score_run(run, ["fid"], batch_size=batch, options=options(ref))[0].value.iloc[0])
    # rows reduced in id order, in fixed chunks; only the extractor's batched rounding differs
    assert (frames[0] == pytest.approx(frames[1], rel=1e-12)
            and frames[1] == pytest.approx(frames[2], rel=1e-12))


def test_another_setting_scores_into_its_own_folder(tmp_path):
    run = write_image_run(tmp_path / "run", images(4), sources=images(4, seed=1))
    score_run(run, ["psnr", "psnr:whole:icd"], batch_size=2)
    score_run(run, ["psnr:whole:icd"], batch_size=2, options={"icd_images": "memory"})
    metrics = sorted(json.loads((d / "metric.json").read_text())["metric"]
                     + str(json.loads((d / "metric.json").read_text())["options"])
                     for d in (run / SCORING).iterdir() if d.is_dir())
    assert metrics == ["psnr:whole:icd{'icd_images': 'memory'}", "psnr:whole:icd{}", "psnr{}"]


def test_a_killed_score_resumes_to_the_uninterrupted_value(tmp_path):
    """As a user would: ``icd-bench score RUN --metrics fid`` killed with SIGKILL halfway, then run again."""
    ref = reference(tmp_path)
    run = write_image_run(tmp_path / "run", images(60))
    shutil.copytree(run, tmp_path / "whole")
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests"),
           "ICD_TEST_SLOW_EXTRACTOR": "0.25", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "icd_bench", "score", str(run), "--metrics", "fid", "--batch-size", "3",
           "-q", "--device", "cpu", "--option", f"fid_ref={ref}",
           "--option", f"fid_extractor={__name__}:counting_extractor"]
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    features = run / SCORING
    while time.time() < deadline and len(list(features.glob("*/features/*.npz"))) < 8:
        assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list(features.glob("*/features/*.npz")))
    assert 8 <= done < 20 and not (run / "metrics.parquet").exists()
    resumed = subprocess.run(cmd, env={**env, "ICD_TEST_SLOW_EXTRACTOR": "0"}, cwd=REPO, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert len(list(features.glob("*/features/*.npz"))) == 20  # the kept batches were not computed again
    whole, _ = score_run(tmp_path / "whole", ["fid"], batch_size=3, options=options(ref))
    import pandas as pd

    assert pd.read_parquet(run / "metrics.parquet").value.iloc[0] == whole.value.iloc[0]
    assert np.isfinite(whole.value.iloc[0])


def test_a_wrong_setting_stops_before_any_sample_instead_of_failing_every_one(tmp_path):
    from icd_bench.errors import ConfigError

    ref = reference(tmp_path)
    run = write_image_run(tmp_path / "run", images(3))
    with pytest.raises(ConfigError, match="fid_extractor"):
        score_run(run, ["fid"], options={"fid_ref": str(ref), "fid_extractor": "no_such_module:factory"})
    assert not (run / SCORING).exists() and not (run / "metrics.parquet").exists()
