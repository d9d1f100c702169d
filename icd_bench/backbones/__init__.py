"""Backbones: a tokenizer/text-encoder/UNet/VAE/schedule bundle behind one interface.

Registered names: ``sd15`` and ``sdxl`` (the hub models), ``toy`` (the bundled toy-world teacher),
``tiny-sd15`` and ``tiny-sdxl`` (tiny, random weights), ``sd15-random`` and ``sdxl-random`` (the real
architectures with random weights, for timing). Anything else given as ``--backbone`` is a local diffusers
directory or a hub id.
"""

from __future__ import annotations

from pathlib import Path

import torch

from icd_bench.backbones import base, loaders, random_weights, tiny
from icd_bench.backbones.base import Backbone, NFECounter, PromptEmbeds
from icd_bench.backbones.loaders import load_pretrained
from icd_bench.backbones.random_weights import random_backbone
from icd_bench.backbones.tiny import tiny_backbone
from icd_bench.errors import UnknownNameError
from icd_bench.registry import BACKBONES

SD15_HUB_ID = "stable-diffusion-v1-5/stable-diffusion-v1-5"
SDXL_HUB_ID = "stabilityai/stable-diffusion-xl-base-1.0"
SDXL_TURBO_HUB_ID = "stabilityai/sdxl-turbo"


@BACKBONES.register("sd15")
def sd15(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Backbone:
    """Stable Diffusion 1.5 (stable-diffusion-v1-5/stable-diffusion-v1-5), 512×512."""
    return load_pretrained(SD15_HUB_ID, device=device, dtype=dtype)


@BACKBONES.register("sdxl")
def sdxl(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Backbone:
    """Stable Diffusion XL base 1.0 (stabilityai/stable-diffusion-xl-base-1.0), 1024×1024."""
    return load_pretrained(SDXL_HUB_ID, device=device, dtype=dtype)


@BACKBONES.register("sdxl-turbo")
def sdxl_turbo(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Backbone:
    """SDXL-Turbo (stabilityai/sdxl-turbo), SDXL distilled for 1–4 steps, 512×512 (TurboEdit's backbone)."""
    return load_pretrained(SDXL_TURBO_HUB_ID, device=device, dtype=dtype)


@BACKBONES.register("tiny-sd15")
def tiny_sd15(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Backbone:
    """Tiny SD1.5-shaped model, 32×32: random weights, for smoke tests and timing only."""
    return tiny_backbone("sd15", device, dtype)


@BACKBONES.register("tiny-sdxl")
def tiny_sdxl(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Backbone:
    """Tiny SDXL-shaped model, 32×32: random weights, for smoke tests and timing only."""
    return tiny_backbone("sdxl", device, dtype)


@BACKBONES.register("sd15-random")
def sd15_random(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Backbone:
    """Stable Diffusion 1.5's architecture, 512×512, random weights: for timing only."""
    return random_backbone("sd15", device, dtype)


@BACKBONES.register("sdxl-random")
def sdxl_random(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Backbone:
    """SDXL base's architecture, 1024×1024, random weights: for timing only."""
    return random_backbone("sdxl", device, dtype)


def _looks_like_hub_id(spec: str) -> bool:
    owner, sep, name = spec.partition("/")
    return bool(sep and owner and name and "/" not in name and not owner.startswith((".", "~")))


def _toy_teacher_dir() -> Path:
    from icd_bench.errors import BackboneNotFoundError
    from icd_bench.paths import ASSETS

    TEACHER_DIR = ASSETS / "toy" / "teacher"  # the same folder as toy.model.TEACHER_DIR (tested)
    if not (TEACHER_DIR / "model_index.json").is_file():
        raise BackboneNotFoundError(f"the toy teacher is not bundled in this install ({TEACHER_DIR}); "
                                    f"train it with `icd-bench train toy-teacher` and pass "
                                    f"--backbone runs/train/toy-teacher/pipeline")
    return TEACHER_DIR


@BACKBONES.register("toy")
def toy(device="cpu", dtype=torch.float32) -> Backbone:
    """The toy world's teacher, bundled: 32×32 pixel-space UNet trained on toy scenes."""
    return load_pretrained(str(_toy_teacher_dir()), device=device, dtype=dtype)


def load_backbone(spec: str, *, device: torch.device | str = "cpu",
                  dtype: torch.dtype = torch.float32) -> Backbone:
    """A backbone from a registered name, a local diffusers directory or a hub id (owner/name).

    Raises `UnknownNameError` (with close matches) for anything else, and `BackboneNotFoundError`
    for a directory or hub id that cannot be loaded.
    """
    if spec in BACKBONES:
        return BACKBONES.get(spec)(device=device, dtype=dtype)
    if Path(spec).expanduser().exists() or _looks_like_hub_id(spec):  # a file gets its own message
        return load_pretrained(spec, device=device, dtype=dtype)
    raise UnknownNameError(BACKBONES.unknown_message(spec)
                           + f" {spec!r} is not a directory or a hub id (owner/name) either.")


def check_backbone(spec: str) -> None:
    """Raise `BackboneNotFoundError` / `UnknownNameError` now when `load_backbone(spec)` would fail
    for want of files (nothing is loaded): the hub models' files, a local directory's, the toy teacher."""
    from icd_bench.backbones.loaders import check_pretrained

    hub = {"sd15": SD15_HUB_ID, "sdxl": SDXL_HUB_ID, "sdxl-turbo": SDXL_TURBO_HUB_ID}
    if spec in hub:
        return check_pretrained(hub[spec])
    if spec == "toy":
        _toy_teacher_dir()
        return None
    if spec in BACKBONES:  # built in code (tiny, random weights)
        return None
    if Path(spec).expanduser().exists() or _looks_like_hub_id(spec):
        return check_pretrained(spec)
    raise UnknownNameError(BACKBONES.unknown_message(spec)
                           + f" {spec!r} is not a directory or a hub id (owner/name) either.")


__all__ = ["check_backbone", "Backbone", "NFECounter", "PromptEmbeds", "base", "load_backbone",
           "load_pretrained", "loaders", "random_backbone", "random_weights", "tiny", "tiny_backbone"]
