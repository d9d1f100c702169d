"""Backbone loading through the real loader, on tiny models saved by the tests themselves."""

from __future__ import annotations

import shutil
import time

import pytest
import torch

from icd_bench.backbones import load_backbone, load_pretrained, tiny_backbone
from icd_bench.backbones.base import PromptEmbeds
from icd_bench.backbones.tiny import save_tiny
from icd_bench.errors import BackboneNotFoundError, UnknownNameError


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("bb")
    return {kind: save_tiny(root / kind, kind=kind, seed=0) for kind in ("sd15", "sdxl")}


@pytest.mark.parametrize("kind, dim", [("sd15", 32), ("sdxl", 64)])
def test_saved_tiny_models_load_and_run(saved, kind, dim):
    bb = load_pretrained(str(saved[kind]))
    assert bb.kind == kind and bb.resolution == 32 and bb.vae_scale_factor == 2
    emb = bb.encode_prompt(["a red circle", "a blue square on a white background"])
    assert emb.embeds.shape == (2, 77, dim)
    if kind == "sdxl":
        assert emb.pooled.shape == (2, 32) and emb.time_ids.shape == (2, 6)
        assert emb.time_ids[0].tolist() == [32, 32, 0, 0, 32, 32]
    else:
        assert emb.pooled is None
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    latents = bb.encode_image(images)
    assert latents.shape == (2, 4, 16, 16) == bb.latent_shape(2)
    decoded = bb.decode(latents)
    assert decoded.shape == (2, 3, 32, 32) and decoded.min() >= 0 and decoded.max() <= 1
    before = bb.nfe.rows
    eps = bb.predict_noise(latents, 500, emb)
    assert eps.shape == latents.shape and torch.isfinite(eps).all()
    assert bb.nfe.rows - before == 2 and bb.nfe.calls == 1


@pytest.mark.parametrize("kind", ["sd15", "sdxl"])
def test_loaded_equals_in_memory(saved, kind):
    a = load_pretrained(str(saved[kind]))
    b = tiny_backbone(kind, seed=0)
    x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(3))
    emb_a, emb_b = a.encode_prompt(["a cat"]), b.encode_prompt(["a cat"])
    assert torch.equal(emb_a.embeds, emb_b.embeds)
    assert torch.allclose(a.predict_noise(x, 999, emb_a), b.predict_noise(x, 999, emb_b), atol=1e-6)
    c = tiny_backbone(kind, seed=1)  # the seed matters: not the same weights
    assert not torch.allclose(c.predict_noise(x, 999, c.encode_prompt(["a cat"])), b.predict_noise(x, 999, emb_b))


def test_tokenizer_is_a_real_clip_bpe_tokenizer():
    bb = tiny_backbone("sd15")
    tok = bb.tokenizers[0]
    ids = tok(["a red circle"], padding="max_length", max_length=tok.model_max_length).input_ids[0]
    assert tok.model_max_length == 77 and len(ids) == 77
    assert ids[0] == tok.bos_token_id
    words = tok.convert_ids_to_tokens(ids[1:11])
    assert words == ["a</w>", "r", "e", "d</w>", "c", "i", "r", "c", "l", "e</w>"]
    assert set(ids[11:]) == {tok.eos_token_id}  # eos, then eos as padding
    long = tok(["word " * 200], truncation=True, max_length=77).input_ids[0]
    assert len(long) == 77 and long[-1] == tok.eos_token_id


def test_sdxl_null_embeds_are_zeros_sd15_are_the_empty_prompt():
    xl = tiny_backbone("sdxl")
    null = xl.null_embeds(3)
    assert len(null) == 3 and null.embeds.abs().sum() == 0 and null.pooled.abs().sum() == 0
    sd = tiny_backbone("sd15")
    assert torch.equal(sd.null_embeds(2).embeds[0], sd.encode_prompt([""]).embeds[0])


def test_prompt_embeds_batching():
    a = PromptEmbeds(torch.zeros(2, 3, 4), torch.zeros(2, 5), torch.zeros(2, 6))
    b = PromptEmbeds(torch.ones(1, 3, 4), torch.ones(1, 5), torch.ones(1, 6))
    c = PromptEmbeds.cat([a, b])
    assert len(c) == 3 and c.pooled.shape == (3, 5) and c.index(slice(2, 3)).embeds.sum() == 12
    assert c.unet_kwargs()["added_cond_kwargs"]["time_ids"].shape == (3, 6)
    assert len(b.repeat(4)) == 4


def test_incomplete_directory_names_the_missing_component(saved, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(saved["sd15"], broken)
    shutil.rmtree(broken / "unet")
    with pytest.raises(BackboneNotFoundError, match="has no unet/ folder"):
        load_pretrained(str(broken))
    (broken / "model_index.json").unlink()
    with pytest.raises(BackboneNotFoundError, match="no model_index.json"):
        load_pretrained(str(broken))


def test_missing_hub_model_offline_is_one_fast_actionable_error():
    start = time.perf_counter()
    with pytest.raises(BackboneNotFoundError) as err:
        load_backbone("nobody-here/no-such-model")
    assert time.perf_counter() - start < 5  # no network retries
    msg = str(err.value)
    assert "nobody-here/no-such-model" in msg and "--backbone models/no-such-model" in msg
    assert "HF_HUB_OFFLINE" in msg


def test_unknown_backbone_name_suggests_close_matches():
    with pytest.raises(UnknownNameError) as err:
        load_backbone("tiny-sd16")
    assert "Did you mean 'tiny-sd15'" in str(err.value) and "not a directory" in str(err.value)
