"""iCD encoding and decoding: the consistency loop of `icd_bench.diffusion.consistency` on a
boundary set.

Each step is eq. 3: x_{s} = DDIM(x_t, t, s) — the DDIM step of eq. 1 from t straight to the
step's boundary s, with ε from the consistency model. Boundary sets write the clean end as 0 (the
paper's and the release's convention); `clean_at_zero` translates it to the schedule's `CLEAN`, so the
reverse model's last step lands on ᾱ = 1, a hard boundary, as in the reference code.
"""

from __future__ import annotations

import torch

from icd_bench.diffusion import consistency
from icd_bench.diffusion.loop import Callback, EpsFn
from icd_bench.diffusion.schedule import alpha_at, clean_at_zero, q_sample
from icd_bench.icd.boundaries import Boundaries


def boundary_alpha(alphas_cumprod: torch.Tensor, s: int) -> float:
    """ᾱ at a boundary; s = 0 is the clean end (ᾱ = 1), the reverse model's hard boundary."""
    return alpha_at(alphas_cumprod, clean_at_zero(s))


def consistency_step(x_t: torch.Tensor, eps: torch.Tensor, t: int, s: int,
                     alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Eq. 3 between boundaries of iCD's convention (s = 0: the clean image)."""
    return consistency.consistency_step(x_t, eps, t, clean_at_zero(s), alphas_cumprod)


def noise_to_start(x0: torch.Tensor, noise: torch.Tensor, t: int,
                   alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """q(x_t | x_0): the image noised to the first forward step (the reference starts at t = 19)."""
    return q_sample(x0, noise.to(x0.dtype), alpha_at(alphas_cumprod, t))


def _segments(steps) -> list[tuple[int, int]]:
    return [(t, clean_at_zero(s)) for t, s in steps]


@torch.no_grad()
def icd_encode(eps_fn: EpsFn, x0: torch.Tensor, noise: torch.Tensor, boundaries: Boundaries,
               alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """fCDm encoding: noise x_0 to the first forward step, then one step per segment up to T − 1."""
    x = noise_to_start(x0, noise, boundaries.start_timestep, alphas_cumprod)
    return consistency.consistency_sample(eps_fn, x, _segments(boundaries.forward_steps()), alphas_cumprod)


@torch.no_grad()
def icd_decode(eps_fn: EpsFn, x: torch.Tensor, boundaries: Boundaries, alphas_cumprod: torch.Tensor,
               callback: Callback | None = None) -> torch.Tensor:
    """CDm decoding: one step per segment from T − 1 down to the clean end (``callback``: a
    `loop.StepInfo` per step; a returned tensor replaces x, as P2P's local blend)."""
    return consistency.consistency_sample(eps_fn, x, _segments(boundaries.reverse_steps()), alphas_cumprod,
                                          callback=callback)
