"""ImageReward-v1.0: a learned human-preference score of an image for its (target) prompt.

Definition (Xu et al., "ImageReward: Learning and Evaluating Human Preferences for Text-to-Image
Generation", NeurIPS 2023; repository THUDM/ImageReward, `ImageReward/ImageReward.py`
``ImageReward.score``, models in `ImageReward/models/BLIP/{blip,blip_pretrain,vit,med}.py`,
loader `ImageReward/utils.py`; weights ``ImageReward.pt`` and ``med_config.json`` of the hub
repository ``THUDM/ImageReward``). For an image I and a prompt P:

1. **Image**: ``Resize(224, bicubic)`` (shorter side to 224, on the PIL uint8 image),
   ``CenterCrop(224)``, ``ToTensor``, ``Normalize`` with CLIP's mean/std.
2. **Visual encoder**: BLIP's timm-style ViT-L/16 (width 1024, 24 blocks, 16 heads, MLP 4096,
   pre-norm blocks, LayerNorm eps 1e-6, exact GELU); its output is the final LayerNorm applied to
   every token (``VisionTransformer.forward`` returns ``self.norm(x)``): 197 × 1024 image embeddings.
3. **Text encoder**: BLIP's BERT-base with a cross-attention block in every layer
   (`med.py`, configuration ``med_config.json``: 12 layers, width 768, 12 heads, vocabulary 30524,
   ``encoder_width`` set to the vision width 1024 as ``BLIP_Pretrain`` does), run as a
   bidirectional encoder (``mode='multimodal'``) over the prompt's tokens with
   ``encoder_hidden_states`` = the image embeddings and an all-ones ``encoder_attention_mask``.
4. **Tokens**: ``bert-base-uncased``'s WordPiece with ``[DEC]`` added as bos token (id 30522) and
   ``[ENC]`` as additional special token (id 30523, ``tokenizer.enc_token_id``);
   ``padding='max_length', truncation=True, max_length=35``. The first id stays ``[CLS]``:
   ``ImageReward.score`` (and its training code, `train/src/ImageReward.py`) feed the tokenizer's
   ids unchanged — the ``input_ids[:, 0] = enc_token_id`` substitution of BLIP's ITM head is
   *not* part of ImageReward.
5. **Reward**: the text encoder's first-token (``[CLS]``) hidden state → ``MLP`` (Linear layers
   768→1024→128→64→16→1 with dropouts 0.2, 0.2, 0.1 between and no activations) → r;
   ImageReward = (r − 0.16717362830052426) / 1.0333394966054072 (the package's ``mean``/``std``).

Higher is better; the score is unbounded (standardised with the authors' published mean and std). The
iCD paper (Table 4) reports ImageReward-v1.0 of generated images for their prompts; here the
image is the run's output and the prompt its target prompt (an empty target prompt is a
per-sample error).

**How it is provided.** Not through the ``image-reward`` PyPI package: its last release pins
``timm==0.6.13`` (incompatible with open_clip_torch 3), imports an undeclared ``clip`` package
(which needs ``pkg_resources``), imports ``apply_chunking_to_forward``,
``find_pruneable_heads_and_indices`` and ``prune_linear_layer`` from ``transformers.modeling_utils``
(which transformers 5 no longer provides there) and downloads ``bert-base-uncased`` while
building the model. This module is an adapter instead: it reads the published state dict and
``med_config.json``, maps every tensor onto transformers' `BlipVisionModel` (the same timm ViT,
renamed) and `BlipTextModel` (a port of BLIP's `med.py` with the same parameter names), and
scores exactly as ``ImageReward.score`` does. The key mapping (`map_checkpoint`) is explicit and
total: a checkpoint key that no rule maps, a module parameter that no checkpoint key fills, or a
shape mismatch raises a `ConfigError` listing them. The only checkpoint entries deliberately left
unused (`UNUSED_KEYS`) are BLIP's contrastive projections ``blip.vision_proj``/``blip.text_proj``
(built by ``BLIP_Pretrain``, unused by ``score``) and the ``position_ids`` buffer of the text
embeddings (``arange(512)``, rebuilt by transformers).

The vision configuration is read off the checkpoint's tensor shapes rather than hard-coded:
width (``cls_token``), patch size (``patch_embed.proj.weight``), depth (number of
``blocks.N``), MLP width (``mlp.fc1``), input size (√(positions − 1) × patch) and heads =
width / 64 (BLIP's head size for ViT-B and ViT-L; the number of heads is not recoverable from the
weights). For ``ImageReward.pt`` this gives exactly BLIP's ViT-L/16 at 224 px (width 1024, 24
blocks, 16 heads, MLP 4096); a small checkpoint in the same layout (the tests) gives a small ViT.

Preprocessing reproduces the package's PIL pipeline exactly (`preprocess`): the [0, 1] image is
rounded to uint8, resized with PIL bicubic to torchvision's ``Resize(int)`` size (shorter side to
the input size, longer side ``int(size · long / short)``) and centre-cropped with torchvision's
rounding. Remaining differences from the package: transformers 5's ``BertTokenizer`` is the
Rust (``tokenizers``) WordPiece, where the package used the Python one (identical ids for
ordinary text); masked attention adds the dtype's minimum instead of −10000 (the same softmax in
float32). Computation is in float32, like the package.

``imagereward:whole:icd`` is the iCD code's ``calc_ir`` (Tables 3 and 4):
``ImageReward.load("ImageReward-v1.0").score(prompt, [image])`` for each image — the same model and
computation — on the image as the official code reads it (`icd_protocol.view`: for edits, the saved
JPEG resized to 512 × 512). ``tests/conformance`` compares both flavours with the ``image-reward``
package itself.

Weights (resolved like every other weight: ``--weights-dir`` / ``ICD_BENCH_WEIGHTS``, the
Hugging Face cache, download when online): ``imagereward-v1`` = a folder with ``ImageReward.pt``
and ``med_config.json`` (hub ``THUDM/ImageReward``); ``bert-base-uncased`` = a folder with
``vocab.txt`` (hub ``google-bert/bert-base-uncased``).
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from icd_bench.errors import ConfigError
from icd_bench.metrics import icd_protocol
from icd_bench.metrics.base import ICD, Metric, ScoreItem
from icd_bench.metrics.preprocess import CLIP_MEAN, CLIP_STD, center_crop, normalize, torchvision_size
from icd_bench.metrics.weights import BERT_BASE_UNCASED, IMAGEREWARD_V1, cached_model, require_extra, resolve
from icd_bench.registry import METRICS

#: ``ImageReward.mean`` / ``ImageReward.std`` of the package: the reward's published normalisation.
REWARD_MEAN = 0.16717362830052426
REWARD_STD = 1.0333394966054072
#: The tokenizer call of ``ImageReward.score``.
MAX_LENGTH = 35
#: BLIP's ViT: LayerNorm eps (``partial(nn.LayerNorm, eps=1e-6)``) and head size (1024 / 16 = 768 / 12).
VIT_LAYER_NORM_EPS = 1e-6
VIT_HEAD_DIM = 64
#: ``MLP(768)`` of the package: hidden widths after the input (the input is the text width).
MLP_WIDTHS = (1024, 128, 64, 16, 1)
MLP_DROPOUTS = (0.2, 0.2, 0.1)

VISION_PREFIX = "blip.visual_encoder."
TEXT_PREFIX = "blip.text_encoder."
MLP_PREFIX = "mlp."
#: Checkpoint entries that ``ImageReward.score`` never uses (see the module docstring).
UNUSED_KEYS = frozenset({
    "blip.vision_proj.weight", "blip.vision_proj.bias",
    "blip.text_proj.weight", "blip.text_proj.bias",
    "blip.text_encoder.embeddings.position_ids",
})

#: BLIP's timm-style ViT (`vit.py`) → transformers' `BlipVisionModel`, one rule per tensor kind.
#: ``{i}`` is a block index, ``{p}`` ``weight`` or ``bias``.
VISION_RULES: tuple[tuple[str, str], ...] = (
    ("cls_token", "embeddings.class_embedding"),
    ("pos_embed", "embeddings.position_embedding"),
    ("patch_embed.proj.{p}", "embeddings.patch_embedding.{p}"),
    ("blocks.{i}.norm1.{p}", "encoder.layers.{i}.layer_norm1.{p}"),
    ("blocks.{i}.attn.qkv.{p}", "encoder.layers.{i}.self_attn.qkv.{p}"),
    ("blocks.{i}.attn.proj.{p}", "encoder.layers.{i}.self_attn.projection.{p}"),
    ("blocks.{i}.norm2.{p}", "encoder.layers.{i}.layer_norm2.{p}"),
    ("blocks.{i}.mlp.fc1.{p}", "encoder.layers.{i}.mlp.fc1.{p}"),
    ("blocks.{i}.mlp.fc2.{p}", "encoder.layers.{i}.mlp.fc2.{p}"),
    ("norm.{p}", "post_layernorm.{p}"),
)


def _compile(rules: Sequence[tuple[str, str]]) -> list[tuple[re.Pattern[str], str]]:
    out = []
    for src, dst in rules:
        pattern = re.escape(src).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{p\}", r"(?P<p>weight|bias)")
        out.append((re.compile(f"^{pattern}$"), dst))
    return out


_VISION_FORWARD = _compile(VISION_RULES)
_VISION_BACKWARD = _compile([(dst, src) for src, dst in VISION_RULES])


def _apply(rules: list[tuple[re.Pattern[str], str]], key: str) -> str | None:
    for pattern, template in rules:
        m = pattern.match(key)
        if m:
            return template.format(**m.groupdict())
    return None


def vision_key(checkpoint_key: str) -> str | None:
    """A ViT key after ``blip.visual_encoder.`` → its `BlipVisionModel` key (None: no rule), e.g.
    ``blocks.3.attn.proj.weight`` → ``encoder.layers.3.self_attn.projection.weight``."""
    return _apply(_VISION_FORWARD, checkpoint_key)


def checkpoint_key(part: str, module_key: str) -> str:
    """The published checkpoint's name of a module tensor (for error messages): the inverse of the mapping."""
    if part == "vision":
        return VISION_PREFIX + (_apply(_VISION_BACKWARD, module_key) or f"<no rule for {module_key}>")
    return (TEXT_PREFIX if part == "text" else MLP_PREFIX) + module_key


def map_checkpoint(state_dict: Mapping[str, Any], source: str = "") -> dict[str, dict[str, torch.Tensor]]:
    """Split and rename ImageReward's state dict into the three modules' state dicts.

    - ``blip.visual_encoder.<k>`` → ``vision``: `BlipVisionModel` keys by `VISION_RULES`.
    - ``blip.text_encoder.<k>`` → ``text``: `BlipTextModel` keys, unchanged (transformers' port of
      `med.py` keeps BLIP's names: ``embeddings.{word,position}_embeddings``, ``embeddings.LayerNorm``,
      ``encoder.layer.N.{attention,crossattention}.{self.query,self.key,self.value,output.dense,
      output.LayerNorm}``, ``encoder.layer.N.intermediate.dense``,
      ``encoder.layer.N.output.{dense,LayerNorm}``).
    - ``mlp.<k>`` → ``mlp``: the reward head, unchanged (``layers.{0,2,4,6,7}``; odd indices are
      dropouts).
    - `UNUSED_KEYS`: dropped. Anything else: a `ConfigError` naming the keys.
    """
    parts: dict[str, dict[str, torch.Tensor]] = {"vision": {}, "text": {}, "mlp": {}}
    unknown: list[str] = []
    for key, value in state_dict.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ConfigError(f"{source or 'checkpoint'}: not an ImageReward state dict "
                              f"(entry {key!r} is a {type(value).__name__}, not a tensor)")
        if key in UNUSED_KEYS:
            continue
        if key.startswith(VISION_PREFIX):
            new = vision_key(key[len(VISION_PREFIX):])
            if new is None:
                unknown.append(key)
            else:
                parts["vision"][new] = value
        elif key.startswith(TEXT_PREFIX):
            parts["text"][key[len(TEXT_PREFIX):]] = value
        elif key.startswith(MLP_PREFIX):
            parts["mlp"][key[len(MLP_PREFIX):]] = value
        else:
            unknown.append(key)
    if unknown:
        raise ConfigError(_mismatch_message(unexpected=unknown, source=source))
    return parts


def _mismatch_message(*, unexpected: Sequence[str] = (), missing: Sequence[str] = (),
                      shapes: Sequence[str] = (), source: str = "") -> str:
    def listing(what: str, keys: Sequence[str]) -> str:
        keys = sorted(keys)
        shown = ", ".join(keys[:12]) + (f", … ({len(keys)} in all)" if len(keys) > 12 else "")
        return f"{what}: {shown}"

    pieces = [listing(w, k) for w, k in (("unexpected keys", unexpected), ("missing keys", missing),
                                          ("shape mismatches", shapes)) if k]
    where = f"{source}: " if source else ""
    return (f"{where}the checkpoint does not match ImageReward-v1.0's layout (blip.visual_encoder.*, "
            f"blip.text_encoder.*, mlp.layers.*); " + "; ".join(pieces))


def load_exact(module: nn.Module, state_dict: Mapping[str, torch.Tensor], part: str,
               source: str = "") -> None:
    """Load ``state_dict`` into ``module`` only if it fills every tensor with the right shape and
    has nothing left over; otherwise a `ConfigError` listing the mismatches by checkpoint name."""
    own = module.state_dict()
    missing = [checkpoint_key(part, k) for k in own if k not in state_dict]
    unexpected = [checkpoint_key(part, k) for k in state_dict if k not in own]
    shapes = [f"{checkpoint_key(part, k)} {tuple(v.shape)} (model {tuple(own[k].shape)})"
              for k, v in state_dict.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        raise ConfigError(_mismatch_message(unexpected=unexpected, missing=missing, shapes=shapes,
                                            source=source))
    module.load_state_dict(dict(state_dict), strict=True)


def vision_config(vision_sd: Mapping[str, torch.Tensor]):
    """`BlipVisionConfig` of the ViT whose (mapped) tensors are ``vision_sd``, read off their shapes."""
    from transformers import BlipVisionConfig

    needed = ("embeddings.class_embedding", "embeddings.position_embedding",
              "embeddings.patch_embedding.weight", "encoder.layers.0.mlp.fc1.weight")
    absent = [checkpoint_key("vision", k) for k in needed if k not in vision_sd]
    if absent:
        raise ConfigError(_mismatch_message(missing=absent))
    width = int(vision_sd["embeddings.class_embedding"].shape[-1])
    patch_w = vision_sd["embeddings.patch_embedding.weight"]
    if patch_w.ndim != 4 or patch_w.shape[1] != 3 or patch_w.shape[2] != patch_w.shape[3]:
        raise ConfigError(f"patch embedding of shape {tuple(patch_w.shape)}: expected (width, 3, p, p)")
    patch = int(patch_w.shape[-1])
    positions = int(vision_sd["embeddings.position_embedding"].shape[1])
    grid = math.isqrt(positions - 1)
    if grid * grid + 1 != positions:
        raise ConfigError(f"{positions} position embeddings: expected a square grid of patches plus one "
                          f"class token")
    depth = len({int(m.group(1)) for k in vision_sd if (m := re.match(r"encoder\.layers\.(\d+)\.", k))})
    if width % VIT_HEAD_DIM:
        raise ConfigError(f"vision width {width} is not a multiple of BLIP's head size {VIT_HEAD_DIM}")
    return BlipVisionConfig(
        hidden_size=width, intermediate_size=int(vision_sd["encoder.layers.0.mlp.fc1.weight"].shape[0]),
        num_hidden_layers=depth, num_attention_heads=width // VIT_HEAD_DIM, image_size=grid * patch,
        patch_size=patch, hidden_act="gelu", layer_norm_eps=VIT_LAYER_NORM_EPS, attention_dropout=0.0)


def text_config(med_config: Mapping[str, Any], encoder_width: int):
    """`BlipTextConfig` of ``med_config.json`` (BLIP's BertConfig), cross-attending to ``encoder_width``
    (the vision width, as ``BLIP_Pretrain`` sets ``encoder_config.encoder_width = vision_width``)."""
    from transformers import BlipTextConfig

    required = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "max_position_embeddings")
    absent = [k for k in required if k not in med_config]
    if absent:
        raise ConfigError(f"med_config.json lacks {', '.join(absent)}")
    if not med_config.get("add_cross_attention", False):
        raise ConfigError("med_config.json has no cross-attention (add_cross_attention): "
                          "not ImageReward's text encoder")
    if med_config.get("position_embedding_type", "absolute") != "absolute":
        raise ConfigError(f"med_config.json: position_embedding_type "
                          f"{med_config['position_embedding_type']!r} is not supported "
                          "(ImageReward uses absolute positions)")
    if int(med_config["max_position_embeddings"]) < MAX_LENGTH:
        raise ConfigError(f"med_config.json: max_position_embeddings < {MAX_LENGTH} tokens")
    return BlipTextConfig(
        vocab_size=int(med_config["vocab_size"]), hidden_size=int(med_config["hidden_size"]),
        encoder_hidden_size=int(encoder_width), intermediate_size=int(med_config["intermediate_size"]),
        num_hidden_layers=int(med_config["num_hidden_layers"]),
        num_attention_heads=int(med_config["num_attention_heads"]),
        max_position_embeddings=int(med_config["max_position_embeddings"]),
        hidden_act=str(med_config.get("hidden_act", "gelu")),  # BertConfig's defaults where absent
        layer_norm_eps=float(med_config.get("layer_norm_eps", 1e-12)),
        pad_token_id=int(med_config.get("pad_token_id", 0)),
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        bos_token_id=None, eos_token_id=None, sep_token_id=None,
        # builds the cross-attention blocks; forward runs it as an encoder (is_decoder=False)
        is_decoder=True,
        use_cache=False)


class RewardHead(nn.Module):
    """The package's ``MLP(768)`` for a text width ``width``: ``layers`` = Linear/Dropout in the same
    order (``layers.{0,2,4,6,7}`` are the linears), no activations."""

    def __init__(self, width: int):
        super().__init__()
        w = (width, *MLP_WIDTHS)
        self.layers = nn.Sequential(
            nn.Linear(w[0], w[1]), nn.Dropout(MLP_DROPOUTS[0]),
            nn.Linear(w[1], w[2]), nn.Dropout(MLP_DROPOUTS[1]),
            nn.Linear(w[2], w[3]), nn.Dropout(MLP_DROPOUTS[2]),
            nn.Linear(w[3], w[4]),
            nn.Linear(w[4], w[5]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class ImageRewardModel(nn.Module):
    """ImageReward's scoring path on transformers modules: ``visual_encoder`` (`BlipVisionModel`),
    ``text_encoder`` (`BlipTextModel`, no pooler), ``mlp`` (`RewardHead`)."""

    def __init__(self, vision_cfg, text_cfg):
        super().__init__()
        from transformers import BlipVisionModel
        from transformers.models.blip.modeling_blip_text import BlipTextModel

        self.visual_encoder = BlipVisionModel(vision_cfg)
        self.text_encoder = BlipTextModel(text_cfg, add_pooling_layer=False)
        self.mlp = RewardHead(text_cfg.hidden_size)
        self.image_size = int(vision_cfg.image_size)

    def image_embeds(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """BLIP's ``visual_encoder(image)``: every token after the final LayerNorm (B × (1+N) × width)."""
        return self.visual_encoder(pixel_values=pixel_values).last_hidden_state

    def text_features(self, pixel_values: torch.Tensor, input_ids: torch.Tensor,
                      attention_mask: torch.Tensor) -> torch.Tensor:
        """``text_encoder(ids, attention_mask, encoder_hidden_states=image_embeds,
        encoder_attention_mask=ones).last_hidden_state[:, 0, :]``."""
        embeds = self.image_embeds(pixel_values)
        image_atts = torch.ones(embeds.shape[:-1], dtype=torch.long, device=embeds.device)
        out = self.text_encoder(input_ids=input_ids, attention_mask=attention_mask,
                                encoder_hidden_states=embeds, encoder_attention_mask=image_atts,
                                is_decoder=False)
        return out.last_hidden_state[:, 0, :].float()

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor,
                attention_mask: torch.Tensor) -> torch.Tensor:
        """The normalised reward, shape (B,)."""
        r = self.mlp(self.text_features(pixel_values, input_ids, attention_mask))
        return ((r - REWARD_MEAN) / REWARD_STD).squeeze(-1)


def build_tokenizer(folder: Path):
    """``init_tokenizer()`` of `blip.py` from a local ``vocab.txt``: bert-base-uncased's WordPiece
    (lower case), ``[DEC]`` added as bos token, ``[ENC]`` as additional special token;
    ``tokenizer.enc_token_id`` is set as BLIP does (ImageReward's scoring does not use it)."""
    from transformers import BertTokenizer
    from transformers.models.bert.tokenization_bert import load_vocab

    vocab_file = Path(folder) / "vocab.txt"
    # transformers 5's BertTokenizer takes the vocabulary itself (a vocab_file keyword is silently ignored)
    tokenizer = BertTokenizer(vocab=dict(load_vocab(str(vocab_file))), do_lower_case=True)
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    tokenizer.enc_token_id = tokenizer.convert_tokens_to_ids("[ENC]")
    return tokenizer


def tokenize(tokenizer, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """``tokenizer(prompt, padding='max_length', truncation=True, max_length=35)``: (ids, attention mask)."""
    enc = tokenizer(list(prompts), padding="max_length", truncation=True, max_length=MAX_LENGTH,
                    return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


def preprocess(image, size: int) -> torch.Tensor:
    """One image (3×H×W tensor in [0, 1], or a PIL image) → 3×size×size as ``_transform(size)`` of the
    package makes it: uint8, PIL bicubic ``Resize(size)`` (torchvision's output size),
    ``CenterCrop(size)``, ``ToTensor``, ``Normalize(CLIP mean, std)``."""
    from PIL import Image

    from icd_bench.imaging import tensor_to_pil

    if isinstance(image, Image.Image):
        pil = image.convert("RGB")
    elif image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a 3×H×W image, got shape {tuple(image.shape)}")
    else:
        pil = tensor_to_pil(image)
    w, h = pil.size
    new_h, new_w = torchvision_size(h, w, size)
    if (new_w, new_h) != (w, h):
        pil = pil.resize((new_w, new_h), Image.BICUBIC)
    x = torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255.0).permute(2, 0, 1)
    x = center_crop(x[None], size)
    return normalize(x, CLIP_MEAN, CLIP_STD)[0]


def _no_init():
    try:  # skip random initialisation: every tensor is overwritten from the checkpoint
        from transformers.initialization import no_init_weights
    except ImportError:  # pragma: no cover - other transformers layouts
        return contextlib.nullcontext()
    return no_init_weights()


def build_model(weights_dir: Path, tokenizer_dir: Path) -> tuple[ImageRewardModel, Any]:
    """ImageReward from ``weights_dir`` (``ImageReward.pt``, ``med_config.json``) and the tokenizer of
    ``tokenizer_dir`` (``vocab.txt``), on the CPU in eval mode; `ConfigError` on any layout mismatch."""
    ckpt = Path(weights_dir) / "ImageReward.pt"
    try:
        state_dict = torch.load(ckpt, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unreadable / not a plain state dict
        raise ConfigError(f"cannot read {ckpt} as a state dict: {exc}") from exc
    if not isinstance(state_dict, Mapping):
        raise ConfigError(f"{ckpt} holds a {type(state_dict).__name__}, not ImageReward's state dict")
    try:
        med = json.loads((Path(weights_dir) / "med_config.json").read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {Path(weights_dir) / 'med_config.json'}: {exc}") from exc
    parts = map_checkpoint(state_dict, str(ckpt))
    v_cfg = vision_config(parts["vision"])
    t_cfg = text_config(med, v_cfg.hidden_size)
    tokenizer = build_tokenizer(tokenizer_dir)
    if len(tokenizer) != t_cfg.vocab_size:
        raise ConfigError(f"the tokenizer of {tokenizer_dir} has {len(tokenizer)} tokens with [DEC] and "
                          f"[ENC] added, ImageReward's text encoder {t_cfg.vocab_size} (med_config.json): "
                          "not bert-base-uncased's vocab.txt?")
    with _no_init():
        model = ImageRewardModel(v_cfg, t_cfg)
    load_exact(model.visual_encoder, parts["vision"], "vision", str(ckpt))
    load_exact(model.text_encoder, parts["text"], "text", str(ckpt))
    load_exact(model.mlp, parts["mlp"], "mlp", str(ckpt))
    return model.float().eval(), tokenizer


def load(weights_dir: Path, tokenizer_dir: Path,
         device: torch.device | str = "cpu") -> tuple[ImageRewardModel, Any]:
    """(model, tokenizer), loaded once per (weights folder, tokenizer folder, device)."""
    def build():
        model, tokenizer = build_model(Path(weights_dir), Path(tokenizer_dir))
        return model.to(device), tokenizer

    key = (Path(weights_dir).resolve(), Path(tokenizer_dir).resolve(), torch.device(device))
    return cached_model("imagereward", key, build)


@METRICS.register("imagereward")
class ImageReward(Metric):
    """ImageReward-v1.0 of the output for its target prompt (whole image; higher is better)."""

    flavours = ("clean", ICD)
    needs = ("target_prompt",)
    higher_is_better = True
    option_keys = ("icd_images",)

    def _model(self) -> tuple[ImageRewardModel, Any]:
        if getattr(self, "_loaded", None) is None:
            folders = (resolve(IMAGEREWARD_V1, needed_by="metric 'imagereward'"),
                       resolve(BERT_BASE_UNCASED, needed_by="metric 'imagereward'"))
            self._loaded = load(*folders, self.device)
        return self._loaded

    def check(self) -> None:
        require_extra("transformers", "imagereward")
        if self.spec.flavour == ICD:
            icd_protocol.check_options(self.options)
        self._model()  # missing weights or a foreign layout fail here, before any sample

    def score(self, items: Sequence[ScoreItem]) -> list[dict[str, float]]:
        self.require(items)
        model, tokenizer = self._model()
        images = [item.output for item in items]
        if self.spec.flavour == ICD:
            images = icd_protocol.views(images, role="output", options=self.options, task=self.task)
        pixels = torch.stack([preprocess(x, model.image_size) for x in images]).to(self.device)
        ids, mask = tokenize(tokenizer, [item.target_prompt for item in items])
        with torch.inference_mode():
            rewards = model(pixels, ids.to(self.device), mask.to(self.device))
        return [{self.spec.key: float(r)} for r in rewards.cpu().tolist()]
