"""Weight resolution (explicit dir / mapping, fail-fast message), FID through a custom extractor,
set metrics and options in the scorer, and pixel metrics against scikit-image."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from icd_bench.errors import ConfigError
from icd_bench.metrics import weights
from icd_bench.metrics.base import MetricSpec, ScoreItem
from icd_bench.registry import METRICS

pytestmark = pytest.mark.usefixtures("one_thread")


# -- weight resolution -----------------------------------------------------------------------
def test_explicit_root_and_mapping(tmp_path, monkeypatch):
    root = tmp_path / "w"
    (root / "lpips-alex").mkdir(parents=True)
    (root / "lpips-alex" / "alexnet-owt-7be5be79.pth").write_bytes(b"x")
    (root / "dinov2-base").mkdir()
    (root / "dinov2-base" / "config.json").write_text("{}")
    other = tmp_path / "elsewhere.pth"
    other.write_bytes(b"y")
    monkeypatch.setenv(weights.ENV, f"{root}, lpips-vgg={other}")
    assert weights.resolve("lpips-alex") == root / "lpips-alex" / "alexnet-owt-7be5be79.pth"
    assert weights.resolve("dinov2-base") == root / "dinov2-base"
    assert weights.resolve("lpips-vgg") == other  # KEY=PATH: one weight anywhere


def test_missing_weight_names_key_layout_and_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(weights.ENV, str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # no cached copy either
    with pytest.raises(weights.WeightsNotFoundError) as err:
        weights.resolve("dinov2-base", needed_by="metric 'dinov2'")
    msg = str(err.value)
    for part in ("metric 'dinov2'", "'dinov2-base'", "facebook/dinov2-base",
                 "DIR/dinov2-base/ holding config.json", "--weights-dir", weights.ENV, "offline"):
        assert part in msg
    with pytest.raises(weights.WeightsNotFoundError, match="alexnet-owt-7be5be79.pth"):
        weights.resolve("lpips-alex")


def test_mapping_to_a_wrong_place_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv(weights.ENV, f"dinov2-base={tmp_path / 'nothing-here'}")
    with pytest.raises(weights.WeightsNotFoundError, match="does not hold"):
        weights.resolve("dinov2-base")


def test_torch_hub_cache_is_a_local_cache(tmp_path, monkeypatch):
    monkeypatch.delenv(weights.ENV, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = Path(torch.hub.get_dir()) / "checkpoints" / "squeezenet1_1-b8a52dc0.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"z")
    assert weights.resolve("lpips-squeeze") == cached


# -- FID --------------------------------------------------------------------------------------
def tiny_extractor(device):
    """A fixed random projection of 8×8-pooled pixels: offline stand-in for Inception."""
    proj = torch.randn(3 * 8 * 8, 16, generator=torch.Generator().manual_seed(0),
                       dtype=torch.float64).to(device)

    def run(x: torch.Tensor) -> torch.Tensor:
        assert x.shape[-2:] == (299, 299) and float(x.max()) > 1.0  # clean-fid's 299×299, 0-255 input
        pooled = torch.nn.functional.adaptive_avg_pool2d(x.double() / 255.0, 8).flatten(1)
        return pooled @ proj

    return run


def _images(n: int, shift: float, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(3, 32, 32, generator=g) * 0.6 + shift).clamp(0, 1) for _ in range(n)]


def _fid(items, ref, **extra) -> float:
    spec = MetricSpec.parse("fid")
    metric = METRICS.get("fid")(spec, "cpu",
                                {"fid_ref": str(ref), "fid_extractor": f"{__name__}:tiny_extractor", **extra})
    metric.check()
    return metric.score_set(items)["fid"]


def _write(folder: Path, images) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images):
        arr = (im.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(arr).save(folder / f"{i:03d}.png")
    return folder


def test_fid_of_a_set_with_itself_is_zero_and_shifted_sets_are_far(tmp_path):
    from icd_bench.metrics.fid import save_reference_stats

    imgs = _images(40, 0.0, 0)
    ref = _write(tmp_path / "ref", imgs)
    items = [ScoreItem(str(i), output=im) for i, im in enumerate(imgs)]
    assert _fid(items, ref) == pytest.approx(0.0, abs=1e-3)
    shifted = [ScoreItem(str(i), output=im) for i, im in enumerate(_images(40, 0.35, 1))]
    far = _fid(shifted, ref)
    assert far > 0.5
    other = [ScoreItem(str(i), output=im) for i, im in enumerate(_images(40, 0.0, 2))]
    assert 0 < _fid(other, ref) < far  # same distribution, other draws: close, not zero
    stats = save_reference_stats(ref, tmp_path / "ref.npz", extractor=f"{__name__}:tiny_extractor")
    assert _fid(shifted, stats) == pytest.approx(far, rel=1e-6)  # precomputed statistics = the folder


def test_fid_needs_a_reference_and_says_so(tmp_path):
    metric = METRICS.get("fid")(MetricSpec.parse("fid"), "cpu", {})
    with pytest.raises(ConfigError, match="fid_ref"):
        metric.check()
    bad = tmp_path / "bad.npz"
    np.savez(bad, other=np.zeros(3))
    with pytest.raises(ConfigError, match="mu"):
        _fid([ScoreItem("a", output=torch.zeros(3, 8, 8))] * 3, bad)


def test_score_run_with_a_set_metric_and_options(tmp_path):
    from icd_bench.metrics.score import SET_ID, score_run
    from icd_bench.runner import RunConfig, Runner

    out = tmp_path / "run"
    Runner(RunConfig(method="ddim-toy-inversion", dataset="demo", task="invert", out=out, limit=3,
                     overrides=["num_inference_steps=2"])).run()
    ref = _write(tmp_path / "ref", _images(5, 0.2, 3))
    frame, summary = score_run(out, ["psnr", "fid"],
                               options={"fid_ref": str(ref), "fid_extractor": f"{__name__}:tiny_extractor"})
    fid_rows = frame[frame.metric == "fid"]
    assert list(fid_rows["id"]) == [SET_ID] and math.isfinite(fid_rows["value"].iloc[0])
    assert dict(zip(summary.metric, summary.n_ok, strict=True)) == {"psnr": 3, "fid": 1}
    with pytest.raises(ConfigError, match="lpips_nett"):
        score_run(out, ["psnr"], options={"lpips_nett": "alex"})  # a typo is not silently ignored


# -- pixel metrics against scikit-image ---------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pixel_metrics_agree_with_scikit_image(seed):
    skm = pytest.importorskip("skimage.metrics")
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(3, 48, 48, generator=g, dtype=torch.float64)
    y = (x + 0.15 * torch.randn(3, 48, 48, generator=g, dtype=torch.float64)).clamp(0, 1)
    item = ScoreItem("a", output=y, source=x)
    xn, yn = x.permute(1, 2, 0).numpy(), y.permute(1, 2, 0).numpy()

    def ours(spec):
        s = MetricSpec.parse(spec)
        return METRICS.get(s.name)(s).score([item])[0][s.key]

    assert ours("mse") == pytest.approx(skm.mean_squared_error(xn, yn), rel=1e-9)
    assert ours("psnr") == pytest.approx(skm.peak_signal_noise_ratio(xn, yn, data_range=1.0), rel=1e-9)
    # torchmetrics and scikit-image both use an 11×11 Gaussian window, σ 1.5, K1 0.01, K2 0.03;
    # torchmetrics averages the map over the valid (unpadded) region, as skimage's
    # gaussian_weights + use_sample_covariance=False does after cropping its borders
    ref = skm.structural_similarity(xn, yn, data_range=1.0, channel_axis=2, gaussian_weights=True,
                                    sigma=1.5, use_sample_covariance=False)
    assert ours("ssim") == pytest.approx(ref, abs=2e-3)


def test_score_cli_names_every_missing_weight_before_scoring(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from icd_bench.cli import app
    from icd_bench.runner import RunConfig, Runner

    out = tmp_path / "run"
    Runner(RunConfig(method="ddim-toy-inversion", dataset="demo", task="invert", out=out, limit=1,
                     overrides=["num_inference_steps=2"])).run()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.delenv(weights.ENV, raising=False)
    result = CliRunner().invoke(app, ["score", str(out), "--metrics", "psnr,lpips,dinov2",
                                      "--weights-dir", str(tmp_path)],
                                catch_exceptions=True)
    assert result.exit_code != 0
    msg = str(result.exception)
    assert "2 metrics cannot run" in msg and "lpips-alex" in msg and "dinov2-base" in msg
    assert not (out / "metrics.parquet").exists()  # nothing scored
