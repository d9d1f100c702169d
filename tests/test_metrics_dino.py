"""DINOv2 similarity and PIE-Bench's structure distance on tiny random transformers models saved in
the real on-disk layouts (``ROOT/dinov2-base``, ``ROOT/dino-vitb8``) and loaded back through the
weight resolution (``ICD_BENCH_WEIGHTS``): invariants that hold for any weights, PIE-Bench's
pipeline written out by hand, and the fail-fast on missing weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from icd_bench.errors import ConfigError
from icd_bench.metrics import dino, weights
from icd_bench.metrics.base import MetricSpec, ScoreItem
from icd_bench.metrics.preprocess import torchvision_size
from icd_bench.registry import METRICS

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A weights root with a tiny DINOv2 (hidden 32, patch 14) and a tiny 12-block DINO ViT
    (hidden 16, patch 8, trained at 224: 28×28 position embeddings)."""
    from transformers import Dinov2Config, Dinov2Model, ViTConfig, ViTModel

    root = tmp_path_factory.mktemp("dino-weights")
    torch.manual_seed(0)
    Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2,
                             patch_size=14, image_size=224)).save_pretrained(root / "dinov2-base")
    vit = ViTModel(ViTConfig(hidden_size=16, num_hidden_layers=12, num_attention_heads=2,
                             intermediate_size=32, patch_size=8, image_size=224, qkv_bias=True),
                   add_pooling_layer=False)
    # random biases and LayerNorm gains: nothing degenerate for the invariants to hide in
    with torch.no_grad():
        for name, p in vit.named_parameters():
            if "layernorm" in name and name.endswith("weight"):
                p.normal_(1.0, 0.2)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.1)
    vit.save_pretrained(root / "dino-vitb8")
    return root


@pytest.fixture
def weights_env(root, tmp_path, monkeypatch):
    """ICD_BENCH_WEIGHTS=ROOT, and no machine cache that could stand in for it."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv(weights.ENV, str(root))
    return root


def _metric(spec: str, options: dict[str, str] | None = None):
    s = MetricSpec.parse(spec)
    m = METRICS.get(s.name)(s, "cpu", options)
    m.check()
    return m


def _values(spec: str, pairs: list[tuple[torch.Tensor, torch.Tensor]], options=None) -> list[float]:
    m = _metric(spec, options)
    items = [ScoreItem(f"s{i}", output=out, source=src) for i, (src, out) in enumerate(pairs)]
    return [r[m.spec.key] for r in m.score(items)]


def _rand(seed: int, h: int = 64, w: int | None = None) -> torch.Tensor:
    return torch.rand(3, h, w or h, generator=torch.Generator().manual_seed(seed))


def _rand8(seed: int, h: int = 64, w: int | None = None) -> torch.Tensor:
    """A random image as read from an 8-bit file: k/255 values."""
    return (_rand(seed, h, w) * 255).round() / 255


def _smooth(seed: int, h: int = 64, w: int | None = None) -> torch.Tensor:
    """A low-frequency random image (upsampled noise): what resampling differences barely touch."""
    g = torch.rand(1, 3, 6, 6, generator=torch.Generator().manual_seed(seed))
    return F.interpolate(g, size=(h, w or h), mode="bilinear", align_corners=True)[0]


# -- spelling ---------------------------------------------------------------------------------------
def test_specs_directions_and_regions():
    assert METRICS.get("dinov2").higher_is_better and not METRICS.get("structure_distance").higher_is_better
    assert MetricSpec.parse("structure_distance").key == "structure_distance"
    assert MetricSpec.parse("structure_distance:whole:pie").key == "structure_distance:whole:pie"
    for bad in ("structure_distance:background", "dinov2:edited", "dinov2:whole:pie"):
        with pytest.raises(ConfigError):
            MetricSpec.parse(bad)


# -- DINOv2 -----------------------------------------------------------------------------------------
def test_dinov2_identity_symmetry_and_batching(weights_env):
    x, y, z = _rand(1), _rand(2), _rand(3, 48, 80)  # z: another size, resized and cropped to 224 too
    same, xy, yx, xz = _values("dinov2", [(x, x), (x, y), (y, x), (x, z)])
    assert same == pytest.approx(1.0, abs=1e-6)
    assert xy == pytest.approx(yx, abs=1e-6)
    assert -1.0 <= xy < 1.0 - 1e-6
    singles = [_values("dinov2", [p])[0] for p in [(x, y), (x, z)]]
    assert singles == pytest.approx([xy, xz], abs=1e-5)  # one forward per batch == one per sample


def test_dinov2_is_the_cosine_of_pooled_outputs(weights_env):
    from transformers import Dinov2Model

    x, y = _rand(4), _rand(5)
    model = Dinov2Model.from_pretrained(str(weights_env / "dinov2-base")).eval()
    prep = dino.Dinov2Preprocess.from_folder(weights_env / "dinov2-base")
    with torch.no_grad():
        a, b = (model(pixel_values=prep(t[None])).pooler_output[0] for t in (x, y))
    assert _values("dinov2", [(x, y)])[0] == pytest.approx(float(F.cosine_similarity(a, b, dim=0)), abs=1e-5)


def test_dinov2_default_preprocessing(tmp_path):
    prep = dino.Dinov2Preprocess.from_folder(tmp_path)  # no preprocessor_config.json: DINOv2's defaults
    assert (prep.short_side, prep.crop, prep.mode, prep.mean, prep.std) == (
        256, 224, "bicubic", dino.IMAGENET_MEAN, dino.IMAGENET_STD)
    gray = torch.full((1, 3, 300, 400), 0.5)
    out = prep(gray)
    assert out.shape == (1, 3, 224, 224)
    expect = torch.tensor([(0.5 - m) / s for m, s in zip(dino.IMAGENET_MEAN, dino.IMAGENET_STD, strict=True)])
    assert torch.allclose(out[0, :, 100, 100], expect, atol=1e-5)


def test_dinov2_reads_the_folders_processor_config(tmp_path):
    from transformers import BitImageProcessor

    BitImageProcessor(size={"shortest_edge": 72}, crop_size={"height": 64, "width": 64}, resample=3,
                      image_mean=[0.5, 0.5, 0.5], image_std=[0.25, 0.25, 0.25]).save_pretrained(tmp_path)
    prep = dino.Dinov2Preprocess.from_folder(tmp_path)
    assert ((prep.short_side, prep.crop, prep.mode, prep.mean, prep.scale)
            == (72, 64, "bicubic", (0.5,) * 3, 1.0))
    x = _smooth(6, 90, 120)
    ours = prep(x[None])
    assert ours.shape == (1, 3, 64, 64)
    # the Hugging Face processor on the 8-bit image: same geometry, values up to resampling details
    pil = (x.permute(1, 2, 0).numpy() * 255).round().astype("uint8")
    theirs = torch.as_tensor(
        BitImageProcessor.from_pretrained(tmp_path)(images=pil, return_tensors="pt")["pixel_values"])
    assert theirs.shape == ours.shape
    assert float((theirs - ours).abs().mean()) < 0.02  # 0.02 in normalised units = 0.005 of the [0, 1] range

    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"crop_size": {"height": 64, "width": 32}}))
    with pytest.raises(ConfigError, match="square"):
        dino.Dinov2Preprocess.from_folder(tmp_path)


# -- structure distance -----------------------------------------------------------------------------
def test_structure_distance_invariants(weights_env):
    x, y = _rand(7), _rand(8)
    wide_a, wide_b = _rand(9, 40, 60), _rand(10, 40, 60)  # a 224×336 DINO input: another patch grid
    for flavour in ("clean", "pie"):
        spec = f"structure_distance:whole:{flavour}"
        same, xy, yx, wide = _values(spec, [(x, x), (x, y), (y, x), (wide_a, wide_b)])
        assert same == pytest.approx(0.0, abs=1e-10)
        assert xy == pytest.approx(yx, rel=1e-5)
        assert xy > 1e-6 and wide > 1e-6
        singles = [_values(spec, [p])[0] for p in [(x, y), (wide_a, wide_b)]]
        assert singles == pytest.approx([xy, wide], rel=1e-4)  # batched (grouped by size) == per sample


def test_structure_distance_matches_pie_bench_written_out(weights_env):
    """PIE-Bench's pipeline for one pair, by hand: torchvision Resize(224, max_size=480) (no
    antialiasing, as torchvision 0.13 did on tensors) + Normalize on the float image — 0–255 for
    ``pie``, [0, 1] for ``clean`` — then block 11's keys run through the model's layers directly,
    Splice's cosine self-similarity and F.mse_loss."""
    from torchvision import transforms

    model = dino.load_dino_vit(weights_env / "dino-vitb8")
    # → 224×298 input (int(224·64/48)): interpolated positions
    src, out = _rand8(11, 48, 64), _rand8(12, 48, 64)
    pie_transform = transforms.Compose([transforms.Resize(224, max_size=480, antialias=False),
                                        transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])

    def by_hand(img: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            h = model.embeddings(img[None], interpolate_pos_encoding=True)
            for block in model.layers[:11]:
                h = block(h)
            block = model.layers[11]
            keys = block.attention.k_proj(block.layernorm_before(h))[0]  # T×D: all heads, CLS first
        norm = keys.norm(dim=1, keepdim=True)
        return (keys @ keys.T) / torch.clamp(norm @ norm.T, min=1e-8)

    def as_pie_reads_it(img: torch.Tensor, flavour: str) -> torch.Tensor:
        """PIE-Bench: np.array(PIL image).astype(np.float32), HWC → CHW; clean: the same / 255."""
        u8 = (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        t = torch.from_numpy(np.transpose(np.array(Image.fromarray(u8)).astype(np.float32), axes=(2, 0, 1)))
        return t if flavour == "pie" else t / 255.0

    expected = {}
    for flavour in ("pie", "clean"):
        a, b = (pie_transform(as_pie_reads_it(img, flavour)) for img in (src, out))
        assert a.shape == (3, 224, 298)
        expected[flavour] = float(F.mse_loss(by_hand(b), by_hand(a)))
    got = {f: _values(f"structure_distance:whole:{f}", [(src, out)])[0] for f in ("pie", "clean")}
    assert got["pie"] == pytest.approx(expected["pie"], rel=1e-4)
    assert got["clean"] == pytest.approx(expected["clean"], rel=1e-4)
    assert got["pie"] != pytest.approx(got["clean"], rel=1e-2)  # the normalisation quirk matters


def test_structure_pixels_is_torchvisions_resize_then_normalize():
    from torchvision import transforms

    for h, w, size in ((512, 512, (224, 224)), (100, 300, (160, 480)), (96, 64, (336, 224))):
        x = _rand8(13, h, w)
        assert torchvision_size(h, w, dino.STRUCTURE_SIZE, dino.STRUCTURE_MAX_SIZE) == size
        for flavour, pixels in (("pie", (x * 255).round()), ("clean", x)):
            ref = transforms.Compose([transforms.Resize(224, max_size=480, antialias=False),
                                      transforms.Normalize(dino.IMAGENET_MEAN, dino.IMAGENET_STD)])(pixels)
            ours = dino.structure_pixels(x[None], flavour)[0]
            assert ours.shape == (3, *size)
            assert torch.allclose(ours, ref, rtol=1e-6, atol=1e-5)
    gray = torch.full((1, 3, 8, 8), 128 / 255)
    pie, clean = dino.structure_pixels(gray, "pie"), dino.structure_pixels(gray, "clean")
    # 0–255 values, [0, 1] statistics
    assert pie[0, 0, 0, 0] == pytest.approx((128 - 0.485) / 0.229, rel=1e-6)
    assert clean[0, 0, 0, 0] == pytest.approx((128 / 255 - 0.485) / 0.229, rel=1e-6)


def test_key_hook_tokens(weights_env):
    model = dino.load_dino_vit(weights_env / "dino-vitb8")
    with torch.no_grad():
        keys = dino.dino_keys(model, torch.randn(2, 3, 224, 224))
        wide = dino.dino_keys(model, torch.randn(1, 3, 224, 336), layer=3)
    assert keys.shape == (2, 1 + (224 // 8) ** 2, 16)  # CLS + 28×28 patches, 2 heads × 8 concatenated
    assert wide.shape == (1, 1 + 28 * 42, 16)
    assert dino.key_projection(model, 11) is model.layers[11].attention.k_proj
    pos = model.embeddings.position_embeddings
    emb = torch.zeros(1, 1 + 28 * 37, 16)
    assert model.embeddings.interpolate_pos_encoding(emb[:, :785], 224, 224) is pos  # the trained grid: as is
    grid = model.embeddings.interpolate_pos_encoding(emb, 224, 298)  # DINO's bicubic, (grid + 0.1) / 28
    assert grid.shape == (1, 1 + 28 * 37, 16) and torch.equal(grid[:, 0], pos[:, 0])
    sim = dino.key_self_similarity(keys[0])
    assert sim.shape == (785, 785) and torch.allclose(sim.diagonal(), torch.ones(785), atol=1e-5)


def test_structure_layer_option(weights_env):
    x, y = _rand(14), _rand(15)
    default = _values("structure_distance", [(x, y)])[0]
    assert _values("structure_distance", [(x, y)], {"structure_layer": "11"})[0] == pytest.approx(default)
    assert _values("structure_distance", [(x, y)], {"structure_layer": "2"})[0] != pytest.approx(default)
    with pytest.raises(ConfigError, match="12 blocks"):
        _metric("structure_distance", {"structure_layer": "12"})
    with pytest.raises(ConfigError, match="block index"):
        _metric("structure_distance", {"structure_layer": "last"})


def test_bad_samples_raise_value_errors(weights_env):
    m = _metric("structure_distance")
    with pytest.raises(ValueError, match="differ in size"):
        m.score([ScoreItem("a", output=_rand(1, 64), source=_rand(2, 48))])
    with pytest.raises(ValueError, match="source"):
        _metric("dinov2").score([ScoreItem("a", output=_rand(1))])


# -- missing weights ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name, key", [("dinov2", "dinov2-base"), ("structure_distance", "dino-vitb8")])
def test_missing_weights_fail_in_check(name, key, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv(weights.ENV, str(tmp_path / "empty"))
    m = METRICS.get(name)(MetricSpec.parse(name))
    with pytest.raises(weights.WeightsNotFoundError) as err:
        m.check()
    assert weights.ENV in str(err.value) and key in str(err.value) and f"metric {name!r}" in str(err.value)
