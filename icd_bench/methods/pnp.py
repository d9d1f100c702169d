"""``pnp``: Plug-and-Play (Tumanyan et al., CVPR 2023) — DDIM inversion with the source prompt, then a
decode of the target under feature and self-attention injection (`attention.pnp`): at every step the UNet
also runs a source row, the source image's latents at that step's timestep with the empty prompt, and the
target's guided rows take that row's residual features and self-attention queries and keys.

Where the source row's latents come from (PIE-Bench's two rows):

- ``direct_inversion = false`` ("DDIM + PnP"): the unguided DDIM reconstruction from the inverted noise with
  the source prompt, step i fed its latents at t_i; the reconstruction is that decode;
- ``direct_inversion = true`` ("DirectInversion + PnP", also the original plug-and-play code's choice): the
  inversion's own trajectory; the reconstruction is the encoding.

The target is guided with ``negative_prompt`` as its unconditional prompt (``run_pnp``'s).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from icd_bench.attention.p2p import controlled_decode
from icd_bench.attention.pnp import PnPParams, plug_and_play
from icd_bench.backbones.base import PromptEmbeds
from icd_bench.diffusion import cfg_combine, ddim_sample, dynamic_guidance_scale
from icd_bench.methods.ddim import DDIM, DDIMParams
from icd_bench.registry import METHODS
from icd_bench.types import EditSample, Inversion


@dataclass
class PnPMethodParams(DDIMParams, PnPParams):
    negative_prompt: str = "ugly, blurry, black, low res, unrealistic"  # run_pnp's, the target's ∅
    direct_inversion: bool = False  # the source row on the inversion trajectory (Direct Inversion)
    # PIE-Bench's DDIM + PnP feeds step i the reconstruction's latents after step i (at t_{i+1}) and starts
    # the target there: its reconstruction list lacks x_T, which the inversion list it is indexed like has
    reference_compat: bool = False
    OFFICIAL_SWITCHES: ClassVar[dict[str, Any]] = {"reference_compat": True}

    def __post_init__(self):
        DDIMParams.__post_init__(self)
        PnPParams.__post_init__(self)


@METHODS.register("pnp")
class PlugAndPlay(DDIM):
    """DDIM inversion + a decode under Plug-and-Play's feature and self-attention injection."""

    Params: ClassVar[type] = PnPMethodParams

    def _reconstruction_path(self, inversion: Inversion) -> list[torch.Tensor]:
        """The unguided DDIM decode of the inversion with the source prompt: its latents after each step."""
        landed: list[torch.Tensor] = []
        self._sample(inversion.latents, inversion.state["source_cond"], lambda i: None, 1.0,
                     callback=lambda info: landed.append(info.x))
        return landed

    def source_latents(self, inversion: Inversion) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The source row's latents at each decoding step, and the target's starting latents."""
        steps = len(self._timesteps())
        if self.params.direct_inversion:
            trajectory = inversion.state["trajectory"]
            return [trajectory[i] for i in range(steps)], inversion.latents
        landed = self._reconstruction_path(inversion)
        if self.params.reference_compat:
            return landed, landed[0]
        return [inversion.latents, *landed[:-1]], inversion.latents

    def reconstruct(self, inversion: Inversion) -> torch.Tensor:
        if self.params.direct_inversion:  # the source row lands on the image's latents
            return self.backbone.decode(inversion.image_latents)
        return self.backbone.decode(self._reconstruction_path(inversion)[-1])

    def edit(self, images: torch.Tensor, samples: Sequence[EditSample],
             generators: Sequence[torch.Generator]) -> torch.Tensor:
        bb, p, n = self.backbone, self.params, len(samples)
        inv = self.invert(images, [s.source_prompt for s in samples], generators)
        sources, start = self.source_latents(inv)
        cond = PromptEmbeds.cat([bb.encode_prompt([""] * n), bb.encode_prompt([p.negative_prompt] * n),
                                 bb.encode_prompt([s.target_prompt for s in samples])])
        T = bb.num_train_timesteps

        def sample(x, cond, callback):
            def eps_fn(x, t, i):
                # one call on [sources; ∅ targets; c targets]; the source row counts as a parallel branch
                eps = bb.predict_noise(torch.cat([sources[i].to(x.dtype), x, x]), t, cond, counted=2 * n)
                _, eps_uncond, eps_cond = eps.chunk(3)
                w = dynamic_guidance_scale(t, T, p.guidance_scale, p.tau)
                return cfg_combine(eps_uncond, eps_cond, w)

            return ddim_sample(eps_fn, x, self._timesteps(), bb.alphas_cumprod, bb.final_alpha_cumprod,
                               callback=callback)

        with plug_and_play(bb, n, len(sources), p) as control:
            out = controlled_decode(control, sample, start, cond)
        return bb.decode(out)
