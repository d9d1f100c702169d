"""``infedit``: InfEdit (Xu et al., CVPR 2024) — inversion-free editing with a denoising diffusion
consistent model (DDCM) on an LCM-style model, a thin adapter over `icd_bench.diffusion.lcm`.

No inversion: the source branch is the clean source latent re-noised at every step ("virtual
inversion"), the target branch's x̂_0 is corrected by the source branch's prediction error
(`ddcm_step`), and both are re-noised with the same fresh noise. The two branches run as one
batched UNet call per step, with explicit CFG per branch (source 1, target 2.3 in the published
setting; a guided step costs two rows per branch pair) and the project's Prompt-to-Prompt control
(`icd_bench.attention.prompt_to_prompt`) between them: cross- and self-attention injection for the
first 0.7 of the steps and local blend with separate source / target thresholds (0.55 / 0.6).

Partial: InfEdit's unified attention control (UAC) also runs a third "layout" branch with mutual
self-attention; here the P2P controller's self-attention injection stands in for it, so results at
SD scale are not expected to match the published numbers exactly. Tasks: ``edit`` and
``generate``; there is no explicit inversion to reconstruct from (with equal prompts and scales
DDCM returns the source image exactly, by construction).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from icd_bench.attention.p2p import P2PConfig, P2PParams, prompt_to_prompt
from icd_bench.backbones.base import PromptEmbeds
from icd_bench.diffusion.lcm import ddcm_step, next_alpha
from icd_bench.errors import ConfigError
from icd_bench.methods.consistency import ConsistencyMethod, ConsistencyParams
from icd_bench.registry import METHODS
from icd_bench.types import EditSample


@dataclass
class InfEditParams(ConsistencyParams, P2PParams):
    num_steps: int = 12
    source_guidance: float = 1.0  # explicit CFG of the source branch
    target_guidance: float = 2.3  # explicit CFG of the target branch
    p2p_mode: Literal["replace", "refine", "auto"] = "auto"
    cross_replace: float = 0.7
    self_replace: float = 0.7
    blend_threshold_source: float = 0.55
    blend_threshold_target: float = 0.6
    guidance: Literal["cfg", "embedded"] = "cfg"  # how the branch scales apply: explicit CFG (the
    # release on LCM-Dreamshaper), or as the guidance embedding of a w-conditioned model, one row each

    def __post_init__(self):
        ConsistencyParams.__post_init__(self)
        P2PParams.__post_init__(self)
        if self.source_guidance < 0 or self.target_guidance < 0:
            raise ValueError("guidance scales must be >= 0")
        if self.guidance not in ("cfg", "embedded"):
            raise ValueError(f"guidance must be cfg or embedded, got {self.guidance!r}")

    def p2p_config(self) -> P2PConfig:
        cfg = super().p2p_config()
        cfg.blend_threshold, cfg.blend_threshold_target = self.blend_threshold_source, self.blend_threshold_target
        cfg.__post_init__()
        return cfg


@METHODS.register("infedit")
class InfEdit(ConsistencyMethod):
    """InfEdit: DDCM virtual inversion + attention control on an LCM-style model."""

    name: ClassVar[str] = "infedit"
    Params: ClassVar[type] = InfEditParams
    tasks: ClassVar[tuple[str, ...]] = ("edit", "generate")

    def __init__(self, backbone, params=None):
        super().__init__(backbone, params)
        if self.params.guidance == "embedded" and not self.embeds_guidance:
            raise ConfigError("guidance = 'embedded' needs a guidance-embedded UNet (time_cond_proj_dim) "
                              "with guidance_embedding = true")

    @torch.no_grad()
    def edit(self, images: torch.Tensor, samples: Sequence[EditSample],
             generators: Sequence[torch.Generator]) -> torch.Tensor:
        bb, p, n = self.backbone, self.params, len(samples)
        alphas, steps = bb.alphas_cumprod, self.timesteps
        sources, targets = [s.source_prompt for s in samples], [s.target_prompt for s in samples]
        x0 = bb.encode_image(images)
        noises = self.draw_noises(generators, len(steps) + 1)
        a0 = float(alphas[steps[0]])
        x_src = x_tgt = a0**0.5 * x0 + (1 - a0) ** 0.5 * noises[-1]
        cond = PromptEmbeds.cat([bb.encode_prompt(sources), bb.encode_prompt(targets)])
        scales = torch.tensor([p.source_guidance] * n + [p.target_guidance] * n)
        embedded = p.guidance == "embedded"
        guided = not embedded and (p.source_guidance != 1.0 or p.target_guidance != 1.0)
        w = scales if guided else 1.0
        uncond = bb.null_embeds(2 * n) if guided else None
        control_block = (prompt_to_prompt(bb, sources, targets, len(steps), p.p2p_config(),
                                          [s.blend_words for s in samples]) if p.p2p else contextlib.nullcontext())
        with control_block as control:
            for i, t in enumerate(steps):
                eps = self.eps(torch.cat([x_src, x_tgt]), t, cond, uncond, w, branches=2,
                               embedded_w=scales if embedded else None)
                eps_src, eps_tgt = eps.chunk(2)
                x_src, x_tgt, _ = ddcm_step(x_src, x_tgt, eps_src, eps_tgt, x0, float(alphas[t]),
                                            next_alpha(alphas, steps, i), noises[i])
                if control is not None:
                    x_src, x_tgt = control.after_step(torch.cat([x_src, x_tgt])).chunk(2)
        return bb.decode(x_tgt)
