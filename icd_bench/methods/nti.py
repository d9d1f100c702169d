"""``nti``: Null-text inversion (Mokady et al., 2023) — DDIM inversion, then, step by step along the
decoding grid, Adam on the unconditional embedding ∅_i so that the guided DDIM step from the
current latents lands on the inversion trajectory; editing decodes with the optimised ∅_i and
Prompt-to-Prompt (PIE-Bench's "NTI + P2P": DDIM 50, CFG 7.5, 10 Adam steps per timestep,
lr 1e-2·(1 − i/100), early stop when the loss < 1e-5 + i·2e-5).

Every UNet evaluation counts in the NFE, the optimisation's included (one conditional call per step,
one unconditional call per Adam step, the guided step itself). Samples of a batch are optimised
independently: per-sample losses, early stopping per sample, and a stopped sample's embedding is
frozen, so results do not depend on the batch. The optimisation needs fp32: a half-precision run
is moved to fp32 for this method, with a warning (fp64 stays fp64).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from icd_bench.backbones.base import PromptEmbeds
from icd_bench.diffusion import cfg_combine, ddim_sample, ddim_step, dynamic_guidance_scale, guided_noise
from icd_bench.diffusion.schedule import alpha_at, landing_timestep
from icd_bench.methods.ddim_p2p import DDIMP2P, DDIMP2PParams
from icd_bench.registry import METHODS
from icd_bench.types import Inversion

log = logging.getLogger(__name__)


@dataclass
class NTIParams(DDIMP2PParams):
    inner_steps: int = 10  # Adam steps per timestep
    lr: float = 1e-2  # at decoding step i: lr·(1 − i/100)
    early_stop: float = 1e-5  # stop a step's optimisation once the loss < early_stop + i·early_stop_growth
    early_stop_growth: float = 2e-5

    def __post_init__(self):
        super().__post_init__()
        if self.inner_steps < 0:
            raise ValueError(f"inner_steps must be >= 0, got {self.inner_steps}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


@METHODS.register("nti")
class NTI(DDIMP2P):
    """Null-text inversion: per-step optimised null embeddings (10 Adam steps each); P2P editing."""

    Params: ClassVar[type] = NTIParams

    def __init__(self, backbone, params=None):
        if backbone.dtype in (torch.float16, torch.bfloat16):
            log.warning("nti: null-text optimisation needs fp32; running this method in fp32 instead of %s",
                        str(backbone.dtype).removeprefix("torch."))
            backbone.cast(torch.float32)  # until the method closes
        super().__init__(backbone, params)

    def invert(self, images: torch.Tensor, prompts: list[str],
               generators: Sequence[torch.Generator]) -> Inversion:
        inv = super().invert(images, prompts, generators)
        inv.state["null_embeds"], inv.state["losses"] = self.optimise_null(inv)
        return inv

    def unconditional(self, inversion: Inversion | None, n: int) -> Callable[[int], PromptEmbeds]:
        if inversion is None or "null_embeds" not in inversion.state:
            return super().unconditional(inversion, n)
        nulls = inversion.state["null_embeds"]
        return lambda i: nulls[i]

    def optimise_null(self, inv: Inversion) -> tuple[list[PromptEmbeds], list[torch.Tensor]]:
        """∅_i for every decoding step i, and the final loss of each step per sample (n,)."""
        bb, p = self.backbone, self.params
        steps = self._timesteps()
        n, T = inv.latents.shape[0], bb.num_train_timesteps
        cond, trajectory = inv.state["source_cond"], inv.state["trajectory"]
        null = bb.null_embeds(n)
        u = null.embeds.detach().clone()
        nulls, losses = [], []

        def fitted_eps(x, t, i):  # ∅_i fitted so that the guided step lands on the inversion's point
            nonlocal u
            a_t, a_s = (alpha_at(bb.alphas_cumprod, v, bb.final_alpha_cumprod)
                        for v in (t, landing_timestep(steps, i)))
            target = trajectory[i + 1] if i + 1 < len(steps) else inv.image_latents
            w = dynamic_guidance_scale(t, T, p.guidance_scale, p.tau)
            loss = torch.zeros(n)
            if w != 1.0 and p.inner_steps:
                u, loss = self._fit_step(x, t, i, a_t, a_s, w, target, cond, null, u)
            step_null = PromptEmbeds(u.detach().clone(), null.pooled, null.time_ids)
            nulls.append(step_null)
            losses.append(loss)
            return guided_noise(bb, x, t, cond, step_null if w != 1.0 else None, w)

        ddim_sample(fitted_eps, inv.latents, steps, bb.alphas_cumprod, bb.final_alpha_cumprod)
        return nulls, losses

    def _fit_step(self, x, t, i, a_t, a_s, w, target, cond, null, u):
        bb, p = self.backbone, self.params
        n = x.shape[0]
        with torch.no_grad():
            e_cond = bb.predict_noise(x, t, cond)
        u = u.detach().clone().requires_grad_(True)
        optimizer = torch.optim.Adam([u], lr=p.lr * (1.0 - i / 100.0))
        active = torch.ones(n, dtype=torch.bool)
        last = torch.zeros(n)
        threshold = p.early_stop + i * p.early_stop_growth
        for _ in range(p.inner_steps):
            rows = active.nonzero().squeeze(1)
            with torch.enable_grad():
                e_null = bb.predict_noise(x[rows], t, PromptEmbeds(u, null.pooled, null.time_ids).index(rows))
                prev = ddim_step(x[rows], cfg_combine(e_null, e_cond[rows], w), a_t, a_s)
                per_sample = (prev.float() - target[rows].float()).pow(2).flatten(1).mean(1)
                optimizer.zero_grad(set_to_none=True)
                per_sample.sum().backward()  # each row's gradient is its own loss's
            frozen = u.detach()[~active].clone()
            optimizer.step()
            with torch.no_grad():
                u[~active] = frozen  # Adam's momentum would move stopped rows
            last[rows] = per_sample.detach().cpu()
            active[rows[per_sample.detach().cpu() < threshold]] = False
            if not active.any():
                break
        return u.detach(), last
