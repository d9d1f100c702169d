"""Editing methods side by side on the demo set: one guidance scale, oracle scores, a grid."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from PIL import Image

from icd_bench.gallery import image_grid
from icd_bench.studies.compare_edits import REFERENCE, compare_edits, load_reference

from conftest import REPO

pytestmark = pytest.mark.usefixtures("one_thread")


def test_compare_edits_runs_every_method_at_one_scale(tmp_path):
    methods = ["icd-toy", "ddim-toy", "ef-ddpm-toy"]
    md = compare_edits(methods, 3.0, tmp_path / "work", tmp_path / "out", limit=2, device="cpu",
                       command="icd-bench toy compare-edits", name="methods", reference=tmp_path / "ref.json",
                       log=lambda *_: None)
    table = pd.read_csv(tmp_path / "out" / "methods.csv")
    overall = table[table["edit type"] == "all"].set_index("method")
    assert list(overall.index) == methods and list(overall["n"]) == [2, 2, 2]
    assert list(overall["nfe"]) == [8, 150, 2 * 64 + 2 * 64]
    assert overall["seconds per edit"].gt(0).all()
    assert table["edit success"].between(0, 1).all() and table["background PSNR (dB)"].gt(0).all()
    for name, key in (("icd-toy", "guidance_scale"), ("ddim-toy", "guidance_scale"),
                      ("ef-ddpm-toy", "target_guidance_scale")):  # the shared scale reached every run
        manifest = json.loads((tmp_path / "work" / name / "manifest.json").read_text())
        assert manifest["config"]["params"][key] == 3.0
    text = md.read_text()
    assert md.name == "methods.md" and "at CFG 3" in text and "icd-bench toy compare-edits" in text
    assert "methods.png" in text and text.count("\n| ef-ddpm-toy | 2 | 256 |") == 1  # its row
    with Image.open(tmp_path / "out" / "methods.png") as grid:
        assert grid.width == 4 * 128  # source and three methods
    stored = load_reference(tmp_path / "ref.json")
    assert stored["guidance"] == 3.0 and stored["command"] == "icd-bench toy compare-edits"
    for method, row in stored["methods"].items():
        assert row["edits"] == overall.loc[method, "n"] and row["nfe"] == overall.loc[method, "nfe"]
        assert row["toy_edit:success"] == pytest.approx(overall.loc[method, "edit success"], abs=1e-4)
    assert load_reference(tmp_path / "none.json") is None


def test_the_bundled_reference_figures_are_a_committed_report_s_rows():
    """What `run --dataset demo --score` prints beside its own figures is the whole-demo-set row of the
    report its command wrote (reports/toy/NAME.csv), not numbers typed in."""
    stored = load_reference(REFERENCE)
    command = stored["command"].split()
    name = command[command.index("--name") + 1] if "--name" in command else "edits"
    assert "--limit" not in command and "ddim-toy" in command[command.index("--methods") + 1].split(",")
    table = pd.read_csv(REPO / "reports" / "toy" / f"{name}.csv")
    overall = table[table["edit type"] == "all"].set_index("method")
    assert set(stored["methods"]) == set(overall.index)
    for method, row in stored["methods"].items():
        assert row["edits"] == overall.loc[method, "n"] == 70
        assert row["toy_edit:background_psnr"] == pytest.approx(overall.loc[method, "background PSNR (dB)"], abs=1e-3)
        assert row["seconds_per_edit"] == pytest.approx(overall.loc[method, "seconds per edit"], abs=1e-3)


def test_image_grid_lays_out_cells_with_a_header():
    red, blue = Image.new("RGB", (32, 32), (255, 0, 0)), Image.new("RGB", (32, 32), (0, 0, 255))
    grid = image_grid([[(red, "a red square"), (blue, "a blue one")], [(blue, "")]], cell=64, text_lines=2,
                      header=["left", "right"])
    top = 11 + 4
    assert grid.size == (128, top + 2 * (64 + 2 * 11 + 2))
    assert grid.getpixel((10, top + 10)) == (255, 0, 0) and grid.getpixel((74, top + 10)) == (0, 0, 255)
    assert grid.getpixel((74, top + 64 + 24 + 10)) == (255, 255, 255)  # the second row has one cell
