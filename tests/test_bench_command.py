"""`icd-bench bench`: the numbers are consistent with each other and the report files are written
(timings themselves are not asserted); the SD-size random backbones have the real architectures."""

from __future__ import annotations

import json

import pytest

from icd_bench.studies.bench import default_methods, run_bench, run_demo_bench


def test_bench_writes_consistent_numbers(tmp_path):
    path = run_bench(["ddim-tiny"], backbone=None, batch_sizes=[1, 2], repeats=2, device="cpu", dtype="fp32",
                     out=tmp_path, command="icd-bench bench --methods ddim-tiny", log=lambda *_: None)
    data = json.loads(path.with_suffix(".json").read_text())
    assert data["device"].startswith("cpu") and data["command"].startswith("icd-bench bench")
    rows = data["results"]
    assert [r["batch_size"] for r in rows] == [1, 2]
    for r in rows:
        assert r["nfe"] > 0 and r["seconds_per_edit"] > 0
        assert r["iqr"][0] <= r["seconds_per_edit"] <= r["iqr"][1]
        calls, bare = r["unet_calls_by_rows"], r["bare_seconds_by_rows"]
        # the bound covers the UNet and the VAE encoder / decoder calls, each at its row count
        bound = sum(n * bare["unet"][rows] for rows, n in calls.items())
        for part in ("encoder", "decoder"):
            # one encode, one decode per batch
            assert r["vae_calls_by_rows"][part] == {str(r["batch_size"]): 1}
            bound += bare[part][str(r["batch_size"])]
        assert r["bound_seconds_per_edit"] == pytest.approx(bound / r["batch_size"], rel=1e-12)
        # ddim-tiny: unguided inversion and decoding (w = 1), one call of B rows per step
        assert set(calls) == {str(r["batch_size"])}
        assert sum(int(k) * n for k, n in calls.items()) == r["nfe"] * r["batch_size"]
        assert r["overhead_seconds_per_edit"] == pytest.approx(
            r["seconds_per_edit"] - r["bound_seconds_per_edit"])
        assert r["ratio_to_icd"] is None  # no iCD in this run
    assert "| ddim-tiny | tiny-sd15 | 32 | 2 |" in path.read_text()


def test_all_means_the_methods_of_the_backbone_family():
    assert default_methods(None) == default_methods("toy")
    assert "nti-toy" in default_methods(None) and "icd-toy" in default_methods(None)
    assert default_methods("sd15-random")[0] == "icd-sd15" and "nti-sd15" in default_methods("sd15-random")
    assert default_methods("sdxl-random") == ["icd-sdxl", "renoise-lcm-sd15", "turboedit-sdxl-turbo"]


def test_demo_bench_splits_the_job_into_phases(tmp_path):
    path = run_demo_bench(None, device="cpu", out=tmp_path,
                          command="icd-bench bench --demo", log=lambda *_: None)
    (r,) = json.loads(path.with_suffix(".json").read_text())["results"]
    assert (r["method"], r["samples"], r["ok"]) == ("icd-toy", 64, 64)
    parts = (r["startup_seconds"] + r["method_seconds"] + r["harness_seconds"] + r["score_seconds"]
             + r["report_seconds"])
    assert r["total_seconds"] == pytest.approx(parts, rel=1e-6)
    # no wall-clock comparison here (a loaded machine fails it): ratios of times are the benchmarks' business
    assert r["model_bound_seconds"] > 0 and r["method_seconds"] > 0
    assert "| icd-toy | 64 |" in path.read_text()


@pytest.mark.parametrize("kind, unet, text",
                         [("sd15", 859.52, [123.06]), ("sdxl", 2567.46, [123.06, 694.66])])
def test_random_backbones_have_the_released_architectures(kind, unet, text):
    from icd_bench.backbones.random_weights import build_random

    c = build_random(kind, "meta")  # shapes only

    def millions(m):
        return round(sum(p.numel() for p in m.parameters()) / 1e6, 2)

    assert millions(c["unet"]) == unet  # parameter counts of the released UNets
    assert [millions(c[k]) for k in ("text_encoder", "text_encoder_2") if k in c] == text
    assert millions(c["vae"]) == 83.65
    assert c["unet"].config.sample_size * 8 == (1024 if kind == "sdxl" else 512)


def test_icd_edits_on_the_sd15_size_backbone(tmp_path):
    """The GPU command's path (`--backbone sd15-random`) at a CPU-sized resolution: the iCD preset
    equips the 860 M-parameter UNet (guidance input, rank-64 adapters) and edits in 8 evaluations."""
    rows = run_bench(["icd-sd15"], backbone="sd15-random", batch_sizes=[1], repeats=1, device="cpu",
                     dtype="fp32", out=tmp_path, command="test", resolution=64, log=lambda *_: None)
    r = json.loads(rows.with_suffix(".json").read_text())["results"][0]
    assert (r["backbone"], r["resolution"], r["nfe"]) == ("sd15-random", 64, 8)
    assert r["unet_calls_by_rows"] == {"1": 4, "2": 4}  # encode 4 × B rows; decode 4 × 2B (P2P branches)
    assert r["vae_calls_by_rows"] == {"encoder": {"1": 1}, "decoder": {"1": 1}}
