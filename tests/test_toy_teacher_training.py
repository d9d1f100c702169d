"""The teacher trainer: it learns, checkpoints, and a resumed run equals an uninterrupted one."""

from __future__ import annotations

import csv

import torch
from safetensors.torch import load_file

from icd_bench.backbones import load_pretrained
from icd_bench.toy.model import ToyModelConfig
from icd_bench.toy.teacher import TeacherTrainConfig, train_teacher, training_noise

SMALL = ToyModelConfig(block_out_channels=(8, 16, 16), text_hidden=16, text_layers=1, text_heads=2,
                       text_intermediate=16, max_length=24, text_time_embedding=True)


def recipe(steps: int) -> dict:
    return {"model": SMALL, "train": TeacherTrainConfig(
        steps=steps, batch_size=4, lr=1e-3, warmup=2, checkpoint_every=3, log_every=3, eval_every=0,
        threads=1, seed=5, pyramid_noise=0.5)}


def weights(path):
    return load_file(path / "unet" / "diffusion_pytorch_model.safetensors")


def test_resumed_training_equals_uninterrupted(tmp_path):
    straight = train_teacher(recipe(6), tmp_path / "a", device="cpu", progress=False, log=lambda *_: None)
    train_teacher(recipe(3), tmp_path / "b", device="cpu", progress=False, log=lambda *_: None)
    messages = []
    resumed = train_teacher(recipe(6), tmp_path / "b", device="cpu", progress=False, log=messages.append)
    assert any("resuming from" in m and "step-000003" in m for m in messages)
    a, b = weights(straight), weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with open(tmp_path / "a" / "loss.csv") as f:
        rows_a = [r["loss"] for r in csv.DictReader(f)]
    with open(tmp_path / "b" / "loss.csv") as f:
        rows_b = [r["loss"] for r in csv.DictReader(f)]
    assert rows_a == rows_b and len(rows_a) == 2  # logged at steps 3 and 6, once each
    bb = load_pretrained(str(straight))  # the result loads as a toy backbone
    assert bb.kind == "toy" and bb.vae is None


def test_training_reduces_the_loss(tmp_path):
    r = recipe(30)
    r["train"].log_every = 10
    r["train"].checkpoint_every = 30
    train_teacher(r, tmp_path / "t", device="cpu", progress=False, log=lambda *_: None)
    with open(tmp_path / "t" / "loss.csv") as f:
        losses = [float(row["loss"]) for row in csv.DictReader(f)]
    assert len(losses) == 3 and losses[-1] < losses[0]


def test_training_noise_adds_offset_and_coarse_layers():
    def noise(offset, pyramid):
        return training_noise((256, 3, 32, 32), torch.Generator().manual_seed(0), offset, pyramid)

    plain, off, pyr = noise(0.0, 0.0), noise(0.5, 0.0), noise(0.5, 0.5)
    assert torch.equal(noise(0.5, 0.5), pyr)  # a function of the generator
    mean_var = [x.mean(dim=(2, 3)).var().item() for x in (plain, off, pyr)]
    assert mean_var[0] < 0.01 and 0.2 < mean_var[1] < 0.3  # offset: per-image, per-channel constants
    coarse = [torch.nn.functional.avg_pool2d(x, 8).var().item() for x in (plain, off, pyr)]
    assert coarse[2] > coarse[1] + 0.1  # pyramid: extra variance at the 4×4-block scale


def test_warm_start_into_a_deeper_model_starts_where_the_saved_one_was(tmp_path):
    from dataclasses import replace

    import pytest

    from icd_bench.errors import ConfigError
    from icd_bench.toy.model import build_text_encoder, build_unet, load_tokenizer
    from icd_bench.toy.teacher import warm_start

    saved = train_teacher(recipe(2), tmp_path / "base", device="cpu", progress=False, log=lambda *_: None)
    base = load_pretrained(str(saved))
    tok = load_tokenizer(max_length=SMALL.max_length)
    for deeper in (replace(SMALL, transformer_layers=2), replace(SMALL, cross_attention_levels=2)):
        te, unet = build_text_encoder(deeper, tok), build_unet(deeper)
        added = warm_start(saved, te, unet)
        assert added and all(k not in base.unet.state_dict() for k in added)
        ids = tok(["a red circle above a blue square on a white background"], padding="max_length",
                  max_length=SMALL.max_length, return_tensors="pt").input_ids
        x, t = torch.randn(1, 3, 32, 32), torch.tensor([500])
        with torch.no_grad():
            emb = te(ids)[0]
            assert torch.equal(emb, base.text_encoders[0](ids)[0])
            torch.testing.assert_close(unet(x, t, encoder_hidden_states=emb).sample,
                                       base.unet(x, t, encoder_hidden_states=emb).sample,
                                       atol=1e-5, rtol=1e-5)
    wider = replace(SMALL, block_out_channels=(8, 16, 32))
    with pytest.raises(ConfigError, match="does not fit"):
        warm_start(saved, build_text_encoder(wider, tok), build_unet(wider))
    with pytest.raises(ConfigError, match="not found"):
        warm_start(tmp_path / "nowhere", build_text_encoder(SMALL, tok), build_unet(SMALL))
