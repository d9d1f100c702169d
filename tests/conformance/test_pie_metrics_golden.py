"""PIE-Bench's pixel metrics equal its own evaluation code's (golden: pie_metrics.json): PSNR, MSE and
SSIM of the whole frame, the unedited part and the edited part as ``evaluation/evaluate.py`` computes
them (both images multiplied by the region's 0/1 mask, then scored over the whole frame), on masks
decoded from PIE-Bench's run-length pairs (the 1-pixel border forced to 1, a run past the end cut).

Tolerance: 1e-6 relative (float32, the same torchmetrics calls in another grouping).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from icd_bench.data.piebench import decode_mask
from icd_bench.metrics.base import MetricSpec, ScoreItem
from icd_bench.registry import METRICS

import golden_inputs as gi
from golden_inputs import golden

G = golden("pie_metrics.json")["cases"]
REGIONS = {"": "whole", "_unedit_part": "background", "_edit_part": "edited"}


def _image(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).permute(2, 0, 1).float() / 255


@pytest.mark.parametrize("k", range(3))
def test_pixel_metrics_equal_pie_benchs_evaluation(k):
    case, golden_case = gi.pie_metric_cases()[k], G[k]
    mask = decode_mask(case["runs"], (gi.PIE_SIDE, gi.PIE_SIDE))
    assert np.array_equal(mask, np.asarray(golden_case["mask"], dtype=bool))  # the same run-length decoding
    item = ScoreItem("x", output=_image(case["edited"]), source=_image(case["source"]), mask=mask)
    for metric in gi.PIE_METRICS:
        for suffix, region in REGIONS.items():
            spec = MetricSpec.parse(f"{metric}:{region}:pie")
            value = METRICS.get(metric)(spec, "cpu", None).score([item])[0][spec.key]
            want = golden_case["values"][metric + suffix]
            assert value == pytest.approx(want, rel=1e-6), (metric, region, value, want)
