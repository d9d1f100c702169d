"""pix2pix-zero's inversion (Parmar et al., SIGGRAPH 2023): DDIM inversion on its own ᾱ grid, each step's ε
regularised towards white Gaussian noise.

**Grid.** The official ``DDIMInverseScheduler`` (as PIE-Bench runs it, SD's ``steps_offset`` 1) walks the
sampling grid upwards, ε evaluated at timestep t = 1, 1 + T/N, …, and moves from ᾱ[t − 1] to
ᾱ[t − 1 + T/N], the last step to ᾱ[T − 1]: one index below the decoding grid's ᾱ[t] at every point, and
its noisiest latent at ᾱ[999] where the decode then starts from ᾱ[981]. `inverse_steps` gives that walk;
`invert` runs it. `guided_decode` runs the reference decode and the guided edit.

**Regularisation.** After each ε (no UNet gradients), ``reg_steps`` rounds of: ``ac_rolls`` gradient
steps on the auto-correlation loss (`renoise.auto_correlation_grad`, the same loss ReNoise took from
pix2pix-zero: random rolls over a 2× pyramid) with weight λ_ac / ``ac_rolls``, then one on the KL of the
whole tensor's Gaussian fit to N(0, 1), var + mean² − 1 − log(var + 1e-7), weight λ_KL (`gaussian_kl_grad`,
in closed form). Defaults: ``DDIMInversion.__call__``'s (λ_ac 20, λ_KL 20, 5 rounds of 5 rolls).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from icd_bench.diffusion.ddim import ddim_step
from icd_bench.diffusion.loop import Callback, EpsFn, StepInfo, apply_callback
from icd_bench.diffusion.renoise import auto_correlation_grad
from icd_bench.diffusion.schedule import alpha_at, landing_timestep

#: guide(x, t, i) -> (the moved latents, ε to step them with)
GuideFn = Callable[[torch.Tensor, int, int], "tuple[torch.Tensor, torch.Tensor]"]


@dataclass
class WhiteNoiseRegularisation:
    """pix2pix-zero's inversion regularisation (``DDIMInversion.__call__``'s defaults)."""

    lambda_ac: float = 20.0
    lambda_kl: float = 20.0
    reg_steps: int = 5
    ac_rolls: int = 5

    def __post_init__(self):
        if self.lambda_ac < 0 or self.lambda_kl < 0:
            raise ValueError("lambda_ac and lambda_kl must be >= 0")
        if self.reg_steps < 0 or self.ac_rolls < 1:
            raise ValueError(f"reg_steps must be >= 0 and ac_rolls >= 1, got {self.reg_steps} and "
                             f"{self.ac_rolls}")


def gaussian_kl_grad(x: torch.Tensor) -> torch.Tensor:
    """∂/∂x of var(x) + mean(x)² − 1 − log(var(x) + 1e-7) over all of x (var unbiased): with N elements,
    (1 − 1/(var + 1e-7)) · 2 (x − mean) / (N − 1) + 2 mean / N."""
    n = x.numel()
    mean, var = x.mean(), x.var()
    return (1 - 1 / (var + 1e-7)) * 2 * (x - mean) / (n - 1) + 2 * mean / n


def regularise_white(eps: torch.Tensor, cfg: WhiteNoiseRegularisation,
                     generators: Sequence[torch.Generator | None]) -> torch.Tensor:
    """pix2pix-zero's gradient steps on ε, per sample (each sample's rolls from its generator)."""
    out = []
    for k in range(eps.shape[0]):
        e = eps[k].detach().float()
        for _ in range(cfg.reg_steps):
            if cfg.lambda_ac > 0:
                for _ in range(cfg.ac_rolls):
                    e = e - cfg.lambda_ac * auto_correlation_grad(e, generators[k]) / cfg.ac_rolls
            if cfg.lambda_kl > 0:
                e = e - cfg.lambda_kl * gaussian_kl_grad(e)
        out.append(e.to(eps.dtype))
    return torch.stack(out)


def inverse_steps(timesteps: Sequence[int], num_train_timesteps: int) -> list[tuple[int, int, int]]:
    """The official inverse scheduler's walk up the descending sampling grid ``timesteps``: per step, from
    the clean end up, (the timestep ε is evaluated at, the ᾱ index it leaves, the ᾱ index it lands on)."""
    T = num_train_timesteps
    stride = T // len(timesteps)
    return [(t, t - 1, min(t + stride, T) - 1) for t in reversed(timesteps)]


@torch.no_grad()
def invert(eps_fn: EpsFn, x0: torch.Tensor, timesteps: Sequence[int], alphas_cumprod: torch.Tensor,
           cfg: WhiteNoiseRegularisation, generators: Sequence[torch.Generator | None], *,
           callback: Callback | None = None) -> list[torch.Tensor]:
    """pix2pix-zero's inversion of ``x0``; returns its latents from x0 up (N + 1 of them, the inverted noise
    last). ``eps_fn`` gets the index of the sampling step being undone; so does the callback's `StepInfo`."""
    path = [x0]
    x = x0
    steps = inverse_steps(timesteps, alphas_cumprod.shape[0])
    for k, (t, s_from, s_to) in enumerate(steps):
        i = len(steps) - 1 - k
        eps = eps_fn(x, t, i)
        if cfg.reg_steps:
            eps = regularise_white(eps, cfg, generators)
        a_from, a_to = alpha_at(alphas_cumprod, s_from), alpha_at(alphas_cumprod, s_to)
        x = apply_callback(callback, StepInfo(i, s_from, s_to, a_from, a_to, ddim_step(x, eps, a_from, a_to)))
        path.append(x)
    return path


@torch.no_grad()
def guided_decode(reference_eps: EpsFn, guide: GuideFn, x: torch.Tensor, timesteps: Sequence[int],
                  alphas_cumprod: torch.Tensor, final_alpha: float, *,
                  landings: Sequence[torch.Tensor] | None = None,
                  callback: Callback | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """pix2pix-zero's two decodes of the inverted ``x`` in lockstep on the DDIM grid: the reference (its ε
    from ``reference_eps``, which records what the guide compares with) and the edit, whose step i first
    lets ``guide(x, t, i) -> (x', ε)`` move its latents (the cross-attention guidance), then steps from x'.

    ``landings`` (Direct Inversion, PIE-Bench's "DirectInversion + pix2pix-zero"): after step i the
    reference is put on ``landings[i]``, and the difference it was moved by is added to the edit's step
    too (the official offsets). ``callback`` sees the edit's latents after each step, before that offset.
    The official code runs the whole reference first; step i of the edit reads only step i of the
    reference, so the two walks give the same latents here with one step's maps kept at a time.
    Returns (the reference's final latents, the edit's).
    """
    ref = x
    for i, t in enumerate(timesteps):
        s = landing_timestep(timesteps, i)
        a_t, a_s = alpha_at(alphas_cumprod, t, final_alpha), alpha_at(alphas_cumprod, s, final_alpha)
        stepped = ddim_step(ref, reference_eps(ref, t, i), a_t, a_s)
        ref = stepped if landings is None else landings[i]
        moved, eps = guide(x, t, i)
        x = apply_callback(callback, StepInfo(i, t, s, a_t, a_s, ddim_step(moved, eps, a_t, a_s)))
        if landings is not None:
            x = x + (ref - stepped)
    return ref, x
