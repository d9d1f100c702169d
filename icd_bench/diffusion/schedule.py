"""The noise schedule: ᾱ lookup with one convention for the clean end, and q(x_t | x_0).

``alphas_cumprod[t]`` is ᾱ_t (α_t in the iCD paper) for the grid timesteps t = 0 … T − 1. The clean
end x_0 lies below timestep 0 and is written `CLEAN` (−1); its ᾱ is 1 — the exact image — unless a
caller passes another ``clean`` value (DDIM's last step lands on the scheduler's
``final_alpha_cumprod``: 1 with diffusers' ``set_alpha_to_one``, ᾱ_0 for SD's configuration).
Boundary sets that write the clean end as 0 (iCD's, the release's) translate with `clean_at_zero`.
"""

from __future__ import annotations

import math

import torch

CLEAN = -1


def alpha_at(alphas_cumprod: torch.Tensor, t: int, clean: float = 1.0) -> float:
    """ᾱ_t as a float; at t = `CLEAN`, ``clean``."""
    return float(clean) if t == CLEAN else float(alphas_cumprod[t])


def landing_timestep(timesteps, i: int) -> int:
    """The timestep step i of a descending grid lands on: the next one, `CLEAN` after the last."""
    return timesteps[i + 1] if i + 1 < len(timesteps) else CLEAN


def clean_at_zero(t):
    """Boundaries of iCD's convention (0 = the clean image) as timesteps of this module's: an int, or a
    tensor of them per row — the one translation between the two."""
    if isinstance(t, torch.Tensor):
        return torch.where(t == 0, torch.full_like(t, CLEAN), t)
    return CLEAN if t == 0 else t


def alpha_rows(alphas_cumprod: torch.Tensor, t: torch.Tensor, like: torch.Tensor,
               clean: float = 1.0) -> torch.Tensor:
    """ᾱ_t per row (`CLEAN` rows: ``clean``), shaped (B, 1, …) to broadcast against ``like``, in its
    dtype: `alpha_at` for a batch of timesteps."""
    t = t.to(like.device)
    a = alphas_cumprod.to(like.device)[t.clamp_min(0)]
    a = torch.where(t == CLEAN, torch.full_like(a, float(clean)), a)
    return a.view(-1, *([1] * (like.ndim - 1))).to(like.dtype)


def root(v):
    """√v of a float (``** 0.5``) or a tensor (``sqrt``): the one square root of the step formulas."""
    return v.sqrt() if isinstance(v, torch.Tensor) else v ** 0.5


def latent_nll(x: torch.Tensor) -> torch.Tensor:
    """The negative log-likelihood of each row of ``x`` under N(0, I), per dimension, in nats:
    mean(x²)/2 + log(2π)/2 (≈ 1.419 for a draw of the prior). The iCD paper's Table 1 reports it for
    encoded latents x_T ("NLL is calculated with respect to the standard normal distribution")."""
    x = x.detach().double().flatten(1)
    return 0.5 * x.pow(2).mean(1) + 0.5 * math.log(2 * math.pi)


def q_sample(x0: torch.Tensor, noise: torch.Tensor, alpha) -> torch.Tensor:
    """q(x_t | x_0): x_t = √ᾱ_t · x_0 + √(1 − ᾱ_t) · ε, with ᾱ_t a float or per-row (B, 1, …) values."""
    return root(alpha) * x0 + root(1 - alpha) * noise
