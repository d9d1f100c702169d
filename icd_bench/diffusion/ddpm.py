"""Stochastic DDPM steps (DDIM's η-family) and the edit-friendly noise space of
Huberman-Spiegelglas et al. (2024), as pure functions over noise-prediction callables.

A step from t to s (s < t) with ε predicted at x_t (Song et al., 2021, eq. 12):

    x̂_0 = (x_t − √(1−ᾱ_t) ε) / √ᾱ_t,   σ = η √((1−ᾱ_s)/(1−ᾱ_t)) √(1 − ᾱ_t/ᾱ_s)
    x_s = √ᾱ_s x̂_0 + √(1 − ᾱ_s − σ²) ε + σ z

η = 1 is DDPM's posterior sampling. Edit-friendly inversion noises the image to every grid
timestep *independently*, then solves each step for the z that lands exactly on the next noised
image; sampling with those z (and the same ε) retraces the trajectory, and with another prompt
edits it. A step whose σ is 0 (η = 0, or landing on ᾱ = 1) stores the residual itself (σ taken
as 1), so the trajectory is still retraced exactly. No library exposes this inversion on a
generic UNet callable (diffusers' LEdits++ pipeline fuses it with its own editing).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from icd_bench.diffusion.loop import Callback, EpsFn, StepInfo, apply_callback
from icd_bench.diffusion.schedule import alpha_at, landing_timestep, q_sample, root


def ddpm_step_mean(x_t: torch.Tensor, eps: torch.Tensor, alpha_t: float, alpha_s: float,
                   eta: float = 1.0) -> tuple[torch.Tensor, float]:
    """The deterministic part of a step from t to s and its noise scale σ (see the module doc)."""
    sigma = eta * root((1 - alpha_s) / (1 - alpha_t) * (1 - alpha_t / alpha_s))
    x0 = (x_t - root(1 - alpha_t) * eps) / root(alpha_t)
    mean = root(alpha_s) * x0 + root(max(1 - alpha_s - sigma**2, 0.0)) * eps
    return mean, sigma


def edit_friendly_inversion(eps_fn: EpsFn, x0: torch.Tensor, timesteps: Sequence[int],
                            alphas_cumprod: torch.Tensor, final_alpha: float, noise: torch.Tensor, *,
                            start: int = 0, eta: float = 1.0,
                            callback: Callback | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Edit-friendly DDPM inversion on a descending grid.

    ``noise``: (N, B, C, h, w) independent standard normal noise, one per grid timestep. Returns
    (x_{t_start}, zs) where zs[k] is the noise map of sampling step ``start + k``. Steps before
    ``start`` (skipped by the editing) are not computed. ``callback``: `loop.StepInfo` after each
    step's noise map is found, with the point the step lands on (its retrace; a tensor the callback
    returns is not used — the noise maps fix the trajectory).
    """
    n = len(timesteps)
    alphas = [alpha_at(alphas_cumprod, t, final_alpha) for t in timesteps]
    xs = {i: q_sample(x0, noise[i].to(x0), alphas[i]) for i in range(start, n)}
    zs = []
    x = xs[start]
    for i in range(start, n):
        t, s = timesteps[i], landing_timestep(timesteps, i)
        target = xs[i + 1] if i + 1 < n else x0
        a_t, a_s = alpha_at(alphas_cumprod, t, final_alpha), alpha_at(alphas_cumprod, s, final_alpha)
        mean, sigma = ddpm_step_mean(x, eps_fn(x, t, i), a_t, a_s, eta)
        scale = sigma if sigma > 0 else 1.0
        z = (target - mean) / scale
        zs.append(z)
        x = mean + scale * z  # the landed point, as sampling will compute it (float-exact retrace)
        if callback is not None:  # its return is not used: the noise maps fix the trajectory
            callback(StepInfo(i, t, s, a_t, a_s, x))
    return xs[start], zs


@torch.no_grad()
def ddpm_sample(eps_fn: EpsFn, x: torch.Tensor, timesteps: Sequence[int], alphas_cumprod: torch.Tensor,
                final_alpha: float, zs: Sequence[torch.Tensor], *, start: int = 0, eta: float = 1.0,
                callback: Callback | None = None) -> torch.Tensor:
    """DDPM sampling from x_{t_start} with given noise maps (zs[k] for step ``start + k``)."""
    for k, i in enumerate(range(start, len(timesteps))):
        t, s = timesteps[i], landing_timestep(timesteps, i)
        a_t, a_s = alpha_at(alphas_cumprod, t, final_alpha), alpha_at(alphas_cumprod, s, final_alpha)
        mean, sigma = ddpm_step_mean(x, eps_fn(x, t, i), a_t, a_s, eta)
        x = apply_callback(callback, StepInfo(i, t, s, a_t, a_s,
                                              mean + (sigma if sigma > 0 else 1.0) * zs[k].to(x)))
    return x
