"""The command line as a user meets it: help, listings, clear one-line errors, a real run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "COLUMNS": "200"}


def icd(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "icd_bench", *args], capture_output=True, text=True,
                          env=ENV, timeout=300, cwd=cwd or REPO)


def test_help_and_version():
    res = icd("--help")
    assert res.returncode == 0 and "run" in res.stdout and "list" in res.stdout
    res = icd("run", "--help")
    assert res.returncode == 0 and "--set" in res.stdout and "--shard" in res.stdout
    assert icd("--version").stdout.startswith("icd-bench ")


def test_no_command_and_bad_options_show_usage_without_traceback():
    bare = icd()
    assert bare.returncode == 2 and "Usage:" in bare.stdout and "reproduce" in bare.stdout
    bad = icd("run", "--bogus")
    assert bad.returncode == 2 and "No such option: --bogus" in bad.stderr
    for res in (bare, bad):
        assert "Traceback" not in res.stdout + res.stderr


def test_list_everything():
    res = icd("list")
    assert res.returncode == 0, res.stderr
    for word in ("methods", "ddim", "presets", "ddim-sd15-w8-dcfg", "datasets", "folder",
                 "backbones", "tiny-sd15", "sdxl"):
        assert word in res.stdout
    bad = icd("list", "widgets")
    assert bad.returncode == 2 and "cannot list 'widgets'" in bad.stderr


@pytest.mark.parametrize("args, fragment", [
    (["--method", "nul-text"], "unknown method 'nul-text'"),
    (["--method", "ddim", "--set", "steps=3"], "valid fields: num_inference_steps (int)"),
    (["--method", "ddim", "--set", "tau=abc"], "tau: expected a number"),
    (["--method", "ddim", "--dataset", "pie"], "unknown dataset 'pie'"),
    (["--method", "ddim", "--data-dir", "/nonexistent"], "data directory not found"),
    (["--method", "ddim", "--backbone", "tiny-sd16"], "Did you mean 'tiny-sd15'"),
])
def test_user_errors_are_one_line_without_traceback(args, fragment, tmp_path):
    base = {"--dataset": "folder", "--data-dir": "datasets/examples", "--backbone": "tiny-sd15",
            "--out": str(tmp_path / "r")}
    for k, v in zip(args[::2], args[1::2], strict=True):
        base[k] = v
    flat = [x for kv in base.items() for x in kv]
    if "--method" not in base:
        flat += ["--method", "ddim"]
    res = icd("run", *flat, "--set", "num_inference_steps=2", "--quiet")
    assert res.returncode == 2, res.stdout + res.stderr
    assert fragment in res.stderr
    assert "Traceback" not in res.stderr


def test_quick_start_run_on_the_example_images(tmp_path):
    out = tmp_path / "demo"
    res = icd("run", "--method", "ddim-tiny", "--dataset", "folder", "--data-dir", "datasets/examples",
              "--task", "invert", "--out", str(out), "--set", "num_inference_steps=3")
    assert res.returncode == 0, res.stderr
    assert "run summary" in res.stdout and "4 ok" in res.stdout
    recs = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    assert len(recs) == 4 and all(r["status"] == "ok" and r["nfe"] == 6 for r in recs)
    again = icd("run", "--method", "ddim-tiny", "--dataset", "folder", "--data-dir", "datasets/examples",
                "--task", "invert", "--out", str(out), "--set", "num_inference_steps=3", "--quiet")
    assert again.returncode == 0 and "0 ok, 0 failed, 4 already done" in again.stdout


def test_main_job_edits_the_demo_with_icd_and_shows_ddim_50_beside_it(tmp_path):
    from icd_bench.studies.sweep import BASELINE, load_curves

    out = tmp_path / "icd"
    res = icd("run", "--method", "icd-toy", "--dataset", "demo", "--out", str(out), "--limit", "3",
              "--batch-size", "3", "--score", "--report")
    assert res.returncode == 0, res.stderr
    default = next(p for p in load_curves()["methods"][BASELINE]["points"] if p["value"] == 2)
    assert "this run (icd-toy)" in res.stdout and "DDIM-50, same CFG" in res.stdout
    assert "DDIM-50, default" in res.stdout and "DDIM-50, same bg" in res.stdout
    assert f" {default['toy_edit:background_psnr']:.1f} " in res.stdout and " 150 " in res.stdout
    assert "toy_edit:success" in res.stdout and f"gallery: {out.resolve() / 'gallery.html'}" in res.stdout
    row = next(line for line in res.stdout.splitlines() if "this run (icd-toy)" in line)
    cells = [c.strip() for c in row.replace("│", "|").split("|")]
    assert cells[1:3] == ["5", "3"] and cells[5] == "8"  # CFG 5, three edits, 4 + 4 UNet evaluations each


def test_main_job_on_the_bundled_demo_with_the_bundled_teacher(tmp_path):
    out = tmp_path / "demo"
    res = icd("run", "--method", "ddim-toy-inversion", "--dataset", "demo", "--task", "invert",
              "--out", str(out), "--limit", "3", "--set", "num_inference_steps=10")
    assert res.returncode == 0, res.stderr
    assert "reconstruction PSNR" in res.stdout and "3 ok" in res.stdout
    recs = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    assert len(recs) == 3 and all(r["nfe"] == 20 for r in recs)
    # a trained teacher inverts its own world well even with 10 steps
    assert min(r["extras"]["reconstruction_psnr"] for r in recs) > 25


@pytest.mark.parametrize("task, nfe", [("edit", 8), ("invert", 8)])
def test_icd_on_the_bundled_demo_spends_four_plus_four_steps(tmp_path, task, nfe):
    out = tmp_path / "icd"
    res = icd("run", "--method", "icd-toy", "--dataset", "demo", "--task", task, "--out", str(out),
              "--limit", "2", "--quiet")
    assert res.returncode == 0, res.stderr
    recs = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    assert [r["status"] for r in recs] == ["ok", "ok"] and all(r["nfe"] == nfe for r in recs)
    assert all((out / r["outputs"]["image"]).is_file() for r in recs)


def test_toy_make_demo_regenerates_the_bundled_set(tmp_path):
    res = icd("toy", "make-demo", "--out", str(tmp_path / "d"))
    assert res.returncode == 0, res.stderr
    assert "70 edits" in res.stdout
    bundled = REPO / "icd_bench" / "assets" / "demo" / "mapping_file.json"
    assert (tmp_path / "d" / "mapping_file.json").read_bytes() == bundled.read_bytes()


def test_words_outside_the_toy_vocabulary_are_said_once_and_recorded(tmp_path):
    """A photo's caption through the toy world silently gave toy shapes: now the run summary names the
    unknown words once, and each sample's record carries the note; toy prompts get none."""
    from helpers import make_image, write_prompts

    data = tmp_path / "photos"
    data.mkdir()
    for k in range(3):
        make_image(data / f"p{k}.png", size=48)
    write_prompts(data,
                  [(f"p{k}.png", "a cat sitting on a sofa", "a dog sitting on a sofa") for k in range(3)])
    out = tmp_path / "run"
    res = icd("run", "--method", "ddim-toy", "--dataset", "folder", "--data-dir", str(data),
              "--out", str(out), "--set", "num_inference_steps=2")
    assert res.returncode == 0, res.stderr
    summary = " ".join(res.stdout.split())
    assert summary.count("toy vocabulary") == 1
    assert "cat, dog, sitting, sofa" in summary
    recs = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    assert len(recs) == 3 and all(r["status"] == "ok" for r in recs)
    assert all(any("does not know (cat, sitting, sofa)" in w for w in r["warnings"]) for r in recs)
    toy = icd("run", "--method", "ddim-toy", "--dataset", "folder", "--data-dir", "datasets/examples",
              "--out", str(tmp_path / "toy"), "--set", "num_inference_steps=2", "--limit", "2")
    assert toy.returncode == 0 and "toy vocabulary" not in toy.stdout
