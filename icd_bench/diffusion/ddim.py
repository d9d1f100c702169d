"""DDIM (the paper's eq. 1) and DDIM inversion as small pure functions.

Written in the style of k-diffusion samplers: each loop is one function over a noise-prediction
callable ``eps_fn(x, t, i) -> ε`` (``i`` is the step index), with an optional progress bar and a
callback (`loop.StepInfo`, shared by every loop of this package). The noise schedule ᾱ comes from a
diffusers scheduler (``scheduler.alphas_cumprod``); the timestep grid reuses
``DDIMScheduler.set_timesteps`` so it matches diffusers exactly.

Notation: ``alphas_cumprod[t]`` is ᾱ_t, written α_t in the iCD paper. A grid is a descending list
of timesteps ``t_0 > t_1 > ... > t_{N-1}``; the step from ``t_i`` lands on ``t_{i+1}``, and the
last step lands on the clean end whose ᾱ is ``final_alpha`` (1.0, or ᾱ_0 for SD's
``set_alpha_to_one=False``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from icd_bench.diffusion.loop import Callback, EpsFn, StepInfo, apply_callback
from icd_bench.diffusion.schedule import CLEAN, alpha_at, landing_timestep, root


def ddim_step(x_t: torch.Tensor, eps: torch.Tensor, alpha_t: float, alpha_s: float) -> torch.Tensor:
    """One deterministic DDIM step from time t to time s (eq. 1), in either direction.

    x_s = sqrt(α_s/α_t)·x_t + ε·( sqrt(1−α_s) − sqrt(α_s/α_t)·sqrt(1−α_t) )

    With s < t this denoises (sampling); with s > t it is the DDIM inversion step.
    Computed in float64 scalars, applied in the dtype of ``x_t``; ᾱ may also be per-row tensors
    (B, 1, …), as training moves a batch of rows between their own timesteps.
    """
    ratio = root(alpha_s / alpha_t)
    coef_eps = root(1.0 - alpha_s) - ratio * root(1.0 - alpha_t)
    return ratio * x_t + coef_eps * eps


def ddim_timesteps(scheduler, num_steps: int, steps_offset: int | None = None) -> list[int]:
    """The descending DDIM grid of ``num_steps`` timesteps, exactly as diffusers' DDIMScheduler.

    ``steps_offset`` replaces the scheduler config's (SD's is 1: 981, 961, …, 1 at 50 steps; 0 gives
    980, …, 0, the grid of a DDIMScheduler built without it, such as PnPInversion's before diffusers'
    pipeline constructor sets it to 1). Uses a private copy so the
    caller's scheduler keeps its state.
    """
    from diffusers import DDIMScheduler

    overrides = {} if steps_offset is None else {"steps_offset": steps_offset}
    sched = DDIMScheduler.from_config(scheduler.config, **overrides)
    sched.set_timesteps(num_steps)
    return [int(t) for t in sched.timesteps]


@torch.no_grad()
def ddim_path(eps_fn: EpsFn, x: torch.Tensor, path: Sequence[int], alphas_cumprod: torch.Tensor,
              final_alpha: float = 1.0, *, callback: Callback | None = None,
              disable: bool = True, desc: str = "DDIM") -> torch.Tensor:
    """Eq. 1 along ``path``, a list of timesteps in either direction (`schedule.CLEAN`: the clean end,
    ᾱ = ``final_alpha``): step j evaluates ε at (x_{path[j]}, path[j]), the point it leaves, and lands
    on path[j + 1]. Sampling (`ddim_sample`) walks down a grid to the clean end; the iCD solver's
    teacher inversion walks up one (`icd.probe`). `StepInfo.index` is j.
    """
    from tqdm.auto import tqdm

    for j in tqdm(range(len(path) - 1), desc=desc, disable=disable, leave=False):
        t, s = path[j], path[j + 1]
        eps = eps_fn(x, t, j)
        a_t, a_s = alpha_at(alphas_cumprod, t, final_alpha), alpha_at(alphas_cumprod, s, final_alpha)
        x = apply_callback(callback, StepInfo(j, t, s, a_t, a_s, ddim_step(x, eps, a_t, a_s)))
    return x


def ddim_sample(eps_fn: EpsFn, x: torch.Tensor, timesteps: Sequence[int], alphas_cumprod: torch.Tensor,
                final_alpha: float, *, callback: Callback | None = None,
                disable: bool = True, desc: str = "DDIM") -> torch.Tensor:
    """Deterministic DDIM sampling (decoding) from x_{t_0} down to the clean end.

    Step i evaluates ε at (x_{t_i}, t_i) and applies eq. 1 from t_i to t_{i+1} (`ddim_path` over the
    grid and `schedule.CLEAN`).
    """
    return ddim_path(eps_fn, x, [*timesteps, CLEAN], alphas_cumprod, final_alpha, callback=callback,
                     disable=disable, desc=desc)


@torch.no_grad()
def ddim_invert(eps_fn: EpsFn, x0: torch.Tensor, timesteps: Sequence[int], alphas_cumprod: torch.Tensor,
                final_alpha: float, *, callback: Callback | None = None,
                disable: bool = True, desc: str = "DDIM inversion") -> torch.Tensor:
    """DDIM inversion (encoding): the mirror of `ddim_sample` on the same grid.

    Walks the grid upwards from the clean end: the step that sampling takes from t_i to t_{i+1}
    is undone by eq. 1 from t_{i+1} to t_i, with ε evaluated at (x_{t_{i+1}}, t_i) — the usual
    approximation ε(x_{t_{i+1}}) ≈ ε(x_{t_i}) of DDIM inversion (Song et al.; Mokady et al.).
    ``eps_fn`` receives the step index of the sampling step being undone.
    Returns x_{t_0}, the noise latents.
    """
    from tqdm.auto import tqdm

    x = x0
    n = len(timesteps)
    for k in tqdm(range(n), desc=desc, disable=disable, leave=False):
        i = n - 1 - k  # undo sampling step i: from s = t_{i+1} up to t = t_i
        t, s = timesteps[i], landing_timestep(timesteps, i)
        eps = eps_fn(x, t, i)
        a_s, a_t = alpha_at(alphas_cumprod, s, final_alpha), alpha_at(alphas_cumprod, t, final_alpha)
        x = apply_callback(callback, StepInfo(i, s, t, a_s, a_t, ddim_step(x, eps, a_s, a_t)))
    return x
