"""``pix2pix-zero``: pix2pix-zero (Parmar et al., SIGGRAPH 2023), as PIE-Bench runs it
(``run_editing_pix2pix_zero.py``).

- **Inversion** (`diffusion.pix2pix_zero.invert`): unguided DDIM inversion with the image's caption on
  the official inverse scheduler's grid, each ε regularised towards white noise.
- **Edit direction**: the target prompt's embedding minus the source prompt's (PIE-Bench's: sentence
  sets of one sentence each), added to the caption's embedding.
- **Decode** (`diffusion.pix2pix_zero.guided_decode`): a reference decode with the caption records its
  cross-attention maps; the edit decodes with CFG between the caption (the negative prompt) and the caption
  plus the direction, and before each step moves its latents by one SGD step (lr ``xa_guidance``) on the
  distance of its cross-attention maps to the reference's (`attention.xattn_guidance`). As the official
  code, the SGD moves both CFG copies of the latents, ε is recomputed from the two moved copies, and the
  step starts from the unconditional copy.
- ``direct_inversion = true`` ("DirectInversion + pix2pix-zero"): the reference is put back on the
  inversion's latents after every step and the edit gets the same offsets; the reconstruction is then the
  encoding.

The caption: PIE-Bench's run captions the image with BLIP (``lavis``, not installed here, and no weights
could be loaded offline); the source prompt, which describes the image in every editing set here, stands
in for it. The reconstruction (``--task invert``) is the reference decode.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from icd_bench.attention.xattn_guidance import CrossAttentionMaps, map_loss
from icd_bench.backbones.base import PromptEmbeds
from icd_bench.diffusion import cfg_combine, ddim_sample, dynamic_guidance_scale
from icd_bench.diffusion import pix2pix_zero as p2pz
from icd_bench.methods.ddim import DDIM, DDIMParams
from icd_bench.registry import METHODS
from icd_bench.types import EditSample, Inversion


@dataclass
class Pix2PixZeroParams(DDIMParams, p2pz.WhiteNoiseRegularisation):
    xa_guidance: float = 0.1  # XA_GUIDANCE: the SGD step size of the cross-attention guidance (0: none)
    direct_inversion: bool = False  # the reference decode on the inversion's latents (Direct Inversion)

    def __post_init__(self):
        DDIMParams.__post_init__(self)
        p2pz.WhiteNoiseRegularisation.__post_init__(self)
        if self.xa_guidance < 0:
            raise ValueError(f"xa_guidance must be >= 0, got {self.xa_guidance}")


@METHODS.register("pix2pix-zero")
class Pix2PixZero(DDIM):
    """pix2pix-zero: regularised DDIM inversion; an embedding-direction edit, cross-attention guided."""

    Params: ClassVar[type] = Pix2PixZeroParams

    def invert(self, images: torch.Tensor, prompts: list[str],
               generators: Sequence[torch.Generator]) -> Inversion:
        """The regularised inversion with the caption (the source prompt); ``state["path"]`` holds its
        latents from the clean ones up."""
        bb = self.backbone
        x0 = bb.encode_image(images)
        cond = bb.encode_prompt(prompts)
        path = p2pz.invert(self.inversion_eps(cond), x0, self._timesteps(), bb.alphas_cumprod, self.params,
                           generators)
        return Inversion(latents=path[-1], prompts=list(prompts), image_latents=x0,
                         state={"source_cond": cond, "path": path})

    def _landings(self, inversion: Inversion) -> list[torch.Tensor] | None:
        """Direct Inversion: where each decoding step is put back, the inversion's latents downwards."""
        if not self.params.direct_inversion:
            return None
        path = inversion.state["path"]
        return [path[len(path) - 2 - i] for i in range(len(path) - 1)]

    def reconstruct(self, inversion: Inversion) -> torch.Tensor:
        """The reference decode: the caption's DDIM decode (the official CFG of two identical rows is the
        unguided ε); with Direct Inversion it lands on the encoding."""
        if self.params.direct_inversion:
            return self.backbone.decode(inversion.image_latents)
        bb = self.backbone
        caption = inversion.state["source_cond"]
        x0 = ddim_sample(lambda x, t, i: bb.predict_noise(x, t, caption), inversion.latents,
                         self._timesteps(), bb.alphas_cumprod, bb.final_alpha_cumprod)
        return bb.decode(x0)

    def edit(self, images: torch.Tensor, samples: Sequence[EditSample],
             generators: Sequence[torch.Generator]) -> torch.Tensor:
        bb, p, n = self.backbone, self.params, len(samples)
        inv = self.invert(images, [s.source_prompt for s in samples], generators)
        caption = inv.state["source_cond"]
        direction = (bb.encode_prompt([s.target_prompt for s in samples]).embeds
                     - bb.encode_prompt([s.source_prompt for s in samples]).embeds)
        edited = PromptEmbeds(caption.embeds + direction, caption.pooled, caption.time_ids)
        cond = PromptEmbeds.cat([caption, edited])  # [negative prompt = the caption; caption + direction]
        maps = CrossAttentionMaps()
        reference: list[torch.Tensor] = []
        T = bb.num_train_timesteps

        def reference_eps(x, t, i):
            with maps.recording() as kept:
                eps = bb.predict_noise(x, t, caption)
            reference[:] = [m.detach() for m in kept]
            return eps

        def guide(x, t, i):
            both = torch.cat([x, x])
            if p.xa_guidance > 0:
                both.requires_grad_(True)
                with torch.enable_grad(), maps.recording() as kept:
                    bb.predict_noise(both, t, cond)
                    (grad,) = torch.autograd.grad(map_loss(kept, reference, copies=2), both)
                both = (both - p.xa_guidance * grad).detach()
            eps_uncond, eps_cond = bb.predict_noise(both, t, cond).chunk(2)
            w = dynamic_guidance_scale(t, T, p.guidance_scale, p.tau)
            return both[:n], cfg_combine(eps_uncond, eps_cond, w)

        with maps.install(bb.unet):
            _, out = p2pz.guided_decode(reference_eps, guide, inv.latents, self._timesteps(),
                                        bb.alphas_cumprod, bb.final_alpha_cumprod,
                                        landings=self._landings(inv))
        return bb.decode(out)
