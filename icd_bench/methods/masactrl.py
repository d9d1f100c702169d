"""``masactrl``: MasaCtrl (Cao et al., ICCV 2023) — DDIM inversion, then a two-branch decode
``[source; target]`` under mutual self-attention control (`attention.masactrl`): from step 4 on, in the
self-attention of the UNet's last transformer blocks, the target queries the source's keys and values,
so it keeps the source's content while its layout follows the target prompt. No cross-attention control,
no local blend.

PIE-Bench's runs (``run_editing_masactrl.py``) invert and decode the source branch with the empty prompt
(``prompts = ["", target]``; `source_prompt = "empty"`); `direct_inversion = true` keeps that branch on
the inversion trajectory (`diffusion.direct`, PIE-Bench's "DirectInversion + MasaCtrl"), and then the
reconstruction is the encoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from icd_bench.attention.masactrl import MasaCtrlParams, mutual_self_attention
from icd_bench.attention.p2p import controlled_decode
from icd_bench.backbones.base import PromptEmbeds
from icd_bench.methods.ddim import DDIM, DDIMParams
from icd_bench.registry import METHODS
from icd_bench.types import EditSample, Inversion


@dataclass
class MasaCtrlMethodParams(DDIMParams, MasaCtrlParams):
    # the source branch's prompt, for the inversion and the decode: "empty" (PIE-Bench's runs) or "source"
    source_prompt: Literal["empty", "source"] = "empty"
    direct_inversion: bool = False  # keep the source branch on the inversion trajectory (Direct Inversion)

    def __post_init__(self):
        DDIMParams.__post_init__(self)
        MasaCtrlParams.__post_init__(self)
        if self.source_prompt not in ("empty", "source"):
            raise ValueError(f"source_prompt must be empty or source, got {self.source_prompt!r}")


@METHODS.register("masactrl")
class MasaCtrl(DDIM):
    """DDIM inversion + a two-branch decode under MasaCtrl's mutual self-attention."""

    Params: ClassVar[type] = MasaCtrlMethodParams

    def invert(self, images: torch.Tensor, prompts: list[str],
               generators: Sequence[torch.Generator]) -> Inversion:
        """DDIM inversion with the source branch's prompt (the empty one by default)."""
        if self.params.source_prompt == "empty":
            prompts = [""] * len(prompts)
        return super().invert(images, prompts, generators)

    def reconstruct(self, inversion: Inversion) -> torch.Tensor:
        if self.params.direct_inversion:  # the source branch lands on the image's latents
            return self.backbone.decode(inversion.image_latents)
        return super().reconstruct(inversion)

    def edit(self, images: torch.Tensor, samples: Sequence[EditSample],
             generators: Sequence[torch.Generator]) -> torch.Tensor:
        bb, p, n = self.backbone, self.params, len(samples)
        inv = self.invert(images, [s.source_prompt for s in samples], generators)
        uncond = self.unconditional(inv, n)
        steps = len(self._timesteps())
        targets = bb.encode_prompt([s.target_prompt for s in samples])
        cond = PromptEmbeds.cat([inv.state["source_cond"], targets])

        def sample(x2, cond, callback):
            if p.direct_inversion:
                callback = self.on_trajectory(inv, callback)
            return self._sample(x2, cond, lambda i: PromptEmbeds.cat([uncond(i), uncond(i)]),
                                p.guidance_scale, branches=2, callback=callback)

        with mutual_self_attention(bb, n, steps, p) as control:
            out = controlled_decode(control, sample, torch.cat([inv.latents, inv.latents]), cond)
        return bb.decode(out[n:])
