"""The metric API: pixel metrics by hand, masked flavours, NaN accounting, the toy oracle, scoring a run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from icd_bench.errors import ConfigError, UnknownNameError
from icd_bench.metrics.base import MetricSpec, ScoreItem
from icd_bench.metrics.score import score_run, summarize
from icd_bench.registry import METRICS


def _score(spec: str, item: ScoreItem) -> float:
    s = MetricSpec.parse(spec)
    return METRICS.get(s.name)(s).score([item])[0][s.key]


def _const(v, side=16):
    return torch.full((3, side, side), float(v))


def test_whole_image_values_by_hand():
    item = ScoreItem("a", output=_const(0.5), source=_const(0.6))
    assert _score("mse", item) == pytest.approx(0.01)
    assert _score("psnr", item) == pytest.approx(20.0)
    same = ScoreItem("b", output=_const(0.3), source=_const(0.3))
    assert _score("psnr", same) == 100.0  # capped, never inf
    assert _score("ssim", same) == pytest.approx(1.0, abs=1e-3)  # float32 variance terms
    rng = torch.Generator().manual_seed(0)
    x = torch.rand(3, 32, 32, generator=rng)
    y = (x + 0.1 * torch.randn(3, 32, 32, generator=rng)).clamp(0, 1)
    assert 0 < _score("ssim", ScoreItem("c", output=y, source=x)) < 1


def test_masked_flavours_by_hand():
    src = _const(0.5)
    out = src.clone()
    mask = np.zeros((16, 16), bool)
    mask[:, :4] = True  # the edited region: a quarter of the frame
    out[:, :, :4] = 0.9  # the edit itself (ignored by background metrics)
    out[:, :, 4:] = 0.6  # a uniform background error of 0.1
    item = ScoreItem("a", output=out, source=src, mask=mask)
    assert _score("mse:background:clean", item) == pytest.approx(0.01)  # over background pixels only
    assert _score("mse:background:pie", item) == pytest.approx(0.01 * 0.75)  # zeros of the edit count
    assert _score("psnr:background:clean", item) == pytest.approx(20.0)
    assert _score("psnr:background:pie", item) == pytest.approx(10 * math.log10(1 / 0.0075))
    assert _score("mse:edited:clean", item) == pytest.approx(0.16)
    assert _score("mse", item) == pytest.approx(0.25 * 0.16 + 0.75 * 0.01)
    # a difference inside the mask never moves a background metric
    out2 = out.clone()
    out2[:, :, :4] = 0.0
    for spec in ("mse:background:clean", "mse:background:pie", "psnr:background:pie"):
        assert (_score(spec, ScoreItem("b", output=out2, source=src, mask=mask))
                == pytest.approx(_score(spec, item)))


def test_empty_region_is_nan_and_counted_as_failed(tmp_path):
    import pandas as pd

    everything = np.ones((16, 16), bool)
    item = ScoreItem("a", output=_const(0.5), source=_const(0.6), mask=everything)
    assert math.isnan(_score("psnr:background:pie", item))
    frame = pd.DataFrame([{"id": "a", "metric": "psnr", "value": 20.0, "error": None},
                          {"id": "b", "metric": "psnr", "value": math.nan, "error": "empty"}])
    row = summarize(frame).iloc[0]
    assert (row["mean"], row["n_ok"], row["n_failed"]) == (20.0, 1, 1)


def test_metric_spelling_errors():
    assert MetricSpec.parse("psnr:background:pie") == MetricSpec("psnr", "background", "pie")
    assert MetricSpec.parse("ssim").key == "ssim"
    with pytest.raises(ConfigError, match="regions"):
        MetricSpec.parse("psnr:sky")
    with pytest.raises(ConfigError, match="flavours"):
        MetricSpec.parse("psnr:background:dirty")
    with pytest.raises(UnknownNameError, match="psnr"):
        MetricSpec.parse("psnrr")


def test_toy_oracle_metric_judges_edits():
    from icd_bench.toy.scenes import Scene, SceneObject

    src = Scene("white", (SceneObject("circle", "red", "large", "left"),))
    tgt = Scene("white", (SceneObject("circle", "blue", "large", "left"),))
    meta = {"toy_source_scene": src.to_dict(), "toy_target_scene": tgt.to_dict()}

    def item(scene):
        im, _ = scene.render()
        return ScoreItem("x", output=torch.from_numpy(np.asarray(im, np.float32) / 255).permute(2, 0, 1),
                         meta=meta)

    spec = MetricSpec.parse("toy_edit")
    good, bad = METRICS.get("toy_edit")(spec).score([item(tgt), item(src)])
    assert (good["toy_edit:success"] == 1.0 and good["toy_edit:kept"] == 1.0
            and good["toy_edit:background_psnr"] > 40)
    assert bad["toy_edit:success"] == 0.0
    assert METRICS.get("toy_match")(MetricSpec.parse("toy_match")).score([item(src)])[0]["toy_match"] == 1.0


def test_score_a_demo_run(tmp_path):
    from icd_bench.runner import RunConfig, Runner

    out = tmp_path / "run"
    Runner(RunConfig(method="ddim-toy-inversion", dataset="demo", task="invert", out=out, limit=3,
                     overrides=["num_inference_steps=5"])).run()
    frame, summary = score_run(out)
    assert (out / "metrics.parquet").is_file()
    got = dict(zip(summary["metric"], summary["n_ok"], strict=True))
    assert got["psnr"] == 3 and got["psnr:background:pie"] == 3 and got["toy_match"] == 3
    recs = frame[frame.metric == "psnr"].set_index("id")["value"]
    assert recs.between(10, 100).all()


def test_a_failed_sample_counts_as_failed_under_every_value_of_its_metric(tmp_path, monkeypatch):
    from icd_bench.metrics import toy
    from icd_bench.runner import RunConfig, Runner

    out = tmp_path / "run"
    Runner(RunConfig(method="ddim-toy", dataset="demo", out=out, limit=2,
                     overrides=["num_inference_steps=3"])).run()
    real = toy._scenes
    first = sorted(p.stem for p in (out / "images").iterdir())[0]

    def scenes(item):
        if item.id == first:
            raise ValueError("unreadable scene")
        return real(item)

    monkeypatch.setattr(toy, "_scenes", scenes)
    frame, summary = score_run(out, metrics=["toy_edit"])
    counts = summary.set_index("metric")[["n_ok", "n_failed"]].to_dict("index")
    assert set(counts) == set(toy.ToyEdit.KEYS)  # no row under the bare spec
    assert all(c == {"n_ok": 1, "n_failed": 1} for c in counts.values())
    assert frame[frame.id == first]["error"].str.contains("unreadable scene").all()


def test_metric_classes_are_checked_when_registered():
    from icd_bench.metrics.base import Metric
    from icd_bench.registry import Registry

    reg = Registry("metric", group=None, base="icd_bench.metrics.base:Metric")
    with pytest.raises(TypeError, match="subclass of icd_bench.metrics.base.Metric"):
        reg.add("plain", type("Plain", (), {}))
    with pytest.raises(TypeError, match="needs has"):
        type("Bad", (Metric,), {"needs": ("sorce",)})
    with pytest.raises(ValueError, match="no dataset metadata"):
        METRICS.get("toy_match")(MetricSpec.parse("toy_match")).score([ScoreItem("x", output=_const(0.5))])
