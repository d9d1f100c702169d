"""``icd``: invertible Consistency Distillation (Starodubcev et al., NeurIPS 2024) — a thin adapter
over `icd_bench.icd.ICDPipeline`.

Inversion = fCDm encoding (unguided, source prompt); reconstruction and editing = CDm decoding with
dynamic CFG (w at t/T ≤ τ). Editing decodes with the target prompt, steered by Prompt-to-Prompt
(``p2p = true``, SD1.5 in the paper) or as a plain prompt switch (``p2p = false``, SDXL).
Weights: ``teacher`` (the guidance-distilled UNet ``.pt``), ``forward_lora`` and ``reverse_lora``
(LoRA ``.safetensors``), in the public release's formats. Without them the adapters are
zero-initialised — the backbone's own UNet at the boundary steps, which runs but is *not* iCD.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from icd_bench.attention.p2p import P2PParams
from icd_bench.icd.boundaries import Boundaries, check_boundary_choice, choose_boundaries
from icd_bench.icd.pipeline import ICDPipeline
from icd_bench.methods.base import EditingMethod
from icd_bench.registry import METHODS
from icd_bench.types import EditSample, Inversion


@dataclass
class ICDParams(P2PParams):
    boundaries: str = "4step-tau0.8"  # a named set (see icd_bench.icd.BOUNDARY_SETS) ...
    reverse_boundaries: tuple[int, ...] | None = None  # ... or a custom pair (both lists given)
    forward_boundaries: tuple[int, ...] | None = None
    # w of the reverse model (guidance-embedded; code w − 1). 20 = the official SD1.5 editing run: its
    # launch script's --guidance_scale 19 goes straight into the embedding as code 19 (the paper's "CFG 19")
    guidance_scale: float = 20.0
    tau: float = 0.8  # dynamic CFG: guided only where t/T <= tau
    teacher: str | None = None  # guidance-distilled UNet state dict (.pt / .safetensors)
    forward_lora: str | None = None  # fCDm LoRA (.safetensors, peft keys)
    reverse_lora: str | None = None  # CDm LoRA
    lora_rank: int = 64  # rank of zero-initialised adapters (files carry their own)
    lora_alpha: float | None = None  # None: the file's metadata, else the release's 8
    untrained: bool = False  # run a preset that names the release's weights without them (not iCD)
    # Prompt-to-Prompt (P2PParams), the release's SD1.5 editing script: replace when the word counts match
    # else refine (its --is_replacement False branch), cross 0.3, self 0.6, amplify 4 on the edited words
    # (stop words skipped), local blend from the first step; the source branch decodes unguided
    p2p_mode: Literal["replace", "refine", "auto"] = "auto"
    cross_replace: float = 0.3
    amplify: float = 4.0
    blend_start: float = 0.0

    def __post_init__(self):
        check_boundary_choice(self.boundaries, self.reverse_boundaries, self.forward_boundaries)
        if self.guidance_scale < 0:
            raise ValueError("guidance_scale must be >= 0")
        if not 0.0 <= self.tau <= 1.0:
            raise ValueError(f"tau must be in [0, 1], got {self.tau}")
        super().__post_init__()  # validates the P2P fields

    def boundary_set(self) -> Boundaries:
        return choose_boundaries(self.boundaries, self.reverse_boundaries, self.forward_boundaries)


@METHODS.register("icd")
class ICD(EditingMethod):
    """iCD: encoding and decoding multi-boundary consistency models; w 20 = the paper's "CFG 19".

    ``guidance_scale`` is the embedded w, whose code w − 1 the release feeds the model: the `icd-sd15`
    preset's w 20 is the official launch script's ``--guidance_scale 19``, which goes into the guidance
    embedding as the code itself (the ``icd-sd15`` preset and docs/methods/icd.md).
    """

    Params: ClassVar[type] = ICDParams

    def __init__(self, backbone, params=None):
        super().__init__(backbone, params)
        p = self.params
        self.pipe = ICDPipeline(backbone, p.boundary_set(), teacher=p.teacher, forward_lora=p.forward_lora,
                                reverse_lora=p.reverse_lora, lora_rank=p.lora_rank, lora_alpha=p.lora_alpha)

    def run_notes(self, task: str) -> list[str]:
        from icd_bench.icd.model import trained_guidance_scales

        p = self.params
        trained = trained_guidance_scales(p.teacher, p.reverse_lora)
        if trained is None or p.guidance_scale == 1.0:
            return []
        scales, where = trained
        if min(scales) <= p.guidance_scale <= max(scales):
            return []
        return [f"guidance_scale {p.guidance_scale:g} is outside the scales the decoding adapter was trained "
                f"on ({', '.join(f'{w:g}' for w in scales)}; {where}): expect degraded outputs"]

    def invert(self, images: torch.Tensor, prompts: list[str],
               generators: Sequence[torch.Generator]) -> Inversion:
        bb = self.backbone
        x0 = bb.encode_image(images)
        cond = bb.encode_prompt(prompts)
        xT = self.pipe.encode(x0, cond, self.initial_noise(generators))  # x_0 → x_{t_start}
        return Inversion(latents=xT, prompts=list(prompts), image_latents=x0, state={"source_cond": cond})

    def reconstruct(self, inversion: Inversion) -> torch.Tensor:
        bb, p = self.backbone, self.params
        x0 = self.pipe.decode(inversion.latents, inversion.state["source_cond"], p.guidance_scale, p.tau)
        return bb.decode(x0)

    def edit(self, images: torch.Tensor, samples: Sequence[EditSample],
             generators: Sequence[torch.Generator]) -> torch.Tensor:
        bb, p = self.backbone, self.params
        sources, targets = [s.source_prompt for s in samples], [s.target_prompt for s in samples]
        inv = self.invert(images, sources, generators)
        if p.p2p:
            x0 = self.pipe.decode_p2p(inv.latents, sources, targets, p.guidance_scale, p.tau, p,
                                      blend_words=[s.blend_words for s in samples],
                                      source_cond=inv.state["source_cond"])
        else:
            x0 = self.pipe.decode(inv.latents, bb.encode_prompt(targets), p.guidance_scale, p.tau)
        return bb.decode(x0)

    def generate(self, prompts: list[str], generators: Sequence[torch.Generator]) -> torch.Tensor:
        bb, p = self.backbone, self.params
        x0 = self.pipe.decode(self.initial_noise(generators), bb.encode_prompt(prompts), p.guidance_scale,
                              p.tau)
        return bb.decode(x0)
