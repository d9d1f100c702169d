"""Editing methods side by side on the demo set: one guidance scale, oracle scores, a grid."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from PIL import Image

from icd_bench.gallery import image_grid
from icd_bench.toy.compare import compare_edits

pytestmark = pytest.mark.usefixtures("one_thread")


def test_compare_edits_runs_every_method_at_one_scale(tmp_path):
    md = compare_edits(["icd-toy", "ddim-toy"], 3.0, tmp_path / "work", tmp_path / "out", limit=2, device="cpu",
                       command="icd-bench toy compare-edits", log=lambda *_: None)
    table = pd.read_csv(tmp_path / "out" / "edits.csv")
    overall = table[table["edit type"] == "all"].set_index("method")
    assert list(overall.index) == ["icd-toy", "ddim-toy"] and list(overall["n"]) == [2, 2]
    assert overall.loc["icd-toy", "nfe"] == 8 and overall.loc["ddim-toy", "nfe"] == 150
    assert table["edit success"].between(0, 1).all() and table["background PSNR (dB)"].gt(0).all()
    for name in ("icd-toy", "ddim-toy"):  # the shared scale reached both runs
        manifest = json.loads((tmp_path / "work" / name / "manifest.json").read_text())
        assert manifest["config"]["params"]["guidance_scale"] == 3.0
    text = md.read_text()
    assert "at CFG 3" in text and "icd-bench toy compare-edits" in text and "edits.png" in text
    with Image.open(tmp_path / "out" / "edits.png") as grid:
        assert grid.width == 3 * 128  # source, icd-toy, ddim-toy


def test_image_grid_lays_out_cells_with_a_header():
    red, blue = Image.new("RGB", (32, 32), (255, 0, 0)), Image.new("RGB", (32, 32), (0, 0, 255))
    grid = image_grid([[(red, "a red square"), (blue, "a blue one")], [(blue, "")]], cell=64, text_lines=2,
                      header=["left", "right"])
    top = 11 + 4
    assert grid.size == (128, top + 2 * (64 + 2 * 11 + 2))
    assert grid.getpixel((10, top + 10)) == (255, 0, 0) and grid.getpixel((74, top + 10)) == (0, 0, 255)
    assert grid.getpixel((74, top + 64 + 24 + 10)) == (255, 255, 255)  # the second row has one cell
