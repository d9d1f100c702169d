"""Few-step consistency models (LCM-style): multistep sampling, its exact inversion step, and the
denoising diffusion consistent model (DDCM) step of InfEdit.

A consistency model f(x_t, t) maps a noisy latent to the clean end; with an ε-predicting UNet it is
x̂_0 = (x_t − sqrt(1 − ᾱ_t)·ε)/sqrt(ᾱ_t) (the DDIM step to ᾱ = 1, eq. 1; LCM's boundary scalings
c_skip(t) < 1e-5 on every timestep of its grid, so they are left out). Multistep sampling (LCM,
Luo et al. 2023) re-noises x̂_0 to the next timestep with fresh noise z_i:

    x_{t_{i+1}} = sqrt(ᾱ_{t_{i+1}})·x̂_0(x_{t_i}) + sqrt(1 − ᾱ_{t_{i+1}})·z_i,   the last step returns x̂_0.

Storing the z_i makes the sampler deterministic, and then one step has an exact inverse in x_{t_i}
given ε (`lcm_invert_step`) — ReNoise's fixed point. `lcm_sample` and `ddcm_sample` are the
sampler loops (`loop.StepInfo` callbacks, as every loop of this package). The timestep grid is
diffusers' LCMScheduler's (skipping steps of its 50-step original schedule), so it matches LCM
pipelines exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from icd_bench.diffusion.ddim import ddim_step
from icd_bench.diffusion.loop import Callback, EpsFn, StepInfo, apply_callback
from icd_bench.diffusion.schedule import alpha_at, landing_timestep, q_sample, root


def lcm_timesteps(num_steps: int, num_train_timesteps: int = 1000, original_steps: int = 50) -> list[int]:
    """The descending LCM grid, as diffusers' LCMScheduler (e.g. 4 steps: 999, 759, 499, 259)."""
    from diffusers import LCMScheduler

    if not 1 <= num_steps <= original_steps:
        raise ValueError(f"an LCM grid has 1 to {original_steps} steps, got {num_steps}")
    sched = LCMScheduler(num_train_timesteps=num_train_timesteps, original_inference_steps=original_steps)
    sched.set_timesteps(num_steps)
    return [int(t) for t in sched.timesteps]


def next_alpha(alphas_cumprod: torch.Tensor, timesteps: Sequence[int], i: int) -> float:
    """ᾱ of the timestep step i lands on; 1.0 (the clean end) after the last step."""
    return alpha_at(alphas_cumprod, landing_timestep(timesteps, i))


def predict_x0(x_t: torch.Tensor, eps: torch.Tensor, alpha_t: float) -> torch.Tensor:
    """The consistency model's output x̂_0 from ε at ᾱ_t."""
    return ddim_step(x_t, eps, alpha_t, 1.0)


def lcm_step(x_t: torch.Tensor, eps: torch.Tensor, alpha_t: float, alpha_next: float,
             noise: torch.Tensor | None) -> torch.Tensor:
    """One multistep-sampling step: x̂_0, re-noised to ᾱ_next with ``noise`` (none at the clean end)."""
    x0 = predict_x0(x_t, eps, alpha_t)
    if alpha_next >= 1.0 or noise is None:
        return x0
    return q_sample(x0, noise, alpha_next)


def lcm_invert_step(x_next: torch.Tensor, eps: torch.Tensor, alpha_t: float, alpha_next: float,
                    noise: torch.Tensor | None) -> torch.Tensor:
    """The x_t that `lcm_step` maps onto ``x_next`` if the model predicts ``eps`` at x_t.

    Solves x_next = sqrt(ᾱ')·(x_t − sqrt(1−ᾱ)·ε)/sqrt(ᾱ) + sqrt(1−ᾱ')·z for x_t.
    """
    x0 = x_next if alpha_next >= 1.0 or noise is None else \
        (x_next - root(1 - alpha_next) * noise) / root(alpha_next)
    return root(alpha_t) * x0 + root(1 - alpha_t) * eps


def noise_matching(x_next: torch.Tensor, x_t: torch.Tensor, eps: torch.Tensor, alpha_t: float,
                   alpha_next: float) -> torch.Tensor:
    """The re-noising z with which `lcm_step` from (x_t, ε) lands exactly on ``x_next`` (ReNoise's
    noise correction for stochastic samplers)."""
    return (x_next - root(alpha_next) * predict_x0(x_t, eps, alpha_t)) / root(1 - alpha_next)


def ddcm_step(x_src: torch.Tensor, x_tgt: torch.Tensor, eps_src: torch.Tensor, eps_tgt: torch.Tensor,
              x0_src: torch.Tensor, alpha_t: float, alpha_next: float,
              noise: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step of InfEdit's denoising diffusion consistent model (η = 1), "virtual inversion".

    The source branch is the clean source latent x0_src re-noised at every step, so it never drifts;
    the target's x̂_0 is corrected by the source branch's prediction error:
        x̂_0^tgt = x0_src + ((x_tgt − x_src) − sqrt(1−ᾱ)·(ε_tgt − ε_src)) / sqrt(ᾱ),
    and both branches are re-noised with the same fresh ``noise`` to the next timestep (the target
    lands on x̂_0^tgt after the last step). With equal prompts and scales, x̂_0^tgt = x0_src exactly.
    Returns (x_src at the next timestep, x_tgt at the next timestep, x̂_0^tgt).
    """
    x0_tgt = x0_src + ((x_tgt - x_src) - root(1 - alpha_t) * (eps_tgt - eps_src)) / root(alpha_t)
    if alpha_next >= 1.0 or noise is None:
        return x0_src, x0_tgt, x0_tgt
    s = root(1 - alpha_next) * noise
    return root(alpha_next) * x0_src + s, root(alpha_next) * x0_tgt + s, x0_tgt


@torch.no_grad()
def lcm_sample(eps_fn: EpsFn, x: torch.Tensor, timesteps: Sequence[int], alphas_cumprod: torch.Tensor,
               noises: Sequence[torch.Tensor], *, callback: Callback | None = None) -> torch.Tensor:
    """LCM multistep sampling from x at ``timesteps[0]``, re-noising step i with ``noises[i]``;
    returns x̂_0."""
    for i, t in enumerate(timesteps):
        s = landing_timestep(timesteps, i)
        a_t, a_s = alpha_at(alphas_cumprod, t), alpha_at(alphas_cumprod, s)
        x = apply_callback(callback, StepInfo(i, t, s, a_t, a_s,
                                              lcm_step(x, eps_fn(x, t, i), a_t, a_s, noises[i])))
    return x


@torch.no_grad()
def ddcm_sample(eps_fn: EpsFn, x: torch.Tensor, x0_src: torch.Tensor, timesteps: Sequence[int],
                alphas_cumprod: torch.Tensor, noises: Sequence[torch.Tensor], branches: int = 2, *,
                callback: Callback | None = None) -> torch.Tensor:
    """InfEdit's DDCM sampling (`ddcm_step` per step) of ``branches`` row blocks ``[source; target(;
    mutual)]`` of x, each of the rows of ``x0_src``, from ``timesteps[0]``; the mutual block (the
    source prompt on its own latents) is corrected against the source like the target. The callback
    sees all blocks; returns the target's x̂_0 of the last step."""
    if branches not in (2, 3) or x.shape[0] != branches * x0_src.shape[0]:
        raise ValueError(f"DDCM samples 2 or 3 blocks of {x0_src.shape[0]} rows, got {branches} blocks "
                         f"in {x.shape[0]} rows")
    for i, t in enumerate(timesteps):
        s = landing_timestep(timesteps, i)
        a_t, a_s = alpha_at(alphas_cumprod, t), alpha_at(alphas_cumprod, s)
        eps, xs = eps_fn(x, t, i).chunk(branches), x.chunk(branches)
        x_src, x_tgt, x0_tgt = ddcm_step(xs[0], xs[1], eps[0], eps[1], x0_src, a_t, a_s, noises[i])
        rows = [x_src, x_tgt]
        if branches == 3:
            rows.append(ddcm_step(xs[0], xs[2], eps[0], eps[2], x0_src, a_t, a_s, noises[i])[1])
        x = apply_callback(callback, StepInfo(i, t, s, a_t, a_s, torch.cat(rows)))
    return x0_tgt
