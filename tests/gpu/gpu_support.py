"""What the GPU tests share: the device and backbone they run on (from the environment, see the
package doc in ``conftest.py``), real-size edit samples and per-sample generators, and the stated
tolerances of half precision."""

from __future__ import annotations

import gc
import os

import torch
from PIL import Image, ImageDraw

from icd_bench.runner import DTYPES, sample_seed
from icd_bench.types import EditSample

DEVICE_ENV = "ICD_BENCH_GPU_TEST_DEVICE"
SIZE_ENV = "ICD_BENCH_GPU_TEST_SIZE"
#: ``ICD_BENCH_GPU_TEST_SIZE`` → the registered backbone the tests build: Stable Diffusion 1.5's
#: architecture with random weights (512×512 images, 4×64×64 latents), or the tiny one (32×32, 4×16×16)
BACKBONES = {"sd15": "sd15-random", "tiny": "tiny-sd15"}

DEVICE = os.environ.get(DEVICE_ENV, "cuda").strip() or "cuda"
SIZE = os.environ.get(SIZE_ENV, "sd15").strip() or "sd15"
if SIZE not in BACKBONES:
    raise ValueError(f"{SIZE_ENV}={SIZE!r}: use one of {', '.join(BACKBONES)}")
BACKBONE = BACKBONES[SIZE]
ON_CUDA = torch.device(DEVICE).type == "cuda"
HAVE_DEVICE = torch.cuda.is_available() if ON_CUDA else True
SKIP_REASON = (f"needs a CUDA device (torch.cuda.is_available() is False); {DEVICE_ENV}=cpu "
               f"{SIZE_ENV}=tiny runs these tests' code paths on the CPU")
#: the half precisions every GPU test runs in
HALF = ("fp16", "bf16")

#: Batch invariance: the PSNR (dB, images in [0, 1]) an output must keep between the sample run alone
#: and in a batch. Batched kernels sum in another order, and a random-weight UNet amplifies that
#: rounding. Measured with SD1.5's architecture (random weights, 128×128 images, on the CPU, bf16):
#: iCD + Prompt-to-Prompt ~35 dB alone vs in a batch of 3 (its bf16 output vs fp32: ~37 dB), unguided
#: DDIM-4 generation ~68 dB; fp16 keeps 3 more mantissa bits (~18 dB less rounding noise). Another
#: sample's output is 12–13 dB away, so `MIXED_UP_PSNR_DB` tells a mixed-up batch from rounding.
BATCH_PSNR_DB = {"fp16": 40.0, "bf16": 28.0}
MIXED_UP_PSNR_DB = 20.0

PAIRS = [("a red cat on grass", "a red dog on grass", ("cat", "dog")),
         ("a blue car on a road", "a green car on a road", ("blue", "green")),
         ("a small house by a lake", "a small wooden house by a lake", ("house", "house")),
         ("a yellow bird on a branch", "a yellow cat on a branch", ("bird", "cat"))]


def torch_dtype(name: str) -> torch.dtype:
    return DTYPES[name]


def edit_samples(n: int, side: int) -> list[EditSample]:
    """``n`` edit samples with side × side images (a disc on a plain background, each its own colours),
    short prompts (the random backbones' tokenizer spends one token per character) and blend words."""
    fills = [(200, 40, 40), (40, 60, 200), (90, 160, 60), (230, 200, 40)]
    backs = [(235, 235, 235), (40, 40, 50), (200, 180, 120), (120, 170, 220)]
    out = []
    for k in range(n):
        source, target, blend = PAIRS[k % len(PAIRS)]
        im = Image.new("RGB", (side, side), backs[k % len(backs)])
        disc = (side // 4, side // 5, 3 * side // 4, 4 * side // 5)
        ImageDraw.Draw(im).ellipse(disc, fill=fills[k % len(fills)])
        out.append(EditSample(id=f"s{k}", image=im, source_prompt=source, target_prompt=target,
                              blend_words=blend))
    return out


def generators(samples: list[EditSample], seed: int = 0) -> list[torch.Generator]:
    """One CPU generator per sample, seeded as the runner seeds it (run seed, sample id)."""
    return [torch.Generator().manual_seed(sample_seed(seed, s.id)) for s in samples]


def free_device_memory() -> None:
    """Collect what is unreachable and give the allocator's cached blocks back to the device."""
    gc.collect()
    if ON_CUDA and torch.cuda.is_available():
        torch.cuda.empty_cache()
