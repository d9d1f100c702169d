"""`icd-bench export`: a run's edits in the layouts the official evaluators read — PIE-Bench's
``output/<name>/annotation_images/<image_path>`` (lossless by default, or JPEG as PnPInversion saves) and the
iCD code's ``edited_images/<j>.jpg`` numbered by the row of the run's list — with what it skipped listed and
an earlier export kept unless ``--force``. (That PIE-Bench's own evaluate.py reads an export as `score` reads
the run: tests/conformance/test_pie_export_golden.py.)"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from test_import import pie, pnp_output  # noqa: F401  (the fixture)

from icd_bench.errors import ConfigError
from icd_bench.interchange import export_run, import_outputs
from icd_bench.store import RunStore

from conftest import REPO


@pytest.fixture
def pie_run(pie, tmp_path):  # noqa: F811
    """A run of 30 PIE-Bench samples, 2 of them failed (imported from a PnPInversion-shaped folder)."""
    root, entries = pie
    missing = list(entries)[3:5]
    method = pnp_output(root, entries, missing=missing, strips=False)
    run = tmp_path / "run"
    import_outputs("piebench", method, dataset="piebench", data_dir=root, out=run)
    return run, root, entries, missing


def test_piebench_layout_is_the_mapping_tree_with_the_run_pixels(pie_run, tmp_path):
    run, root, entries, missing = pie_run
    summary = export_run(run, "piebench", tmp_path / "eval", name="mine")
    images = tmp_path / "eval" / "output" / "mine" / "annotation_images"
    assert summary.root == images and summary.written == 28
    assert ([s for s, _ in summary.skipped] == missing
            and all("failed in the run" in w for _, w in summary.skipped))
    for sample_id, e in entries.items():
        path = images / e["image_path"]
        assert path.exists() == (sample_id not in missing)
    records = {r["id"]: r for r in RunStore(run).records()}
    some = next(i for i in entries if i not in missing)
    exported = np.asarray(Image.open(images / entries[some]["image_path"]))
    assert Image.open(images / entries[some]["image_path"]).format == "PNG"  # under the mapping's .jpg name
    assert np.array_equal(exported,
                          np.asarray(Image.open(run / records[some]["outputs"]["image"]).convert("RGB")))
    info = json.loads((images.parent / "export.json").read_text())
    assert info["written"] == 28 and sorted(info["skipped"]) == sorted(missing) and info["encoding"] == "png"

    # JPEG as the producers save: lossy, decodable, another folder beside the first
    export_run(run, "piebench", tmp_path / "eval", name="mine-jpeg", encoding="jpeg")
    jpeg = Image.open(tmp_path / "eval" / "output" / "mine-jpeg" / "annotation_images"
                      / entries[some]["image_path"])
    assert jpeg.format == "JPEG" and (images / entries[some]["image_path"]).exists()


def test_an_earlier_export_is_kept_unless_forced(pie_run, tmp_path):
    run, *_ = pie_run
    export_run(run, "piebench", tmp_path / "eval", name="mine")
    with pytest.raises(ConfigError, match="already holds images"):
        export_run(run, "piebench", tmp_path / "eval", name="mine")
    assert export_run(run, "piebench", tmp_path / "eval", name="mine", force=True).written == 28
    with pytest.raises(ConfigError, match="plain folder name"):
        export_run(run, "piebench", tmp_path / "eval", name="../up")


def test_icd_layout_numbers_files_by_the_row_of_the_list(pie_run, tmp_path):
    run, root, entries, missing = pie_run
    summary = export_run(run, "icd", tmp_path / "icd")
    ids = list(entries)
    files = sorted((tmp_path / "icd" / "edited_images").iterdir(), key=lambda p: int(p.stem))
    assert [int(p.stem) for p in files] == [j for j, i in enumerate(ids) if i not in missing]
    assert all(Image.open(p).format == "JPEG" for p in files)
    assert summary.written == 28 and [s for s, _ in summary.skipped] == missing
    assert (tmp_path / "icd" / "export.json").exists()  # beside edited_images/, which calc_all lists


def test_export_command_as_a_user_would(pie_run, tmp_path):
    run, *_ = pie_run
    cmd = [sys.executable, "-m", "icd_bench", "export", str(run), "--layout", "piebench", "--out",
           str(tmp_path / "eval"), "--name", "ddim+p2p", "-q"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "wrote 28 image(s)" in done.stdout and "2 sample(s) not exported" in done.stdout
    assert "all_tgt_image_folders" in done.stdout
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert again.returncode != 0 and "already holds images" in again.stdout + again.stderr
    assert "Traceback" not in again.stderr
    bad = subprocess.run(cmd[:5] + ["--layout", "nope"] + cmd[7:], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode != 0 and "unknown layout" in bad.stdout + bad.stderr
