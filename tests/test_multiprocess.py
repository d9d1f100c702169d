"""Two processes under ``accelerate launch`` on CPU (gloo): iCD training over webdataset shards keeps
the replicas identical, deals each process its own samples, and resumes a killed run exactly;
``icd-bench run`` fills one store with every sample exactly once."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_stream_data import write_shards

from icd_bench.store import RunStore

from conftest import REPO

pytest.importorskip("webdataset")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def launch(*args: str) -> list[str]:
    """accelerate's launcher with two processes; on a machine without GPUs ``--multi_gpu`` starts them
    through torchrun and the trainer (``--device cpu``) joins them with gloo."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(port), "-m", "icd_bench", *args]


def recipe(tmp_path: Path, steps: int) -> Path:
    urls = write_shards(tmp_path / "shards", shards=4, per_shard=6)
    path = tmp_path / f"recipe-{steps}.toml"
    path.write_text(f"""
[data]
source = "webdataset"
urls = "{urls}"
log_samples = true

[train]
backbone = "tiny-sd15"
steps = {steps}
batch_size = 2
lora_rank = 4
lora_alpha = 4.0
threads = 1
checkpoint_every = 1
log_every = 1
""")
    return path


def train(recipe_path: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(launch("train", "icd", "--recipe", str(recipe_path), "--out", str(out),
                                 "--device", "cpu", "-q"),
                          capture_output=True, text=True, env=ENV, timeout=600, cwd=REPO)


def samples(out: Path, process: int) -> list[dict]:
    return [json.loads(line)
            for line in (out / "samples" / f"process-{process}.jsonl").read_text().splitlines()]


def test_two_process_training_averages_gradients_splits_data_and_resumes_after_a_kill(tmp_path):
    steps = 6
    path = recipe(tmp_path, steps)
    full = tmp_path / "full"
    res = train(path, full)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]

    # gradients averaged: both processes hold the same weights at every checkpoint
    meta = json.loads(sorted((full / "checkpoints").glob("step-*"))[-1].joinpath("meta.json").read_text())
    assert meta["processes"] == 2 and len(meta["replica_digests"]) == 2
    assert meta["replica_digests"][0] == meta["replica_digests"][1]

    # each process read its own samples: 6 steps x 2 = 12 each = one epoch of its two shards
    seen = [[k for row in samples(full, p) for k in row["keys"]] for p in (0, 1)]
    assert [row["step"] for row in samples(full, 0)] == list(range(steps))
    assert len(set(seen[0])) == len(set(seen[1])) == 12 and set(seen[0]).isdisjoint(seen[1])
    shards = [{k.split("/")[1] for k in s} for s in seen]
    assert len(shards[0]) == len(shards[1]) == 2 and shards[0].isdisjoint(shards[1])

    # kill -9 mid-run, then resume: the same steps, samples and final weights as the uninterrupted run
    cut = tmp_path / "cut"
    proc = subprocess.Popen(launch("train", "icd", "--recipe", str(path), "--out", str(cut),
                                   "--device", "cpu", "-q"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV, cwd=REPO,
                            start_new_session=True)
    try:
        deadline = time.time() + 300
        while not (cut / "checkpoints" / "step-000002" / "meta.json").is_file():
            assert proc.poll() is None and time.time() < deadline, (
                "the run ended before its second checkpoint")
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (cut / "cdm.safetensors").exists(), "killed too late: the run had finished"
    res = train(path, cut)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    for name in ("cdm.safetensors", "fcdm.safetensors"):
        a, b = load_file(cut / name), load_file(full / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for p in (0, 1):
        assert samples(cut, p) == samples(full, p)
    rows = (cut / "loss.csv").read_text().splitlines()[1:]
    assert [r.split(",")[0] for r in rows] == [str(s) for s in range(1, steps + 1)]


def test_two_process_run_fills_one_store_with_each_sample_once(tmp_path):
    out = tmp_path / "run"
    res = subprocess.run(launch("run", "--method", "ddim-toy", "--dataset", "demo", "--limit", "6",
                                "--out", str(out), "--device", "cpu", "--set", "num_inference_steps=5", "-q"),
                         capture_output=True, text=True, env=ENV, timeout=600, cwd=REPO)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert sorted(p.name for p in out.glob("records*.jsonl")) == ["records.shard-0-of-2.jsonl",
                                                                  "records.shard-1-of-2.jsonl"]
    ids = [r["id"] for r in RunStore(out).records()]
    assert len(ids) == 6 and len(set(ids)) == 6
    score = subprocess.run([sys.executable, "-m", "icd_bench", "score", str(out), "--metrics", "psnr", "-q"],
                           capture_output=True, text=True, env=ENV, timeout=600, cwd=REPO)
    assert score.returncode == 0, score.stderr


def test_two_process_score_splits_the_samples_and_merges_one_result(tmp_path):
    """``accelerate launch -m icd_bench score``: each process scores its share of the samples into its own
    files, process 0 merges them; the per-sample values and the set value equal one process's."""
    import pandas as pd
    from test_score_streaming import images, options, reference

    from icd_bench.metrics.score import SCORING, score_run

    from helpers import write_image_run

    run = write_image_run(tmp_path / "run", images(14), sources=images(14, seed=1))
    ref = reference(tmp_path)
    shutil.copytree(run, tmp_path / "single")
    opts = [a for k, v in options(ref).items() for a in ("--option", f"{k}={v}")]
    res = subprocess.run(launch("score", str(run), "--metrics", "psnr,fid", "--device", "cpu",
                                "--batch-size", "3", "-q", *opts),
                         capture_output=True, text=True,
                         env={**ENV, "PYTHONPATH": str(REPO / "tests")}, timeout=600, cwd=REPO)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    shards = sorted(p.name for p in (run / SCORING).glob("*/rows*.jsonl"))
    assert shards == ["rows.shard-0-of-2.jsonl", "rows.shard-1-of-2.jsonl"]  # psnr, one file per process
    assert len(list((run / SCORING).glob("*/features.shard-*/*.npz"))) == 2 * 3  # 7 images each, batches of 3
    merged = pd.read_parquet(run / "metrics.parquet")
    single, _ = score_run(tmp_path / "single", ["psnr", "fid"], batch_size=3, options=options(ref))
    got = {(r.id, r.metric): r.value for r in merged.itertuples()}
    want = {(r.id, r.metric): r.value for r in single.itertuples()}
    assert got.keys() == want.keys() and len(got) == 14 + 1
    assert got == pytest.approx(want, rel=1e-12)
