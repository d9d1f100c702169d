"""PSNR, MSE and SSIM on [0, 1] images: whole, background and edited region, ``pie`` and ``clean``.

- ``pie`` (PIE-Bench, `evaluation/matrics_calculator.py`): both images multiplied by the region
  mask, then torchmetrics' PeakSignalNoiseRatio(data_range=1) / MeanSquaredError /
  StructuralSimilarityIndexMeasure(data_range=1) over the whole frame, zeros included. An empty
  region gives NaN (PIE-Bench's "nan"), counted as failed rather than averaged.
- ``clean``: MSE over the region's pixels only, PSNR = 10·log10(1 / MSE), SSIM = the mean of
  torchmetrics' SSIM map over the region's pixels.

PSNR of identical images is capped at 100 dB (`psnr_from_mse`) so averages stay finite.

``psnr:whole:icd`` is the iCD paper's (``utils/metrics.py`` ``calculate_psnr``, Table 2): both images
as the official code reads them (`icd_protocol.view`), as uint8 arrays in float64,
``20·log10(255/√mse)`` per pair, no cap. Identical images give ``inf``, kept as that pair's value and
not averaged. The official function instead returns a single ``inf`` for the whole list as soon as one
pair is identical (a defect: a run's mean becomes ``inf``, and ``calc_inversion`` then fails writing it);
``--option icd_psnr=list`` reproduces that, turning the metric into one value per run (the mean of
the per-pair values, or ``inf``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from icd_bench.errors import ConfigError
from icd_bench.imaging import psnr_from_mse
from icd_bench.metrics import icd_protocol, pie_protocol
from icd_bench.metrics.base import FLAVOURS, ICD, REGIONS, Chunks, Metric, ScoreItem
from icd_bench.registry import METRICS


def _pair(item: ScoreItem) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = item.output.double(), item.source.double()
    if a.shape != b.shape:
        raise ValueError(f"output {tuple(a.shape)} and source {tuple(b.shape)} differ in size")
    return a, b


class _PixelMetric(Metric):
    regions = REGIONS
    flavours = FLAVOURS
    option_keys = pie_protocol.OPTION_KEYS

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
                    value = self.empty_region()  # nothing to score
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

    higher_is_better = False

    def whole(self, a, b):
        from torchmetrics.functional import mean_squared_error

        return float(mean_squared_error(a.contiguous(), b.contiguous()))

    def masked(self, a, b, m):
        return float((a - b).pow(2)[:, m].mean())


def icd_psnr(a: np.ndarray, b: np.ndarray) -> float:
    """``calculate_psnr``'s value for one pair of uint8 images: float64, ``20·log10(255/√mse)``, inf
    when equal."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 20 * math.log10(255.0 / math.sqrt(mse))


@METRICS.register("psnr")
class PSNR(_PixelMetric):
    """PSNR in dB of [0, 1] images, capped at 100 dB (pie and clean; icd: the iCD paper's, uncapped)."""

    flavours = (*FLAVOURS, ICD)
    option_keys = (*pie_protocol.OPTION_KEYS, *icd_protocol.OPTION_KEYS, "icd_psnr")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        mode = self.options.get("icd_psnr", "pairs").strip().lower() if self.spec.flavour == ICD else "pairs"
        if mode not in ("pairs", "list"):
            raise ConfigError(f"icd_psnr={mode!r}: choose pairs (one value per pair, the default) or list "
                              "(the official function's one value per run, inf if any pair is identical)")
        self.per_sample = mode == "pairs"

    def check(self) -> None:
        if self.spec.flavour == ICD:
            icd_protocol.check_options(self.options)

    def _icd_values(self, items: Sequence[ScoreItem]) -> list[float]:
        self.require(items)
        outputs = icd_protocol.views([it.output for it in items], role="output", options=self.options,
                                     task=self.task)
        sources = icd_protocol.views([it.source for it in items], role="source", options=self.options,
                                     task=self.task)
        values = []
        for out, src in zip(outputs, sources, strict=True):
            a, b = np.asarray(out), np.asarray(src)
            if a.shape != b.shape:
                raise ValueError(f"output {a.shape} and source {b.shape} differ in size")
            values.append(icd_psnr(a, b))
        return values

    def score(self, items: Sequence[ScoreItem]) -> list[dict[str, float]]:
        if self.spec.flavour != ICD:
            return super().score(items)
        return [{self.spec.key: v} for v in self._icd_values(items)]

    def features(self, items: Sequence[ScoreItem]) -> np.ndarray:
        return np.array(self._icd_values(items), dtype=np.float64).reshape(-1, 1)

    def compute(self, chunks: Chunks, n: int) -> dict[str, float]:
        """``np.mean(calculate_psnr(...))``: inf when any pair is identical (the function returned inf)."""
        values = np.concatenate([c[:, 0] for c in chunks()]) if n else np.zeros(0)
        if not len(values):
            raise ValueError("no pairs to average")
        return {self.spec.key: math.inf if np.isinf(values).any() else float(np.mean(values))}

    def undefined(self, key: str, value: float) -> str:
        if self.spec.flavour == ICD and math.isinf(value):
            return ("identical images: PSNR is infinite (the official calculate_psnr then returns inf for "
                    "the whole run; --option icd_psnr=list reproduces that)")
        return super().undefined(key, value)

    def whole(self, a, b):
        return psnr_from_mse(float((a - b).pow(2).mean()))  # = torchmetrics' PSNR(data_range=1), capped

    def masked(self, a, b, m):
        return psnr_from_mse(float((a - b).pow(2)[:, m].mean()))


@METRICS.register("ssim")
class SSIM(_PixelMetric):
    """SSIM (torchmetrics, Gaussian 11×11, σ 1.5) of [0, 1] images (whole, background, edited; pie and clean).
    """


    def whole(self, a, b):
        from torchmetrics.functional.image import structural_similarity_index_measure as ssim

        return float(ssim(a[None].float(), b[None].float(), data_range=1.0))

    def masked(self, a, b, m):
        from torchmetrics.functional.image import structural_similarity_index_measure as ssim

        _, full = ssim(a[None].float(), b[None].float(), data_range=1.0, return_full_image=True)
        return float(full[0].mean(0)[m].mean())
