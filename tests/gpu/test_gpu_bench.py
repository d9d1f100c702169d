"""``icd-bench bench`` on the device at SD1.5 size (``--backbone sd15-random``), batch 1 and 16, fp16:
iCD's preset and a 4-step DDIM + Prompt-to-Prompt preset (written here, found through
``ICD_BENCH_PRESET_PATH``) give finite, positive timings, the NFE and the UNet / VAE calls their
settings imply, a peak memory, and the report files."""

from __future__ import annotations

import json
import math

import pytest

from icd_bench.config import PRESET_PATH_ENV
from icd_bench.studies.bench import run_bench

from .gpu_support import BACKBONE, DEVICE, ON_CUDA

pytestmark = pytest.mark.gpu

BATCHES = [1, 16]
P2P_PRESET = "gpu-test-ddim-p2p-4step"
P2P_TOML = """method = "ddim-p2p"
description = "DDIM + Prompt-to-Prompt as ddim-p2p-sd15, 4 steps: the GPU tests' bench baseline"
[params]
num_inference_steps = 4
guidance_scale = 7.5
inversion_guidance_scale = 1.0
p2p = true
p2p_mode = "refine"
cross_replace = 0.4
self_replace = 0.6
local_blend = true
"""


def numbers(value):
    """Every number in a JSON value."""
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from numbers(v)
    elif isinstance(value, list):
        for v in value:
            yield from numbers(v)


def test_bench_at_batch_1_and_16(tmp_path, monkeypatch):
    presets = tmp_path / "presets"
    presets.mkdir()
    (presets / f"{P2P_PRESET}.toml").write_text(P2P_TOML, encoding="utf-8")
    monkeypatch.setenv(PRESET_PATH_ENV, str(presets))
    dtype = "fp16" if ON_CUDA else "fp32"  # the CPU smoke run: no fp16 there
    path = run_bench(["icd-sd15", P2P_PRESET], backbone=BACKBONE, batch_sizes=BATCHES, repeats=2,
                     device=DEVICE, dtype=dtype, out=tmp_path / "out", command="pytest tests/gpu",
                     log=lambda *_: None)
    data = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    assert data["device"].startswith("cuda: " if ON_CUDA else "cpu: ") and data["dtype"] == dtype
    rows = data["results"]
    assert [(r["method"], r["batch_size"]) for r in rows] == [(m, b) for m in ("icd-sd15", P2P_PRESET)
                                                                for b in BATCHES]
    for r in rows:
        where = f"{r['method']} at batch {r['batch_size']}"
        assert all(math.isfinite(x) for x in numbers(r)), f"{where}: non-finite numbers in {r}"
        assert r["backbone"] == BACKBONE
        assert r["seconds_per_edit"] > 0 and r["iqr"][0] <= r["seconds_per_edit"] <= r["iqr"][1], where
        assert r["bound_seconds_per_edit"] > 0 and r["peak_memory_mb"] > 0, where
        assert r["seconds_per_unet_eval"] == pytest.approx(r["seconds_per_edit"] / r["nfe"])
        overhead = r["seconds_per_edit"] - r["bound_seconds_per_edit"]
        assert r["overhead_seconds_per_edit"] == pytest.approx(overhead)
        b = r["batch_size"]
        assert r["vae_calls_by_rows"] == {"encoder": {str(b): 1}, "decoder": {str(b): 1}}, where
        if r["method"] == "icd-sd15":
            # 4 encoding calls of B rows, 4 decoding calls of 2B (P2P's branches, guidance embedded)
            assert (r["nfe"], r["unet_calls_by_rows"]) == (8, {str(b): 4, str(2 * b): 4}), where
            assert r["ratio_to_icd"] == 1.0
        else:
            # unguided inversion (4 × B rows), guided P2P decoding (4 × 4B rows: 2 branches × CFG)
            assert (r["nfe"], r["unet_calls_by_rows"]) == (12, {str(b): 4, str(4 * b): 4}), where
            assert r["ratio_to_icd"] > 0
    report = path.read_text(encoding="utf-8")
    assert f"| icd-sd15 | {BACKBONE} |" in report and f"| {P2P_PRESET} | {BACKBONE} |" in report
