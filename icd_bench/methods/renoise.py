"""``renoise``: ReNoise inversion (Garibi et al., ECCV 2024) of a few-step LCM-style model — a thin
adapter over `icd_bench.diffusion.renoise`.

Inversion: the LCM multistep sampler (4 steps by default) made deterministic by storing each
step's re-noising, inverted step by step with renoising iterations, averaging, noise
regularisation and noise correction (the stored re-noisings are corrected, and decoding reuses
them). Reconstruction decodes with the source prompt; editing is ReNoise's prompt switch — decode
with the target prompt, optionally with explicit CFG against the source prompt
(``edit_guidance``; 1 = off). NFE counts every UNet row: renoising iterations, the KL reference
prediction and the noise-correction evaluation included.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import ClassVar

import torch

from icd_bench.backbones.base import PromptEmbeds
from icd_bench.diffusion.renoise import ReNoiseConfig, renoise_invert
from icd_bench.methods.lcm_model import ConsistencyMethod, ConsistencyParams
from icd_bench.registry import METHODS
from icd_bench.types import EditSample, Inversion


@dataclass
class ReNoiseParams(ConsistencyParams, ReNoiseConfig):
    edit_guidance: float = 1.0  # explicit CFG when editing, with the source prompt as the negative; 1 = off

    def __post_init__(self):
        ConsistencyParams.__post_init__(self)
        ReNoiseConfig.__post_init__(self)
        if self.edit_guidance < 0:
            raise ValueError("edit_guidance must be >= 0")

    def renoise_config(self) -> ReNoiseConfig:
        return ReNoiseConfig(**{f.name: getattr(self, f.name) for f in fields(ReNoiseConfig)})


@METHODS.register("renoise")
class ReNoise(ConsistencyMethod):
    """ReNoise inversion of an LCM-style few-step model; edit = prompt switch."""

    Params: ClassVar[type] = ReNoiseParams

    def invert(self, images: torch.Tensor, prompts: list[str],
               generators: Sequence[torch.Generator]) -> Inversion:
        bb = self.backbone
        x0 = bb.encode_image(images)
        cond = bb.encode_prompt(prompts)
        n_steps = len(self.timesteps)
        drawn = self.draw_noises(generators, n_steps + 1)  # one re-noising per step + the KL reference

        def eps_fn(x, t, i):  # x may stack several row blocks (the KL reference's extra block)
            return self.eps(x, t, PromptEmbeds.cat([cond] * (x.shape[0] // len(prompts))))

        xT, noises = renoise_invert(eps_fn, x0, self.timesteps, bb.alphas_cumprod, drawn[:n_steps], drawn[-1],
                                    self.params.renoise_config(), generators)
        return Inversion(latents=xT, prompts=list(prompts), image_latents=x0,
                         state={"source_cond": cond, "noises": noises})

    def reconstruct(self, inversion: Inversion) -> torch.Tensor:
        x0 = self.sample(inversion.latents, inversion.state["source_cond"], inversion.state["noises"])
        return self.backbone.decode(x0)

    def edit(self, images: torch.Tensor, samples: Sequence[EditSample],
             generators: Sequence[torch.Generator]) -> torch.Tensor:
        bb, w = self.backbone, self.params.edit_guidance
        inv = self.invert(images, [s.source_prompt for s in samples], generators)
        target = bb.encode_prompt([s.target_prompt for s in samples])
        x0 = self.sample(inv.latents, target, inv.state["noises"],
                         uncond=inv.state["source_cond"] if w != 1.0 else None, w=w)
        return bb.decode(x0)
