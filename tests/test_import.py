"""`icd-bench import`: outputs laid out as their producers write them become ordinary run directories —
PnPInversion's ``output/<method>/annotation_images`` (strips cropped as its evaluate.py crops them), the iCD
code's ``edited_images/<j>.jpg``, a folder of images — that `score` and `report` read like any other; the
missing, unreadable and wrongly sized images of a download-shaped folder fail exactly their samples."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from icd_bench.data.piebench import encode_mask
from icd_bench.errors import ConfigError
from icd_bench.interchange import import_outputs
from icd_bench.metrics.score import score_run
from icd_bench.reports.tables import TABLES, build_table
from icd_bench.store import RunStore

from conftest import REPO

TYPES = {"0": "0_random_140", "6": "6_change_color_40"}


def solid(color, size=(512, 512)) -> Image.Image:
    return Image.new("RGB", size, color)


@pytest.fixture
def pie(tmp_path):
    """A PIE-Bench data folder of 30 samples (ids as the benchmark's: type digit first), 512² sources."""
    root = tmp_path / "PIE-Bench"
    mask = np.zeros((512, 512), bool)
    mask[200:300, 200:300] = True
    entries = {}
    for k in range(30):
        type_id = "0" if k < 15 else "6"
        sample_id = f"{type_id}{k:011d}"
        path = f"{TYPES[type_id]}/{sample_id}.jpg"
        (root / "annotation_images" / TYPES[type_id]).mkdir(parents=True, exist_ok=True)
        solid((10 * k % 250, 100, 50)).save(root / "annotation_images" / path)
        entries[sample_id] = {"image_path": path, "original_prompt": f"a [red] ball number {k}",
                              "editing_prompt": f"a [blue] ball number {k}", "editing_instruction": "",
                              "editing_type_id": type_id, "blended_word": "red blue",
                              "mask": encode_mask(mask)}
    (root / "mapping_file.json").write_text(json.dumps(entries))
    return root, entries


def pixel(run, record) -> tuple[int, ...]:
    return Image.open(run / record["outputs"]["image"]).getpixel((256, 256))


def pnp_output(root, entries, *, missing=(), narrow=(), strips=True, name="my-method"):
    """``output/<method>/annotation_images/<image_path>`` as PnPInversion's scripts write them: a strip
    [source | reconstruction | edit] for every other sample, the edit alone for the rest."""
    method = root / "output" / name
    for k, (sample_id, e) in enumerate(entries.items()):
        if sample_id in missing:
            continue
        path = method / "annotation_images" / e["image_path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        if sample_id in narrow:
            solid((1, 2, 3), (511, 512)).save(path)
        elif strips and k % 2 == 0:
            strip = Image.new("RGB", (3 * 512, 512))
            for panel, color in enumerate(((255, 0, 0), (0, 255, 0), (0, 0, 255))):
                strip.paste(solid(color), (panel * 512, 0))
            strip.save(path)
        else:
            solid((0, 0, 250)).save(path)
    (method / "annotation_images" / ".DS_Store").write_bytes(b"\0\1")
    solid((9, 9, 9)).save(method / "annotation_images" / "0_random_140" / "not-a-sample.jpg")
    return method


def test_a_download_shaped_piebench_folder_imports_with_exactly_its_broken_samples_failed(pie, tmp_path):
    data, entries = pie
    ids = list(entries)
    missing, narrow = set(ids[3:6]), {ids[10]}
    method = pnp_output(tmp_path, entries, missing=missing, narrow=narrow)
    summary = import_outputs("piebench", method, dataset="piebench", data_dir=data, out=tmp_path / "run")
    assert (summary.total, summary.ok) == (30, 26)
    failed = dict(summary.errors)
    assert set(failed) == missing | narrow
    assert all("image file not found" in failed[i] and entries[i]["image_path"] in failed[i] for i in missing)
    assert "511×512" in failed[ids[10]] and entries[ids[10]]["image_path"] in failed[ids[10]]
    assert summary.extra_files == [".DS_Store", "0_random_140/not-a-sample.jpg"]

    store = RunStore(tmp_path / "run")
    manifest = store.manifest()
    assert manifest["config"]["method"] == "imported" and manifest["imported"]["nfe"] == "unknown"
    assert manifest["imported"]["extra_files"] == summary.extra_files
    records = {r["id"]: r for r in store.records()}
    assert records[ids[0]]["nfe"] is None and records[ids[0]]["seconds"] is None
    assert (records[ids[0]]["target_prompt"] == "a blue ball number 0"
            and records[ids[0]]["edit_type"] == "random")
    # a strip's edit is its last panel (PIE-Bench's evaluate.py crop); a single image is taken as it is
    # the files are JPEGs
    assert pixel(tmp_path / "run", records[ids[0]]) == pytest.approx((0, 0, 255), abs=3)
    assert pixel(tmp_path / "run", records[ids[1]]) == pytest.approx((0, 0, 250), abs=3)

    frame, summary_table = score_run(tmp_path / "run", ["psnr:background:pie", "psnr"])
    assert (dict(zip(summary_table.metric, summary_table.n_ok, strict=True))
            == {"psnr:background:pie": 26, "psnr": 26})
    long, notes = build_table(TABLES["piebench"], [tmp_path / "run"], resamples=20)
    assert long[long.column == "bg PSNR"].iloc[0]["n"] == 26
    assert any("run: imported (made elsewhere)" in n and "piebench layout" in n for n in notes)
    assert (long[long.column == "UNet evaluations"].empty
            or long[long.column == "UNet evaluations"].iloc[0]["n"] == 0)

    # the reconstruction panel, on request
    again = import_outputs("piebench", method / "annotation_images", dataset="piebench", data_dir=data,
                           out=tmp_path / "rec", crop="reconstruction")
    rec = {r["id"]: r for r in RunStore(tmp_path / "rec").records()}
    assert again.ok == 26 and pixel(tmp_path / "rec", rec[ids[0]]) == pytest.approx((0, 255, 0), abs=3)


def test_reimporting_is_refused_unless_forced(pie, tmp_path):
    data, entries = pie
    method = pnp_output(tmp_path, entries)
    import_outputs("piebench", method, dataset="piebench", data_dir=data, out=tmp_path / "run")
    with pytest.raises(ConfigError, match="--force"):
        import_outputs("piebench", method, dataset="piebench", data_dir=data, out=tmp_path / "run")
    summary = import_outputs("piebench", method, dataset="piebench", data_dir=data, out=tmp_path / "run",
                             name="mine", force=True)
    assert summary.ok == 30 and RunStore(tmp_path / "run").manifest()["config"]["preset"] == "mine"


def test_icd_layout_pairs_file_j_with_row_j_of_the_list(tmp_path):
    (tmp_path / "coco" / "train2014").mkdir(parents=True)
    rows = ["file_name,old_caption,edited_caption,blended_words"]
    for k in range(4):
        name = f"COCO_train2014_{k:012d}.jpg"
        solid((20 * k, 0, 0), (640, 480)).save(tmp_path / "coco" / "train2014" / name)
        rows.append(f"{name},a cat number {k},a dog number {k},\"('cat', 'dog')\"")
    (tmp_path / "coco" / "editing_coco.csv").write_text("\n".join(rows) + "\n")
    edited = tmp_path / "results" / "edited_images"
    edited.mkdir(parents=True)
    for j in (0, 1, 3):  # edit.py's <j>.jpg; row 2's is missing
        solid((0, 10 * j, 0), (1024, 1024)).save(edited / f"{j}.jpg")
    summary = import_outputs("icd", edited, dataset="coco-edit",
                             data_dir=tmp_path / "coco", out=tmp_path / "run")
    assert summary.ok == 3 and [i for i, _ in summary.errors] == ["COCO_train2014_000000000002"]
    assert "2.jpg" in summary.errors[0][1]
    records = {r["id"]: r for r in RunStore(tmp_path / "run").records()}
    three = records["COCO_train2014_000000000003"]
    assert three["extras"]["imported_from"] == "3.jpg" and three["target_prompt"] == "a dog number 3"
    # the source as load_512 reads it: squashed to 512², not cropped
    assert Image.open(tmp_path / "run" / three["outputs"]["source"]).size == (512, 512)
    assert Image.open(tmp_path / "run" / three["outputs"]["image"]).size == (1024, 1024)


def test_folder_layout_by_file_name_or_by_a_mapping_csv(tmp_path, images_dir):
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    for k in range(4):
        solid((k, k, k), (48, 48)).save(outputs / f"img{k}.png")
    (outputs / "notes.txt").write_text("not an image")
    summary = import_outputs("folder", outputs, dataset="folder", data_dir=images_dir,
                             out=tmp_path / "by-name")
    assert (summary.ok == 4 and [i for i, _ in summary.errors] == ["img4"]
            and summary.extra_files == ["notes.txt"])
    (tmp_path / "map.csv").write_text("id,file\nimg0,img3.png\nimg1,img2.png\n")
    summary = import_outputs("folder", outputs, dataset="folder", data_dir=images_dir,
                             out=tmp_path / "by-csv", mapping=tmp_path / "map.csv", size=48)
    assert summary.ok == 2 and {i for i, _ in summary.errors} == {"img2", "img3", "img4"}
    assert all("names no file" in why for _, why in summary.errors)
    for text, why in (("name,path\n", r"missing column\(s\) id, file"), ("id,file\n", "maps no sample")):
        (tmp_path / "bad.csv").write_text(text)
        with pytest.raises(ConfigError, match=why):
            import_outputs("folder", outputs, dataset="folder", data_dir=images_dir, out=tmp_path / "bad",
                           mapping=tmp_path / "bad.csv")


def test_import_command_then_score_as_a_user_would(pie, tmp_path):
    data, entries = pie
    ids = list(entries)
    method = pnp_output(tmp_path, entries, missing={ids[0]})
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    res = subprocess.run([sys.executable, "-m", "icd_bench", "import", "piebench", str(method), "--dataset",
                          "piebench", "--data-dir", str(data), "--out", str(tmp_path / "run"), "-q"],
                         capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "imported 29 of 30 samples" in res.stdout and ids[0] in res.stdout and ".DS_Store" in res.stdout
    res = subprocess.run([sys.executable, "-m", "icd_bench", "score", str(tmp_path / "run"), "-q"],
                         capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    metrics = pd.read_parquet(tmp_path / "run" / "metrics.parquet")
    assert "psnr:background:pie" in set(metrics.metric) and metrics.id.nunique() == 29


def test_a_released_pnpinversion_method_stands_beside_its_published_row(pie, tmp_path):
    """PnPInversion names each method by its output folder; an import of ``output/ddim+p2p`` finds the paper's
    DDIM+P2P row by itself (no --match), a folder the table does not know finds none."""
    root, entries = pie
    runs = []
    for name in ("ddim+p2p", "my-method"):
        folder = pnp_output(root, entries, strips=False, name=name) / "annotation_images"
        run = tmp_path / name
        import_outputs("piebench", folder, dataset="piebench", data_dir=root, out=run)
        score_run(run, metrics=["psnr:background:pie"])
        runs.append(run)
    assert RunStore(runs[0]).manifest()["config"]["params"]["producer_method"] == "ddim+p2p"
    long, _ = build_table(TABLES["piebench"], runs)
    psnr = long[long["column"] == "bg PSNR"].set_index("dir")
    assert psnr.loc[str(runs[0]), "paper"] == pytest.approx(17.87)  # PIE-Bench Table 1, DDIM+P2P
    assert psnr.loc[str(runs[0]), "paper_configuration"] == "DDIM+P2P"
    assert math.isnan(psnr.loc[str(runs[1]), "paper"])


def test_imported_and_produced_runs_in_one_table(tmp_path):
    """A run made here and outputs handed over in the iCD code's layout (``edited_images/<j>.jpg``, 512² JPEGs
    as its SD1.5 scripts save them; here the produced edits enlarged) sit in one report,
    the imported row saying so."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "250"}

    def cli(*args):
        res = subprocess.run([sys.executable, "-m", "icd_bench", *args], capture_output=True, text=True,
                             env=env, cwd=REPO, timeout=600)
        assert res.returncode == 0, res.stdout + res.stderr
        return res.stdout

    produced, handed, imported = tmp_path / "icd-toy", tmp_path / "icd-release", tmp_path / "imported"
    cli("run", "--method", "icd-toy", "--dataset", "demo", "--batch-size", "16", "--out", str(produced))
    cli("export", str(produced), "--layout", "icd", "--out", str(handed), "-q")  # edited_images/<j>.jpg
    for path in (handed / "edited_images").iterdir():
        with Image.open(path) as im:
            im.convert("RGB").resize((512, 512)).save(path, format="JPEG")
    cli("import", "icd", str(handed / "edited_images"), "--dataset", "demo", "--out", str(imported), "-q")
    metrics = "psnr:background:pie,mse:background:pie,ssim:background:pie"
    for run in (produced, imported):
        cli("score", str(run), "--metrics", metrics, "-q")
    table = cli("report", str(produced), str(imported), "--table", "piebench")
    rows = {line.split("|")[1].strip(): line for line in table.splitlines()
            if line.startswith("| icd-toy") or line.startswith("| imported")}
    assert set(rows) == {"icd-toy", "imported"}, table
    assert all("| 70 |" in row for row in rows.values())  # every edit scored in both
    assert "imported: imported (made elsewhere)" in table and "failed" not in table
