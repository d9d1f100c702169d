"""The ``icd`` flavour equals the iCD code's own metrics (golden: icd_metrics.json, made by
tools/conformance/icd_metrics.py running yandex-research/invertible-cd's ``utils/metrics.py`` with the
``image-reward`` package, piq and transformers 4 in their own environment, on the tiny random weights of
golden_inputs.write_icd_metric_weights in the official layouts).

- images in memory (``sd1.5/edit.py``, ``generate.py``): CLIP text and image scores, DINOv2, ImageReward
  (also the default flavour: the same model and computation as the package's ``score``), LPIPS, PSNR;
- ``calc_all`` over saved edits (outputs as ``<j>.jpg``, ``load_512``) and ``calc_inversion`` over saved
  pairs: ``icd_images=files``, what the flavour does for ``edit`` and ``invert`` runs;
- the identical pair: ``inf`` for that pair, and with ``icd_psnr=list`` the official whole-list ``inf``;
- FID: each image's Inception features (16 fixed random projections of the 2048) and ``calculate_fid``.

Sizes: 512², 200 × 300, 1024², 96 × 160; prompts from 2 words to past ImageReward's 35 and CLIP's 77 tokens.
Measured: CLIP, DINOv2, LPIPS, PSNR and the FID features bit-identical on images in memory; ≤ 3e-8 on
the saved files (calc_all, calc_inversion); ImageReward ≤ 6.1e-7 (the package scores one image at a time,
the metric a batch); FID 3e-11 relative (float32 networks, the same libraries' code on both sides). The
tolerances (2e-6 absolute, 1e-12 relative for PSNR, 1e-6 for FID) leave a margin for other CPUs' kernels.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from icd_bench.metrics.base import MetricSpec, ScoreItem
from icd_bench.registry import METRICS

import golden_inputs as gi
from golden_inputs import golden

G = golden("icd_metrics.json")
ATOL = 2e-6  # cosines, LPIPS and ImageReward: float32 values near 1 (cosines) or O(0.1)


@pytest.fixture(scope="module")
def weights_root(tmp_path_factory):
    from icd_bench.metrics import weights

    root = gi.write_icd_metric_weights(tmp_path_factory.mktemp("icd-weights"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(weights.ENV, str(root))
        yield root


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).permute(2, 0, 1).float() / 255


@pytest.fixture(scope="module")
def items() -> list[ScoreItem]:
    return [ScoreItem(f"c{k}", output=_t(c["output"]), source=_t(c["source"]), target_prompt=c["prompt"])
            for k, c in enumerate(gi.icd_metric_cases())]


def score(key: str, items, task: str | None = None, **options) -> list[float]:
    spec = MetricSpec.parse(key)
    metric = METRICS.get(spec.name)(spec, "cpu", options, task=task)
    metric.check()
    if not metric.per_sample:
        return [metric.score_set(items)[spec.key]]
    return [row[spec.key] for row in metric.score(items)]


def close(got, want, atol=ATOL, rel=0.0):
    assert len(got) == len(want)
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == pytest.approx(w, abs=atol, rel=rel), (k, g, w)


@pytest.mark.parametrize(("name", "golden_key"), [("clip_t", "clip_t"), ("clip_i", "clip_i"),
                                                  ("dinov2", "dinov2"), ("imagereward", "imagereward"),
                                                  ("lpips", "lpips")])
def test_images_in_memory_equal_the_official_functions(weights_root, items, name, golden_key):
    close(score(f"{name}:whole:icd", items, icd_images="memory"), G["memory"][golden_key])
    # the default flavour is the same model: the package's score on the image as it is
    if name == "imagereward":
        close(score("imagereward", items), G["memory"]["imagereward"])


def test_generate_runs_score_images_in_memory(weights_root, items):
    close(score("clip_t:whole:icd", items, task="generate"), G["memory"]["clip_t"])


def test_psnr_per_pair_and_the_official_whole_list_inf(weights_root, items):
    values = score("psnr:whole:icd", items, icd_images="memory")
    pairs = G["memory"]["psnr_pairs"]
    close([values[k] for k in pairs], G["memory"]["psnr"], atol=0, rel=1e-12)
    assert math.isinf(values[gi.ICD_IDENTICAL])  # kept per pair, not averaged
    assert G["memory"]["psnr_whole_list"] == math.inf  # the official function: one inf for the whole list
    assert score("psnr:whole:icd", items, icd_images="memory", icd_psnr="list") == [math.inf]
    mean = score("psnr:whole:icd", [items[k] for k in pairs], icd_images="memory", icd_psnr="list")[0]
    assert mean == pytest.approx(float(np.mean(G["memory"]["psnr"])), rel=1e-12)


def test_edit_runs_score_the_saved_files_as_calc_all(weights_root, items):
    want = G["calc_all"]
    for key, golden_key in (("clip_i", "preservation_clip_score"), ("dinov2", "preservation_dinov2"),
                            ("clip_t", "editing_clip_score"), ("imagereward", "editing_imagereward")):
        close(score(f"{key}:whole:icd", items, task="edit"), want[golden_key])
    # the JPEG and load_512 matter: the files differ from the images in memory
    assert max(abs(a - b)
               for a, b in zip(want["preservation_dinov2"], G["memory"]["dinov2"], strict=True)) > 1e-5


def test_invert_runs_score_the_saved_pairs_as_calc_inversion(weights_root, items):
    want = G["calc_inversion"]
    pairs = [a for a, b in want["pairs"]]
    assert all(a == b for a, b in want["pairs"])  # os.listdir paired each file with its own
    subset = [items[k] for k in pairs]
    close(score("dinov2:whole:icd", subset, task="invert"), want["preservation_dinov2"])
    close(score("lpips:whole:icd", subset, task="invert"), want["preservation_lpips"])
    close(score("psnr:whole:icd", subset, task="invert"), want["preservation_psnr"], atol=0, rel=1e-12)


def test_fid_features_and_value_equal_calculate_fid(weights_root):
    images = [ScoreItem(f"f{k}", output=_t(a)) for k, a in enumerate(gi.icd_fid_images())]
    spec = MetricSpec.parse("fid:whole:icd")
    metric = METRICS.get("fid")(spec, "cpu", {}, task="generate")
    metric.check()
    feats = torch.from_numpy(metric.features(images))
    got = feats @ gi.icd_fid_projection()
    want = torch.tensor(G["fid_activations_projected"], dtype=torch.float64)
    assert float((got - want).norm() / want.norm()) < 1e-5
    rows = metric.features(images)
    value = metric.compute(lambda: iter([rows[:5], rows[5:]]), len(rows))[spec.key]  # streamed in two chunks
    assert value == pytest.approx(G["fid"], rel=1e-6)
