"""The base class of editing methods and the bookkeeping every method shares."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import ClassVar

import torch

from icd_bench.backbones.base import Backbone
from icd_bench.diffusion.schedule import latent_nll
from icd_bench.types import TASKS, EditSample, Inversion, TaskOutput


@dataclass
class NoParams:
    """A method without parameters."""


def without_mask(sample: EditSample) -> EditSample:
    """The sample as a method that may not see the evaluation mask gets it (no ``edit_mask``, nor its copy
    in ``meta``)."""
    return replace(sample, edit_mask=None,
                   meta={k: v for k, v in sample.meta.items() if k != "mask_without_border"})


class EditingMethod:
    """An editing method: ``invert`` + ``reconstruct`` (inversion quality), ``edit``, ``generate``.

    Subclasses set ``Params`` (a dataclass: presets, ``--set``, the manifest and reports all read its
    fields; registering sets ``name``) and implement the tasks they support (listed in ``tasks``). A
    method changes its backbone only through ``Backbone.replace_unet`` / ``cast``; `close` (or leaving
    a ``with method:`` block) gives the backbone back as it was loaded. Images in and
    out are B×3×H×W float tensors in [0, 1]; randomness comes only from the per-sample generators
    the runner passes (one `torch.Generator` per sample, seeded from the run seed and sample id).
    """

    name: ClassVar[str] = ""
    Params: ClassVar[type] = NoParams
    tasks: ClassVar[tuple[str, ...]] = TASKS
    #: whether ``edit`` is given the dataset's edit mask (recorded in the run's manifest as
    #: ``protocol.saw_mask``); otherwise its samples arrive without one, as PIE-Bench's methods get only
    #: the prompts
    sees_edit_mask: ClassVar[bool] = False

    def __init__(self, backbone: Backbone, params=None):
        self.backbone = backbone
        self.params = params if params is not None else self.Params()

    def close(self) -> None:
        """Give the backbone back as it was loaded (its own UNet, its dtype)."""
        self.backbone.restore()

    def __enter__(self) -> EditingMethod:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def run_notes(self, task: str) -> list[str]:
        """What a run of ``task`` with these settings should say once (printed, and kept in the manifest's
        ``notes``), e.g. a setting outside what the method's weights were trained for."""
        return []

    # -- the tasks ---------------------------------------------------------------------------
    def invert(self, images: torch.Tensor, prompts: list[str],
               generators: Sequence[torch.Generator]) -> Inversion:
        raise NotImplementedError(f"{self.name} does not implement inversion")

    def reconstruct(self, inversion: Inversion) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} does not implement reconstruction")

    def edit(self, images: torch.Tensor, samples: Sequence[EditSample],
             generators: Sequence[torch.Generator]) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} does not implement editing")

    def generate(self, prompts: list[str], generators: Sequence[torch.Generator]) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} does not implement generation")

    # -- what the runner calls ---------------------------------------------------------------
    def run(self, task: str, samples: Sequence[EditSample],
            generators: Sequence[torch.Generator]) -> tuple[torch.Tensor | None, list[TaskOutput]]:
        """Run ``task`` on a batch; returns (preprocessed source images or None, outputs).

        NFE per sample = UNet rows spent on the batch / batch size: every sample of a batch gets
        the same treatment, and a guided step on n samples runs 2n rows.
        """
        if task not in self.tasks:
            raise ValueError(f"method {self.name!r} does not support task {task!r} "
                             f"(supports: {', '.join(self.tasks)})")
        n = len(samples)
        sources = None
        extras: list[dict] = [{} for _ in range(n)]
        with self.backbone.nfe.measure() as spent:
            if task == "generate":
                out = self.generate([s.target_prompt for s in samples], generators)
            else:
                sources = self.backbone.preprocess([s.image for s in samples])
                if task == "invert":
                    inv = self.invert(sources, [s.source_prompt for s in samples], generators)
                    # the encoded noise's likelihood under the prior (the paper's Table 1, bottom row)
                    extras = [{"latent_nll": round(float(v), 6)} for v in latent_nll(inv.latents)]
                    out = self.reconstruct(inv)
                else:  # PIE-Bench's protocol: a method sees the edit mask only if it declares it
                    out = self.edit(sources,
                                    samples if self.sees_edit_mask else [without_mask(s) for s in samples],
                                    generators)
        nfe = spent[0] // n
        out = out.float().cpu()  # one transfer (and sync) per batch
        return sources, [TaskOutput(image=out[i], nfe=nfe, extras=extras[i]) for i in range(n)]

    # -- helpers for subclasses --------------------------------------------------------------
    def initial_noise(self, generators: Sequence[torch.Generator]) -> torch.Tensor:
        """`Backbone.initial_noise`: per-sample N(0, I) latents, the same on every device."""
        return self.backbone.initial_noise(generators)
