"""``turboedit``: TurboEdit (Deutch et al., SIGGRAPH Asia 2024; GiilDe/turbo-edit) — few-step editing of a
distilled SDXL-Turbo by edit-friendly inversion with shifted noise (`diffusion.turboedit`): the image noised
to each step's shifted timestep gives the inversion's noise per step, and the edit follows it with the
target prompt's step scaled by w against the source prompt's. No classifier-free guidance (the released
``guidance_scale=0``); the three rows of a step (inversion, source, target) run in one UNet call.

The reconstruction (``--task invert``) is the edit with the source prompt as the target, which retraces
the noised latents to the image up to the last step's norm cap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from icd_bench.backbones.base import PromptEmbeds
from icd_bench.diffusion import turboedit as te
from icd_bench.methods.base import EditingMethod
from icd_bench.registry import METHODS
from icd_bench.types import EditSample, Inversion


@dataclass
class TurboEditParams:
    num_inversion_steps: int = 5  # run_configs/noise_shift_steps_4.yaml: num_steps_inversion
    step_start: int = 1  # ... step_start: the grid from 799 on (4 steps)
    # explicit timesteps (noise_shift_steps_3.yaml: 799, 499, 199); () = the cut grid
    timesteps: tuple[int, ...] = ()
    noise_timesteps: tuple[int, ...] = ()  # explicit noising timesteps; () = shifted by noise_shift_delta
    noise_shift_delta: float = 1.0
    max_norms: tuple[float, ...] = (-1.0, -1.0, -1.0, 15.5)  # max_norm_zs per step (< 0: no cap)
    w: float = 1.5  # main.py --w: the target step's weight against the source's
    timestep_spacing: Literal["trailing", "leading", "linspace"] = "trailing"  # SDXL-Turbo's scheduler

    def __post_init__(self):
        if not 1 <= self.step_start < self.num_inversion_steps:
            raise ValueError(f"step_start must be in 1..num_inversion_steps - 1, got {self.step_start}")
        if self.noise_shift_delta < 0:
            raise ValueError(f"noise_shift_delta must be >= 0, got {self.noise_shift_delta}")
        if self.timestep_spacing not in ("trailing", "leading", "linspace"):
            raise ValueError(f"timestep_spacing must be trailing, leading or linspace, got "
                             f"{self.timestep_spacing!r}")


@METHODS.register("turboedit")
class TurboEdit(EditingMethod):
    """Shifted-noise edit-friendly inversion and editing in one few-step pass (no CFG)."""

    Params: ClassVar[type] = TurboEditParams
    tasks: ClassVar[tuple[str, ...]] = ("edit", "invert")  # no generation of its own

    def _timesteps(self) -> list[int]:
        p = self.params
        if p.timesteps:
            return list(p.timesteps)
        return te.turbo_timesteps(self.backbone.scheduler.config, p.num_inversion_steps, p.step_start,
                                  p.timestep_spacing)

    def _targets(self, x0: torch.Tensor, generators: Sequence[torch.Generator]) -> list[torch.Tensor]:
        """The shifted noised latents of each sample, its noise drawn from its generator (``create_xts``)."""
        p, steps = self.params, self._timesteps()
        if len(p.max_norms) != len(steps):
            raise ValueError(f"max_norms has {len(p.max_norms)} values for {len(steps)} steps ({steps})")
        noise_t = list(p.noise_timesteps) or te.shifted_noise_timesteps(steps, p.noise_shift_delta)
        if len(noise_t) != len(steps):
            raise ValueError(f"noise_timesteps has {len(noise_t)} values for {len(steps)} steps ({steps})")
        k = next((j for j, t in enumerate(noise_t) if t <= 0), len(noise_t))  # the noised steps lead
        per_sample = []
        for j, g in enumerate(generators):
            noise = torch.randn((k, *x0.shape[1:]), generator=g, device=g.device if g is not None else "cpu")
            per_sample.append(te.shifted_targets(x0[j:j + 1], noise, self.backbone.alphas_cumprod, noise_t))
        return [torch.cat(rows) for rows in zip(*per_sample, strict=True)]

    def invert(self, images: torch.Tensor, prompts: list[str],
               generators: Sequence[torch.Generator]) -> Inversion:
        x0 = self.backbone.encode_image(images)
        targets = self._targets(x0, generators)
        return Inversion(latents=targets[0], prompts=list(prompts), image_latents=x0,
                         state={"targets": targets, "source_cond": self.backbone.encode_prompt(prompts)})

    def _decode(self, inversion: Inversion, target: PromptEmbeds) -> torch.Tensor:
        bb, p = self.backbone, self.params
        source = inversion.state["source_cond"]
        cond = PromptEmbeds.cat([source, source, target])

        def eps_fn(rows, t, i):
            return bb.predict_noise(rows, t, cond)

        return te.turbo_decode(eps_fn, inversion.state["targets"], self._timesteps(), bb.alphas_cumprod, p.w,
                               p.max_norms)

    def reconstruct(self, inversion: Inversion) -> torch.Tensor:
        return self.backbone.decode(self._decode(inversion, inversion.state["source_cond"]))

    def edit(self, images: torch.Tensor, samples: Sequence[EditSample],
             generators: Sequence[torch.Generator]) -> torch.Tensor:
        inv = self.invert(images, [s.source_prompt for s in samples], generators)
        return self.backbone.decode(self._decode(inv, self.backbone.encode_prompt([s.target_prompt
                                                                                    for s in samples])))
