"""GPU tests: every method at Stable Diffusion 1.5 size on random weights in fp16 and bf16 (finite
outputs, the NFE the method reports on the CPU), batch invariance within stated half-precision
tolerances, the runner's halving of a batch on a real CUDA out-of-memory error, and ``bench`` at
batch 1 and 16. The backbone is ``sd15-random``: SD1.5's UNet, VAE and CLIP text encoder with random
weights (512×512 images, 4×64×64 latents), so no download is needed.

Run them on a machine with a CUDA GPU::

    pytest tests/gpu -m gpu

Every test here is marked ``gpu`` and skipped, with the reason, where ``torch.cuda.is_available()`` is
False. Two environment variables change where they run, for working on the tests without a GPU:

- ``ICD_BENCH_GPU_TEST_DEVICE``: the device (default ``cuda``; ``cuda:1`` picks a card). ``cpu`` runs
  the tests on the CPU, where the runner refuses fp16 (the runner's fp16 case is skipped, ``bench``
  times fp32) and the out-of-memory test is skipped (it needs CUDA's allocator).
- ``ICD_BENCH_GPU_TEST_SIZE``: ``sd15`` (default) or ``tiny``: the tiny random backbone (``tiny-sd15``,
  32×32 images) in place of the SD1.5-size one.

``ICD_BENCH_GPU_TEST_DEVICE=cpu ICD_BENCH_GPU_TEST_SIZE=tiny pytest tests/gpu`` is a smoke run of the
code paths (about ten minutes on two CPU cores); its numbers say nothing about a GPU.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from .gpu_support import (
    BACKBONE,
    DEVICE,
    HAVE_DEVICE,
    ON_CUDA,
    SIZE,
    SKIP_REASON,
    free_device_memory,
    torch_dtype,
)

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    """Mark every test of this folder ``gpu``, and skip them where the device is missing."""
    for item in items:
        if HERE not in Path(item.fspath).resolve().parents:
            continue
        item.add_marker(pytest.mark.gpu)
        if not HAVE_DEVICE:
            item.add_marker(pytest.mark.skip(reason=SKIP_REASON))


@pytest.fixture(scope="session")
def device() -> torch.device:
    dev = torch.device(DEVICE)
    if ON_CUDA and dev.index is not None:  # cuda:N becomes the current device
        torch.cuda.set_device(dev)
    return dev


@pytest.fixture(scope="session")
def backbone(device):
    """``backbone("fp16")``: the session's random backbone in that precision on the test device, built
    once and handed out as loaded (a method gives it back that way when it closes; checked here)."""
    built = {}

    def get(dtype: str):
        if dtype not in built:
            from icd_bench.backbones import load_backbone

            built[dtype] = load_backbone(BACKBONE, device=device, dtype=torch_dtype(dtype))
        bb = built[dtype]
        assert bb.dtype == torch_dtype(dtype) and not getattr(bb.unet, "peft_config", None), \
            "a method did not give the shared backbone back as loaded"
        if SIZE == "sd15":
            assert (bb.resolution, bb.latent_shape(1)) == (512, (1, 4, 64, 64))
        return bb

    yield get
    built.clear()
    free_device_memory()

