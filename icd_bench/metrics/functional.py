"""Plain metric functions on image tensors in [0, 1]."""

from __future__ import annotations

import math

import torch

#: PSNR of identical images would be +inf; it is capped here so averages stay finite.
PSNR_CAP_DB = 100.0


def psnr_from_mse(mse: float, data_range: float = 1.0) -> float:
    """PSNR in dB of a mean squared error, capped at `PSNR_CAP_DB` (identical images: the cap)."""
    if mse <= data_range**2 * 10 ** (-PSNR_CAP_DB / 10):
        return PSNR_CAP_DB
    return min(PSNR_CAP_DB, 10 * math.log10(data_range**2 / mse))


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image PSNR in dB of (…×)3×H×W tensors in [0, data_range], capped at `PSNR_CAP_DB`."""
    if a.shape != b.shape:
        raise ValueError(f"psnr needs images of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = a.double(), b.double()
    mse = (a - b).pow(2).flatten(start_dim=-3).mean(-1)
    value = 10 * torch.log10(data_range**2 / mse.clamp_min(1e-30))
    return value.clamp(max=PSNR_CAP_DB)
