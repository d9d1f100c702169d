"""PSNR, MSE and SSIM on [0, 1] images: whole, background and edited region, ``pie`` and ``clean``.

- ``pie`` (PIE-Bench, `evaluation/matrics_calculator.py`): both images multiplied by the region
  mask, then torchmetrics' PeakSignalNoiseRatio(data_range=1) / MeanSquaredError /
  StructuralSimilarityIndexMeasure(data_range=1) over the whole frame, zeros included. An empty
  region gives NaN (PIE-Bench's "nan"), counted as failed rather than averaged.
- ``clean``: MSE over the region's pixels only, PSNR = 10·log10(1 / MSE), SSIM = the mean of
  torchmetrics' SSIM map over the region's pixels.

PSNR of identical images is capped at 100 dB (`psnr_from_mse`) so averages stay finite.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from icd_bench.imaging import psnr_from_mse
from icd_bench.metrics.base import FLAVOURS, REGIONS, Metric, ScoreItem
from icd_bench.registry import METRICS


def _pair(item: ScoreItem) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = item.output.double(), item.source.double()
    if a.shape != b.shape:
        raise ValueError(f"output {tuple(a.shape)} and source {tuple(b.shape)} differ in size")
    return a, b


class _PixelMetric(Metric):
    regions = REGIONS
    flavours = FLAVOURS

    def score(self, items: Sequence[ScoreItem]) -> list[dict[str, float]]:
        self.require(items)
        out = []
        for item in items:
            a, b = _pair(item)
            region = self.region_mask(item)
            if region is None:
                value = self.whole(a, b)
            else:
                m = torch.from_numpy(region).to(a)
                if m.shape != a.shape[-2:]:
                    raise ValueError(f"mask {tuple(m.shape)} does not match the image {tuple(a.shape[-2:])}")
                if not bool(m.any()):
                    value = float("nan")  # an empty region: nothing to score
                elif self.spec.flavour == "pie":
                    value = self.whole(a * m, b * m)
                else:
                    value = self.masked(a, b, m.bool())
            out.append({self.spec.key: value})
        return out

    def whole(self, a: torch.Tensor, b: torch.Tensor) -> float:
        raise NotImplementedError

    def masked(self, a: torch.Tensor, b: torch.Tensor, m: torch.Tensor) -> float:
        raise NotImplementedError


@METRICS.register("mse")
class MSE(_PixelMetric):
    """Mean squared error of [0, 1] images (whole, background, edited; pie and clean)."""

    name = "mse"
    higher_is_better = False

    def whole(self, a, b):
        from torchmetrics.functional import mean_squared_error

        return float(mean_squared_error(a.contiguous(), b.contiguous()))

    def masked(self, a, b, m):
        return float((a - b).pow(2)[:, m].mean())


@METRICS.register("psnr")
class PSNR(_PixelMetric):
    """PSNR in dB of [0, 1] images, capped at 100 dB (whole, background, edited; pie and clean)."""

    name = "psnr"

    def whole(self, a, b):
        return psnr_from_mse(float((a - b).pow(2).mean()))  # = torchmetrics' PSNR(data_range=1), capped

    def masked(self, a, b, m):
        return psnr_from_mse(float((a - b).pow(2)[:, m].mean()))


@METRICS.register("ssim")
class SSIM(_PixelMetric):
    """SSIM (torchmetrics, Gaussian 11×11, σ 1.5) of [0, 1] images (whole, background, edited; pie and clean)."""

    name = "ssim"

    def whole(self, a, b):
        from torchmetrics.functional.image import structural_similarity_index_measure as ssim

        return float(ssim(a[None].float(), b[None].float(), data_range=1.0))

    def masked(self, a, b, m):
        from torchmetrics.functional.image import structural_similarity_index_measure as ssim

        _, full = ssim(a[None].float(), b[None].float(), data_range=1.0, return_full_image=True)
        return float(full[0].mean(0)[m].mean())
