"""The bad-input catalogue: each case gives either a clear CLI error (exit code 2, the problem and the
fix in one line, no traceback) or a per-sample error record while the run goes on — or, where the
input is usable, a normal result. Faults inside a run (NaN / Inf outputs, CUDA out-of-memory, a disk
filling up) are in tests/test_runner_faults.py; kills in tests/test_kill_resume.py."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from icd_bench.runner import RunConfig, Runner
from icd_bench.store import RunStore

from conftest import REPO
from helpers import make_image, write_prompts

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "COLUMNS": "200",
       "TOKENIZERS_PARALLELISM": "false"}


def icd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "icd_bench", *args], capture_output=True, text=True, env=ENV,
                          timeout=300, cwd=REPO)


def run_args(out: Path, *extra: str) -> list[str]:
    return ["run", "--method", "ddim", "--dataset", "folder", "--data-dir", "datasets/examples", "--backbone",
            "tiny-sd15", "--set", "num_inference_steps=1", "--out", str(out), "--quiet", *extra]


def icd_args(out: Path, setting: str) -> list[str]:
    """iCD on the tiny backbone with one weights file set."""
    return ["run", "--method", "icd", "--dataset", "folder", "--data-dir", "datasets/examples", "--backbone",
            "tiny-sd15", "--set", setting, "--out", str(out), "--quiet"]


class Payload:
    """Unpickling this would create a file: the proof that a checkpoint executed code."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


# -- clear CLI errors -------------------------------------------------------------------------------

def _files(tmp: Path) -> dict[str, str]:
    broken = tmp / "broken.pt"
    broken.write_bytes(b"not a checkpoint at all")
    truncated = tmp / "truncated.safetensors"
    save_file({"w": torch.zeros(64, 64)}, str(truncated))
    truncated.write_bytes(truncated.read_bytes()[:200])
    wrong = tmp / "wrong.safetensors"
    save_file({"unet.base_model.model.no_such_block.to_q.lora_A.weight": torch.zeros(4, 8),
               "unet.base_model.model.no_such_block.to_q.lora_B.weight": torch.zeros(8, 4)}, str(wrong))
    payload = tmp / "payload.pt"
    with open(payload, "wb") as f:
        pickle.dump({"w": Payload(str(tmp / "executed"))}, f)
    votes = tmp / "votes.csv"
    votes.write_text("item_id,method_a,method_b,choice\n1,icd,nti,a\n2,icd,nti,maybe\n")
    corrupt = tmp / "corrupt-run"  # a run directory whose manifest.json was cut short
    corrupt.mkdir()
    (corrupt / "manifest.json").write_text('{"config": ')
    return {"broken": str(broken), "truncated": str(truncated), "wrong": str(wrong), "payload": str(payload),
            "votes": str(votes), "corrupt": str(corrupt)}


CLI_CASES = {
    "unknown method": (lambda t, f: run_args(t / "r", "--method", "nul-text"), "unknown method 'nul-text'"),
    "unknown dataset": (lambda t, f: run_args(t / "r", "--dataset", "pie"), "unknown dataset 'pie'"),
    "unknown preset key": (lambda t, f: run_args(t / "r", "--set", "steps=3"), "valid fields"),
    "wrong --set type": (lambda t, f: run_args(t / "r", "--set", "num_inference_steps=many"),
                         "num_inference_steps"),
    "missing data dir": (lambda t, f: run_args(t / "r", "--data-dir", str(t / "nowhere")),
                         "data directory not found"),
    "unknown backbone": (lambda t, f: run_args(t / "r", "--backbone", "tiny-sd16"),
                         "Did you mean 'tiny-sd15'"),
    "unknown task": (lambda t, f: run_args(t / "r", "--task", "paint"), "unknown --task"),
    "unknown metric": (lambda t, f: ["score", str(t / "done"), "--metrics", "psnrr"], "psnrr"),
    "corrupt checkpoint": (lambda t, f: icd_args(t / "r", f"teacher={f['broken']}"),
                           "not a tensor state dict"),
    "truncated safetensors": (lambda t, f: icd_args(t / "r", f"forward_lora={f['truncated']}"),
                              "truncated.safetensors"),
    "LoRA keys not matching the UNet": (lambda t, f: icd_args(t / "r", f"reverse_lora={f['wrong']}"),
                                        "no_such_block"),
    "pickle payload in a checkpoint": (lambda t, f: icd_args(t / "r", f"teacher={f['payload']}"),
                                       "weights_only=True"),
    "votes CSV with an unknown choice": (lambda t, f: ["stats", f["votes"], "--out", str(t / "s")], "maybe"),
    "output under a regular file": (lambda t, f: run_args(t / "afile" / "run"),
                                    "cannot create run directory"),
    "another configuration on resume": (lambda t, f: run_args(t / "done", "--set", "num_inference_steps=2"),
                                        "holds a run of another configuration"),
    "bad --shard": (lambda t, f: run_args(t / "r", "--shard", "3/2"), "shard"),
    "paper preset without its weights": (lambda t, f: ["run", "--method", "icd-sd15",
                                                       "--backbone", "tiny-sd15", "--dataset", "folder",
                                                       "--data-dir", "datasets/examples",
                                                       "--out", str(t / "r"), "--quiet"],
                                         "needs its published weights (teacher, forward_lora, reverse_lora"),
    "report of a run with a corrupt manifest": (lambda t, f: ["report", f["corrupt"]],
                                                "manifest.json is corrupt"),
    "score of a run with a corrupt manifest": (lambda t, f: ["score", f["corrupt"]],
                                               "manifest.json is corrupt"),
}


@pytest.fixture(scope="module")
def cli_world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    (tmp / "afile").write_text("a file, not a directory")
    res = icd(*run_args(tmp / "done", "--limit", "1"))
    assert res.returncode == 0, res.stderr
    return tmp, _files(tmp)


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_cli_error(case, cli_world):
    tmp, files = cli_world
    args, fragment = CLI_CASES[case]
    res = icd(*args(tmp, files))
    assert not (tmp / "r").exists()  # a run that could not start leaves no run directory behind
    assert res.returncode == 2, (case, res.returncode, res.stdout, res.stderr)
    assert fragment in res.stderr, (case, res.stderr)
    assert "Traceback" not in res.stderr
    message = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(message) <= 3, message  # one message (wrapped at most), not a dump
    assert not (tmp / "executed").exists()  # no checkpoint ever ran code


def test_a_paper_preset_runs_without_its_weights_only_when_asked(tmp_path):
    res = icd("run", "--method", "icd-sd15", "--backbone", "tiny-sd15", "--dataset", "folder", "--data-dir",
              "datasets/examples", "--limit", "1", "--set", "untrained=true",
              "--out", str(tmp_path / "r"), "--quiet")
    assert res.returncode == 0, res.stderr
    record = json.loads((tmp_path / "r" / "records.jsonl").read_text().splitlines()[0])
    assert record["status"] == "ok"
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["config"]["params"]["untrained"] is True  # the run says what it was


# -- per-sample errors (and usable odd inputs) in one run -------------------------------------------

def _write_bad_folder(root: Path) -> dict[str, str]:
    """A folder dataset where each row is one case; returns case → sample id."""
    root.mkdir()
    (root / "sub").mkdir()
    make_image(root / "good.png")
    Image.new("L", (40, 40), 120).save(root / "gray.png")
    Image.new("RGBA", (40, 40), (200, 10, 10, 90)).save(root / "rgba.png")
    Image.fromarray(np.full((40, 40), 40000, dtype=np.uint16)).save(root / "deep.png")
    make_image(root / "cut.png", size=64)
    (root / "cut.png").write_bytes((root / "cut.png").read_bytes()[:150])
    (root / "garbage.png").write_bytes(b"\x89PNG definitely not")
    Image.new("1", (9000, 8000)).save(root / "huge.png")  # 72 M pixels: over the limit, tiny on disk
    make_image(root.parent / "outside.png")
    rows = {
        "missing image file": ("nothere.png", "a cat", "a dog"),
        "truncated image": ("cut.png", "a cat", "a dog"),
        "unreadable image": ("garbage.png", "a cat", "a dog"),
        "huge image": ("huge.png", "a cat", "a dog"),
        "empty prompt": ("good.png", "", "a dog"),
        "path escaping the data dir": ("../outside.png", "a cat", "a dog"),
        "absolute path": (str((root / "good.png").resolve()), "a cat", "a dog"),
        "malformed blend words": ("good.png", "a red cat", "a red dog", "cat"),
        "grayscale image": ("gray.png", "a gray cat", "a gray dog"),
        "RGBA image": ("rgba.png", "a red cat", "a red dog"),
        "16-bit image": ("deep.png", "a cat", "a dog"),
        "over-long prompt": ("good.png", "a cat " * 60, "a dog " * 60),
        "blend word not in the prompt": ("good.png", "a red cat", "a red dog", "horse dog"),
    }
    write_prompts(root, list(rows.values()))
    from icd_bench.data.folder import FolderDataset

    ds = FolderDataset(data_dir=root)
    return dict(zip(rows, ds.ids(), strict=True))


SAMPLE_CASES = {  # case → None (usable: an ok record) or a fragment of the error record
    "missing image file": "image file not found",
    "truncated image": "unreadable image",
    "unreadable image": "unreadable image",
    "huge image": "image too large",
    "empty prompt": "empty source_prompt",
    "path escaping the data dir": "leads outside the data directory",
    "absolute path": "leads outside the data directory",
    "malformed blend words": "blend_words must be two words",
    "grayscale image": None,
    "RGBA image": None,
    "16-bit image": None,
    "over-long prompt": None,
    "blend word not in the prompt": None,
}


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory, tiny_sd15_dir):
    tmp = tmp_path_factory.mktemp("bad")
    ids = _write_bad_folder(tmp / "data")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = Runner(RunConfig(method="ddim-p2p", dataset="folder", data_dir=tmp / "data", task="edit",
                                   backbone=str(tiny_sd15_dir), out=tmp / "run", batch_size=4, device="cpu",
                                   overrides=["num_inference_steps=2"])).run()
    records = {r["id"]: r for r in RunStore(tmp / "run").records()}
    return ids, records, summary, [str(w.message) for w in caught]


@pytest.mark.parametrize("case", sorted(SAMPLE_CASES))
def test_sample_case(case, bad_run):
    ids, records, summary, caught = bad_run
    rec = records[ids[case]]
    expected = SAMPLE_CASES[case]
    if expected is None:
        assert rec["status"] == "ok", rec
    else:
        assert rec["status"] == "error" and expected in rec["error"], rec
    notes = {"over-long prompt": ["source prompt truncated to 77 tokens",
                                  "target prompt truncated to 77 tokens"],
             "blend word not in the prompt": ["blend word 'horse' is not in the source prompt"]}.get(case, [])
    # a usable sample's caveat is kept in its record (and the summary), not raised as a warning
    for note in notes:
        assert not any(note.split(" ", 1)[1] in m for m in caught), (note, caught)
        assert any(note in w for w in rec["warnings"]), rec
    if case == "over-long prompt":  # the words dropped, whole: the prompt's own words past the window
        dropped = " ".join(("a cat " * 60).split()[75:])  # 120 words of one token each; 75 fit the window
        assert any(w.endswith(f"ignored: '{dropped[:80]}…'") for w in rec["warnings"]), rec
    if not notes:
        assert rec.get("warnings", []) == [], rec


def test_the_run_goes_on_past_every_bad_sample(bad_run):
    ids, records, summary, _ = bad_run
    bad = sum(v is not None for v in SAMPLE_CASES.values())
    assert (summary.ok, summary.failed) == (len(SAMPLE_CASES) - bad, bad)
    assert sorted({sid for sid, _ in summary.warnings}) == sorted(
        ids[c] for c in ("over-long prompt", "blend word not in the prompt"))
    assert not (Path(records[ids["grayscale image"]]["outputs"]["image"]).is_absolute())


def test_scoring_does_not_warn_again_about_the_runs_caveats(bad_run):
    from icd_bench.errors import SampleWarning
    from icd_bench.metrics.score import score_run

    _, records, summary, _ = bad_run
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame, _ = score_run(summary.out, ["psnr"])
    assert not [w for w in caught if issubclass(w.category, SampleWarning)], [str(w.message) for w in caught]
    assert frame["value"].notna().sum() == sum(r["status"] == "ok" for r in records.values())


# -- dataset files of the benchmark layouts ----------------------------------------------------------

def test_piebench_bad_entries_are_per_sample_errors(tmp_path):
    from icd_bench.data.piebench import PieBench

    (tmp_path / "annotation_images").mkdir()
    make_image(tmp_path / "annotation_images" / "a.png", size=64)
    good = {"image_path": "a.png", "original_prompt": "a [cat]", "editing_prompt": "a [dog]",
            "editing_instruction": "", "editing_type_id": "1", "blended_word": "cat dog", "mask": [0, 10]}
    mapping = {"000000000001": good,
               "12345": good,  # id of the wrong format
               "000000000002": {**good, "mask": [5, 3, 1]},  # odd run-length list
               "000000000003": {**good, "mask": [-4, 2]},  # negative run
               "000000000004": {**good, "image_path": "../../etc/passwd"}}
    (tmp_path / "mapping_file.json").write_text(json.dumps(mapping))
    ds = PieBench(data_dir=tmp_path)
    assert ds.load("000000000001").edit_mask.shape == (64, 64)  # the 512-grid mask follows the image size
    from icd_bench.errors import SampleError

    for sid, fragment in [("12345", "12 digits"), ("000000000002", "odd number"),
                          ("000000000003", "invalid run"), ("000000000004", "outside the data directory")]:
        with pytest.raises(SampleError, match=fragment):
            ds.load(sid)


def test_coco_csv_with_a_broken_tuple_is_a_per_sample_error(tmp_path):
    from icd_bench.data.coco import CocoEdit
    from icd_bench.errors import SampleError

    make_image(tmp_path / "x.jpg")  # images in DATA_DIR itself
    (tmp_path / "editing_coco.csv").write_text(
        "file_name,old_caption,edited_caption,blended_words\n"
        "x.jpg,a cat,a dog,\"('cat', 'dog')\"\n"
        "x.jpg,a cat,a dog,\"('cat', 'dog'\"\n")
    ds = CocoEdit(data_dir=tmp_path)
    first, second = ds.ids()
    assert ds.load(first).blend_words == ("cat", "dog")
    with pytest.raises(SampleError, match="not a tuple of two words"):
        ds.load(second)


def test_a_run_with_five_broken_samples_among_64_reports_them(tmp_path):
    """The acceptance run: 59 good samples complete, the 5 broken ones are listed with their reasons
    in the terminal summary and in records.jsonl, and the report counts them instead of averaging them."""
    data = tmp_path / "data"
    data.mkdir()
    rows = []
    for k in range(59):
        make_image(data / f"g{k}.png", color=(4 * k, 120, 250 - 4 * k), size=32)
        rows.append((f"g{k}.png", f"a circle {k}", f"a square {k}"))
    (data / "garbage.png").write_bytes(b"not an image")
    rows += [("absent.png", "a cat", "a dog"), ("garbage.png", "a cat", "a dog"), ("g0.png", "", "a dog"),
             ("../g1.png", "a cat", "a dog"), ("g2.png", "a cat", "a dog", "one")]
    write_prompts(data, rows)
    out = tmp_path / "run"
    res = icd("run", "--method", "ddim", "--dataset", "folder", "--data-dir", str(data),
              "--backbone", "tiny-sd15", "--task", "invert", "--set", "num_inference_steps=1",
              "--batch-size", "16", "--out", str(out))
    assert res.returncode == 0, res.stderr
    for reason in ("image file not found", "unreadable image", "empty source_prompt",
                   "leads outside the data", "blend_words must be two words"):
        assert reason in res.stdout, (reason, res.stdout)
    records = RunStore(out).records()
    assert len(records) == 64 and sum(r["status"] == "ok" for r in records) == 59
    assert all(r["error"] for r in records if r["status"] == "error")
    assert icd("score", str(out), "--metrics", "psnr").returncode == 0
    report = icd("report", str(out), "--table", "table2", "--out", str(tmp_path / "rep"))
    assert report.returncode == 0, report.stderr
    text = "".join(p.read_text() for p in (tmp_path / "rep").glob("*.md"))
    assert "run: 5 of 64 samples failed and are not in its means" in text
