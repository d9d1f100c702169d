"""Image preprocessing of the model-based metrics, in one place and on tensors (batched, on the
metric's device): every metric states its resize, crop and normalisation with these helpers.

Inputs are B×3×H×W float tensors in [0, 1] (what `ScoreItem` holds, stacked).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def stack(images: Sequence[torch.Tensor], device: torch.device | str = "cpu") -> torch.Tensor:
    """3×H×W tensors of one size → B×3×H×W float32 on ``device``; a clear error if sizes differ."""
    shapes = {tuple(x.shape) for x in images}
    if len(shapes) != 1:
        raise ValueError(f"images of different sizes in one batch: {sorted(shapes)}")
    return torch.stack([x.float() for x in images]).to(device)


def torchvision_size(h: int, w: int, size: int, max_size: int | None = None) -> tuple[int, int]:
    """torchvision's ``Resize(size, max_size)`` output (H, W): the shorter side ``size``, the longer
    one ``int(size·long/short)`` (truncated, as torchvision does), both scaled down when the longer
    one passes ``max_size``."""
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    if max_size is not None and new_long > max_size:
        new_short, new_long = int(max_size * new_short / new_long), max_size
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    return new_h, new_w


def resize_short_side(x: torch.Tensor, size: int, *, mode: str = "bicubic", max_size: int | None = None,
                      antialias: bool = True) -> torch.Tensor:
    """torchvision's ``Resize(size, max_size=...)`` on a batch (output size by `torchvision_size`),
    antialiased unless asked otherwise; values clamped to [0, 1]."""
    new = torchvision_size(*x.shape[-2:], size, max_size)
    if new == tuple(x.shape[-2:]):
        return x
    smooth = mode in ("bilinear", "bicubic")
    out = F.interpolate(x, size=new, mode=mode, antialias=antialias and smooth,
                        align_corners=False if smooth else None)
    return out.clamp(0, 1)


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size``×``size`` window (torchvision's CenterCrop rounding)."""
    h, w = x.shape[-2:]
    if h < size or w < size:
        raise ValueError(f"cannot centre-crop {size}x{size} from {h}x{w}")
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return x[..., top:top + size, left:left + size]


def resize_center_crop(x: torch.Tensor, size: int, *, mode: str = "bicubic") -> torch.Tensor:
    """Shorter side to ``size``, then the central square: CLIP's and DINOv2's evaluation transform."""
    return center_crop(resize_short_side(x, size, mode=mode), size)


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


def apply_mask(x: torch.Tensor, masks: Sequence[np.ndarray | None]) -> torch.Tensor:
    """Each image multiplied by its H×W region mask (PIE-Bench's way of scoring a region)."""
    out = x.clone()
    for i, m in enumerate(masks):
        if m is None:
            raise ValueError("this region needs an edit mask, and the sample has none")
        t = torch.as_tensor(np.asarray(m), dtype=x.dtype, device=x.device)
        if t.shape != x.shape[-2:]:
            raise ValueError(f"mask {tuple(t.shape)} does not match the image {tuple(x.shape[-2:])}")
        out[i] = out[i] * t
    return out
