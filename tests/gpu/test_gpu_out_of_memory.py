"""The runner's answer to a real ``torch.cuda.OutOfMemoryError``: the batch is halved and retried, and
the run completes with every sample. The GPU counterpart of
``test_runner_faults.test_cuda_out_of_memory_halves_the_batch_then_fails_single_samples``, which
simulates the error on the CPU.

The memory the process may use is capped (``torch.cuda.set_per_process_memory_fraction``) half-way
between the peaks of the same run at batch 2 and at batch 4, both measured first (above what the
process holds before it): a batch of 4 cannot fit, a batch of 2 fits with the memory of one sample to
spare."""

from __future__ import annotations

import pytest
import torch

from icd_bench.runner import RunConfig, Runner
from icd_bench.store import RunStore

from .gpu_support import BACKBONE, DEVICE, ON_CUDA, free_device_memory

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not ON_CUDA, reason="provokes CUDA's out-of-memory error: needs CUDA")]

STEPS = 3


def run(out, *, limit: int, batch_size: int) -> tuple:
    """The summary of ``icd-bench run --method ddim --task invert`` (fp16) and the batch sizes the method
    was called with."""
    sizes: list[int] = []

    def watch(method):
        call = method.run

        def run_recorded(task, samples, generators):
            sizes.append(len(samples))
            return call(task, samples, generators)

        method.run = run_recorded

    cfg = RunConfig(method="ddim", dataset="demo", backbone=BACKBONE, task="invert", out=out, limit=limit,
                    batch_size=batch_size, overrides=[f"num_inference_steps={STEPS}"], device=DEVICE,
                    dtype="fp16")
    summary = Runner(cfg, on_method=watch).run()
    return summary, sizes


def peak_bytes(out, *, limit: int, batch_size: int) -> int:
    """The allocator's peak during a whole run, above the memory in use before it."""
    free_device_memory()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    summary, sizes = run(out, limit=limit, batch_size=batch_size)
    assert (summary.ok, sizes) == (limit, [batch_size]), (summary.errors, sizes)
    return torch.cuda.max_memory_allocated() - before


def test_out_of_memory_halves_the_batch_and_the_run_completes(tmp_path, device):
    index = device.index if device.index is not None else torch.cuda.current_device()
    peak_bytes(tmp_path / "warm-up", limit=2, batch_size=2)  # library handles and workspaces, once
    two = peak_bytes(tmp_path / "two", limit=2, batch_size=2)
    four = peak_bytes(tmp_path / "four", limit=4, batch_size=4)
    assert four > two > 0, (four, two)
    free_device_memory()
    # the cap bounds the memory the allocator reserves (what it holds now included, in use or not)
    cap = torch.cuda.memory_reserved() + (two + four) // 2
    total = torch.cuda.get_device_properties(index).total_memory
    out = tmp_path / "capped"
    torch.cuda.set_per_process_memory_fraction(cap / total, index)
    try:
        summary, sizes = run(out, limit=4, batch_size=4)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, index)
        free_device_memory()
    per_sample = (four - two) / 2
    assert sizes[0] == 4 and len(sizes) > 1, \
        f"the batch of 4 did not run out of memory under a cap of {cap / 2**30:.2f} GiB: {sizes}"
    assert (summary.ok, summary.failed) == (4, 0), \
        (f"under a cap of {cap / 2**30:.2f} GiB (about {per_sample / 2**30:.2f} GiB a sample) the halved "
         f"batches failed too: the method was called with {sizes} samples; {summary.errors}")
    assert sizes == [4, 2, 2]  # the batch of 4 ran out of memory; its halves ran through
    records = {r["id"]: r for r in RunStore(out).records()}
    assert len(records) == 4 and all(r["status"] == "ok" for r in records.values())
    # unguided inversion, decoding guided at w = 7.5
    assert {r["nfe"] for r in records.values()} == {STEPS + 2 * STEPS}
    uncapped = {r["id"]: r["nfe"] for r in RunStore(tmp_path / "four").records()}
    assert uncapped == {k: r["nfe"] for k, r in records.items()}
