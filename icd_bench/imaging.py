"""Image arithmetic every layer shares: tensors ↔ 8-bit images and plain PSNR (on tensors in [0, 1]).
The run store writes images with `tensor_to_pil`, the toy oracle and the metrics read PSNR here."""

from __future__ import annotations

import math

import torch
from PIL import Image

#: PSNR of identical images would be +inf; it is capped here so averages stay finite.
PSNR_CAP_DB = 100.0


#: The image files icd-bench reads from a folder it is pointed at (FID references, imported outputs).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def tensor_to_pil(image: torch.Tensor) -> Image.Image:
    """3×H×W float tensor in [0, 1] → 8-bit RGB image (round half up, as torchvision does)."""
    arr = image.detach().float().clamp(0, 1).mul(255).add(0.5).floor().to(torch.uint8)
    return Image.fromarray(arr.permute(1, 2, 0).cpu().numpy())


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
