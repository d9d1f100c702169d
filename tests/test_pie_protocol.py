"""PIE-Bench's protocol, read as its authors read it and switchable where papers disagree
(`icd_bench.metrics.pie_protocol`): an empty region (``pie_undefined``), the bracket marks of its prompts
(``pie_brackets``), the forced mask frame (``pie_mask_border``) and whether the method saw the mask. The
defaults are evaluate.py's (the export golden checks them against it); here each switch is shown to move
exactly what it names, and a table to say so."""

from __future__ import annotations

import math
import types

import numpy as np
import pytest
import torch

from icd_bench.backbones.base import NFECounter
from icd_bench.errors import ConfigError
from icd_bench.methods.base import EditingMethod
from icd_bench.metrics.base import MetricSpec
from icd_bench.metrics.score import load_items, score_run
from icd_bench.registry import METRICS
from icd_bench.reports.tables import TABLES, build_table

import golden_inputs as gi

WHOLE_FRAME, BORDER_ONLY = "611000000002", "911000000003"  # golden_inputs.PIE_EXPORT_CASES' mask cases
CLIP = {"clip_model": gi.CLIP_NAME, "clip_pretrained": "openai"}


@pytest.fixture(scope="module")
def tree(pie_export_tree):
    return pie_export_tree


@pytest.fixture(scope="module")
def items(tree):
    items, failed, _ = load_items(tree["run"])
    assert not failed
    return {i.id: i for i in items}


def values(key: str, items, options=None) -> dict[str, float]:
    spec = MetricSpec.parse(key)
    metric = METRICS.get(spec.name)(spec, "cpu", options or {})
    metric.check()
    return {i.id: row[spec.key] for i, row in zip(items, metric.score(items), strict=True)}


def test_an_empty_region_is_undefined_or_zero(items):
    official = values("psnr:background:pie", list(items.values()))
    assert math.isnan(official[WHOLE_FRAME]) and not math.isnan(official[BORDER_ONLY])
    zero = values("psnr:background:pie", list(items.values()), {"pie_undefined": "zero"})
    assert zero[WHOLE_FRAME] == 0.0
    assert ({k: v for k, v in zero.items() if k != WHOLE_FRAME}
            == {k: v for k, v in official.items() if k != WHOLE_FRAME})


def test_the_forced_frame_is_background_only_when_switched_off(items):
    border = [items[BORDER_ONLY]]
    on = values("mse:background:pie", border)[BORDER_ONLY]
    off = values("mse:background:pie", border, {"pie_mask_border": "off"})[BORDER_ONLY]
    assert on != off  # the frame's pixels differ (the edit's noise reaches them): they enter the background
    # with the frame off this sample's edited part is empty
    item = border[0]
    assert item.mask.sum() == 4 * 512 - 4 and not item.meta["mask_without_border"].any()
    assert math.isnan(values("mse:edited:pie", border, {"pie_mask_border": "off"})[BORDER_ONLY])


def test_brackets_are_stripped_unless_kept(items):
    raw = [i for i in items.values() if "[" in i.meta["editing_prompt"]]
    assert raw and all("[" not in i.target_prompt for i in raw)
    strip = values("clip_t:whole:pie", raw, CLIP)
    keep = values("clip_t:whole:pie", raw, {**CLIP, "pie_brackets": "keep"})
    assert all(keep[k] != pytest.approx(strip[k], rel=1e-6) for k in strip)
    # keep is the published text as it is
    as_published = [types.SimpleNamespace(**{**i.__dict__, "target_prompt": i.meta["editing_prompt"]})
                    for i in raw]
    assert values("clip_t:whole:pie", as_published, CLIP) == pytest.approx(keep, rel=1e-6)


def test_a_misspelt_switch_stops_before_any_sample():
    with pytest.raises(ConfigError, match="pie_undefined='drop'"):
        METRICS.get("psnr")(MetricSpec.parse("psnr:background:pie"), "cpu", {"pie_undefined": "drop"})


def test_a_table_names_a_switch_set_away_from_evaluate_py(tree):
    run = tree["run"]
    score_run(run, metrics=["psnr:background:pie"], options={"pie_undefined": "zero"})
    _, notes = build_table(TABLES["piebench"], [run])
    text = "\n".join(notes)
    assert "psnr:background:pie scored with pie_undefined=zero" in text
    assert "whether the method saw the edit mask is unknown" in text  # imported without --saw-mask
    score_run(run, metrics=["psnr:background:pie"])
    _, notes = build_table(TABLES["piebench"], [run])
    assert "scored with" not in "\n".join(notes)


class _Sees(EditingMethod):
    seen = None

    def edit(self, images, samples, generators):
        type(self).seen = list(samples)
        return images


def test_a_method_gets_the_mask_only_if_it_declares_it(tree):
    from icd_bench.data.base import open_dataset

    sample = open_dataset("piebench", data_dir=tree["data"]).load(BORDER_ONLY)
    assert sample.edit_mask is not None and "mask_without_border" in sample.meta
    backbone = types.SimpleNamespace(nfe=NFECounter(), preprocess=lambda ims: torch.zeros(len(ims), 3, 8, 8))
    _Sees(backbone).run("edit", [sample], [torch.Generator()])
    assert _Sees.seen[0].edit_mask is None and "mask_without_border" not in _Sees.seen[0].meta
    assert _Sees.seen[0].target_prompt == sample.target_prompt

    class Declares(_Sees):
        sees_edit_mask = True

    Declares(backbone).run("edit", [sample], [torch.Generator()])
    assert np.array_equal(Declares.seen[0].edit_mask, sample.edit_mask)
