"""What every sampler loop of `icd_bench.diffusion` shares: the noise-prediction callable it calls and
the one callback signature it reports each step through.

A loop calls ``eps_fn(x, t, i) -> ε`` (``t`` the timestep ε is evaluated at, ``i`` the step's index on
its grid) and, after each step, ``callback(StepInfo)``; a tensor the callback returns replaces the
latents (P2P's local blend does so). Every loop fills `StepInfo` the same way: ``index`` is the step's
position on its grid (0 = the noisiest sampling step, also when a loop starts later on the grid or
walks it upwards; `ddim.ddim_path`, which walks a given path, its position on the path), ``t_from``
the timestep the step leaves and ``t_to`` the one it lands on (`schedule.CLEAN` for the clean end),
``alpha_from`` / ``alpha_to`` their ᾱ, ``x`` the landed latents.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

EpsFn = Callable[[torch.Tensor, int, int], torch.Tensor]


@dataclass(frozen=True)
class StepInfo:
    """One finished step of a sampler loop (see the module doc)."""

    index: int
    t_from: int
    t_to: int
    alpha_from: float
    alpha_to: float
    x: torch.Tensor


Callback = Callable[[StepInfo], "torch.Tensor | None"]


def apply_callback(callback: Callback | None, info: StepInfo) -> torch.Tensor:
    """Report a step to ``callback`` (if any); the tensor it returns (if any) replaces the latents."""
    if callback is None:
        return info.x
    out = callback(info)
    return info.x if out is None else out
