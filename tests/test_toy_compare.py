"""Editing methods side by side on the demo set: one guidance scale, oracle scores, a grid."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from PIL import Image

from icd_bench.gallery import image_grid
from icd_bench.studies.compare_edits import compare_edits

pytestmark = pytest.mark.usefixtures("one_thread")


def test_compare_edits_runs_every_method_at_one_scale(tmp_path):
    methods = ["icd-toy", "ddim-toy", "ef-ddpm-toy"]
    md = compare_edits(methods, 3.0, tmp_path / "work", tmp_path / "out", limit=2, device="cpu",
                       command="icd-bench toy compare-edits", name="methods", log=lambda *_: None)
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


def test_image_grid_lays_out_cells_with_a_header():
    red, blue = Image.new("RGB", (32, 32), (255, 0, 0)), Image.new("RGB", (32, 32), (0, 0, 255))
    grid = image_grid([[(red, "a red square"), (blue, "a blue one")], [(blue, "")]], cell=64, text_lines=2,
                      header=["left", "right"])
    top = 11 + 4
    assert grid.size == (128, top + 2 * (64 + 2 * 11 + 2))
    assert grid.getpixel((10, top + 10)) == (255, 0, 0) and grid.getpixel((74, top + 10)) == (0, 0, 255)
    assert grid.getpixel((74, top + 64 + 24 + 10)) == (255, 255, 255)  # the second row has one cell
