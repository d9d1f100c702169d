"""SD1.5- and SDXL-sized backbones with random weights: the real architectures, for timing only.

Timing does not need trained weights: the UNet, the text encoders and the VAE have the shapes of
Stable Diffusion 1.5 (UNet 859.5 M parameters, 512×512 images) and SDXL base (UNet 2567.5 M,
1024×1024), so ``icd-bench bench --backbone sd15-random`` measures what the real models cost.
Their outputs are noise: never read a quality metric off them.

Each model is built under the target device (a GPU initialises its own weights in milliseconds;
a CPU takes about 10 s for SD1.5), with the default initialisation of diffusers / transformers.
The tokenizers are the tiny character-level CLIP tokenizer of `tiny.py` (77 tokens, as CLIP's):
the text encoders see the same sequence length and the vocabulary does not change their cost.
"""

from __future__ import annotations

import torch

from icd_bench.backbones.base import Backbone
from icd_bench.backbones.loaders import quiet_libraries
from icd_bench.backbones.tiny import MAX_LENGTH, _scheduler, _tokenizer

CLIP_VOCAB = 49408

#: Keyword arguments of the released models' configurations (model_index / config.json of
#: stable-diffusion-v1-5 and stable-diffusion-xl-base-1.0), everything else at diffusers' defaults.
SD15_UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280, 1280),
                 down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                 up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                 cross_attention_dim=768, attention_head_dim=8)
SDXL_UNET = dict(sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280),
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                 transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20),
                 cross_attention_dim=2048, use_linear_projection=True, addition_embed_type="text_time",
                 addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816)
CLIP_L = dict(vocab_size=CLIP_VOCAB, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
              num_attention_heads=12, max_position_embeddings=MAX_LENGTH, hidden_act="quick_gelu",
              projection_dim=768)
OPENCLIP_BIGG = dict(vocab_size=CLIP_VOCAB, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                     num_attention_heads=20, max_position_embeddings=MAX_LENGTH, hidden_act="gelu",
                     projection_dim=1280)
VAE = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
           block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
           up_block_types=("UpDecoderBlock2D",) * 4)
KINDS = ("sd15", "sdxl")


def build_random(kind: str, device: torch.device | str = "cpu", seed: int = 0) -> dict:
    """Components of an SD1.5- or SDXL-sized pipeline with random weights, built on ``device``
    (``"meta"`` builds shapes only). Keys as in a diffusers pipeline."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    if kind not in KINDS:
        raise ValueError(f"unknown random backbone kind {kind!r}: use one of {', '.join(KINDS)}")
    xl = kind == "sdxl"
    quiet_libraries()
    tok = _tokenizer()
    ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(seed)
        if str(device).startswith("cuda"):
            torch.cuda.manual_seed(seed)
        c = {"tokenizer": tok, "text_encoder": CLIPTextModel(CLIPTextConfig(**CLIP_L, **ids)).eval()}
        if xl:
            c["tokenizer_2"] = _tokenizer()
            c["text_encoder_2"] = CLIPTextModelWithProjection(CLIPTextConfig(**OPENCLIP_BIGG, **ids)).eval()
        c["unet"] = UNet2DConditionModel(**(SDXL_UNET if xl else SD15_UNET)).eval()
        c["vae"] = AutoencoderKL(sample_size=1024 if xl else 512, scaling_factor=0.13025 if xl else 0.18215,
                                 **VAE).eval()
    c["scheduler"] = _scheduler()
    return c


def random_backbone(kind: str = "sd15", device: torch.device | str = "cpu",
                    dtype: torch.dtype = torch.float32, seed: int = 0) -> Backbone:
    """An SD1.5- or SDXL-sized random-weight backbone (see the module doc)."""
    return Backbone.from_components(build_random(kind, device, seed), kind=kind, source=f"{kind}-random",
                                    device=device, dtype=dtype)
