"""TurboEdit (Deutch et al., SIGGRAPH Asia 2024): few-step edit-friendly editing with shifted noise.

**Grid.** A DDPM grid of ``num_inversion_steps`` (SDXL-Turbo's trailing spacing: 999, 799, …, 199 at 5)
cut where its denoising starts: the timesteps below T·(1 − step_start / num_inversion_steps) — 799, 599,
399, 199 at the released 4-step setting (`turbo_timesteps`); the 3-step setting gives its own.

**Shifted noise.** The latent the step at t_i starts from is the image noised *less* than t_i: to
t_i − δ·(t_0 − t_1) (δ = ``noise_shift_delta``, 1: 599, 399, 199 for the 4-step grid), each with its own
noise draw; timesteps at or below 0 and the clean end are the image itself (`shifted_targets`).

**Decode** (`turbo_decode`), one UNet call per step on three rows: the inversion row at the shifted latent
x_i with the source prompt, and the edit's latents y with the source and with the target prompt. With
μ(x, ε) the DDPM posterior mean of the step (`ddpm.ddpm_step_mean`, η = 1), the inversion's noise
z = x_{i+1} − μ(x_i, ε_inv) (scaled down to a maximum norm where ``max_norms[i]`` ≥ 0, coefficient c), and

    y ← c·z + μ(y, ε_src) + w·(μ(y, ε_tgt) − μ(y, ε_src)),

the official ``step_use_latents`` with its ``x_t_c`` and ``x_t_minus_1_exact`` terms gathered.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from icd_bench.diffusion.ddpm import ddpm_step_mean
from icd_bench.diffusion.loop import Callback, StepInfo, apply_callback
from icd_bench.diffusion.schedule import alpha_at, landing_timestep, q_sample


def turbo_timesteps(scheduler_config, num_inversion_steps: int, step_start: int,
                    timestep_spacing: str = "trailing") -> list[int]:
    """The official grid: diffusers' DDPM timesteps (``timestep_spacing``), from the denoising start on
    (the img2img pipeline's ``denoising_start = step_start / num_inversion_steps`` cut)."""
    from diffusers import DDPMScheduler

    sched = DDPMScheduler.from_config(scheduler_config, timestep_spacing=timestep_spacing)
    sched.set_timesteps(num_inversion_steps)
    T = sched.config.num_train_timesteps
    cutoff = int(round(T - step_start / num_inversion_steps * T))
    return [int(t) for t in sched.timesteps if t < cutoff]


def shifted_noise_timesteps(timesteps: Sequence[int], noise_shift_delta: float) -> list[int]:
    """Each step's noising timestep, t_i − δ·(t_0 − t_1) (``create_xts``)."""
    shift = int(noise_shift_delta * (timesteps[0] - timesteps[1]))
    return [t - shift for t in timesteps]


def shifted_targets(x0: torch.Tensor, noise: torch.Tensor, alphas_cumprod: torch.Tensor,
                    noise_timesteps: Sequence[int]) -> list[torch.Tensor]:
    """x_0 … x_N: the image noised to each step's noising timestep up to the first at or below 0 (``noise``
    rows in order, one per noised step), the image itself after that and at the clean end."""
    noised = []
    for t in noise_timesteps:
        if t <= 0:
            break
        noised.append(q_sample(x0, noise[len(noised)].to(x0), alpha_at(alphas_cumprod, t)))
    return noised + [x0] * (len(noise_timesteps) - len(noised) + 1)


def norm_coefficient(z: torch.Tensor, max_norm: float) -> torch.Tensor:
    """Per sample: max_norm / ‖z‖ where that is below 1 and max_norm ≥ 0, else 1 (``normalize``)."""
    norms = z.flatten(1).norm(dim=1)
    c = torch.where((max_norm >= 0) & (norms >= max_norm), max_norm / norms, torch.ones_like(norms))
    return c.view(-1, *([1] * (z.ndim - 1)))


@torch.no_grad()
def turbo_decode(eps_fn, targets: Sequence[torch.Tensor], timesteps: Sequence[int],
                 alphas_cumprod: torch.Tensor, w: float, max_norms: Sequence[float], *,
                 callback: Callback | None = None) -> torch.Tensor:
    """The edit from ``targets[0]``; ``eps_fn(rows, t, i)`` gets the 3n rows ``[x_i; y; y]`` and returns their
    ε (source, source, target prompt). ``callback`` sees y after each step."""
    y = targets[0]
    n = y.shape[0]
    for i, t in enumerate(timesteps):
        s = landing_timestep(timesteps, i)
        a_t, a_s = alpha_at(alphas_cumprod, t), alpha_at(alphas_cumprod, s)  # the clean end: ᾱ = 1
        eps_inv, eps_src, eps_tgt = eps_fn(torch.cat([targets[i], y, y]), t, i).split(n)
        z = targets[i + 1] - ddpm_step_mean(targets[i], eps_inv, a_t, a_s)[0]
        src = ddpm_step_mean(y, eps_src, a_t, a_s)[0]
        tgt = ddpm_step_mean(y, eps_tgt, a_t, a_s)[0]
        y = norm_coefficient(z, max_norms[i]) * z + src + w * (tgt - src)
        y = apply_callback(callback, StepInfo(i, t, s, a_t, a_s, y))
    return y
