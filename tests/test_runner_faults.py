"""Faults inside a run that must not lose or spoil anything: non-finite model outputs, CUDA
out-of-memory (simulated on the CPU), a disk that fills up while writing (simulated)."""

from __future__ import annotations

import errno

import numpy as np
import pytest
import torch
from PIL import Image

import icd_bench.store as store_module
from icd_bench.backbones.base import Backbone
from icd_bench.errors import RunStoreError
from icd_bench.runner import RunConfig, Runner
from icd_bench.store import RunStore

pytestmark = pytest.mark.usefixtures("one_thread")


def cfg(data_dir, model_dir, out, **kw) -> RunConfig:
    base = dict(method="ddim", dataset="folder", data_dir=data_dir, backbone=str(model_dir), task="invert",
                out=out, overrides=["num_inference_steps=3"], device="cpu")
    return RunConfig(**(base | kw))


def images(out) -> dict[str, np.ndarray]:
    return {r["id"]: np.asarray(Image.open(out / r["outputs"]["image"]), dtype=int)
            for r in RunStore(out).records() if r["status"] == "ok"}


def test_non_finite_output_fails_that_sample_only(images_dir, tiny_sd15_dir, tmp_path, monkeypatch):
    clean = tmp_path / "clean"
    Runner(cfg(images_dir, tiny_sd15_dir, clean, limit=2, batch_size=2)).run()
    original = Backbone.predict_noise

    def second_sample_diverges(self, latents, *args, **kwargs):
        out = original(self, latents, *args, **kwargs)
        out[1::2] = float("nan")  # rows of the batch's second sample (unguided B or guided 2B rows, B = 2)
        return out

    monkeypatch.setattr(Backbone, "predict_noise", second_sample_diverges)
    out = tmp_path / "run"
    summary = Runner(cfg(images_dir, tiny_sd15_dir, out, limit=2, batch_size=2)).run()
    assert (summary.ok, summary.failed) == (1, 1)
    recs = {r["id"]: r for r in RunStore(out).records()}
    first, second = sorted(recs)
    assert recs[first]["status"] == "ok"
    assert recs[second]["status"] == "error" and "non-finite values (NaN / Inf)" in recs[second]["error"]
    assert not (out / "images" / f"{second}.png").exists()
    assert np.array_equal(images(out)[first], images(clean)[first])  # the healthy sample is untouched


def test_cuda_out_of_memory_halves_the_batch_then_fails_single_samples(images_dir, tiny_sd15_dir, tmp_path,
                                                                      monkeypatch):
    ref = tmp_path / "ref"
    Runner(cfg(images_dir, tiny_sd15_dir, ref, limit=4)).run()
    original = Backbone.predict_noise
    seen: list[int] = []

    def small_gpu(self, latents, *args, **kwargs):
        seen.append(latents.shape[0])
        if latents.shape[0] > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(self, latents, *args, **kwargs)

    monkeypatch.setattr(Backbone, "predict_noise", small_gpu)
    out = tmp_path / "run"
    summary = Runner(cfg(images_dir, tiny_sd15_dir, out, limit=4, batch_size=4)).run()
    assert (summary.ok, summary.failed) == (4, 0)
    # 4 rows fail: the batch of 4 at its first (unguided) step, then each half of 2 at its first guided
    # step (2 × 2 rows); the halves' halves run through
    assert seen.count(4) == 3 and seen[0] == 4
    got, want = images(out), images(ref)
    assert sorted(got) == sorted(want)
    for k in want:
        assert np.abs(got[k] - want[k]).max() <= 1  # same seeds; batched sums may differ by 1 LSB

    def no_gpu_memory(self, latents, *args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")

    monkeypatch.setattr(Backbone, "predict_noise", no_gpu_memory)
    failed = Runner(cfg(images_dir, tiny_sd15_dir, tmp_path / "oom", limit=3, batch_size=2)).run()
    assert (failed.ok, failed.failed) == (0, 3)  # every sample recorded, the run ended normally
    assert all("CUDA out of memory at batch size 1" in r["error"]
               for r in RunStore(tmp_path / "oom").records())


def test_disk_full_stops_the_run_clearly_and_resuming_completes_it(images_dir, tiny_sd15_dir, tmp_path,
                                                                 monkeypatch):
    ref = tmp_path / "ref"
    Runner(cfg(images_dir, tiny_sd15_dir, ref)).run()
    real_write = store_module.atomic_write_bytes
    writes = []

    def fills_up(path, data):
        writes.append(path)
        if len(writes) > 5:  # room for a few images, then ENOSPC
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(store_module, "atomic_write_bytes", fills_up)
    out = tmp_path / "run"
    with pytest.raises(RunStoreError, match="No space left on device.*re-run the same command"):
        Runner(cfg(images_dir, tiny_sd15_dir, out, batch_size=2)).run()
    partial = RunStore(out).records()
    assert 0 < len(partial) < 5 and all((out / r["outputs"]["image"]).is_file() for r in partial)
    assert not list(out.rglob("*.tmp"))  # no temporary files left behind

    monkeypatch.setattr(store_module, "atomic_write_bytes", real_write)
    resumed = Runner(cfg(images_dir, tiny_sd15_dir, out, batch_size=2)).run()
    assert resumed.skipped == len(partial) and resumed.ok == 5 - len(partial)
    got, want = images(out), images(ref)
    assert sorted(got) == sorted(want)
    for k in want:
        assert np.abs(got[k] - want[k]).max() <= 1


def test_the_halved_retry_runs_after_the_failed_batch_is_released(images_dir, tiny_sd15_dir, tmp_path,
                                                                  monkeypatch):
    """An out-of-memory error's traceback holds the failed call's tensors: retrying inside the ``except``
    block would leave the halves that much less GPU memory."""
    import weakref

    original = Backbone.predict_noise
    held: list = []
    alive_at_retry: list[bool] = []

    def small_gpu(self, latents, *args, **kwargs):
        if latents.shape[0] > 2:
            big = torch.empty(1024)  # a tensor of the failed call, referenced only by its frame
            held.append(weakref.ref(big))
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if held:
            alive_at_retry.append(held[-1]() is not None)
        return original(self, latents, *args, **kwargs)

    monkeypatch.setattr(Backbone, "predict_noise", small_gpu)
    summary = Runner(cfg(images_dir, tiny_sd15_dir, tmp_path / "run", limit=2, batch_size=2)).run()
    assert summary.ok == 2 and held and alive_at_retry and not any(alive_at_retry)
