"""The guidance embedding of guidance-distilled UNets (``time_cond_proj_dim``).

w enters the UNet as an LCM-style sinusoidal embedding of 1000·c, where c is the *code value* of
the guidance scale. The public iCD checkpoints use c = w − 1, so c = 0 is unguided (w = 1) — this
module takes the paper's w and applies that offset in one place.
"""

from __future__ import annotations

import math

import torch

#: c = w − GUIDANCE_CODE_OFFSET (the released checkpoints' convention).
GUIDANCE_CODE_OFFSET = 1.0


def guidance_code(w: float | torch.Tensor, offset: float = GUIDANCE_CODE_OFFSET) -> torch.Tensor:
    """The paper's CFG scale w → the code value the embedding takes (w − 1 by default)."""
    return torch.as_tensor(w, dtype=torch.float32) - offset


def guidance_embedding(code: torch.Tensor, dim: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Sinusoidal embedding of 1000·code (B,) → (B, dim), as LCM / diffusers'
    ``get_guidance_scale_embedding``: [sin(1000·c·f_k), cos(1000·c·f_k)], f_k = 10000^(−k/(d/2−1))."""
    code = torch.as_tensor(code, dtype=torch.float32).reshape(-1) * 1000.0
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(10000.0) / (half - 1)))
    args = code[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    if dim % 2:
        emb = torch.nn.functional.pad(emb, (0, 1))
    return emb.to(dtype)
