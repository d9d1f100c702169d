"""``ef-ddpm``: Edit-friendly DDPM inversion (Huberman-Spiegelglas, Kulikov & Michaeli, 2024).

Inversion noises the image to every grid timestep independently and solves each DDPM step (η = 1)
for the noise map z_t that lands on the next one, guided by the source prompt at the source CFG
scale (`icd_bench.diffusion.edit_friendly_inversion`). Editing skips the first ``skip`` steps
and samples from x_{t_skip} with the stored z_t and the target prompt at the target CFG scale —
a plain prompt switch as in the paper, or with Prompt-to-Prompt (``p2p = true``, the iCD paper's
comparison), where the source branch replays its own guidance. With the source prompt and scale
the stored maps retrace the inversion exactly (reconstruction = the input, up to float error).
Only the steps from ``skip`` on are inverted: the skipped ones never reach the output.

With P2P, as PIE-Bench's EF + P2P run (its ``edit_friendly_ddm`` controllers): the cross / self
fractions are of the whole grid of ``num_inference_steps`` (0.4 of 50 = the first 20 of the 38
decoding steps at skip 12), self-attention is injected only on maps of at most 16² positions, and
only the conditional pass is edited. That code also zeroes the final step's noise map, so its
reconstruction is not exact; ``zero_last_noise = true`` does the same (off by default: exact).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from icd_bench.attention.p2p import P2PParams, p2p_decode
from icd_bench.backbones.base import PromptEmbeds
from icd_bench.diffusion import ddim_timesteps, ddpm_sample, edit_friendly_inversion, guided_noise
from icd_bench.methods.base import EditingMethod
from icd_bench.registry import METHODS
from icd_bench.types import EditSample, Inversion


@dataclass
class EFDDPMParams(P2PParams):
    num_inference_steps: int = 100
    source_guidance_scale: float = 3.5  # CFG of the inversion (and of P2P's source branch)
    target_guidance_scale: float = 15.0  # CFG of the edit
    skip: int = 36  # sampling steps skipped: editing starts at the grid's step `skip`
    eta: float = 1.0
    p2p: bool = False  # the paper's setting: a plain prompt switch
    self_max_tokens: int = 16 * 16  # the EF controllers' rule for self-attention injection
    # the reference's zeroed noise map of the final step (inexact reconstruction)
    zero_last_noise: bool = False
    OFFICIAL_SWITCHES: ClassVar[dict[str, object]] = {"zero_last_noise": True}

    def __post_init__(self):
        super().__post_init__()
        if not 1 <= self.num_inference_steps <= 1000:
            raise ValueError(f"num_inference_steps must be in 1..1000, got {self.num_inference_steps}")
        if not 0 <= self.skip < self.num_inference_steps:
            raise ValueError(f"skip must be in 0..num_inference_steps-1, got {self.skip}")
        if self.source_guidance_scale < 0 or self.target_guidance_scale < 0:
            raise ValueError("guidance scales must be >= 0")
        if not 0.0 < self.eta <= 1.0:
            raise ValueError(f"eta must be in (0, 1], got {self.eta}")


@METHODS.register("ef-ddpm")
class EFDDPM(EditingMethod):
    """Edit-friendly DDPM inversion (η = 1, stored per-step noise maps); prompt switch or P2P."""

    Params: ClassVar[type] = EFDDPMParams
    tasks: ClassVar[tuple[str, ...]] = ("edit", "invert")

    def _timesteps(self) -> list[int]:
        return ddim_timesteps(self.backbone.scheduler, self.params.num_inference_steps)

    def _eps(self, cond: PromptEmbeds, w: float | torch.Tensor, uncond: PromptEmbeds, branches: int = 1):
        bb = self.backbone
        return lambda x, t, i: guided_noise(bb, x, t, cond, uncond, w, branches=branches)

    def invert(self, images: torch.Tensor, prompts: list[str],
               generators: Sequence[torch.Generator]) -> Inversion:
        bb, p = self.backbone, self.params
        x0 = bb.encode_image(images)
        cond = bb.encode_prompt(prompts)
        steps = self._timesteps()
        noise = self.draw_noise(generators, len(steps))
        uncond = bb.null_embeds(len(prompts))
        with torch.no_grad():
            x_start, zs = edit_friendly_inversion(self._eps(cond, p.source_guidance_scale, uncond), x0, steps,
                                                  bb.alphas_cumprod, bb.final_alpha_cumprod, noise,
                                                  start=p.skip, eta=p.eta)
        if p.zero_last_noise:
            zs[-1] = torch.zeros_like(zs[-1])
        return Inversion(latents=x_start, prompts=list(prompts), image_latents=x0,
                         state={"zs": zs, "source_cond": cond, "uncond": uncond})

    def draw_noise(self, generators: Sequence[torch.Generator], steps: int) -> torch.Tensor:
        """(steps, n, C, h, w): the noise that noises the image to each grid timestep (descending t), drawn
        from each sample's generator in that order."""
        shape = self.backbone.latent_shape(1)
        return torch.stack([torch.cat([torch.randn(shape, generator=g) for _ in range(steps)])
                            for g in generators], 1)

    def _sample(self, inv: Inversion, x, cond, w, uncond, branches=1, callback=None) -> torch.Tensor:
        bb, p = self.backbone, self.params
        zs = inv.state["zs"] if branches == 1 else [torch.cat([z] * branches) for z in inv.state["zs"]]
        return ddpm_sample(self._eps(cond, w, uncond, branches), x, self._timesteps(), bb.alphas_cumprod,
                           bb.final_alpha_cumprod, zs, start=p.skip, eta=p.eta, callback=callback)

    def reconstruct(self, inversion: Inversion) -> torch.Tensor:
        s = inversion.state
        x0 = self._sample(inversion, inversion.latents, s["source_cond"], self.params.source_guidance_scale,
                          s["uncond"])
        return self.backbone.decode(x0)

    def edit(self, images: torch.Tensor, samples: Sequence[EditSample],
             generators: Sequence[torch.Generator]) -> torch.Tensor:
        bb, p, n = self.backbone, self.params, len(samples)
        sources, targets = [s.source_prompt for s in samples], [s.target_prompt for s in samples]
        inv = self.invert(images, sources, generators)
        uncond = inv.state["uncond"]
        if not p.p2p:
            return bb.decode(self._sample(inv, inv.latents, bb.encode_prompt(targets),
                                          p.target_guidance_scale, uncond))
        w = torch.tensor([p.source_guidance_scale] * n + [p.target_guidance_scale] * n)

        def sample(x2, cond, callback):
            return self._sample(inv, x2, cond, w, PromptEmbeds.cat([uncond, uncond]), branches=2,
                                callback=callback)

        # the windows are fractions of the whole grid (the reference's controller is built for all
        # steps), of which the sampler runs the last num_inference_steps − skip
        x0 = p2p_decode(bb, sample, inv.latents, sources, targets, p.num_inference_steps, p,
                        [s.blend_words for s in samples], source_cond=inv.state["source_cond"],
                        steps_run=p.num_inference_steps - p.skip)
        return bb.decode(x0)
