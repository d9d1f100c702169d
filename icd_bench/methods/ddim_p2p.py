"""``ddim-p2p``: DDIM inversion + Prompt-to-Prompt editing (Hertz et al., 2022) — PIE-Bench's
"DDIM + P2P" row: 50 steps, CFG 7.5, cross-attention replace 0.4, self-attention replace 0.6.

The source and target branches decode the same inverted noise together, one batched UNet call
per step (`icd_bench.attention.p2p.prompt_to_prompt`); the target branch is steered by the source's
attention. NTI and NPI are this method with other unconditional embeddings (`unconditional`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from icd_bench.attention.p2p import P2PParams, p2p_decode
from icd_bench.backbones.base import PromptEmbeds
from icd_bench.methods.ddim import DDIM, DDIMParams
from icd_bench.registry import METHODS
from icd_bench.types import EditSample, Inversion


@dataclass
class DDIMP2PParams(DDIMParams, P2PParams):
    def __post_init__(self):
        DDIMParams.__post_init__(self)
        P2PParams.__post_init__(self)


@METHODS.register("ddim-p2p")
class DDIMP2P(DDIM):
    """DDIM inversion (50 steps) + Prompt-to-Prompt editing; the PIE-Bench baseline."""

    Params: ClassVar[type] = DDIMP2PParams

    def edit(self, images: torch.Tensor, samples: Sequence[EditSample],
             generators: Sequence[torch.Generator]) -> torch.Tensor:
        p = self.params
        if not p.p2p:
            return super().edit(images, samples, generators)
        bb, n = self.backbone, len(samples)
        sources, targets = [s.source_prompt for s in samples], [s.target_prompt for s in samples]
        inv = self.invert(images, sources, generators)
        uncond = self.unconditional(inv, n)

        def sample(x2, cond, callback):
            return self._sample(x2, cond, lambda i: PromptEmbeds.cat([uncond(i), uncond(i)]),
                                p.guidance_scale, branches=2, callback=self.branch_callback(inv, callback))

        x0 = p2p_decode(bb, sample, inv.latents, sources, targets, len(self._timesteps()), p,
                        [s.blend_words for s in samples], source_cond=inv.state["source_cond"])
        return bb.decode(x0)

    def branch_callback(self, inversion: Inversion, callback):
        """The callback of the two-branch decode ``[sources; targets]``: P2P's (its schedule and local
        blend); Direct Inversion puts the source rows back on the inversion's trajectory before it."""
        return callback
