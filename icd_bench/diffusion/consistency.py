"""Multi-boundary consistency models (iCD's eq. 3): the step and the loop over boundary segments.

A multi-boundary consistency model maps x_t of a segment straight to the segment's boundary s:
x_s = DDIM(x_t, t, s) with ε = ε_θ(x_t, t) — eq. 1 from t to s. A segment with s < t decodes (the
reverse model; its last boundary is the clean end, `schedule.CLEAN`, ᾱ = 1, a hard boundary as in
the reference code), one with s > t encodes (the forward model).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from icd_bench.diffusion.ddim import ddim_step
from icd_bench.diffusion.loop import Callback, EpsFn, StepInfo, apply_callback
from icd_bench.diffusion.schedule import alpha_at


def consistency_step(x_t: torch.Tensor, eps: torch.Tensor, t: int, s: int,
                     alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Eq. 3: DDIM(x_t, t, s), the consistency model's output at boundary s (`schedule.CLEAN`: x_0)."""
    return ddim_step(x_t, eps, alpha_at(alphas_cumprod, t), alpha_at(alphas_cumprod, s))


@torch.no_grad()
def consistency_sample(eps_fn: EpsFn, x: torch.Tensor, segments: Sequence[tuple[int, int]],
                       alphas_cumprod: torch.Tensor, *, callback: Callback | None = None) -> torch.Tensor:
    """One consistency step per segment (t, s), in order: step i evaluates ε at (x, t) and lands on s."""
    for i, (t, s) in enumerate(segments):
        a_t, a_s = alpha_at(alphas_cumprod, t), alpha_at(alphas_cumprod, s)
        x = apply_callback(callback, StepInfo(i, t, s, a_t, a_s, ddim_step(x, eps_fn(x, t, i), a_t, a_s)))
    return x
