"""LPIPS and CLIP metrics on tiny random models saved in their real on-disk layouts and loaded back
through the weight resolution (``ICD_BENCH_WEIGHTS``): invariants that hold for any weights."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from icd_bench.errors import ConfigError
from icd_bench.metrics import clip_score, perceptual, weights
from icd_bench.metrics.base import MetricSpec, ScoreItem
from icd_bench.registry import METRICS

pytestmark = pytest.mark.usefixtures("one_thread")

SIDE = 64


def _metric(spec: str, options: dict[str, str] | None = None):
    s = MetricSpec.parse(spec)
    return METRICS.get(s.name)(s, "cpu", options)


def _values(spec: str, items: list[ScoreItem], options: dict[str, str] | None = None) -> list[float]:
    m = _metric(spec, options)
    m.check()
    return [r[m.spec.key] for r in m.score(items)]


def _rand(seed: int, side: int = SIDE, w: int | None = None) -> torch.Tensor:
    return torch.rand(3, side, w or side, generator=torch.Generator().manual_seed(seed))


def _mask(side: int = SIDE) -> np.ndarray:
    m = np.zeros((side, side), bool)
    m[side // 4: 3 * side // 4, side // 4: side // 2] = True  # an off-centre box: the edit
    return m


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No weight from the machine's caches: only what a test lays out counts."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv(weights.ENV, str(tmp_path / "empty-weights"))
    return monkeypatch


# -- LPIPS ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lpips_root(tmp_path_factory) -> Path:
    """Random torchvision AlexNet and SqueezeNet 1.1 state dicts, as torchvision's files."""
    import torchvision

    root = tmp_path_factory.mktemp("lpips-weights")
    torch.manual_seed(0)
    for net, build in (("alex", torchvision.models.alexnet), ("squeeze", torchvision.models.squeezenet1_1)):
        # lpips-alex/alexnet-owt-7be5be79.pth, lpips-squeeze/squeezenet1_1-b8a52dc0.pth
        spec = perceptual.NETS[net]
        (root / spec.key).mkdir()
        torch.save(build().state_dict(), root / spec.key / spec.files[0])
    return root


@pytest.fixture
def lpips_weights(lpips_root, isolated):
    isolated.setenv(weights.ENV, str(lpips_root))
    return lpips_root


@pytest.mark.parametrize(("net", "ends"), [("alex", (1, 4, 7, 9, 11)), ("squeeze", (1, 4, 7, 9, 10, 11, 12))])
def test_lpips_trunk_is_the_torchvision_file(lpips_weights, net, ends):
    import torchvision

    metric = _metric("lpips", {"lpips_net": net})
    metric.check()
    model = metric._model()
    reference = {"alex": torchvision.models.alexnet, "squeeze": torchvision.models.squeezenet1_1}[net]()
    path = weights.resolve(f"lpips-{net}")
    reference.load_state_dict(torch.load(path, weights_only=True))
    reference.eval()
    x = torch.randn(2, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ours = model.net(x)
        h, expected = x, []
        for i, layer in enumerate(reference.features):
            h = layer(h)
            if i in ends:
                expected.append(h)
    assert len(ours) == len(expected)
    for a, b in zip(ours, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # the lin layers are lpips' calibrated ones from the wheel, not random
    import lpips

    shipped = torch.load(Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth",
                         map_location="cpu", weights_only=True)
    torch.testing.assert_close(model.lin0.model[1].weight.cpu(), shipped["lin0.model.1.weight"])


def test_lpips_identity_symmetry_and_definition(lpips_weights):
    import lpips

    x, y = _rand(0), _rand(1)
    mask = _mask()
    same = ScoreItem("s", output=x, source=x.clone(), mask=mask)
    for spec in ("lpips", "lpips:background:pie", "lpips:background:clean",
                 "lpips:edited:pie", "lpips:edited:clean"):
        assert _values(spec, [same])[0] == pytest.approx(0.0, abs=1e-7), spec
    xy, yx = ScoreItem("a", output=x, source=y, mask=mask), ScoreItem("b", output=y, source=x, mask=mask)
    for spec in ("lpips", "lpips:background:pie", "lpips:edited:clean"):
        d_xy, d_yx = _values(spec, [xy, yx])
        assert d_xy > 0 and d_xy == pytest.approx(d_yx, rel=1e-5), spec
    # the definitions, by hand on the loaded model: [0, 1] -> [-1, 1]; pie = masked frames;
    # clean = region mean of the map
    model = _metric("lpips")._model()
    m = torch.from_numpy(~mask).float()
    a, b = x[None], y[None]
    with torch.inference_mode():
        whole = float(model(2 * a - 1, 2 * b - 1))
        pie = float(model(2 * (a * m) - 1, 2 * (b * m) - 1))  # PIE-Bench: (img·mask)·2 − 1
        model.spatial = True
        try:
            spatial = model(a, b, normalize=True)[0, 0]
        finally:
            model.spatial = False
    assert _values("lpips", [xy])[0] == pytest.approx(whole, rel=1e-5)
    assert _values("lpips:whole:pie", [xy])[0] == pytest.approx(whole, rel=1e-5)
    assert _values("lpips:background:pie", [xy])[0] == pytest.approx(pie, rel=1e-5)
    assert _values("lpips:background:clean", [xy])[0] == pytest.approx(
        float(spatial[~torch.from_numpy(mask)].mean()), rel=1e-5)
    assert isinstance(model, lpips.LPIPS) and not model.spatial  # the shared model is left as found


def test_lpips_background_pie_ignores_the_edit(lpips_weights):
    src, mask = _rand(0), _mask()
    out = (src + 0.05 * torch.randn(3, SIDE, SIDE, generator=torch.Generator().manual_seed(2))).clamp(0, 1)
    edited = out.clone()
    edited[:, torch.from_numpy(mask)] = torch.rand(3, int(mask.sum()),
                                                   generator=torch.Generator().manual_seed(3))
    items = [ScoreItem("a", output=out, source=src, mask=mask),
             ScoreItem("b", output=edited, source=src, mask=mask)]
    bg = _values("lpips:background:pie", items)
    # pixels inside the mask never reach a pie background value
    assert bg[0] == pytest.approx(bg[1], abs=1e-7)
    whole = _values("lpips", items)
    assert whole[1] > whole[0]  # ... while the whole-image value sees the edit
    edit = _values("lpips:edited:pie", items)
    assert edit[1] > edit[0]


def test_lpips_batch_equals_per_sample_and_empty_region(lpips_weights):
    mask = _mask()
    items = [ScoreItem(str(k), output=_rand(10 + k), source=_rand(20 + k), mask=mask if k else ~mask)
             for k in range(3)]
    for spec in ("lpips", "lpips:background:pie", "lpips:edited:clean"):
        batch = _values(spec, items)
        single = [_values(spec, [item])[0] for item in items]
        assert batch == pytest.approx(single, rel=1e-5), spec
    everything = ScoreItem("e", output=_rand(0), source=_rand(1), mask=np.ones((SIDE, SIDE), bool))
    for spec in ("lpips:background:pie", "lpips:background:clean"):
        assert math.isnan(_values(spec, [everything])[0])
    with pytest.raises(ValueError, match="edit mask"):
        _metric("lpips:background:pie").score([ScoreItem("n", output=_rand(0), source=_rand(1))])


def test_lpips_nets_differ_and_bad_option(lpips_weights):
    item = ScoreItem("a", output=_rand(0), source=_rand(1))
    alex, squeeze = _values("lpips", [item])[0], _values("lpips", [item], {"lpips_net": "squeeze"})[0]
    assert alex > 0 and squeeze > 0 and alex != pytest.approx(squeeze)
    with pytest.raises(ConfigError, match="alex, vgg, squeeze"):
        _metric("lpips", {"lpips_net": "resnet"}).check()


def test_lpips_missing_weight_fails_in_check(lpips_weights, isolated, tmp_path):
    isolated.setenv(weights.ENV, str(tmp_path / "nothing"))
    metric = _metric("lpips:background:pie", {"lpips_net": "vgg"})
    with pytest.raises(weights.WeightsNotFoundError) as err:
        metric.check()
    msg = str(err.value)
    for part in ("metric 'lpips'", "lpips-vgg/vgg16-397923af.pth", weights.ENV):
        assert part in msg
    bad = tmp_path / "bad" / "lpips-alex"
    bad.mkdir(parents=True)
    torch.save({"conv.weight": torch.zeros(1)}, bad / "alexnet-owt-7be5be79.pth")
    isolated.setenv(weights.ENV, str(bad.parent))
    with pytest.raises(ConfigError, match="features"):
        _metric("lpips").check()


# -- CLIP -----------------------------------------------------------------------------------------
TINY = "icd-tiny-clip"
TAG = "tiny"
TINY_OPTIONS = {"clip_model": TINY, "clip_pretrained": TAG}


@pytest.fixture(scope="module")
def clip_root(tmp_path_factory) -> Path:
    """A tiny open_clip architecture (registered from a JSON config) and its random state dict, laid
    out as ROOT/clip-<model>-<tag>/open_clip_pytorch_model.bin."""
    import open_clip

    cfg_dir = tmp_path_factory.mktemp("clip-config")
    cfg = {"embed_dim": 32,
           "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}}
    (cfg_dir / f"{TINY}.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(cfg_dir / f"{TINY}.json")
    torch.manual_seed(0)
    model = open_clip.create_model(TINY, pretrained=None)
    root = tmp_path_factory.mktemp("clip-weights")
    folder = root / f"clip-{TINY}-{TAG}"
    folder.mkdir()
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    return root


@pytest.fixture
def clip_weights(clip_root, isolated):
    isolated.setenv(weights.ENV, str(clip_root))
    return clip_root


def test_clip_weight_specs():
    assert clip_score.clip_weight_spec("ViT-L-14", "openai") is weights.KNOWN["clip-vit-l-14-openai"]
    spec = clip_score.clip_weight_spec("ViT-B-32", "laion2b_s34b_b79k")
    assert spec.key == "clip-vit-b-32-laion2b_s34b_b79k" and spec.single_file
    assert spec.hub == "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"
    assert spec.files == ("open_clip_pytorch_model.bin", "open_clip_model.safetensors")
    assert clip_score.clip_weight_spec(TINY, TAG).hub is None


def test_clip_loads_the_file_and_shares_the_model(clip_weights):
    import open_clip

    t, i = _metric("clip_t", TINY_OPTIONS), _metric("clip_i:edited:pie", TINY_OPTIONS)
    t.check()
    i.check()
    assert t._clip() is i._clip()  # one model for both metrics
    loaded = t._clip()
    saved = torch.load(clip_weights / f"clip-{TINY}-{TAG}" / "open_clip_pytorch_model.bin", weights_only=True)
    for k, v in loaded.model.state_dict().items():
        torch.testing.assert_close(v, saved[k], rtol=0, atol=0)
    assert (tuple(loaded.preprocess["size"]) == (32, 32)
            and tuple(loaded.preprocess["mean"]) == open_clip.OPENAI_DATASET_MEAN)


def test_clip_pixels_match_open_clip_transform(clip_weights):
    """The tensor preprocessing against open_clip's own PIL transform for the model."""
    from open_clip.transform import PreprocessCfg, image_transform_v2
    from PIL import Image

    loaded = _metric("clip_i", TINY_OPTIONS)._clip()
    x = _rand(5, 48, 80)  # a landscape frame: shorter side to 32, central 32x32
    ours = clip_score.clip_pixels(x[None], loaded.preprocess)[0]
    transform = image_transform_v2(PreprocessCfg(**loaded.preprocess), is_train=False)
    pil = Image.fromarray((x * 255).round().byte().permute(1, 2, 0).numpy())
    theirs = transform(pil)
    assert ours.shape == theirs.shape == (3, 32, 32)
    assert float((ours - theirs).abs().mean()) < 0.02  # PIL vs torch bicubic and 8-bit rounding only


def test_clip_pie_pixels_are_torchmetrics_clipscore_inputs(clip_tokenizer):
    """PIE-Bench's CLIP similarity runs torchmetrics' CLIPScore on an 8-bit CHW tensor (the image times
    the 0/1 mask for the edited region): the pixels its processor hands the model are the pie
    flavour's, exactly; the clean flavour's tensor resize differs (the issue the pie flavour fixes)."""
    from open_clip import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    from torchmetrics.multimodal import CLIPScore
    from transformers import CLIPImageProcessor, CLIPProcessor

    seen = []

    class Recorder(torch.nn.Module):  # stands in for transformers' CLIPModel: records what it is given
        config = None

        def get_image_features(self, pixel_values):
            seen.append(pixel_values)
            return torch.ones(len(pixel_values), 4)

        def get_text_features(self, input_ids, attention_mask=None):
            return torch.ones(len(input_ids), 4)

    cfg = {"size": (32, 32), "mean": OPENAI_DATASET_MEAN, "std": OPENAI_DATASET_STD,
           "interpolation": "bicubic", "resize_mode": "shortest"}
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                                                 crop_size={"height": 32, "width": 32}),
                              tokenizer=clip_tokenizer)
    metric = CLIPScore(model_name_or_path=lambda: (Recorder(), processor))
    x = _rand(5, 48, 80)
    mask = np.zeros((48, 80), np.uint8)
    mask[10:30, 20:60] = 1
    img = (x * 255).round().byte().permute(1, 2, 0).numpy()
    for masked in (False, True):  # PIE-Bench: np.uint8(img * mask), then torch.tensor(...).permute(2, 0, 1)
        arr = np.uint8(img * mask[..., None]) if masked else img
        metric(torch.tensor(arr).permute(2, 0, 1), "a red circle")
        ours = clip_score.clip_pixels_pie((torch.from_numpy(arr).permute(2, 0, 1).float() / 255)[None], cfg)
        torch.testing.assert_close(ours, seen[-1], atol=1e-6, rtol=0)
    clean = clip_score.clip_pixels((torch.from_numpy(img).permute(2, 0, 1).float() / 255)[None], cfg)
    assert float((clean - seen[0]).abs().max()) > 0.01


def test_clip_i_identity_and_flavours(clip_weights):
    x, y = _rand(0), _rand(1)
    same = ScoreItem("s", output=x, source=x.clone(), mask=_mask())
    assert _values("clip_i", [same], TINY_OPTIONS)[0] == pytest.approx(1.0, abs=1e-5)
    assert _values("clip_i:whole:pie", [same], TINY_OPTIONS)[0] == pytest.approx(100.0, abs=1e-3)
    assert _values("clip_i:edited:clean", [same], TINY_OPTIONS)[0] == pytest.approx(1.0, abs=1e-5)
    items = [ScoreItem("a", output=x, source=y, mask=_mask(), target_prompt=p)
             for p in ("a red circle", "a photo of a dog on the beach", "zzz qqq", "an oil painting")]
    loaded = _metric("clip_i", TINY_OPTIONS)._clip()

    def by_hand(pixels, name):  # the cosine on the given preprocessing, by hand on the loaded model
        with torch.no_grad():
            img = torch.nn.functional.normalize(loaded.model.encode_image(pixels(x[None].repeat(4, 1, 1, 1),
                                                                                 loaded.preprocess)), dim=-1)
            if name == "clip_i":
                other = loaded.model.encode_image(pixels(y[None].repeat(4, 1, 1, 1), loaded.preprocess))
            else:
                other = loaded.model.encode_text(loaded.tokenizer([it.target_prompt for it in items]))
            return (img * torch.nn.functional.normalize(other, dim=-1)).sum(-1).tolist()

    for name in ("clip_i", "clip_t"):
        clean = _values(name, items, TINY_OPTIONS)
        pie = _values(f"{name}:whole:pie", items, TINY_OPTIONS)
        assert clean == pytest.approx(by_hand(clip_score.clip_pixels, name), abs=1e-5)
        # pie: 100·max(cos, 0) on torchmetrics' (transformers') preprocessing
        assert pie == pytest.approx([100 * max(c, 0.0) for c in by_hand(clip_score.clip_pixels_pie, name)],
                                    abs=1e-3)
        assert all(-1 <= c <= 1 for c in clean)
    # the clamp of the pie flavour, on cosines of either sign
    pie_metric = _metric("clip_t:whole:pie", TINY_OPTIONS)
    got = pie_metric._values(torch.tensor([-0.25, 0.3]), [None, None])
    assert [g[pie_metric.spec.key] for g in got] == pytest.approx([0.0, 30.0])


def test_clip_t_depends_on_the_prompt(clip_weights):
    x = _rand(0)
    items = [ScoreItem(str(k), output=x, target_prompt=p)
             for k, p in enumerate(("a red circle", "a photo of a dog on the beach", "an oil painting"))]
    values = _values("clip_t", items, TINY_OPTIONS)
    assert len(set(np.round(values, 6))) == 3
    with pytest.raises(ValueError, match="target prompt"):
        _metric("clip_t", TINY_OPTIONS).score([ScoreItem("e", output=x, target_prompt="  ")])


def test_clip_edited_region_ignores_pixels_outside_the_mask(clip_weights):
    mask = _mask()
    out, src = _rand(0), _rand(1)
    out2, src2 = out.clone(), src.clone()
    out2[:, ~torch.from_numpy(mask)] = 0.9
    src2[:, ~torch.from_numpy(mask)] = 0.1
    a = ScoreItem("a", output=out, source=src, mask=mask, target_prompt="a cat")
    b = ScoreItem("b", output=out2, source=src2, mask=mask, target_prompt="a cat")
    for spec in ("clip_i:edited:clean", "clip_t:edited:clean", "clip_t:edited:pie"):
        va, vb = _values(spec, [a, b], TINY_OPTIONS)
        assert va == pytest.approx(vb, abs=1e-6), spec
    whole = _values("clip_i", [a, b], TINY_OPTIONS)
    assert whole[0] != pytest.approx(whole[1], abs=1e-6)  # the whole image does see those pixels
    empty = ScoreItem("e", output=out, source=src, mask=np.zeros_like(mask), target_prompt="a cat")
    assert math.isnan(_values("clip_i:edited:clean", [empty], TINY_OPTIONS)[0])


def test_clip_batch_equals_per_sample(clip_weights):
    mask = _mask()
    items = [ScoreItem(str(k), output=_rand(30 + k), source=_rand(40 + k), mask=mask, target_prompt=p)
             for k, p in enumerate(("a red circle", "a blue square on a table", "two dogs"))]
    for spec in ("clip_t", "clip_i", "clip_t:edited:pie", "clip_i:edited:clean"):
        batch = _values(spec, items, TINY_OPTIONS)
        single = [_values(spec, [item], TINY_OPTIONS)[0] for item in items]
        assert batch == pytest.approx(single, abs=1e-5), spec


def test_clip_missing_default_weights_fail_in_check(isolated):
    for spec in ("clip_t", "clip_i:edited:pie"):
        with pytest.raises(weights.WeightsNotFoundError) as err:
            _metric(spec).check()
        msg = str(err.value)
        for part in ("clip-vit-l-14-openai", "timm/vit_large_patch14_clip_224.openai", weights.ENV):
            assert part in msg
    with pytest.raises(weights.WeightsNotFoundError, match="clip-vit-b-16-openai"):
        _metric("clip_t", {"clip_model": "ViT-B-16"}).check()


def test_clip_file_of_another_model_fails_in_check(clip_root, isolated, tmp_path):
    folder = tmp_path / "w" / f"clip-{TINY}-{TAG}"
    folder.mkdir(parents=True)
    torch.save({"visual.proj": torch.zeros(3, 3)}, folder / "open_clip_pytorch_model.bin")
    isolated.setenv(weights.ENV, str(folder.parent))
    with pytest.raises(ConfigError, match=f"cannot load .* into open_clip's {TINY}"):
        _metric("clip_i", TINY_OPTIONS).check()
