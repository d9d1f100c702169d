"""`icd-bench bench` on the tiny random backbone: the numbers are consistent with each other and the
report files are written (timings themselves are not asserted)."""

from __future__ import annotations

import json

from icd_bench.bench import run_bench


def test_bench_writes_consistent_numbers(tmp_path):
    path = run_bench(["ddim-tiny"], backbone=None, batch_sizes=[1, 2], repeats=2, device="cpu", dtype="fp32",
                     out=tmp_path, command="icd-bench bench --methods ddim-tiny", log=lambda *_: None)
    data = json.loads(path.with_suffix(".json").read_text())
    assert data["device"].startswith("cpu") and data["command"].startswith("icd-bench bench")
    rows = data["results"]
    assert [r["batch_size"] for r in rows] == [1, 2]
    for r in rows:
        assert r["nfe"] > 0 and r["seconds_per_edit"] > 0 and r["bare_unet_seconds_per_call"] > 0
        assert r["iqr"][0] <= r["seconds_per_edit"] <= r["iqr"][1]
        calls, bare = r["unet_calls_by_rows"], r["bare_unet_seconds_by_rows"]
        bound = sum(n * bare[rows] for rows, n in calls.items()) / r["batch_size"]
        assert abs(r["unet_bound_seconds_per_edit"] - bound) < 1e-12
        # ddim-tiny: unguided inversion and decoding (w = 1), one call of B rows per step
        assert set(calls) == {str(r["batch_size"])}
        assert sum(int(k) * n for k, n in calls.items()) == r["nfe"] * r["batch_size"]
        assert abs(r["overhead_seconds_per_edit"] - (r["seconds_per_edit"] - r["unet_bound_seconds_per_edit"])) < 1e-12
        assert r["ratio_to_icd"] is None  # no iCD in this run
    assert "| ddim-tiny | 2 |" in path.read_text()
