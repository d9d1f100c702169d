"""Tiny random-weight SD1.5- and SDXL-shaped models: for tests, smoke runs and timing only.

They are built deterministically from a seed, in memory or saved in the diffusers layout so the
real loader (`load_pretrained`) reads them exactly like Stable Diffusion. Their outputs are
noise: never read a metric off them.

Shapes: 32×32 images, 4×16×16 latents (VAE scale factor 2), 77-token prompts encoded to 32
features per text encoder (SDXL: 32 + 32 = 64, pooled 32).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch

from icd_bench.backbones.base import Backbone
from icd_bench.backbones.loaders import SD_SCHEDULER_CONFIG, quiet_libraries

# Tokenizers' Rust thread pool warns (and may deadlock) when a process forks after using it.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
MAX_LENGTH = 77
HIDDEN = 32  # width of each tiny text encoder
TIME_EMBED = 8  # SDXL's addition_time_embed_dim, per time id
KINDS = ("sd15", "sdxl")


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP's reversible byte → printable-character table (the BPE alphabet)."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def write_tiny_tokenizer(directory: str | Path) -> Path:
    """Write a real CLIP BPE tokenizer with a character-level vocabulary (514 tokens, no merges).

    The vocabulary is the 256 byte characters, the same with ``</w>`` (end of word), then
    ``<|startoftext|>`` (id 512) and ``<|endoftext|>`` (id 513, also padding and unknown). Every
    text tokenizes, one token per character, through the same `CLIPTokenizer.from_pretrained`
    path as Stable Diffusion's tokenizer. Returns the directory.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    chars = list(bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + [BOS, EOS]
    (directory / "vocab.json").write_text(
        json.dumps({t: i for i, t in enumerate(tokens)}, ensure_ascii=False), encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    # model_max_length must be in the config: without it the tokenizer pads prompts to 10^30.
    config = {"model_max_length": MAX_LENGTH, "do_lower_case": True, "tokenizer_class": "CLIPTokenizer",
              **special}
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (directory / "special_tokens_map.json").write_text(json.dumps(special, indent=2), encoding="utf-8")
    return directory


def _tokenizer():
    from transformers import CLIPTokenizer

    # A private temporary directory: nothing shared between processes, nothing left behind
    # (the loaded tokenizer keeps its vocabulary in memory).
    with tempfile.TemporaryDirectory(prefix="icd-bench-tokenizer-") as d:
        return CLIPTokenizer.from_pretrained(write_tiny_tokenizer(d), model_max_length=MAX_LENGTH)


def _text_encoder(tokenizer, *, projection: bool):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=37,
                            num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=MAX_LENGTH,
                            projection_dim=HIDDEN, bos_token_id=tokenizer.bos_token_id,
                            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config).eval()


def _unet(*, xl: bool, time_cond_proj_dim: int | None):
    from diffusers import UNet2DConditionModel

    # Cross-attention only at the low resolution (16×16 → 8×8), like SD's deepest blocks.
    common = dict(sample_size=16, in_channels=4, out_channels=4, block_out_channels=(32, 64),
                  layers_per_block=1, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                  up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=8,
                  norm_num_groups=16, time_cond_proj_dim=time_cond_proj_dim)
    if not xl:
        return UNet2DConditionModel(cross_attention_dim=HIDDEN, **common).eval()
    # SDXL: token states of both encoders side by side; pooled embeds + 6 time ids added to t.
    return UNet2DConditionModel(cross_attention_dim=2 * HIDDEN, use_linear_projection=True,
                                addition_embed_type="text_time", addition_time_embed_dim=TIME_EMBED,
                                projection_class_embeddings_input_dim=HIDDEN + 6 * TIME_EMBED,
                                **common).eval()


def _vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(32, 64), layers_per_block=1,
                         down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2,
                         latent_channels=4, norm_num_groups=16, sample_size=32).eval()


def _scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(**SD_SCHEDULER_CONFIG)


def build_tiny_sd15(seed: int = 0, time_cond_proj_dim: int | None = None) -> dict:
    """Components of a tiny SD1.5-shaped pipeline (random weights): 32×32 images, 4×16×16 latents.

    Keys as in a diffusers pipeline: tokenizer, text_encoder, unet, vae, scheduler. Weights depend
    only on ``seed`` (the caller's global RNG is left as it was). ``time_cond_proj_dim`` gives the
    UNet a guidance embedding (``timestep_cond``), as guidance-distilled models have.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        tokenizer = _tokenizer()
        return {"tokenizer": tokenizer, "text_encoder": _text_encoder(tokenizer, projection=False),
                "unet": _unet(xl=False, time_cond_proj_dim=time_cond_proj_dim), "vae": _vae(),
                "scheduler": _scheduler()}


def build_tiny_sdxl(seed: int = 0, time_cond_proj_dim: int | None = None) -> dict:
    """Components of a tiny SDXL-shaped pipeline (random weights): two text encoders (the second
    with a 32-d projection), a ``text_time``-conditioned UNet, 32×32 images, 4×16×16 latents.

    Keys as in a diffusers pipeline: tokenizer, text_encoder, tokenizer_2, text_encoder_2, unet,
    vae, scheduler. Seeding as `build_tiny_sd15`.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        tokenizer, tokenizer_2 = _tokenizer(), _tokenizer()
        return {"tokenizer": tokenizer, "text_encoder": _text_encoder(tokenizer, projection=False),
                "tokenizer_2": tokenizer_2, "text_encoder_2": _text_encoder(tokenizer_2, projection=True),
                "unet": _unet(xl=True, time_cond_proj_dim=time_cond_proj_dim), "vae": _vae(),
                "scheduler": _scheduler()}


def build_tiny(kind: str, seed: int = 0, time_cond_proj_dim: int | None = None) -> dict:
    """`build_tiny_sd15` or `build_tiny_sdxl` by kind ("sd15" or "sdxl")."""
    if kind == "sd15":
        return build_tiny_sd15(seed, time_cond_proj_dim)
    if kind == "sdxl":
        return build_tiny_sdxl(seed, time_cond_proj_dim)
    raise ValueError(f"unknown tiny backbone kind {kind!r}: use one of {', '.join(KINDS)}")


def save_tiny(directory: str | Path, kind: str = "sd15", seed: int = 0,
              time_cond_proj_dim: int | None = None) -> Path:
    """Save a tiny model in the diffusers pipeline layout, loadable by `load_pretrained`.

    Each component goes to its subfolder with its own ``save_pretrained``; model_index.json names
    the pipeline (``StableDiffusionPipeline`` / ``StableDiffusionXLPipeline``, so diffusers can
    load it too) and, for SDXL, ``force_zeros_for_empty_prompt``. Returns the directory.
    """
    import diffusers

    quiet_libraries()
    components = build_tiny(kind, seed, time_cond_proj_dim)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    xl = kind == "sdxl"
    index: dict = {"_class_name": "StableDiffusionXLPipeline" if xl else "StableDiffusionPipeline",
                   "_diffusers_version": diffusers.__version__}
    for name, component in components.items():
        component.save_pretrained(directory / name)
        library = "transformers" if name.startswith(("tokenizer", "text_encoder")) else "diffusers"
        index[name] = [library, type(component).__name__]
    # The pipelines' optional components, absent here.
    for name in ["feature_extractor", "image_encoder"] + ([] if xl else ["safety_checker"]):
        index[name] = [None, None]
    if xl:
        index["force_zeros_for_empty_prompt"] = True
    else:
        index["requires_safety_checker"] = False
    (directory / "model_index.json").write_text(json.dumps(index, indent=2), encoding="utf-8")
    return directory


def tiny_backbone(kind: str = "sd15", device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                  seed: int = 0, time_cond_proj_dim: int | None = None) -> Backbone:
    """A tiny random-weight backbone built in memory, identical to `save_tiny` + `load_pretrained`."""
    quiet_libraries()  # diffusers warns on every fp16 / bf16 cast of a UNet built in memory
    return Backbone.from_components(build_tiny(kind, seed, time_cond_proj_dim), kind=kind,
                                    source=f"tiny-{kind}", device=device, dtype=dtype)
