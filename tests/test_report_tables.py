"""`icd-bench report`: runs → a paper table with bootstrap intervals, the paper's number for a matched
preset, "—" plus a footnote for a metric the run lacks, and every output format."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from icd_bench.reports.tables import TABLES, bootstrap_mean, build_table, render, wide


def fake_run(root, name, preset, metrics: dict[str, list[float]], dataset="coco-captions", seconds=0.5,
             extras: list[dict] | None = None, edit_types: list[str] | None = None):
    run = root / name
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"format": 1, "config": {
        "preset": preset, "method": preset.split("-")[0], "dataset": {"name": dataset}, "task": "invert"}}))
    n = len(next(iter(metrics.values())))
    with (run / "records.jsonl").open("w") as f:
        for k in range(n):
            f.write(json.dumps({"id": f"s{k}", "status": "ok", "nfe": 100, "seconds": seconds,
                                "extras": extras[k] if extras else {},
                                "edit_type": edit_types[k] if edit_types else None}) + "\n")
    pd.DataFrame([{"id": f"s{k}", "metric": m, "value": v[k], "error": None}
                  for m, v in metrics.items() for k in range(n)]).to_parquet(run / "metrics.parquet")
    return run


def test_bootstrap_interval_contains_the_mean_and_narrows_with_more_samples():
    rng = np.random.default_rng(0)
    small, large = rng.normal(5, 1, 20), rng.normal(5, 1, 2000)
    m, lo, hi = bootstrap_mean(small)
    assert lo < m < hi
    _, lo2, hi2 = bootstrap_mean(large)
    assert (hi2 - lo2) < (hi - lo) / 3
    assert bootstrap_mean(np.array([]))[0] != bootstrap_mean(np.array([]))[0]  # NaN, shown as "—"


def test_matched_preset_gets_the_paper_number_and_missing_metrics_a_footnote(tmp_path):
    run = fake_run(tmp_path, "ddim", "ddim-sd15-inversion",
                   {"psnr": [22.0, 24.0, 23.0], "lpips": [0.2, 0.1, 0.15]})
    other = fake_run(tmp_path, "mine", "icd-toy", {"psnr": [30.0, 31.0]})
    long, notes = build_table(TABLES["table2"], [run, other], resamples=200)
    row = long[(long.run == "ddim") & (long.column == "PSNR")].iloc[0]
    assert row["mean"] == pytest.approx(23.0) and row.n == 3 and row.paper == pytest.approx(22.98)
    assert long[(long.run == "ddim") & (long.column == "LPIPS")].iloc[0].paper == pytest.approx(0.167)
    assert np.isnan(long[(long.run == "mine") & (long.column == "PSNR")].iloc[0].paper)
    # the paper's protocol
    assert any("not scored with dinov2:whole:icd: ddim, mine" in n and "icd-bench score" in n for n in notes)
    table = wide(TABLES["table2"], long)
    assert table.loc[table.run == "ddim", "DINOv2 ↑ · this run"].iloc[0] == "—"
    assert table.loc[table.run == "ddim", "PSNR ↑ · paper"].iloc[0] == "22.98"
    assert "nan" not in render(TABLES["table2"], long, notes, "md", "cmd").lower()


def test_the_icd_flavour_is_read_first_and_each_column_names_its_protocol(tmp_path):
    run = fake_run(tmp_path, "ddim", "ddim-sd15-inversion",
                   {"psnr": [20.0, 21.0], "psnr:whole:icd": [23.0, 23.0]})
    long, notes = build_table(TABLES["table2"], [run], resamples=50)
    assert long[long.column == "PSNR"].iloc[0]["mean"] == pytest.approx(23.0)
    assert long[long.column == "PSNR"].iloc[0]["metric"] == "psnr:whole:icd"
    assert any("PSNR ← psnr:whole:icd (the iCD code's utils/metrics.py" in n for n in notes)


def test_table1_reads_the_latents_nll_from_the_records_beside_the_paper_s_encoding_row(tmp_path):
    run = fake_run(tmp_path, "enc-cfg-dec-none", "ddim-sd15-inversion", {"fid:whole:icd": [30.0]},
                   extras=[{"latent_nll": 1.43}])
    long, _ = build_table(TABLES["table1"], [run], resamples=50,
                          matches={"enc-cfg-dec-none": "FID-5k/Enc, CFG | Dec. No CFG"})
    fid = long[long.column == "FID-5k"].iloc[0]
    nll = long[long.column == "latent NLL"].iloc[0]
    assert fid["mean"] == 30.0 and fid["paper"] == pytest.approx(100.5)
    assert nll["mean"] == pytest.approx(1.43) and nll["paper"] == pytest.approx(1.428)  # section "Latent NLL"


def test_per_edit_type_rows_in_piebench_order_after_all_with_the_paper_beside_all_only(tmp_path):
    run = fake_run(tmp_path, "ddim-p2p", "ddim-p2p-sd15", {"psnr:background:pie": [20.0, 22.0, 30.0, 31.0]},
                   dataset="piebench", edit_types=["change color", "random", "change color", "random"])
    long, _ = build_table(TABLES["piebench"], [run], resamples=50, by_edit_type=True)
    psnr = long[long.column == "bg PSNR"]
    assert list(psnr.group) == ["all", "random", "change color"]  # editing_type_id 0 before 6
    assert list(psnr["mean"]) == pytest.approx([25.75, 26.5, 25.0])
    assert psnr.iloc[0]["paper"] == pytest.approx(17.87) and psnr.iloc[1:]["paper"].isna().all()
    table = render(TABLES["piebench"], long, [], "md", "cmd")
    assert "| ddim-p2p | random | ddim-p2p-sd15 |" in table and "edit type" in table


def test_scales_follow_the_paper_and_sections_follow_the_dataset(tmp_path):
    pie = fake_run(tmp_path, "p", "ddim-p2p-sd15", {"lpips:background:pie": [0.2, 0.2176],
                                                      "structure_distance": [0.07, 0.06886]},
                   dataset="piebench")
    long, _ = build_table(TABLES["piebench"], [pie], resamples=50)
    lp = long[long.column == "bg LPIPS ×10³"].iloc[0]
    assert lp["mean"] == pytest.approx(208.8) and lp.paper == pytest.approx(208.80)
    x = fake_run(tmp_path, "x", "icd-sdxl", {"dinov2": [0.5, 0.4]}, dataset="coco-edit")
    long, _ = build_table(TABLES["table3"], [x], resamples=50)
    assert long[long.column == "DINOv2"].iloc[0].paper == pytest.approx(0.472)  # the COCO block


@pytest.mark.parametrize("fmt, marker", [("md", "| run |"), ("csv", "ci_low"), ("tex", "\\begin{tabular}"),
                                         ("html", "<table")])
def test_cli_formats_and_bad_input(tmp_path, fmt, marker):
    run = fake_run(tmp_path, "ddim", "ddim-sd15-inversion", {"psnr": [22.0, 24.0], "lpips": [0.2, 0.1]})
    res = subprocess.run([sys.executable, "-m", "icd_bench", "report", str(run), "--table", "table2",
                          "--format", fmt, "--out", str(tmp_path / "out"), "--resamples", "50"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert marker in (tmp_path / "out" / f"table2.{fmt}").read_text()
    res = subprocess.run([sys.executable, "-m", "icd_bench", "report",
                          str(tmp_path / "nope"), "--table", "table9"],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "unknown table" in res.stderr and "Traceback" not in res.stderr


def test_figures_tradeoff_and_tau(tmp_path):
    from icd_bench.errors import ConfigError
    from icd_bench.reports.figures import tau_figure, tau_points, tradeoff_figure, tradeoff_points

    a = fake_run(tmp_path, "a", "icd-toy", {"clip_t": [0.3, 0.32]}, seconds=0.2)
    b = fake_run(tmp_path, "b", "nti-toy", {"clip_t": [0.25, 0.27]}, seconds=13.0)
    pts = tradeoff_points([a, b], "clip_t")
    assert [p["label"] for p in pts] == ["icd-toy", "nti-toy"] and pts[1]["seconds"] == pytest.approx(13.0)
    paths = tradeoff_figure([a, b], "clip_t", tmp_path / "fig" / "tradeoff")
    assert all(p.stat().st_size > 1000 for p in paths) and {p.suffix for p in paths} == {".png", ".svg"}
    with pytest.raises(ConfigError, match="icd-bench score"):
        tradeoff_points([a], "lpips")
    runs = []
    for k, (tau, psnr, clip) in enumerate(((0.6, 30.0, 0.25), (0.8, 27.0, 0.28))):
        for task, metric, v in (("invert", "psnr", psnr), ("generate", "clip_t", clip)):
            r = fake_run(tmp_path, f"t{k}{task}", "icd-sd15", {metric: [v, v]})
            m = json.loads((r / "manifest.json").read_text())
            m["config"]["params"] = {"tau": tau}
            (r / "manifest.json").write_text(json.dumps(m))
            runs.append(r)
    pts = tau_points(runs, "psnr", "clip_t")
    assert [(p["tau"], p["x"], p["y"]) for p in pts] == [(0.6, 30.0, 0.25), (0.8, 27.0, 0.28)]
    tau_figure(runs, "psnr", "clip_t", tmp_path / "fig" / "tau")
    assert (tmp_path / "fig" / "tau.svg").stat().st_size > 1000
    with pytest.raises(ConfigError, match="no tau parameter"):
        tau_points([a], "psnr", "clip_t")


def test_the_markdown_writer_aligns_numbers_right_and_escapes_pipes():
    from icd_bench.markdown import markdown_table

    assert markdown_table(["", "setting", "NFE"], [["G", "a | b", 8]], left=2) == [
        "| | setting | NFE |", "|---|---|---:|", "| G | a \\| b | 8 |"]
