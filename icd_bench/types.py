"""Core data types shared by datasets, methods, the runner and the store."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

#: Sample ids become file names in the run store, so they are restricted to a safe alphabet.
SAMPLE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")

TASKS = ("edit", "invert", "generate")
#: The prompts of a sample each task encodes (``<which>_prompt``).
TASK_PROMPTS = {"edit": ("source", "target"), "invert": ("source",), "generate": ("target",)}


@dataclass(frozen=True)
class EditSample:
    """One benchmark item, whatever the dataset."""

    id: str
    image: Image.Image | None  # RGB source; None in a prompts-only sample (--task generate)
    source_prompt: str
    target_prompt: str
    blend_words: tuple[str, str] | None = None  # Prompt-to-Prompt local-blend words (source, target)
    edit_mask: np.ndarray | None = None  # H×W bool: where the edit may act
    edit_type: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    # warnings about this sample (local blend turned off, ...): kept in its record
    notes: tuple[str, ...] = ()


@dataclass
class Inversion:
    """What an inversion keeps: the noise latents plus whatever the method needs to decode them.

    ``latents`` is the inverted noise (B×C×h×w); ``state`` holds method-specific extras
    (per-step latents, optimised null embeddings, noise maps, ...); ``prompts`` are the prompts the
    images were inverted with.
    """

    latents: torch.Tensor
    prompts: list[str]
    image_latents: torch.Tensor | None = None
    state: dict[str, Any] = field(default_factory=dict)


@dataclass
class TaskOutput:
    """One sample's result from a method: an RGB image in [0, 1] (3×H×W) plus bookkeeping.

    ``nfe`` counts this sample's UNet evaluations as the papers count them: a classifier-free-guided
    step costs two, and a Prompt-to-Prompt step counts once although it runs the source and the
    target branch in one batch (the rows the UNet computes are twice that); ``extras`` is a
    JSON-serialisable dict stored in the record.
    """

    image: torch.Tensor
    nfe: int = 0
    extras: dict[str, Any] = field(default_factory=dict)
