"""iCD encoding and decoding as pure loops over noise-prediction callables (k-diffusion style).

Each step is eq. 3: x_{s} = DDIM(x_t, t, s, w) — the DDIM step of eq. 1 from t straight to the
step's boundary s, with ε from the consistency model. The reverse model's last step lands on the
clean end s = 0, a hard boundary (ᾱ = 1), as in the reference code.
"""

from __future__ import annotations

import torch

from icd_bench.diffusion.ddim import Callback, EpsFn, apply_callback, ddim_step
from icd_bench.diffusion.schedule import alpha_at, clean_at_zero, q_sample
from icd_bench.icd.boundaries import Boundaries

#: eps_fn(x, t, step_index) -> ε


def boundary_alpha(alphas_cumprod: torch.Tensor, s: int) -> float:
    """ᾱ at a boundary; s = 0 is the clean end (ᾱ = 1), the reverse model's hard boundary."""
    return alpha_at(alphas_cumprod, clean_at_zero(s))


def consistency_step(x_t: torch.Tensor, eps: torch.Tensor, t: int, s: int,
                     alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Eq. 3: the multi-boundary consistency model's output, DDIM(x_t, t, s) with ε = ε_θ(x_t, t)."""
    return ddim_step(x_t, eps, alpha_at(alphas_cumprod, t), boundary_alpha(alphas_cumprod, s))


def noise_to_start(x0: torch.Tensor, noise: torch.Tensor, t: int, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """q(x_t | x_0): the image noised to the first forward step (the reference starts at t = 19)."""
    return q_sample(x0, noise.to(x0.dtype), alpha_at(alphas_cumprod, t))


@torch.no_grad()
def icd_encode(eps_fn: EpsFn, x0: torch.Tensor, noise: torch.Tensor, boundaries: Boundaries,
               alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """fCDm encoding: noise x_0 to the first forward step, then one step per segment up to T − 1."""
    x = noise_to_start(x0, noise, boundaries.start_timestep, alphas_cumprod)
    for i, (t, u) in enumerate(boundaries.forward_steps()):
        x = consistency_step(x, eps_fn(x, t, i), t, u, alphas_cumprod)
    return x


@torch.no_grad()
def icd_decode(eps_fn: EpsFn, x: torch.Tensor, boundaries: Boundaries, alphas_cumprod: torch.Tensor,
               callback: Callback | None = None) -> torch.Tensor:
    """CDm decoding: one step per segment from T − 1 down to the clean end.

    ``callback(i, s, x)`` runs after each step; a returned tensor replaces x (P2P local blend).
    """
    for i, (t, s) in enumerate(boundaries.reverse_steps()):
        x = consistency_step(x, eps_fn(x, t, i), t, s, alphas_cumprod)
        if callback is not None:
            x = apply_callback(callback, i, s, x)
    return x
