"""PIE-Bench's model-based metrics equal its own evaluation code's (golden: pie_model_metrics.json, made by
tools/conformance/pie_model_metrics.py with ``evaluation/evaluate.py``'s ``calculate_metric``):

- ``structure_distance:whole:pie`` — its ``LossG`` on DINO ViT-B/8 (facebookresearch/dino's model from
  its hub entry point) with random weights (golden_inputs.dino_state_dict), here the same weights in
  transformers' ``ViTModel`` layout: three 64² pairs and a 64 × 128 one (position embeddings
  interpolated to a 28 × 56 grid). Measured 7e-7 relative; tolerance 1e-5: the value is a mean of squared
  differences of cosine similarities (DINO's attention and transformers' in float32, on inputs of
  magnitude ~10³ — PIE-Bench's unscaled 0–255 pixels).
- ``clip_t:whole:pie`` / ``clip_t:edited:pie`` — torchmetrics' ``CLIPScore`` (PIE-Bench's CLIP similarity
  of the source image with the source prompt, of the edited image with the target prompt, and of the
  edited image times the edit mask) on a tiny random CLIP (golden_inputs.CLIP_CONFIG), here through
  open_clip with the same weights. Measured 1.6e-6 relative; tolerance 1e-5 (float32, two implementations
  of one network).
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

G = golden("pie_model_metrics.json")


def _image(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).permute(2, 0, 1).float() / 255


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory):
    """A weights folder holding the golden DINO ViT-B/8 (``dino-vitb8``) and the tiny CLIP as an open_clip
    checkpoint (``clip-icd-golden-clip-openai``), its architecture registered with open_clip."""
    from icd_bench.metrics import weights

    root = gi.write_pie_weights(tmp_path_factory.mktemp("weights"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(weights.ENV, str(root))
        yield root


def _score(name: str, key: str, items: list[ScoreItem], options: dict | None = None) -> list[float]:
    spec = MetricSpec.parse(key)
    metric = METRICS.get(name)(spec, "cpu", options or {})
    metric.check()
    return [row[spec.key] for row in metric.score(items)]


def test_structure_distance_equals_pie_benchs_evaluation(weights_dir):
    cases = gi.pie_structure_cases()
    items = [ScoreItem(f"c{k}", output=_image(c["edited"]), source=_image(c["source"]))
             for k, c in enumerate(cases)]
    values = _score("structure_distance", "structure_distance:whole:pie", items)
    for k, (value, want) in enumerate(zip(values, G["structure"], strict=True)):
        assert value == pytest.approx(want["structure_distance"], rel=1e-5), (k, value, want)
    # the flavour matters: DINO on [0, 1]-normalised pixels is another number
    clean = _score("structure_distance", "structure_distance:whole:clean", items[:1])[0]
    assert (abs(clean - G["structure"][0]["structure_distance"])
            > 0.05 * G["structure"][0]["structure_distance"])


def test_clip_similarities_equal_pie_benchs_evaluation(weights_dir):
    options = {"clip_model": gi.CLIP_NAME, "clip_pretrained": "openai"}
    sources, outputs = [], []
    for k, (case, (src_prompt, tgt_prompt)) in enumerate(zip(gi.pie_metric_cases(),
                                                             gi.CLIP_PROMPTS, strict=True)):
        mask = decode_mask(case["runs"], (gi.PIE_SIDE, gi.PIE_SIDE))
        src, out = _image(case["source"]), _image(case["edited"])
        sources.append(ScoreItem(f"s{k}", output=src, source=src, mask=mask, target_prompt=src_prompt))
        outputs.append(ScoreItem(f"o{k}", output=out, source=src, mask=mask, target_prompt=tgt_prompt))
    got = {"clip_similarity_source_image": _score("clip_t", "clip_t:whole:pie", sources, options),
           "clip_similarity_target_image": _score("clip_t", "clip_t:whole:pie", outputs, options),
           "clip_similarity_target_image_edit_part": _score("clip_t", "clip_t:edited:pie", outputs, options)}
    for name, values in got.items():
        for k, value in enumerate(values):
            want = G["clip"][k][name]
            assert value == pytest.approx(want, rel=1e-5), (name, k, value, want)
    # the region matters: masking changes the score
    assert got["clip_similarity_target_image"][0] != pytest.approx(
        got["clip_similarity_target_image_edit_part"][0], rel=1e-3)
