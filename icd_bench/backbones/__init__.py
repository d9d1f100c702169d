"""Backbones: a tokenizer/text-encoder/UNet/VAE/schedule bundle behind one interface.

Registered names: ``sd15`` and ``sdxl`` (the hub models), ``tiny-sd15`` and ``tiny-sdxl`` (random
weights). Anything else given as ``--backbone`` is a local diffusers directory or a hub id.
"""

from __future__ import annotations

from pathlib import Path

import torch

from icd_bench.backbones.base import Backbone, NFECounter, PromptEmbeds
from icd_bench.backbones.loaders import load_pretrained
from icd_bench.backbones.tiny import tiny_backbone
from icd_bench.errors import UnknownNameError
from icd_bench.registry import BACKBONES

SD15_HUB_ID = "stable-diffusion-v1-5/stable-diffusion-v1-5"
SDXL_HUB_ID = "stabilityai/stable-diffusion-xl-base-1.0"


@BACKBONES.register("sd15")
def sd15(device="cpu", dtype=torch.float32) -> Backbone:
    """Stable Diffusion 1.5 (stable-diffusion-v1-5/stable-diffusion-v1-5), 512×512."""
    return load_pretrained(SD15_HUB_ID, device=device, dtype=dtype)


@BACKBONES.register("sdxl")
def sdxl(device="cpu", dtype=torch.float32) -> Backbone:
    """Stable Diffusion XL base 1.0 (stabilityai/stable-diffusion-xl-base-1.0), 1024×1024."""
    return load_pretrained(SDXL_HUB_ID, device=device, dtype=dtype)


@BACKBONES.register("tiny-sd15")
def tiny_sd15(device="cpu", dtype=torch.float32) -> Backbone:
    """Tiny SD1.5-shaped model with random weights, 32×32: smoke tests and timing only."""
    return tiny_backbone("sd15", device, dtype)


@BACKBONES.register("tiny-sdxl")
def tiny_sdxl(device="cpu", dtype=torch.float32) -> Backbone:
    """Tiny SDXL-shaped model with random weights, 32×32: smoke tests and timing only."""
    return tiny_backbone("sdxl", device, dtype)


def load_backbone(spec: str, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Backbone:
    """A registered backbone name, a local diffusers directory or a hub id (owner/name)."""
    if spec in BACKBONES:
        return BACKBONES.get(spec)(device=device, dtype=dtype)
    if Path(spec).expanduser().is_dir() or (spec.count("/") == 1 and not spec.startswith((".", "/", "~"))):
        return load_pretrained(spec, device=device, dtype=dtype)
    raise UnknownNameError(BACKBONES.unknown_message(spec) + f" {spec!r} is not a directory either.")


__all__ = ["Backbone", "NFECounter", "PromptEmbeds", "load_backbone", "load_pretrained", "tiny_backbone"]
