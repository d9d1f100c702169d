"""The toy world's models: a small CLIP text encoder and a pixel-space UNet at 32×32.

Sized for this project's 2-core CPU machines: self-attention at full resolution dominates a
training step there, so cross-attention (and the mid block's attention) live only at 8×8; widths
(32, 64, 64) with one layer per block give ~1.4 M UNet parameters. ε-prediction on SD's
1000-step scaled-linear schedule, so the iCD paper's boundary timesteps mean the same thing here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from icd_bench.backbones.loaders import SD_SCHEDULER_CONFIG
from icd_bench.paths import ASSETS as BUNDLED_ASSETS

ASSETS = BUNDLED_ASSETS / "toy"
TOKENIZER_DIR = ASSETS / "tokenizer"
TEACHER_DIR = ASSETS / "teacher"


@dataclass
class ToyModelConfig:
    resolution: int = 32
    block_out_channels: tuple[int, ...] = (32, 64, 64)
    layers_per_block: int = 1
    attention_head_dim: int = 8
    text_hidden: int = 64
    text_layers: int = 2
    text_heads: int = 4
    text_intermediate: int = 128
    max_length: int = 77  # tokens per prompt (BOS + words + EOS + padding)
    text_time_embedding: bool = False  # also add an attention-pooled prompt embedding to the time embedding
    # how many of the lowest-resolution levels have (cross-)attention: 1 = 8×8, 2 = 8×8 and 16×16
    cross_attention_levels: int = 1
    # transformer blocks (self-, cross-attention, MLP) at each attention level and in the mid block
    transformer_layers: int = 1


def load_tokenizer(path: Path = TOKENIZER_DIR, max_length: int = 77):
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(path, model_max_length=max_length)


def build_text_encoder(cfg: ToyModelConfig, tokenizer):
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.text_hidden, intermediate_size=cfg.text_intermediate,
        num_hidden_layers=cfg.text_layers, num_attention_heads=cfg.text_heads,
        max_position_embeddings=cfg.max_length, projection_dim=cfg.text_hidden,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id))


def build_unet(cfg: ToyModelConfig, time_cond_proj_dim: int | None = None):
    from diffusers import UNet2DConditionModel

    n, k = len(cfg.block_out_channels), cfg.cross_attention_levels
    if not 1 <= k < n:
        raise ValueError(f"cross_attention_levels must be between 1 and {n - 1} "
                         f"(attention at full resolution is too slow here)")
    return UNet2DConditionModel(
        sample_size=cfg.resolution, in_channels=3, out_channels=3,
        block_out_channels=tuple(cfg.block_out_channels), layers_per_block=cfg.layers_per_block,
        down_block_types=("DownBlock2D",) * (n - k) + ("CrossAttnDownBlock2D",) * k,
        up_block_types=("CrossAttnUpBlock2D",) * k + ("UpBlock2D",) * (n - k),
        transformer_layers_per_block=((1,) * (n - k) + (cfg.transformer_layers,) * k
                                      if cfg.transformer_layers > 1 else 1),
        cross_attention_dim=cfg.text_hidden, attention_head_dim=cfg.attention_head_dim,
        norm_num_groups=8, time_cond_proj_dim=time_cond_proj_dim,
        addition_embed_type="text" if cfg.text_time_embedding else None,
        addition_embed_type_num_heads=cfg.text_heads)


def build_scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(**SD_SCHEDULER_CONFIG)


def save_pipeline(directory: Path, tokenizer, text_encoder, unet, scheduler, *,
                  extra: dict | None = None) -> Path:
    """Save a pixel-space pipeline (no VAE) in the diffusers layout the backbone loader reads."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(directory / "tokenizer")
    text_encoder.save_pretrained(directory / "text_encoder")
    unet.save_pretrained(directory / "unet")
    scheduler.save_pretrained(directory / "scheduler")
    index = {"_class_name": "ToyPixelPipeline", "_diffusers_version": "0.30.0",
             "tokenizer": ["transformers", "CLIPTokenizer"],
             "text_encoder": ["transformers", "CLIPTextModel"],
             "unet": ["diffusers", "UNet2DConditionModel"], "scheduler": ["diffusers", "DDIMScheduler"],
             "_icd_bench": {"kind": "toy", **(extra or {})}}
    (directory / "model_index.json").write_text(json.dumps(index, indent=2))
    return directory


def toy_backbone_from_modules(tokenizer, text_encoder, unet, device="cpu", dtype=torch.float32):
    """A `Backbone` around in-memory toy modules (for evaluation during training)."""
    from icd_bench.backbones.base import Backbone

    return Backbone(kind="toy", source="in-memory", tokenizers=[tokenizer], text_encoders=[text_encoder],
                    unet=unet, vae=None, scheduler=build_scheduler(), resolution=unet.config.sample_size,
                    device=device, dtype=dtype)


# -- bundling ------------------------------------------------------------------------------------------
def bundle_icd(stage1: Path, stage2: Path, into: Path) -> list[str]:
    """Copy the toy iCD models into the package as fp16 (what ``--method icd-toy`` loads by default):
    stage 1's student, stage 2's adapters, and ``icd.json`` (stage 2's provenance, paths made
    ``bundled:``; for a continued stage 2, ``continues``: the trainings it started from). Returns the
    bundled file names."""
    import json

    from icd_bench.errors import ConfigError
    from icd_bench.icd.model import half_copy

    stage2, into = Path(stage2), Path(into)
    info = stage2 / "icd.json"
    if not info.is_file():
        raise ConfigError(f"{info} not found: stage 2 has not finished in {stage2}")
    for src, name in ((Path(stage1), "cfg_distill.safetensors"),
                      (stage2 / "fcdm.safetensors", "fcdm.safetensors"),
                      (stage2 / "cdm.safetensors", "cdm.safetensors")):
        half_copy(src, into / name)
    meta = json.loads(info.read_text())
    meta["continues"] = _earlier_stages(meta)
    meta.update({"teacher": "bundled:toy/icd/cfg_distill.safetensors",
                 "forward_lora": "bundled:toy/icd/fcdm.safetensors",
                 "reverse_lora": "bundled:toy/icd/cdm.safetensors", "stored_as": "fp16"})
    (into / "icd.json").write_text(json.dumps(meta, indent=2) + "\n")
    return sorted(p.name for p in into.iterdir())


def _earlier_stages(meta: dict) -> list[dict]:
    """The provenance (``icd.json``: recipe, versions) of the trainings a continued training started from
    (its ``init_reverse_lora``'s folder, and so on back), the latest first; empty for a training from
    scratch."""
    import json

    from icd_bench.errors import ConfigError

    chain, train = [], meta.get("recipe", {}).get("train", {})
    while train.get("init_reverse_lora"):
        info = Path(train["init_reverse_lora"]).parent / "icd.json"
        if not info.is_file():
            raise ConfigError(f"{info} not found: the provenance of the training this one continues "
                              f"(init_reverse_lora = {train['init_reverse_lora']})")
        earlier = json.loads(info.read_text())
        chain.append({k: earlier[k] for k in ("recipe", "versions") if k in earlier})
        train = earlier.get("recipe", {}).get("train", {})
    return chain


def bundle_lcm(run: Path, into: Path) -> list[str]:
    """Copy the toy LCM's consistency LoRA into the package as fp16 (``lcm.safetensors`` + ``lcm.json``;
    its base is the bundled guidance-distilled student). Returns the bundled file names."""
    import json

    from icd_bench.errors import ConfigError
    from icd_bench.icd.model import half_copy

    run, into = Path(run), Path(into)
    info = run / "icd.json"
    if not info.is_file() or not (run / "cdm.safetensors").is_file():
        raise ConfigError(f"{run} holds no finished reverse-model training (icd.json, cdm.safetensors)")
    half_copy(run / "cdm.safetensors", into / "lcm.safetensors")
    meta = json.loads(info.read_text())
    meta.update({"unet": "bundled:toy/icd/cfg_distill.safetensors", "lora": "bundled:toy/lcm/lcm.safetensors",
                 "stored_as": "fp16"})
    for key in ("teacher", "forward_lora", "reverse_lora"):
        meta.pop(key, None)
    (into / "lcm.json").write_text(json.dumps(meta, indent=2) + "\n")
    return sorted(p.name for p in into.iterdir())

