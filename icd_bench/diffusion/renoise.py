"""ReNoise inversion (Garibi et al., ECCV 2024) of the LCM multistep sampler (`diffusion.lcm`).

Inverting one sampling step means finding x_t with step(x_t, ε(x_t)) = x_next. Plain inversion
uses ε(x_next) in place of ε(x_t); ReNoise iterates the fixed point instead: x_t^(0) = x_next,
x_t^(k+1) = invert(x_next, ε(x_t^(k))), and averages the noise predictions of the later iterations
before the final inversion. Each iteration's ε is regularised towards a Gaussian (pix2pix-zero's
auto-correlation loss and a patch-wise KL to the prediction at the forward-noised image, a few
gradient steps on ε itself — no UNet gradients). Noise correction: once x_t is found, the stored
re-noising z of that step is replaced by the one with which the sampler lands exactly on x_next.
Defaults follow the public release's configuration (9 renoising iterations, averaging over
iterations 8–9; 5 in the first step, averaging over 0–4; λ_ac 20, λ_KL 0.065, 4 regularisation
steps of 5 rolls). ``kl_reference`` says where that reference prediction is made: at x0
forward-noised to t (``"noised"``, the default, as the paper describes it), or at x0 itself
(``"clean"``, what the official code computes for SD 1.x/2.x models: its ``get_pipes`` replaces the
scheduler's ``add_noise`` by the identity there, so ``z_tp1_forward`` is the clean latent).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from icd_bench.diffusion.lcm import lcm_invert_step, next_alpha, noise_matching
from icd_bench.diffusion.loop import Callback, EpsFn, StepInfo, apply_callback
from icd_bench.diffusion.schedule import alpha_at, landing_timestep, q_sample

#: eps_fn(x, t, i) -> ε, for the rows of x (the sampling step index i)
KL_REFERENCES = ("noised", "clean")


@dataclass
class ReNoiseConfig:
    renoise_steps: int = 9  # renoising iterations per step (the first estimate is iteration 0)
    first_step_renoise_steps: int = 5  # at most this many in steps with t < first_step_max_t
    first_step_max_t: int = 250
    average_range: tuple[int, int] = (8, 10)  # iterations whose ε are averaged, [start, end)
    first_step_average_range: tuple[int, int] = (0, 5)
    average: bool = True
    lambda_ac: float = 20.0  # auto-correlation ("pair") regularisation
    lambda_kl: float = 0.065
    reg_steps: int = 4
    ac_rolls: int = 5
    noise_correction: bool = True
    kl_reference: str = "noised"  # where the KL's reference ε is predicted: "noised" x0 at t, or "clean" x0
    #: the official code's behaviour where the defaults correct it (README's deviations table)
    OFFICIAL_SWITCHES: ClassVar[dict[str, object]] = {"kl_reference": "clean", "noise_correction": False}

    def __post_init__(self):
        if self.kl_reference not in KL_REFERENCES:
            raise ValueError(f"kl_reference must be one of {', '.join(KL_REFERENCES)}, "
                             f"got {self.kl_reference!r}")
        for name in ("renoise_steps", "first_step_renoise_steps", "reg_steps", "ac_rolls"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        for name in ("average_range", "first_step_average_range"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"{name} must be [start, end) with 0 <= start <= end, got {(lo, hi)}")
        if self.lambda_ac < 0 or self.lambda_kl < 0:
            raise ValueError("lambda_ac and lambda_kl must be >= 0")

    @property
    def regularises(self) -> bool:
        return self.reg_steps > 0 and (self.lambda_ac > 0 or self.lambda_kl > 0)


# -- noise regularisation (pix2pix-zero's losses, as ReNoise uses them) -------------------------
def _pyramid(x: torch.Tensor) -> list[torch.Tensor]:
    """C×H×W → its 2× average-pooling pyramid, down to the first level of at most 8 rows."""
    levels = [x]
    while levels[-1].shape[-2] > 8:
        levels.append(F.avg_pool2d(levels[-1][None], kernel_size=2)[0])
    return levels


def _draw_rolls(levels: list[torch.Tensor], generator: torch.Generator | None) -> torch.Tensor:
    """C × levels random rolls in the reference's order — channel by channel, a roll in [0, rows / 2) per
    level."""
    return torch.tensor([[int(torch.randint(0, max(n.shape[-2] // 2, 1), (1,), generator=generator))
                          for n in levels] for _ in range(levels[0].shape[0])])


def auto_correlation_loss(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Σ over channels and a 2× pyramid (down to 8 px) of squared mean products with a random roll."""
    levels = _pyramid(x)
    rolls = _draw_rolls(levels, generator)
    loss = x.new_zeros(())
    for c in range(x.shape[0]):
        for n, r in zip(levels, rolls[c].tolist(), strict=True):
            n = n[c]
            loss = (loss + (n * torch.roll(n, r, dims=0)).mean() ** 2
                    + (n * torch.roll(n, r, dims=1)).mean() ** 2)
    return loss


def _roll(n: torch.Tensor, shifts: torch.Tensor, dim: int) -> torch.Tensor:
    """torch.roll of each channel of C×H×W ``n`` along ``dim`` (1 or 2) by its own shift."""
    size = n.shape[dim]
    idx = (torch.arange(size, device=n.device)[None] - shifts[:, None]) % size  # out[i] = n[i − r]
    idx = idx[:, :, None] if dim == 1 else idx[:, None, :]
    return n.gather(dim, idx.expand_as(n))


def auto_correlation_grad(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """∂ auto_correlation_loss(x) / ∂x in closed form, the same rolls drawn in the same order (channel by
    channel, level by level), all channels at once: autograd's graph over the pyramid's many small ops
    costs more than the loss (ReNoise takes 20 of these per regularisation). For m = mean(n · roll(n, r)):
    ∂m²/∂n = 2m (roll(n, r) + roll(n, −r)) / |n|; pooling's adjoint spreads each gradient over its
    2 × 2 block (/4)."""
    levels = _pyramid(x)
    rolls = _draw_rolls(levels, generator).to(x.device)
    g = None
    for lev in reversed(range(len(levels))):
        n, r = levels[lev], rolls[:, lev]
        local = torch.zeros_like(n)
        for dim in (1, 2):
            rolled = _roll(n, r, dim)
            m = (n * rolled).mean((1, 2), keepdim=True)
            local += (2 * m / n[0].numel()) * (rolled + _roll(n, -r, dim))
        if g is not None:  # the coarser level's gradient through avg_pool2d (odd edges get none)
            up = g.repeat_interleave(2, 1).repeat_interleave(2, 2) / 4
            local[:, : up.shape[1], : up.shape[2]] += up
        g = local
    return g


def patch_kl(x: torch.Tensor, ref: torch.Tensor, patch: int = 4) -> torch.Tensor:
    """Σ over p×p patches and channels of |KL| between per-patch Gaussian fits of x and ref."""
    def stats(t):
        c, h, w = t.shape
        p = t[:, : h - h % patch, : w - w % patch].unfold(1, patch, patch).unfold(2, patch, patch)
        p = p.reshape(c, -1, patch * patch)
        return p.mean(-1), p.var(-1)

    (m0, v0), (m1, v1) = stats(x), stats(ref)
    e = 1e-6
    return (torch.log((v1 + e) / (v0 + e)) + (v0 + (m0 - m1) ** 2) / (v1 + e) - 1).abs().sum()


def patch_kl_grad(x: torch.Tensor, ref: torch.Tensor, patch: int = 4) -> torch.Tensor:
    """∂ patch_kl(x, ref) / ∂x in closed form (for the same reason as `auto_correlation_grad`): per patch
    of P pixels, with K its KL term, ∂|K|/∂x_i = sign(K) (∂K/∂m₀ / P + ∂K/∂v₀ · 2 (x_i − m₀) / (P − 1))
    (v₀ the unbiased variance); pixels outside whole patches get none."""
    c, h, w = x.shape
    hh, ww = h - h % patch, w - w % patch

    def patches(t):  # (c, rows, cols, p, p)
        return t[:, :hh, :ww].reshape(c, hh // patch, patch, ww // patch, patch).transpose(2, 3)

    px, pr = patches(x), patches(ref)
    n = patch * patch
    m0, v0 = px.mean((-2, -1), keepdim=True), px.var((-2, -1), keepdim=True)
    m1, v1 = pr.mean((-2, -1), keepdim=True), pr.var((-2, -1), keepdim=True)
    e = 1e-6
    k = torch.log((v1 + e) / (v0 + e)) + (v0 + (m0 - m1) ** 2) / (v1 + e) - 1
    d_m0, d_v0 = 2 * (m0 - m1) / (v1 + e), 1 / (v1 + e) - 1 / (v0 + e)
    g = torch.sign(k) * (d_m0 / n + d_v0 * 2 * (px - m0) / (n - 1))
    grad = torch.zeros_like(x)
    grad[:, :hh, :ww] = g.transpose(2, 3).reshape(c, hh, ww)
    return grad


def regularise_noise(eps: torch.Tensor, reference: torch.Tensor | None, cfg: ReNoiseConfig,
                     generators: Sequence[torch.Generator | None]) -> torch.Tensor:
    """A few gradient steps on ε (per sample) towards a white, well-fitted Gaussian."""
    if not cfg.regularises:
        return eps
    out = []
    for k in range(eps.shape[0]):
        e = eps[k].detach().float()
        for _ in range(cfg.reg_steps):
            if cfg.lambda_kl > 0 and reference is not None:
                e = e - cfg.lambda_kl * patch_kl_grad(e, reference[k].float()).clamp(-100, 100)
            if cfg.lambda_ac > 0:
                for _ in range(cfg.ac_rolls):
                    e = e - cfg.lambda_ac * auto_correlation_grad(e, generators[k]) / cfg.ac_rolls
        out.append(e.detach().to(eps.dtype))
    return torch.stack(out)


# -- the inversion --------------------------------------------------------------------------------
@torch.no_grad()
def renoise_invert(eps_fn: EpsFn, x0: torch.Tensor, timesteps: Sequence[int], alphas_cumprod: torch.Tensor,
                   noises: list[torch.Tensor], forward_noise: torch.Tensor, cfg: ReNoiseConfig,
                   generators: Sequence[torch.Generator | None], *,
                   callback: Callback | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Invert LCM multistep sampling on ``timesteps`` (descending) from the clean latents x0.

    ``noises[i]``: the re-noising of sampling step i (used for every step but the last); with noise
    correction the returned list holds the corrected ones — decode with it. ``forward_noise``
    noises x0 to each t for the KL reference (ReNoise's ε at the forward-noised image; unused with
    ``kl_reference="clean"``, where the reference is ε at x0 itself).
    ``callback``: `loop.StepInfo` after each inverted step (index i: the sampling step undone).
    Returns (x at timesteps[0], the noises to sample with).
    """
    noises = list(noises)
    x_next = x0
    for i in reversed(range(len(timesteps))):
        t = timesteps[i]
        a_t, a_next = alpha_at(alphas_cumprod, t), next_alpha(alphas_cumprod, timesteps, i)
        z = noises[i] if a_next < 1.0 else None
        first = t < cfg.first_step_max_t
        iters = min(cfg.first_step_renoise_steps, cfg.renoise_steps) if first else cfg.renoise_steps
        lo, hi = cfg.first_step_average_range if first else cfg.average_range
        reference = None
        x_t, avg, n_avg = x_next, None, 0
        for k in range(iters + 1):
            if k == 0 and cfg.regularises and cfg.lambda_kl > 0:
                at_t = x0 if cfg.kl_reference == "clean" else q_sample(x0, forward_noise, a_t)
                both = eps_fn(torch.cat([at_t, x_t]), t, i)
                reference, eps = both.chunk(2)
            else:
                eps = eps_fn(x_t, t, i)
            if cfg.average and lo <= k < hi:
                n_avg += 1
                avg = eps.clone() if avg is None else avg + (eps - avg) / n_avg
            if k >= lo or (not cfg.average and k > 0):
                eps = regularise_noise(eps, reference, cfg, generators)
            x_t = lcm_invert_step(x_next, eps, a_t, a_next, z)
        if cfg.average and avg is not None:
            x_t = lcm_invert_step(x_next, regularise_noise(avg, reference, cfg, generators), a_t, a_next, z)
        if cfg.noise_correction and z is not None:
            noises[i] = noise_matching(x_next, x_t, eps_fn(x_t, t, i), a_t, a_next)
        x_next = apply_callback(callback, StepInfo(i, landing_timestep(timesteps, i), t, a_next, a_t, x_t))
    return x_next, noises
