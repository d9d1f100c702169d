"""Classifier-free guidance (CFG) and dynamic (step) CFG.

``ε_w = ε(x, t, ∅) + w·(ε(x, t, c) − ε(x, t, ∅))`` (after eq. 1). w = 1 is unguided and costs one
UNet evaluation; any other w costs two, batched in one call.

Dynamic CFG in its step form (CADS with τ1 = τ2 = τ, Section 3.4): guidance is off (w = 1) while
t/T > τ and on at full scale for t/T ≤ τ, where T is the number of training timesteps.
"""

from __future__ import annotations

import torch

from icd_bench.backbones.base import Backbone, PromptEmbeds


def cfg_combine(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, w: float) -> torch.Tensor:
    """ε_w = ε_∅ + w (ε_c − ε_∅)."""
    return eps_uncond + w * (eps_cond - eps_uncond)


def dynamic_guidance_scale(t: int, num_train_timesteps: int, w: float, tau: float) -> float:
    """Step CFG: 1 (unguided) when t/T > τ, else w. τ ≥ 1 means always guided."""
    return 1.0 if t / num_train_timesteps > tau else float(w)


def guided_noise(backbone: Backbone, x: torch.Tensor, t: int, cond: PromptEmbeds,
                 uncond: PromptEmbeds | None, w: float | torch.Tensor,
                 timestep_cond: torch.Tensor | None = None, *, branches: int = 1) -> torch.Tensor:
    """ε_w(x, t, c) with the fewest UNet rows: one call of B rows when w = 1, else one of 2B.

    ``w`` is one scale, or a (B,) tensor of per-row scales (e.g. a source branch guided less than
    its target branch). ``uncond`` may be None only when w = 1. ``branches``: see
    `Backbone.predict_noise`.
    """
    if torch.is_tensor(w):
        w = w.to(x.device, x.dtype).view(-1, *([1] * (x.ndim - 1)))
    elif w == 1.0:
        return backbone.predict_noise(x, t, cond, timestep_cond, branches=branches)
    if uncond is None:
        raise ValueError("classifier-free guidance with w != 1 needs the unconditional embeddings")
    both = backbone.predict_noise(torch.cat([x, x]), t, PromptEmbeds.cat([uncond, cond]),
                                  None if timestep_cond is None else torch.cat([timestep_cond] * 2),
                                  branches=branches)
    eps_uncond, eps_cond = both.chunk(2)
    return cfg_combine(eps_uncond, eps_cond, w)
