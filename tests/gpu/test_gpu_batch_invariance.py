"""Batch invariance on the device, in fp16 and bf16: a sample's output does not depend on the batch it
runs in, up to the rounding of batched kernels (`gpu_support.BATCH_PSNR_DB`, stated per precision),
while another sample's output is far outside that tolerance. The GPU counterparts of
``test_fast_path.test_batched_prompt_to_prompt_equals_one_sample_at_a_time`` (iCD + Prompt-to-Prompt,
method level) and ``test_runner.test_batch_size_does_not_change_results`` (the runner, batches of 4
and 1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from icd_bench.config import resolve_method
from icd_bench.imaging import psnr
from icd_bench.registry import METHODS
from icd_bench.runner import RunConfig, Runner
from icd_bench.store import RunStore

from .gpu_support import (
    BACKBONE,
    BATCH_PSNR_DB,
    DEVICE,
    HALF,
    MIXED_UP_PSNR_DB,
    ON_CUDA,
    edit_samples,
    generators,
)

pytestmark = pytest.mark.gpu


def check_batch_invariance(alone: torch.Tensor, together: torch.Tensor, dtype: str) -> None:
    """``alone[k]`` (sample k run by itself) matches ``together[k]`` (in the batch) within the stated
    tolerance, and no other sample's output does."""
    same = psnr(alone, together)
    assert same.min() >= BATCH_PSNR_DB[dtype], \
        f"alone vs in the batch: {same.tolist()} dB, the {dtype} tolerance is {BATCH_PSNR_DB[dtype]} dB"
    mixed = psnr(alone, together.roll(1, 0))
    assert mixed.max() < MIXED_UP_PSNR_DB, f"other samples are as close as {mixed.tolist()} dB"


@pytest.mark.parametrize("dtype", HALF)
def test_batched_icd_prompt_to_prompt_equals_one_sample_at_a_time(dtype, backbone):
    # refine and replace pairs, amplify and local blend: every part of the control indexes samples
    spec = resolve_method("icd", ["p2p=true", "p2p_mode=auto", "amplify=2", "local_blend=true", "tau=0.8",
                                  "guidance_scale=5"])
    bb = backbone(dtype)
    batch = edit_samples(3, bb.resolution)
    with METHODS.get("icd")(bb, spec.params) as m:
        _, together = m.run("edit", batch, generators(batch))
        alone = [m.run("edit", [s], generators([s]))[1][0] for s in batch]
    assert [o.nfe for o in together] == [o.nfe for o in alone] == [8] * 3
    check_batch_invariance(torch.stack([o.image for o in alone]), torch.stack([o.image for o in together]),
                           dtype)


def _run_images(out, **kw) -> tuple[list[dict], dict[str, torch.Tensor]]:
    cfg = RunConfig(method="ddim", dataset="demo", backbone=BACKBONE, task="generate", out=out, limit=5,
                    overrides=["num_inference_steps=4", "guidance_scale=1"], device=DEVICE, **kw)
    summary = Runner(cfg).run()
    assert (summary.ok, summary.failed) == (5, 0), summary.errors
    records = sorted(RunStore(out).records(), key=lambda r: r["id"])
    images = {r["id"]: torch.from_numpy(np.asarray(Image.open(out / r["outputs"]["image"]), dtype=np.float32)
                                        / 255).permute(2, 0, 1) for r in records}
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records], images


@pytest.mark.parametrize("dtype", HALF)
def test_batch_size_does_not_change_the_runners_results(dtype, tmp_path):
    if not ON_CUDA and dtype == "fp16":
        pytest.skip("the runner refuses fp16 on the CPU")
    recs_1, one = _run_images(tmp_path / "b1", dtype=dtype)
    recs_4, four = _run_images(tmp_path / "b4", dtype=dtype, batch_size=4)  # batches of 4 and 1
    assert recs_1 == recs_4  # ids, seeds, NFE, prompts, notes
    ids = sorted(one)
    check_batch_invariance(torch.stack([one[k] for k in ids]), torch.stack([four[k] for k in ids]), dtype)
