"""Toy-world models through the real loader and runner (untrained weights: plumbing only)."""

from __future__ import annotations

import json

import pytest
import torch

from icd_bench.backbones import load_pretrained
from icd_bench.runner import RunConfig, Runner
from icd_bench.store import RunStore
from icd_bench.toy.evaluate import inversion_psnr, sample_accuracy, sample_grid
from icd_bench.toy.model import (
    ToyModelConfig,
    build_scheduler,
    build_text_encoder,
    build_unet,
    load_tokenizer,
    save_pipeline,
)

SMALL = ToyModelConfig(block_out_channels=(8, 16, 16), text_hidden=16, text_layers=1, text_heads=2,
                       text_intermediate=16)


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory):
    torch.manual_seed(0)
    tok = load_tokenizer()
    path = tmp_path_factory.mktemp("toy") / "pipeline"
    return save_pipeline(path, tok, build_text_encoder(SMALL, tok), build_unet(SMALL), build_scheduler())


def test_toy_pipeline_loads_as_a_pixel_space_backbone(toy_dir):
    bb = load_pretrained(str(toy_dir))
    assert bb.kind == "toy" and bb.vae is None and bb.resolution == 32 and bb.vae_scale_factor == 1
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(bb.decode(bb.encode_image(x)), x, atol=1e-6)  # identity "VAE"
    assert bb.predict_noise(bb.encode_image(x), 10, bb.encode_prompt(["a", "b"])).shape == (2, 3, 32, 32)
    index = json.loads((toy_dir / "model_index.json").read_text())
    assert index["_icd_bench"]["kind"] == "toy"


def test_ddim_inversion_on_the_demo_set_through_the_runner(toy_dir, tmp_path):
    cfg = RunConfig(method="ddim", dataset="demo", backbone=str(toy_dir), task="invert", out=tmp_path / "r",
                    limit=3, overrides=["num_inference_steps=3", "guidance_scale=1"], device="cpu")
    summary = Runner(cfg).run()
    assert summary.ok == 3 and len(summary.psnr) == 3
    recs = RunStore(tmp_path / "r").records()
    assert all(r["nfe"] == 6 and r["edit_type"] == "change object" for r in recs)


def test_quality_bar_plumbing(toy_dir, tmp_path):
    bb = load_pretrained(str(toy_dir))
    acc, images, scenes = sample_accuracy(bb, steps=2, total=130, batch=65)
    assert acc["n"] == 130 == len(images) == len(scenes)
    assert set(acc) == {"n", "background", "color", "position", "shape", "size"}
    assert all(0.0 <= acc[k] <= 1.0 for k in ("background", "color", "position", "shape", "size"))
    inv = inversion_psnr(bb, steps=2, limit=4)
    assert inv["n"] == 4 and inv["psnr_min"] <= inv["psnr_mean"]
    grid = sample_grid(images[:10], [s.caption() for s in scenes[:10]], columns=5)
    assert grid.size == (5 * 128, 2 * (128 + 3 * 11 + 2))  # two rows of cells, three caption lines under each


def test_bundling_stores_fp16_copies_with_bundled_paths(tmp_path):
    from safetensors.torch import load_file, save_file

    from icd_bench.errors import ConfigError
    from icd_bench.toy.model import bundle_icd, bundle_lcm

    stage2 = tmp_path / "stage2"
    stage2.mkdir()
    for name in ("fcdm", "cdm"):
        save_file({"w": torch.randn(3, 2), "steps": torch.tensor([1, 2])},
                  str(stage2 / f"{name}.safetensors"))
    save_file({"w": torch.randn(4)}, str(tmp_path / "s1.safetensors"))
    with pytest.raises(ConfigError, match="stage 2 has not finished"):
        bundle_icd(tmp_path / "s1.safetensors", stage2, tmp_path / "into")
    (stage2 / "icd.json").write_text(json.dumps({"teacher": "x", "forward_lora": "f", "reverse_lora": "r",
                                                 "boundaries": {"reverse": [259, 519, 779, 999]}}))
    names = bundle_icd(tmp_path / "s1.safetensors", stage2, tmp_path / "into")
    assert names == ["cdm.safetensors", "cfg_distill.safetensors", "fcdm.safetensors", "icd.json"]
    state = load_file(str(tmp_path / "into" / "cdm.safetensors"))
    assert state["w"].dtype == torch.float16 and state["steps"].dtype == torch.int64
    meta = json.loads((tmp_path / "into" / "icd.json").read_text())
    assert (meta["reverse_lora"] == "bundled:toy/icd/cdm.safetensors"
            and meta["boundaries"]["reverse"][0] == 259)
    assert meta["continues"] == []  # trained from scratch
    # a continued stage 2 carries the provenance of the training it started from
    first = tmp_path / "first"
    first.mkdir()
    (first / "icd.json").write_text(json.dumps({"recipe": {"train": {"steps": 1000}},
                                                "versions": {"torch": "x"}}))
    (stage2 / "icd.json").write_text(json.dumps({"boundaries": {"reverse": [259, 519, 779, 999]}, "recipe": {
        "train": {"steps": 600, "init_reverse_lora": str(first / "cdm.safetensors")}}}))
    bundle_icd(tmp_path / "s1.safetensors", stage2, tmp_path / "into")
    meta = json.loads((tmp_path / "into" / "icd.json").read_text())
    assert meta["continues"] == [{"recipe": {"train": {"steps": 1000}}, "versions": {"torch": "x"}}]
    (first / "icd.json").unlink()
    with pytest.raises(ConfigError, match="the training this one continues"):
        bundle_icd(tmp_path / "s1.safetensors", stage2, tmp_path / "into")
    assert bundle_lcm(stage2, tmp_path / "lcm") == ["lcm.json", "lcm.safetensors"]
    lcm = json.loads((tmp_path / "lcm" / "lcm.json").read_text())
    assert lcm["lora"] == "bundled:toy/lcm/lcm.safetensors" and "teacher" not in lcm
