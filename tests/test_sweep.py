"""`icd-bench sweep`: every method over its knob, each point scored, Pareto fronts and each method read at
matched preservation, with bootstrap intervals (`icd_bench.studies.sweep`)."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from icd_bench.errors import ConfigError
from icd_bench.store import RunStore
from icd_bench.studies.sweep import Point, analyse, dominated, knob_field, read_at

from conftest import REPO

X, Y = "toy_edit:background_psnr", "toy_edit:success"


def test_dominated_points_are_the_ones_beaten_on_both():
    xs, ys = np.array([1.0, 2.0, 2.0, 0.5, 3.0]), np.array([3.0, 2.0, 1.0, 3.0, 0.0])
    assert dominated(xs, ys).tolist() == [False, False, True, True, False]
    assert dominated(np.array([1.0, math.nan]), np.array([1.0, 1.0])).tolist() == [False, True]


def test_a_curve_is_read_between_its_settings():
    xs, ys = np.array([40.0, 35.0, 30.0]), np.array([0.2, 0.5, 0.8])
    assert read_at(xs, ys, 37.5) == pytest.approx(0.35)
    assert read_at(xs, ys, 35.0) == pytest.approx(0.5)
    assert math.isnan(read_at(xs, ys, 41.0)) and math.isnan(read_at(xs, ys, 29.0))
    # a curve that comes back across the level: its best reading
    assert read_at(np.array([30.0, 40.0, 30.0]), np.array([0.1, 0.2, 0.9]), 35.0) == pytest.approx(0.55)


def fake_run(root, method, value, x, y) -> Point:
    """A scored run directory whose samples have the given per-sample preservation and edit values."""
    out = root / method / f"guidance_scale={value:g}"
    config = {"method": method, "preset": method, "params": {"guidance_scale": value},
              "dataset": {"name": "demo"}, "task": "edit"}
    store = RunStore.create_or_resume(out, {"format": 1, "config": config, "config_hash": f"{method}{value}"})
    for i in range(len(x)):
        store.append({"id": f"s{i}", "status": "ok", "task": "edit", "nfe": 8, "seconds": 0.1, "outputs": {}})
    rows = [{"id": f"s{i}", "metric": k, "value": v, "error": None}
            for i in range(len(x)) for k, v in ((X, x[i]), (Y, y[i]))]
    pd.DataFrame(rows).to_parquet(out / "metrics.parquet")
    return Point(method, "guidance_scale", value, out)


def test_points_fronts_and_matched_preservation(tmp_path):
    rng = np.random.default_rng(0)
    n = 40
    points = []
    # method a: stronger guidance edits more, keeps less; b: dominated everywhere by a
    for value, (px, py) in zip((1, 3, 5), ((40, 0.2), (35, 0.5), (30, 0.8)), strict=True):
        points.append(fake_run(tmp_path, "a", value, px + rng.normal(0, 1, n),
                               (rng.random(n) < py).astype(float)))
    for value, (px, py) in zip((1, 5), ((38, 0.1), (31, 0.4)), strict=True):
        points.append(fake_run(tmp_path, "b", value, px + rng.normal(0, 1, n),
                               (rng.random(n) < py).astype(float)))
    table, matched = analyse(points, X, Y, levels=[36.0, 39.5], resamples=300)
    a = table[table["method"] == "a"].set_index("value")
    assert a.loc[3, "n"] == n and a.loc[3, X] == pytest.approx(35, abs=0.5)
    assert (table[f"{Y} low"] <= table[Y]).all() and (table[Y] <= table[f"{Y} high"]).all()
    assert a["pareto (method)"].all()  # each setting of a trades one for the other
    assert not table.loc[table["method"] == "b", "pareto (all)"].any()
    at = matched.set_index(["method", f"{X} level"])
    # a at 36 dB: between its settings 1 and 3, read on the line joining them
    (x1, y1), (x3, y3) = a.loc[1, [X, Y]], a.loc[3, [X, Y]]
    want = y3 + (36 - x3) * (y1 - y3) / (x1 - x3)
    assert at.loc[("a", 36.0), Y] == pytest.approx(want)
    assert at.loc[("a", 36.0), f"{Y} low"] <= want <= at.loc[("a", 36.0), f"{Y} high"]
    assert math.isnan(at.loc[("b", 39.5), Y])  # b's curve ends near 38 dB


def test_lower_is_better_preservation_is_oriented(tmp_path):
    """With LPIPS as the preservation measure (lower is better), the front and the reading turn with it."""
    from icd_bench.studies import sweep

    points = [fake_run(tmp_path, "a", v, np.full(5, lp), np.full(5, s))
              for v, lp, s in ((1, 0.1, 0.2), (5, 0.3, 0.8), (7, 0.35, 0.7))]
    real = sweep.higher_is_better
    sweep.higher_is_better = lambda key: key != X  # read X as an LPIPS-like measure
    try:
        table, matched = analyse(points, X, Y, levels=[0.2], resamples=50)
    finally:
        sweep.higher_is_better = real
    assert table["pareto (method)"].tolist() == [True, True, False]  # 7 keeps less and edits less than 5
    assert matched[Y].iloc[0] == pytest.approx(0.5)


def test_toy_names_every_toy_editing_preset():
    from icd_bench.studies.sweep import expand_methods

    toy = expand_methods(["toy"])
    assert {"icd-toy", "ddim-toy", "ddim-p2p-toy", "npi-toy", "nti-toy", "ef-ddpm-toy", "renoise-toy",
            "infedit-toy"} <= set(toy)
    assert "ddim-toy-inversion" not in toy and expand_methods(["icd-toy", "toy"])[0] == "icd-toy"


def test_the_knob_resolves_per_method():
    assert knob_field("ddim-toy", "guidance") == "guidance_scale"
    assert knob_field("ef-ddpm-toy", "guidance") == "target_guidance_scale"
    assert knob_field("icd-toy", "tau") == "tau"
    with pytest.raises(ConfigError, match="has no setting 'nope'"):
        knob_field("icd-toy", "nope")


def test_sweep_command_as_a_user_would(tmp_path):
    cmd = [sys.executable, "-m", "icd_bench", "sweep", "--methods", "icd-toy", "--values", "2,5",
           "--limit", "3", "--work", str(tmp_path / "runs"), "--out", str(tmp_path / "report"), "--name", "c",
           "--resamples", "50", "--device", "cpu"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
    for suffix in ("md", "csv", "png"):
        assert (tmp_path / "report" / f"c.{suffix}").stat().st_size > 0
    points = pd.read_csv(tmp_path / "report" / "c.csv")
    assert points["value"].tolist() == [2, 5] and (points["n"] == 3).all()
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert again.returncode == 0 and "3 edits (3 from before)" in again.stdout  # a re-run resumes
    bad = subprocess.run(cmd[:5] + ["icd-toy,ddim-toy", "--knob", "skip"] + cmd[6:],
                         capture_output=True, text=True, cwd=REPO)
    assert bad.returncode != 0 and "has no setting 'skip'" in bad.stdout + bad.stderr
    assert "Traceback" not in bad.stderr
    unscored = subprocess.run(cmd + ["--x", "lpips:background:pie"], capture_output=True, text=True, cwd=REPO)
    assert (unscored.returncode != 0
            and "is not among what --metrics scores" in unscored.stdout + unscored.stderr)


def test_the_main_job_reads_ddim_50_off_its_stored_curve(tmp_path):
    """The run's own CFG, DDIM-50's default CFG and DDIM-50 at the run's background, read between the
    two stored points that span it."""
    from icd_bench.studies.sweep import demo_comparison, store_curves

    points = [fake_run(tmp_path / "sweep", "ddim-toy", v, np.full(4, bg), np.full(4, s))
              for v, bg, s in ((1, 43.0, 0.6), (2, 40.0, 0.55), (5, 33.0, 0.5), (7, 30.0, 0.4))]
    table, _ = analyse(points, X, Y, levels=[], resamples=20)
    stored = store_curves(table, X, Y, "icd-bench sweep ...", tmp_path / "curves.json")
    run = fake_run(tmp_path / "run", "icd-toy", 5, np.full(3, 31.5), np.full(3, 0.7)).run_dir
    found = demo_comparison(run, "icd-toy", {X: 31.5, Y: 0.7}, path=stored)
    rows = {r["method"]: r for r in found["rows"]}
    assert {name: r["cfg"] for name, r in rows.items()} == {
        "this run (icd-toy)": "5", "DDIM-50, same CFG": "5", "DDIM-50, default": "2",
        "DDIM-50, same bg": "≈6.0"}
    assert rows["this run (icd-toy)"]["nfe"] == 8 and rows["this run (icd-toy)"]["edits"] == 3
    assert rows["DDIM-50, default"]["background_psnr"] == 40.0
    matched = rows["DDIM-50, same bg"]
    assert matched["background_psnr"] == pytest.approx(31.5) and matched["success"] == pytest.approx(0.45)
    beyond = demo_comparison(run, "icd-toy", {X: 50.0, Y: 0.7}, path=stored)["rows"][-1]
    assert beyond["method"] == "DDIM-50, same bg: off its curve (30.0–43.0 dB)"
    assert demo_comparison(run, "icd-toy", {X: 31.5, Y: 0.7}, path=tmp_path / "none.json") is None


def test_the_bundled_curves_are_a_committed_report_s_points():
    """What `run --dataset demo --score` prints beside its own figures are the points of the report its
    command wrote (reports/toy/NAME.csv), over all 70 demo edits, not numbers typed in."""
    from icd_bench.studies.sweep import BASELINE, load_curves

    stored = load_curves()
    command = stored["command"].split()
    assert "--limit" not in command and command[command.index("--out") + 1] == "reports/toy"
    table = pd.read_csv(REPO / "reports" / "toy" / f"{command[command.index('--name') + 1]}.csv")
    assert BASELINE in stored["methods"] and set(stored["methods"]) == set(table["method"])
    for method, curve in stored["methods"].items():
        mine = table[table["method"] == method].set_index("value")
        assert [p["value"] for p in curve["points"]] == sorted(mine.index)
        for p in curve["points"]:
            assert p["edits"] == mine.loc[p["value"], "n"] == 70
            assert p[X] == pytest.approx(mine.loc[p["value"], X], rel=1e-4)
            assert p[Y] == pytest.approx(mine.loc[p["value"], Y], rel=1e-4)
