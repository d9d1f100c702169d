"""The runner end to end on a tiny random SD1.5-shaped model loaded through the real loader."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from icd_bench.errors import ConfigError, RunStoreError
from icd_bench.runner import RunConfig, Runner, sample_seed
from icd_bench.store import RunStore

from helpers import make_image, write_prompts

STEPS = 4


def cfg(data_dir, model_dir, out, **kw) -> RunConfig:
    base = dict(method="ddim", dataset="folder", data_dir=data_dir, backbone=str(model_dir),
                task="invert", out=out, overrides=[f"num_inference_steps={STEPS}"], device="cpu")
    base.update(kw)
    return RunConfig(**base)


def records(out: Path) -> list[dict]:
    return RunStore(out).records()


def without_timing(recs: list[dict]) -> list[dict]:
    return sorted(({k: v for k, v in r.items() if k != "seconds"} for r in recs), key=lambda r: r["id"])


def test_invert_writes_records_and_images(images_dir, tiny_sd15_dir, tmp_path):
    out = tmp_path / "run"
    summary = Runner(cfg(images_dir, tiny_sd15_dir, out)).run()
    assert (summary.total, summary.ok, summary.failed, summary.skipped) == (5, 5, 0, 0)
    recs = records(out)
    assert [r["id"] for r in recs] == [f"img{k}" for k in range(5)]
    for r in recs:
        assert r["status"] == "ok" and r["error"] is None
        assert r["nfe"] == STEPS + 2 * STEPS  # unguided inversion + reconstruction guided at w = 7.5
        assert r["seed"] == sample_seed(0, r["id"])
        im = Image.open(out / r["outputs"]["image"])
        src = Image.open(out / r["outputs"]["source"])
        assert im.size == src.size == (32, 32) and im.mode == "RGB"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["method"] == "ddim"
    assert manifest["config"]["params"]["num_inference_steps"] == STEPS
    assert manifest["config"]["backbone"] == str(tiny_sd15_dir)
    assert manifest["runtime"]["versions"]["torch"]
    assert manifest["protocol"] == {"saw_mask": False}  # no method of the project is given the edit mask
    assert len(manifest["config_hash"]) == 16


def test_same_command_twice_gives_identical_records_and_images(images_dir, tiny_sd15_dir, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    Runner(cfg(images_dir, tiny_sd15_dir, a, task="edit", limit=3)).run()
    Runner(cfg(images_dir, tiny_sd15_dir, b, task="edit", limit=3)).run()
    assert without_timing(records(a)) == without_timing(records(b))
    for r in records(a):
        assert (a / r["outputs"]["image"]).read_bytes() == (b / r["outputs"]["image"]).read_bytes()


def test_batch_size_does_not_change_results(images_dir, tiny_sd15_dir, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    Runner(cfg(images_dir, tiny_sd15_dir, a, task="generate")).run()
    Runner(cfg(images_dir, tiny_sd15_dir, b, task="generate", batch_size=4)).run()  # batches of 4 and 1
    assert without_timing(records(a)) == without_timing(records(b))
    for r in records(a):
        x = np.asarray(Image.open(a / r["outputs"]["image"]), dtype=int)
        y = np.asarray(Image.open(b / r["outputs"]["image"]), dtype=int)
        assert np.abs(x - y).max() <= 1  # same seeds; batched float sums may differ by 1 LSB


def test_resume_skips_finished_ids(images_dir, tiny_sd15_dir, tmp_path):
    out = tmp_path / "run"
    first = Runner(cfg(images_dir, tiny_sd15_dir, out, limit=2)).run()
    assert first.ok == 2
    second = Runner(cfg(images_dir, tiny_sd15_dir, out)).run()
    assert (second.skipped, second.ok) == (2, 3)
    third = Runner(cfg(images_dir, tiny_sd15_dir, out)).run()
    assert (third.skipped, third.ok) == (5, 0)
    lines = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    assert sorted(Counter(r["id"] for r in lines).values()) == [1] * 5


def test_other_configuration_is_refused(images_dir, tiny_sd15_dir, tmp_path):
    out = tmp_path / "run"
    Runner(cfg(images_dir, tiny_sd15_dir, out, limit=1)).run()
    with pytest.raises(RunStoreError, match="num_inference_steps"):
        Runner(cfg(images_dir, tiny_sd15_dir, out, overrides=["num_inference_steps=3"])).run()
    with pytest.raises(RunStoreError, match="seed: 0 there, 1 now"):
        Runner(cfg(images_dir, tiny_sd15_dir, out, seed=1)).run()


def test_shards_partition_the_dataset(images_dir, tiny_sd15_dir, tmp_path):
    out = tmp_path / "run"
    s0 = Runner(cfg(images_dir, tiny_sd15_dir, out, shard=(0, 2))).run()
    s1 = Runner(cfg(images_dir, tiny_sd15_dir, out, shard=(1, 2))).run()
    assert (s0.ok, s1.ok) == (3, 2)
    assert sorted(p.name for p in out.glob("records*.jsonl")) == [
        "records.shard-0-of-2.jsonl", "records.shard-1-of-2.jsonl"]
    assert sorted(r["id"] for r in records(out)) == [f"img{k}" for k in range(5)]
    # the same samples as an unsharded run
    whole = tmp_path / "whole"
    Runner(cfg(images_dir, tiny_sd15_dir, whole)).run()
    assert without_timing(records(out)) == without_timing(records(whole))
    for r in records(whole):
        for rel in r["outputs"].values():
            assert (out / rel).read_bytes() == (whole / rel).read_bytes()


def test_bad_rows_become_error_records_and_the_run_goes_on(tmp_path, tiny_sd15_dir):
    data = tmp_path / "data"
    data.mkdir()
    make_image(data / "good.png")
    (data / "broken.png").write_bytes(b"\x89PNG not really")
    write_prompts(data, [("good.png", "a cat", "a dog"), ("missing.png", "a cat", "a dog"),
                         ("broken.png", "a cat", "a dog"), ("good.png", "", "a dog")])
    out = tmp_path / "run"
    summary = Runner(cfg(data, tiny_sd15_dir, out, batch_size=4)).run()
    assert (summary.ok, summary.failed) == (1, 3)
    by_id = {r["id"]: r for r in records(out)}
    assert by_id["good"]["status"] == "ok"
    assert "image file not found" in by_id["missing"]["error"]
    assert "unreadable image" in by_id["broken"]["error"]
    assert "empty source_prompt" in by_id["good-2"]["error"]
    # errors are final on resume unless asked to retry
    assert Runner(cfg(data, tiny_sd15_dir, out)).run().skipped == 4
    retry = Runner(cfg(data, tiny_sd15_dir, out, retry_errors=True)).run()
    assert (retry.skipped, retry.failed) == (1, 3)


def test_configuration_errors_are_clear(images_dir, tiny_sd15_dir, tmp_path):
    with pytest.raises(ConfigError, match="unknown --task"):
        Runner(cfg(images_dir, tiny_sd15_dir, tmp_path / "r", task="paint"))
    with pytest.raises(ConfigError, match="names no backbone"):
        Runner(cfg(images_dir, None, tmp_path / "r", backbone=None))
    with pytest.raises(ConfigError, match="fp16 needs a GPU"):
        Runner(cfg(images_dir, tiny_sd15_dir, tmp_path / "r", dtype="fp16"))
    with pytest.raises(ConfigError, match="takes no --split"):
        Runner(cfg(images_dir, tiny_sd15_dir, tmp_path / "r", split="random"))
    with pytest.raises(ConfigError, match="shard 2/2"):
        Runner(cfg(images_dir, tiny_sd15_dir, tmp_path / "r", shard=(2, 2)))


def test_invert_records_reconstruction_psnr(images_dir, tiny_sd15_dir, tmp_path):
    from icd_bench.metrics import psnr

    out = tmp_path / "run"
    summary = Runner(cfg(images_dir, tiny_sd15_dir, out, limit=2)).run()
    assert len(summary.psnr) == 2
    for r in records(out):
        a = np.asarray(Image.open(out / r["outputs"]["image"]), dtype=np.float64) / 255
        b = np.asarray(Image.open(out / r["outputs"]["source"]), dtype=np.float64) / 255
        import torch
        expected = float(psnr(torch.from_numpy(a).permute(2, 0, 1), torch.from_numpy(b).permute(2, 0, 1)))
        assert abs(r["extras"]["reconstruction_psnr"] - expected) < 0.3  # PNG rounding only
