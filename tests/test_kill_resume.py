"""SIGKILL at random points: a run, a scoring pass and a training run each resume to exactly what an
uninterrupted process gives. Every process here is a real `icd-bench` subprocess with the same
environment, so thread counts (and so CPU rounding) match between the killed and the reference runs."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from safetensors.torch import load_file

from helpers import check_run_store, make_image, write_prompts

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def icd_bench(*args: str) -> list[str]:
    return [sys.executable, "-m", "icd_bench", *args]


def kill_when(cmd: list[str], ready, rng: random.Random, timeout: float = 120) -> bool:
    """Start ``cmd``, SIGKILL it a random 0–0.1 s after ``ready()`` holds; False if it finished first."""
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and not ready():
        time.sleep(0.02)
    time.sleep(rng.uniform(0, 0.1))
    finished = proc.poll() is not None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return not finished


@pytest.fixture
def folder_data(tmp_path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    rows = []
    for k in range(8):
        make_image(data / f"s{k}.png", color=(30 * k, 100, 200 - 20 * k))
        rows.append((f"s{k}.png", f"a circle {k}", f"a square {k}"))
    write_prompts(data, rows)
    return data


def test_run_killed_at_random_points_resumes_to_the_uninterrupted_result(folder_data, tiny_sd15_dir,
                                                                         tmp_path):
    def run(out: Path) -> list[str]:
        return icd_bench("run", "--method", "ddim", "--dataset", "folder", "--data-dir", str(folder_data),
                         "--backbone", str(tiny_sd15_dir), "--task", "invert",
                         "--set", "num_inference_steps=12", "--batch-size", "2", "--out", str(out),
                         "--device", "cpu", "--quiet")

    ref, out = tmp_path / "ref", tmp_path / "run"
    subprocess.run(run(ref), env=ENV, check=True, capture_output=True, timeout=300)
    rng = random.Random(11)
    rec = out / "records.jsonl"
    kills = 0
    for _ in range(3):  # three kills, each after a random number of newly stored samples
        target = (len(check_run_store(out)) if rec.exists() else 0) + rng.randint(1, 2)
        kills += kill_when(run(out),
                           lambda t=target: rec.exists() and len(rec.read_bytes().splitlines()) >= t, rng)
        check_run_store(out)
    assert kills >= 2  # the kills did land inside the run
    res = subprocess.run(run(out), env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    recs = check_run_store(out)
    assert (sorted(r["id"] for r in recs) == [f"s{k}" for k in range(8)]
            and all(r["status"] == "ok" for r in recs))
    for r in recs:
        for rel in r["outputs"].values():
            assert (out / rel).read_bytes() == (ref / rel).read_bytes(), rel


def test_scoring_killed_midway_leaves_no_partial_table_and_resumes(folder_data, tiny_sd15_dir, tmp_path):
    run = tmp_path / "run"
    subprocess.run(icd_bench("run", "--method", "ddim", "--dataset", "folder", "--data-dir", str(folder_data),
                             "--backbone", str(tiny_sd15_dir), "--task", "invert",
                             "--set", "num_inference_steps=2", "--batch-size", "8", "--out", str(run),
                             "--device", "cpu", "--quiet"),
                   env=ENV, check=True, capture_output=True, timeout=300)
    score = icd_bench("score", str(run), "--metrics", "psnr,ssim,psnr:background,mse")
    rng = random.Random(5)
    for _ in range(2):
        start = time.time()
        delay = rng.uniform(0.5, 4.0)  # during start-up or scoring
        kill_when(score, lambda s=start, d=delay: time.time() - s > d, rng)
        table = run / "metrics.parquet"
        assert not table.exists() or len(pd.read_parquet(table)) == 8  # never a partial table
    res = subprocess.run(score, env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    killed = pd.read_parquet(run / "metrics.parquet")
    ref = tmp_path / "ref"
    ref.mkdir()
    for item in run.iterdir():  # an untouched copy of the run, scored without interruption
        if item.name != "metrics.parquet":
            os.symlink(item, ref / item.name)
    subprocess.run(icd_bench("score", str(ref), "--metrics", "psnr,ssim,psnr:background,mse"), env=ENV,
                   check=True, capture_output=True, timeout=300)
    pd.testing.assert_frame_equal(killed, pd.read_parquet(ref / "metrics.parquet"))


def test_training_killed_after_a_checkpoint_resumes_to_the_same_weights(tmp_path):
    recipe = tmp_path / "recipe.toml"
    recipe.write_text("""
[model]
block_out_channels = [8, 16, 16]
text_hidden = 16
text_layers = 1
text_heads = 2
text_intermediate = 16
max_length = 24
text_time_embedding = true

[train]
steps = 8
batch_size = 4
lr = 1e-3
warmup = 2
checkpoint_every = 2
log_every = 2
eval_every = 0
threads = 1
seed = 5
""")

    def train(out: Path) -> list[str]:
        return icd_bench("train", "toy-teacher", "--recipe", str(recipe), "--out", str(out))

    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run(train(straight), env=ENV, check=True, capture_output=True, timeout=600)
    rng = random.Random(3)
    checkpoints = killed / "checkpoints"
    landed = kill_when(train(killed), lambda: checkpoints.exists() and any(checkpoints.glob("step-*")), rng)
    assert landed, "training finished before it could be killed"
    res = subprocess.run(train(killed), env=ENV, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    a = load_file(straight / "pipeline" / "unet" / "diffusion_pytorch_model.safetensors")
    b = load_file(killed / "pipeline" / "unet" / "diffusion_pytorch_model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
