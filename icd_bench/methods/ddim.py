"""``ddim``: DDIM inversion and sampling with (dynamic) classifier-free guidance.

Inversion runs DDIM backwards (eq. 1) with the source prompt, unguided by default as the paper
recommends (Section 3.4, Table 1); reconstruction and editing decode with CFG scale w, switched
off for t/T > τ (dynamic CFG). Editing here is a plain prompt switch: decode the source's
inverted noise with the target prompt. Prompt-to-Prompt control lives in ``ddim-p2p``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from icd_bench.backbones.base import PromptEmbeds
from icd_bench.diffusion import ddim_invert, ddim_sample, ddim_timesteps, dynamic_guidance_scale, guided_noise
from icd_bench.diffusion.direct import rectify_source, trajectory_landings
from icd_bench.methods.base import EditingMethod
from icd_bench.registry import METHODS
from icd_bench.types import EditSample, Inversion


@dataclass
class DDIMParams:
    num_inference_steps: int = 50
    guidance_scale: float = 7.5  # w when decoding (reconstruction, editing, generation)
    inversion_guidance_scale: float = 1.0  # w when inverting; 1 = unguided (paper, Table 1)
    tau: float = 1.0  # dynamic CFG: guided only where t/T <= tau; 1.0 = guided at every step
    # the same for inverting (Table 1's "Enc, d.CFG"); 1.0 = guided at every step
    inversion_tau: float = 1.0
    # the grid's offset; None: the checkpoint's scheduler config (SD: 1, grid 981…1, also PIE-Bench's
    # runs); 0: 980…0
    steps_offset: int | None = None

    def __post_init__(self):
        if self.steps_offset is not None and self.steps_offset < 0:
            raise ValueError(f"steps_offset must be >= 0, got {self.steps_offset}")
        if not 1 <= self.num_inference_steps <= 1000:
            raise ValueError(f"num_inference_steps must be in 1..1000, got {self.num_inference_steps}")
        if self.guidance_scale < 0 or self.inversion_guidance_scale < 0:
            raise ValueError("guidance scales must be >= 0")
        for name in ("tau", "inversion_tau"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")


@METHODS.register("ddim")
class DDIM(EditingMethod):
    """DDIM inversion + DDIM decoding with (dynamic) CFG; edit = prompt switch."""

    Params: ClassVar[type] = DDIMParams

    def _timesteps(self) -> list[int]:
        return ddim_timesteps(self.backbone.scheduler, self.params.num_inference_steps,
                              self.params.steps_offset)

    def unconditional(self, inversion: Inversion | None, n: int) -> Callable[[int], PromptEmbeds]:
        """step index → the unconditional embeddings ∅ of n rows that CFG uses at that decoding step:
        the null prompt's here; NTI (optimised per step) and NPI (the source prompt) replace them."""
        null = self.backbone.null_embeds(n)
        return lambda i: null

    def _sample(self, latents: torch.Tensor, cond: PromptEmbeds, uncond: Callable[[int], PromptEmbeds],
                w: float, *, branches: int = 1, callback=None) -> torch.Tensor:
        """DDIM decoding of ``latents`` with (dynamic) CFG; ``uncond(i)`` gives step i's ∅ rows (one
        set per branch), asked for only on guided steps."""
        bb, p = self.backbone, self.params
        T = bb.num_train_timesteps

        def eps_fn(x, t, i):
            wt = dynamic_guidance_scale(t, T, w, p.tau)
            return guided_noise(bb, x, t, cond, uncond(i) if wt != 1.0 else None, wt, branches=branches)

        return ddim_sample(eps_fn, latents, self._timesteps(), bb.alphas_cumprod, bb.final_alpha_cumprod,
                           callback=callback)

    def inversion_eps(self, cond: PromptEmbeds) -> Callable:
        """The ε the inversion steps with: ``cond``'s, guided at ``inversion_guidance_scale`` (dynamic with
        ``inversion_tau``; unguided by default)."""
        bb, w, tau = self.backbone, self.params.inversion_guidance_scale, self.params.inversion_tau
        uncond = bb.null_embeds(len(cond)) if w != 1.0 else None

        def eps_fn(x, t, i):
            wt = dynamic_guidance_scale(t, bb.num_train_timesteps, w, tau)
            return guided_noise(bb, x, t, cond, uncond if wt != 1.0 else None, wt)

        return eps_fn

    def invert(self, images: torch.Tensor, prompts: list[str],
               generators: Sequence[torch.Generator]) -> Inversion:
        """DDIM inversion; ``state`` keeps the source embeddings and the trajectory (``trajectory[i]``
        = the latents at grid timestep t_i; NTI fits its null embeddings to it)."""
        bb = self.backbone
        x0 = bb.encode_image(images)
        cond = bb.encode_prompt(prompts)
        eps_fn = self.inversion_eps(cond)
        trajectory: dict[int, torch.Tensor] = {}

        def keep(info):
            trajectory[info.index] = info.x  # the latents at t_i, where undoing sampling step i lands

        xT = ddim_invert(eps_fn, x0, self._timesteps(), bb.alphas_cumprod, bb.final_alpha_cumprod,
                         callback=keep)
        return Inversion(latents=xT, prompts=list(prompts), image_latents=x0,
                         state={"source_cond": cond, "trajectory": trajectory})

    def on_trajectory(self, inversion: Inversion, callback):
        """Direct Inversion for a two-branch decode ``[sources; targets]`` of this inversion: ``callback``
        preceded by putting the source rows back on the inversion's trajectory (`diffusion.direct`)."""
        landings = trajectory_landings(inversion.state["trajectory"], inversion.image_latents,
                                       len(self._timesteps()))
        return rectify_source(landings, inversion.latents.shape[0], then=callback)

    def reconstruct(self, inversion: Inversion) -> torch.Tensor:
        n = len(inversion.prompts)
        x0 = self._sample(inversion.latents, inversion.state["source_cond"], self.unconditional(inversion, n),
                          self.params.guidance_scale)
        return self.backbone.decode(x0)

    def edit(self, images: torch.Tensor, samples: Sequence[EditSample],
             generators: Sequence[torch.Generator]) -> torch.Tensor:
        """Plain prompt switch: decode the source's inverted noise with the target prompt."""
        bb = self.backbone
        inv = self.invert(images, [s.source_prompt for s in samples], generators)
        x0 = self._sample(inv.latents, bb.encode_prompt([s.target_prompt for s in samples]),
                          self.unconditional(inv, len(samples)), self.params.guidance_scale)
        return bb.decode(x0)

    def generate(self, prompts: list[str], generators: Sequence[torch.Generator]) -> torch.Tensor:
        bb = self.backbone
        x0 = self._sample(self.initial_noise(generators), bb.encode_prompt(prompts),
                          self.unconditional(None, len(prompts)), self.params.guidance_scale)
        return bb.decode(x0)
