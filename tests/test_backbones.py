"""Backbone loading through the real loader, on tiny models saved by the tests themselves."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # also forced by conftest; never reach a hub from here
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import json  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from icd_bench.backbones import load_backbone, load_pretrained, tiny_backbone  # noqa: E402
from icd_bench.backbones.base import PromptEmbeds  # noqa: E402
from icd_bench.backbones.loaders import SD_SCHEDULER_CONFIG  # noqa: E402
from icd_bench.backbones.tiny import build_tiny_sd15, save_tiny, write_tiny_tokenizer  # noqa: E402
from icd_bench.errors import BackboneNotFoundError, UnknownNameError  # noqa: E402
from icd_bench.registry import BACKBONES  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bb")
    return {kind: save_tiny(root / kind, kind=kind, seed=0) for kind in ("sd15", "sdxl")}


@pytest.fixture(scope="module")
def in_memory() -> dict:
    return {kind: tiny_backbone(kind, seed=0) for kind in ("sd15", "sdxl")}


def _copy(src: Path, dst: Path, edit=None) -> Path:
    shutil.copytree(src, dst)
    if edit is not None:
        edit(dst)
    return dst


def _edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


# -- loading and running ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind, dim", [("sd15", 32), ("sdxl", 64)])
def test_saved_tiny_models_load_and_run(saved, kind, dim):
    bb = load_pretrained(str(saved[kind]))
    assert bb.kind == kind and bb.resolution == 32 and bb.vae_scale_factor == 2
    assert bb.source == str(saved[kind]) and len(bb.text_encoders) == (2 if kind == "sdxl" else 1)
    emb = bb.encode_prompt(["a red circle", "a blue square on a white background"])
    assert emb.embeds.shape == (2, 77, dim)
    if kind == "sdxl":
        assert emb.pooled.shape == (2, 32) and emb.time_ids.shape == (2, 6)
        assert emb.time_ids[0].tolist() == [32, 32, 0, 0, 32, 32]
    else:
        assert emb.pooled is None and emb.time_ids is None
    assert not torch.equal(emb.embeds[0], emb.embeds[1])  # the prompt matters
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    latents = bb.encode_image(images)
    assert latents.shape == (2, 4, 16, 16) == bb.latent_shape(2)
    decoded = bb.decode(latents)
    assert decoded.shape == (2, 3, 32, 32) and decoded.min() >= 0 and decoded.max() <= 1
    before = bb.nfe.rows
    eps = bb.predict_noise(latents, 500, emb)
    assert eps.shape == latents.shape and torch.isfinite(eps).all()
    assert bb.nfe.rows - before == 2 and bb.nfe.calls == 1
    bb.predict_noise(latents[:1], torch.tensor([10]), emb.index(slice(0, 1)))
    assert bb.nfe.rows - before == 3 and bb.nfe.calls == 2


@pytest.mark.parametrize("kind", ["sd15", "sdxl"])
def test_loaded_equals_in_memory(saved, in_memory, kind):
    a, b = load_pretrained(str(saved[kind])), in_memory[kind]
    x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(3))
    emb_a, emb_b = a.encode_prompt(["a cat"]), b.encode_prompt(["a cat"])
    assert torch.equal(emb_a.embeds, emb_b.embeds)
    assert torch.allclose(a.predict_noise(x, 999, emb_a), b.predict_noise(x, 999, emb_b), atol=1e-6)
    assert torch.equal(a.alphas_cumprod, b.alphas_cumprod) and a.final_alpha_cumprod == b.final_alpha_cumprod
    c = tiny_backbone(kind, seed=1)  # the seed matters: not the same weights
    assert not torch.allclose(c.predict_noise(x, 999, c.encode_prompt(["a cat"])),
                              b.predict_noise(x, 999, emb_b))


def test_tiny_builds_are_deterministic_and_leave_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    one = build_tiny_sd15(seed=7)
    assert torch.equal(torch.rand(3), expected)
    two = build_tiny_sd15(seed=7)
    for name in ("text_encoder", "unet", "vae"):
        for p, q in zip(one[name].parameters(), two[name].parameters(), strict=True):
            assert torch.equal(p, q)


def test_guidance_embedded_variant_takes_timestep_cond(in_memory):
    assert in_memory["sd15"].unet.config.time_cond_proj_dim is None  # plain by default
    bb = tiny_backbone("sd15", time_cond_proj_dim=16)
    assert bb.unet.config.time_cond_proj_dim == 16
    x = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    w = torch.randn(2, 16, generator=torch.Generator().manual_seed(1))
    cond = bb.encode_prompt(["a", "b"])
    assert not torch.allclose(bb.predict_noise(x, 500, cond, timestep_cond=w),
                              bb.predict_noise(x, 500, cond, timestep_cond=-w))


def test_saved_layout_is_a_diffusers_pipeline(saved):
    index = json.loads((saved["sdxl"] / "model_index.json").read_text())
    assert (index["_class_name"] == "StableDiffusionXLPipeline"
            and index["force_zeros_for_empty_prompt"] is True)
    assert index["text_encoder_2"] == ["transformers", "CLIPTextModelWithProjection"]
    assert (json.loads((saved["sd15"] / "model_index.json").read_text())["_class_name"]
            == "StableDiffusionPipeline")
    for sub in ("tokenizer", "text_encoder", "unet", "vae", "scheduler", "tokenizer_2", "text_encoder_2"):
        assert (saved["sdxl"] / sub).is_dir()


# -- scheduler ------------------------------------------------------------------------------------
def test_scheduler_is_ddim_without_clipping_or_the_sd_default(saved, tmp_path):
    clipped = _copy(saved["sd15"], tmp_path / "clipped",
                    lambda d: _edit_json(d / "scheduler" / "scheduler_config.json", clip_sample=True,
                                         _class_name="PNDMScheduler", skip_prk_steps=True))
    sched = load_pretrained(str(clipped)).scheduler
    assert type(sched).__name__ == "DDIMScheduler" and sched.config.clip_sample is False
    no_sched = _copy(saved["sd15"], tmp_path / "nosched", lambda d: shutil.rmtree(d / "scheduler"))
    sched = load_pretrained(str(no_sched)).scheduler
    for key, value in SD_SCHEDULER_CONFIG.items():
        assert sched.config[key] == value, key


# -- tokenizer and text ---------------------------------------------------------------------------
def test_tokenizer_is_a_real_clip_bpe_tokenizer(tmp_path, in_memory):
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(write_tiny_tokenizer(tmp_path / "tok"))  # max length from its config
    assert tok.model_max_length == 77 and len(tok) == 514
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (512, 513, 513)
    ids = tok(["a red circle"], padding="max_length", max_length=tok.model_max_length).input_ids[0]
    assert len(ids) == 77 and ids[0] == tok.bos_token_id
    words = tok.convert_ids_to_tokens(ids[1:11])
    assert words == ["a</w>", "r", "e", "d</w>", "c", "i", "r", "c", "l", "e</w>"]
    assert ids[11] == tok.eos_token_id and set(ids[11:]) == {tok.pad_token_id}  # eos, then padding
    long = tok(["word " * 200], truncation=True, max_length=77).input_ids[0]
    assert len(long) == 77 and long[-1] == tok.eos_token_id
    assert in_memory["sd15"].tokenizers[0].get_vocab() == tok.get_vocab()


def test_sdxl_null_embeds_are_zeros_sd15_are_the_empty_prompt(in_memory, saved):
    xl = in_memory["sdxl"]
    null = xl.null_embeds(3)
    assert len(null) == 3 and null.embeds.abs().sum() == 0 and null.pooled.abs().sum() == 0
    assert null.time_ids.shape == (3, 6)
    assert load_pretrained(str(saved["sdxl"])).force_zeros_for_empty_prompt is True
    sd = in_memory["sd15"]
    assert not sd.force_zeros_for_empty_prompt
    assert torch.equal(sd.null_embeds(2).embeds[0], sd.encode_prompt([""]).embeds[0])
    assert sd.null_embeds(2).embeds.abs().sum() > 0


def test_sdxl_force_zeros_comes_from_model_index(saved, tmp_path):
    off = _copy(saved["sdxl"], tmp_path / "xl",
                lambda d: _edit_json(d / "model_index.json", force_zeros_for_empty_prompt=False))
    bb = load_pretrained(str(off))
    assert bb.force_zeros_for_empty_prompt is False and bb.null_embeds(1).embeds.abs().sum() > 0


def test_prompt_embeds_batching():
    a = PromptEmbeds(torch.zeros(2, 3, 4), torch.zeros(2, 5), torch.zeros(2, 6))
    b = PromptEmbeds(torch.ones(1, 3, 4), torch.ones(1, 5), torch.ones(1, 6))
    c = PromptEmbeds.cat([a, b])
    assert len(c) == 3 and c.pooled.shape == (3, 5) and c.index(slice(2, 3)).embeds.sum() == 12
    assert c.unet_kwargs()["added_cond_kwargs"]["time_ids"].shape == (3, 6)
    assert len(b.repeat(4)) == 4


# -- registry -------------------------------------------------------------------------------------
def test_registered_backbones():
    assert {"sd15", "sdxl", "tiny-sd15", "tiny-sdxl"} <= set(BACKBONES.names())
    for name in ("sd15", "sdxl", "tiny-sd15", "tiny-sdxl"):
        assert BACKBONES.entry(name).summary
    assert "random weights" in BACKBONES.entry("tiny-sdxl").summary
    bb = load_backbone("tiny-sdxl")
    assert bb.kind == "sdxl" and bb.source == "tiny-sdxl" and bb.resolution == 32


def test_load_backbone_takes_a_directory(saved):
    assert load_backbone(str(saved["sd15"])).kind == "sd15"


def test_load_in_half_precision_keeps_the_vae_in_fp32(saved):
    bb = load_pretrained(str(saved["sdxl"]), dtype=torch.bfloat16)
    assert bb.unet.dtype == torch.bfloat16 and all(e.dtype == torch.bfloat16 for e in bb.text_encoders)
    assert bb.vae.dtype == torch.float32
    emb = bb.encode_prompt(["a cat"])
    assert emb.embeds.dtype == emb.pooled.dtype == torch.bfloat16
    latents = bb.encode_image(torch.rand(1, 3, 32, 32))
    assert bb.predict_noise(latents, 10, emb).dtype == torch.bfloat16


def test_single_file_checkpoint_is_refused_with_a_hint(tmp_path):
    ckpt = tmp_path / "model.safetensors"
    ckpt.write_bytes(b"")
    with pytest.raises(BackboneNotFoundError, match="single-file checkpoints are not read"):
        load_backbone(str(ckpt))


def test_unknown_backbone_name_suggests_close_matches():
    with pytest.raises(UnknownNameError) as err:
        load_backbone("tiny-sd16")
    msg = str(err.value)
    assert "Did you mean 'tiny-sd15'" in msg and "not a directory" in msg
    with pytest.raises(UnknownNameError, match="not a directory"):
        load_backbone("nonexistent-name")


# -- errors ---------------------------------------------------------------------------------------
def _rm(*parts):
    def edit(d: Path):
        target = d.joinpath(*parts)
        for p in target.parent.glob(target.name):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    return edit


@pytest.mark.parametrize("kind, edit, fragment", [
    ("sd15", _rm("unet"), "has no unet/ folder"),
    ("sd15", _rm("unet", "diffusion_pytorch_model*"), "no weights in unet/"),
    ("sd15", _rm("text_encoder", "config.json"), "no text_encoder/config.json"),
    ("sd15", _rm("tokenizer", "*"), "no tokenizer files in tokenizer/"),
    ("sd15", _rm("scheduler", "scheduler_config.json"), "no scheduler/scheduler_config.json"),
    ("sdxl", _rm("text_encoder_2"), "has no text_encoder_2/ folder"),
    ("sdxl", _rm("vae", "config.json"), "no vae/config.json"),
    ("sd15", lambda d: (d / "unet" / "config.json").write_text("{oops"), "unet/"),
    ("sd15", lambda d: (d / "model_index.json").write_text("{oops"), "cannot read model_index.json"),
    ("sd15", _rm("model_index.json"), "no model_index.json"),
])
def test_incomplete_directory_is_one_error_naming_what_is_missing(saved, tmp_path, kind, edit, fragment):
    broken = _copy(saved[kind], tmp_path / "broken", edit)
    with pytest.raises(BackboneNotFoundError) as err:
        load_pretrained(str(broken))
    msg = str(err.value)
    assert fragment in msg and str(broken) in msg and ("Re-download" in msg or "Pass the directory" in msg)


def test_missing_hub_model_offline_is_one_fast_actionable_error():
    start = time.perf_counter()
    with pytest.raises(BackboneNotFoundError) as err:
        load_backbone("nobody-here/no-such-model")
    assert time.perf_counter() - start < 5  # no network retries
    msg = str(err.value)
    assert "nobody-here/no-such-model" in msg and "--backbone models/no-such-model" in msg
    assert "local-dir models/no-such-model" in msg and "HF_HUB_OFFLINE" in msg


def test_offline_read_from_huggingface_hub_when_the_variable_is_gone(monkeypatch):
    """HF_HUB_OFFLINE read by huggingface_hub at import still counts after the variable is unset."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    start = time.perf_counter()
    with pytest.raises(BackboneNotFoundError, match="HF_HUB_OFFLINE is set"):
        load_pretrained("nobody-here/no-such-model")
    assert time.perf_counter() - start < 5


@pytest.fixture
def hub_cache(saved, tmp_path, monkeypatch) -> Path:
    """A local Hugging Face cache holding the tiny SD1.5 as repository ``icd-bench/tiny-sd15``."""
    from huggingface_hub import constants

    repo = tmp_path / "hub" / "models--icd-bench--tiny-sd15"
    commit = "0" * 40
    shutil.copytree(saved["sd15"], repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return repo / "snapshots" / commit


def test_hub_id_loads_from_the_local_cache_offline(hub_cache, in_memory):
    bb = load_backbone("icd-bench/tiny-sd15")
    assert bb.kind == "sd15" and bb.source == "icd-bench/tiny-sd15" and bb.resolution == 32
    ref = in_memory["sd15"]
    assert torch.equal(bb.encode_prompt(["a cat"]).embeds, ref.encode_prompt(["a cat"]).embeds)


def test_hub_cache_missing_a_component_names_it(hub_cache):
    shutil.rmtree(hub_cache / "unet")
    with pytest.raises(BackboneNotFoundError) as err:
        load_backbone("icd-bench/tiny-sd15")
    msg = str(err.value)
    assert "unet/" in msg and "icd-bench/tiny-sd15" in msg and "--backbone models/tiny-sd15" in msg


def test_backbones_find_the_bundled_toy_teacher_where_the_toy_world_keeps_it():
    """backbones/ names the folder itself (it may not import toy/); both must agree."""
    from icd_bench.backbones import _toy_teacher_dir
    from icd_bench.toy.model import TEACHER_DIR

    assert _toy_teacher_dir() == TEACHER_DIR
