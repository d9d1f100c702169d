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


@pytest.fixture
def squeeze_trunk(tmp_path, monkeypatch):
    """golden_inputs.lpips_trunk as the ``lpips-squeeze`` weight file
    (torchvision's name) in a weights folder."""
    from icd_bench.metrics import perceptual, weights

    spec = perceptual.NETS["squeeze"]
    (tmp_path / spec.key).mkdir()
    torch.save(gi.lpips_trunk(), tmp_path / spec.key / spec.files[0])
    monkeypatch.setenv(weights.ENV, str(tmp_path))


@pytest.mark.parametrize("k", range(3))
def test_lpips_equals_pie_benchs_evaluation(k, squeeze_trunk):
    """LPIPS ``pie`` with ``lpips_net = squeeze``: PIE-Bench's torchmetrics LPIPS (SqueezeNet, its lin
    layers) of the whole frame and of the masked frames, on the same random trunk. Tolerance 1e-5
    relative (float32; lpips' and torchmetrics' implementations of the same network)."""
    case, golden_case = gi.pie_metric_cases()[k], G[k]
    mask = decode_mask(case["runs"], (gi.PIE_SIDE, gi.PIE_SIDE))
    item = ScoreItem("x", output=_image(case["edited"]), source=_image(case["source"]), mask=mask)
    for suffix, region in REGIONS.items():
        spec = MetricSpec.parse(f"lpips:{region}:pie")
        metric = METRICS.get("lpips")(spec, "cpu", {"lpips_net": "squeeze"})
        metric.check()
        value = metric.score([item])[0][spec.key]
        want = golden_case["lpips"]["lpips" + suffix]
        assert value == pytest.approx(want, rel=1e-5), (region, value, want)
