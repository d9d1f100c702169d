"""Tiny random-weight SD1.5- and SDXL-shaped models: for tests, smoke runs and timing only.

They are built deterministically from a seed, in memory or saved in the diffusers layout so the
real loader (`load_pretrained`) reads them exactly like Stable Diffusion. Their outputs are
noise: never read a metric off them.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch

from icd_bench.backbones.base import Backbone
from icd_bench.backbones.loaders import SD_SCHEDULER_CONFIG

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
HIDDEN = 32


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP's reversible byte → printable-character table (the BPE alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def write_tiny_tokenizer(directory: str | Path) -> Path:
    """A real CLIP BPE tokenizer with a character-level vocabulary (514 tokens, no merges).

    Every text tokenizes (one token per character, the last of a word carrying ``</w>``), through
    the same `CLIPTokenizer.from_pretrained` path as Stable Diffusion's tokenizer.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    chars = list(bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + [BOS, EOS]
    (directory / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}, ensure_ascii=False))
    (directory / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    config = {"model_max_length": 77, "bos_token": BOS, "eos_token": EOS, "unk_token": EOS,
              "pad_token": EOS, "do_lower_case": True, "tokenizer_class": "CLIPTokenizer"}
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    (directory / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}))
    return directory


def _tokenizer():
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as d:
        return CLIPTokenizer.from_pretrained(write_tiny_tokenizer(d), model_max_length=77)


def _text_encoder(tokenizer, *, projection: bool):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=37,
                            num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77,
                            projection_dim=HIDDEN, bos_token_id=tokenizer.bos_token_id,
                            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config).eval()


def _vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(32, 64), layers_per_block=1,
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         latent_channels=4, norm_num_groups=16, sample_size=32).eval()


def build_tiny_sd15(seed: int = 0, time_cond_proj_dim: int | None = None) -> dict:
    """Components of a tiny SD1.5-shaped pipeline: 32×32 images, 4×16×16 latents."""
    from diffusers import DDIMScheduler, UNet2DConditionModel

    torch.manual_seed(seed)
    tokenizer = _tokenizer()
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=HIDDEN, attention_head_dim=8, norm_num_groups=16,
        time_cond_proj_dim=time_cond_proj_dim).eval()
    return {"tokenizer": tokenizer, "text_encoder": _text_encoder(tokenizer, projection=False), "unet": unet,
            "vae": _vae(), "scheduler": DDIMScheduler(**SD_SCHEDULER_CONFIG)}


def build_tiny_sdxl(seed: int = 0, time_cond_proj_dim: int | None = None) -> dict:
    """Components of a tiny SDXL-shaped pipeline (two text encoders, text_time conditioning)."""
    from diffusers import DDIMScheduler, UNet2DConditionModel

    torch.manual_seed(seed)
    tokenizer = _tokenizer()
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=2 * HIDDEN, attention_head_dim=8, norm_num_groups=16, use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=HIDDEN + 6 * 8, time_cond_proj_dim=time_cond_proj_dim).eval()
    return {"tokenizer": tokenizer, "text_encoder": _text_encoder(tokenizer, projection=False),
            "tokenizer_2": _tokenizer(), "text_encoder_2": _text_encoder(tokenizer, projection=True),
            "unet": unet, "vae": _vae(), "scheduler": DDIMScheduler(**SD_SCHEDULER_CONFIG)}


def _build(kind: str, seed: int) -> dict:
    if kind == "sd15":
        return build_tiny_sd15(seed)
    if kind == "sdxl":
        return build_tiny_sdxl(seed)
    raise ValueError(f"unknown tiny backbone kind {kind!r}: use 'sd15' or 'sdxl'")


def save_tiny(directory: str | Path, kind: str = "sd15", seed: int = 0) -> Path:
    """Save a tiny model in the diffusers pipeline layout, loadable by `load_pretrained`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    comps = _build(kind, seed)
    index = {"_class_name": "StableDiffusionXLPipeline" if kind == "sdxl" else "StableDiffusionPipeline",
             "_diffusers_version": "0.30.0"}
    for name, comp in comps.items():
        comp.save_pretrained(directory / name)
        lib = "transformers" if name.startswith(("tokenizer", "text_encoder")) else "diffusers"
        index[name] = [lib, type(comp).__name__]
    if kind == "sdxl":
        index["force_zeros_for_empty_prompt"] = True
    (directory / "model_index.json").write_text(json.dumps(index, indent=2))
    return directory


def tiny_backbone(kind: str = "sd15", device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                  seed: int = 0) -> Backbone:
    """A tiny random-weight backbone built in memory (identical to a saved-and-loaded one)."""
    comps = _build(kind, seed)
    xl = kind == "sdxl"
    return Backbone(kind=kind, source=f"tiny-{kind}", tokenizers=[comps["tokenizer"]] + ([comps["tokenizer_2"]] if xl else []),
                    text_encoders=[comps["text_encoder"]] + ([comps["text_encoder_2"]] if xl else []),
                    unet=comps["unet"], vae=comps["vae"], scheduler=comps["scheduler"], resolution=32,
                    device=device, dtype=dtype, force_zeros_for_empty_prompt=xl)


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
