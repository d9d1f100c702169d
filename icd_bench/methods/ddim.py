"""``ddim``: DDIM inversion and sampling with (dynamic) classifier-free guidance.

Inversion runs DDIM backwards (eq. 1) with the source prompt, unguided by default as the paper
recommends (Section 3.4, Table 1); reconstruction and editing decode with CFG scale w, switched
off for t/T > τ (dynamic CFG). Editing here is a plain prompt switch: decode the source's
inverted noise with the target prompt. Prompt-to-Prompt control lives in ``ddim-p2p``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from icd_bench.diffusion import ddim_invert, ddim_sample, ddim_timesteps, dynamic_guidance_scale, guided_noise
from icd_bench.methods.base import EditingMethod
from icd_bench.registry import METHODS
from icd_bench.types import EditSample, Inversion


@dataclass
class DDIMParams:
    num_inference_steps: int = 50
    guidance_scale: float = 7.5  # w when decoding (reconstruction, editing, generation)
    inversion_guidance_scale: float = 1.0  # w when inverting; 1 = unguided (paper, Table 1)
    tau: float = 1.0  # dynamic CFG: guided only where t/T <= tau; 1.0 = guided at every step

    def __post_init__(self):
        if not 1 <= self.num_inference_steps <= 1000:
            raise ValueError(f"num_inference_steps must be in 1..1000, got {self.num_inference_steps}")
        if self.guidance_scale < 0 or self.inversion_guidance_scale < 0:
            raise ValueError("guidance scales must be >= 0")
        if not 0.0 <= self.tau <= 1.0:
            raise ValueError(f"tau must be in [0, 1], got {self.tau}")


@METHODS.register("ddim")
class DDIM(EditingMethod):
    """DDIM inversion + DDIM decoding with (dynamic) CFG; edit = prompt switch."""

    name: ClassVar[str] = "ddim"
    Params: ClassVar[type] = DDIMParams

    def _timesteps(self) -> list[int]:
        return ddim_timesteps(self.backbone.scheduler, self.params.num_inference_steps)

    def _decode(self, latents: torch.Tensor, prompts: list[str], w: float) -> torch.Tensor:
        bb, p = self.backbone, self.params
        cond = bb.encode_prompt(prompts)
        uncond = bb.null_embeds(len(prompts)) if w != 1.0 else None
        T = bb.num_train_timesteps

        def eps_fn(x, t, i):
            return guided_noise(bb, x, t, cond, uncond, dynamic_guidance_scale(t, T, w, p.tau))

        x0 = ddim_sample(eps_fn, latents, self._timesteps(), bb.alphas_cumprod, bb.final_alpha_cumprod)
        return bb.decode(x0)

    def invert(self, images: torch.Tensor, prompts: list[str],
               generators: Sequence[torch.Generator]) -> Inversion:
        bb, w = self.backbone, self.params.inversion_guidance_scale
        x0 = bb.encode_image(images)
        cond = bb.encode_prompt(prompts)
        uncond = bb.null_embeds(len(prompts)) if w != 1.0 else None

        def eps_fn(x, t, i):
            return guided_noise(bb, x, t, cond, uncond, w)

        xT = ddim_invert(eps_fn, x0, self._timesteps(), bb.alphas_cumprod, bb.final_alpha_cumprod)
        return Inversion(latents=xT, prompts=list(prompts), image_latents=x0)

    def reconstruct(self, inversion: Inversion) -> torch.Tensor:
        return self._decode(inversion.latents, inversion.prompts, self.params.guidance_scale)

    def edit(self, images: torch.Tensor, samples: Sequence[EditSample],
             generators: Sequence[torch.Generator]) -> torch.Tensor:
        inv = self.invert(images, [s.source_prompt for s in samples], generators)
        return self._decode(inv.latents, [s.target_prompt for s in samples], self.params.guidance_scale)

    def generate(self, prompts: list[str], generators: Sequence[torch.Generator]) -> torch.Tensor:
        return self._decode(self.initial_noise(generators), prompts, self.params.guidance_scale)
