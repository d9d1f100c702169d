"""CLIP similarities with open_clip: ``clip_t`` (output ↔ target prompt) and ``clip_i`` (output ↔ source).

Definition (Radford et al., "Learning Transferable Visual Models From Natural Language
Supervision", ICML 2021; Hessel et al., "CLIPScore", EMNLP 2021): the cosine similarity of
L2-normalised CLIP embeddings — ``clip_t`` of the output image and the target prompt, ``clip_i``
of the output image and the source image.

Flavours:

- ``clean``: the raw cosine in [-1, 1] (the iCD paper's convention for CLIP score and image
  similarity) on open_clip's own preprocessing and precision; ``icd`` below is the iCD code's exact
  computation.
- ``pie``: ``100 · max(cos, 0)``, the CLIPScore of torchmetrics (``CLIPScore``), which PIE-Bench
  (Ju et al., "Direct Inversion", ICLR 2024; `evaluation/matrics_calculator.py`,
  ``CLIPScore(model_name_or_path="openai/clip-vit-large-patch14")``) reports. Its key spells the
  flavour, e.g. ``clip_t:whole:pie``.

Regions: ``whole``, and ``edited`` = the image multiplied by the edit mask before CLIP sees it
(PIE-Bench's "CLIP Similarity, edited"; for ``clip_i`` both images are masked). An empty edit
mask gives NaN (counted as failed).

Options: ``clip_model`` (an open_clip architecture, default ``ViT-L-14``) and ``clip_pretrained``
(an open_clip pretrained tag, default ``openai``; with ViT-L-14 that is the model PIE-Bench uses).
The weight is the single open_clip checkpoint of that pair, weight key
``clip-<model>-<pretrained>`` (lower case; the default is ``clip-vit-l-14-openai``), laid out as
``KEY/open_clip_pytorch_model.bin`` or ``KEY/open_clip_model.safetensors`` under
``--weights-dir`` / ``ICD_BENCH_WEIGHTS``, or found in the Hugging Face cache of the tag's hub
repository (`clip_weight_spec`). The tag still decides what open_clip would set for it — QuickGELU
(all OpenAI weights) and the preprocessing — since a local file carries neither.

Preprocessing. ``clean``: on tensors (`clip_pixels`), as open_clip's evaluation transform for the
pair: shorter side to the model's input size (the tag's interpolation, bicubic for OpenAI) with
antialiasing, central square, mean/std from the model's preprocess config (OpenAI's CLIP mean/std
for OpenAI weights). ``pie``: as torchmetrics' ``CLIPScore`` does it for PIE-Bench — the 8-bit image
(for ``edited``, the 8-bit image times the 0/1 mask, as PIE-Bench's ``np.uint8(img * mask)``) through
transformers' ``CLIPImageProcessor`` (PIL bicubic resize of the shorter side, central crop, then
mean/std: `clip_pixels_pie`); the two differ by up to ~0.1 in normalised pixel values.

``icd`` (``clip_t:whole:icd``, ``clip_i:whole:icd``): exactly ``calc_clip_score_images_prompts`` /
``calc_clip_score_images_images`` of the iCD code (`icd_protocol`): transformers' ``CLIPModel`` from
a folder laid out as the hub's ``openai/clip-vit-large-patch14`` (weight ``clip-vit-large-patch14``,
float32), images as the official code reads them through the folder's PIL image processor, prompts
through its tokenizer with ``padding=True, truncation=True, max_length=77`` (ids only, no attention
mask: CLIP's causal text model pools at the end-of-text token, so padding never changes a value),
``get_image_features`` / ``get_text_features`` under the official autocast, each divided by its norm,
the raw cosine (the iCD paper's CLIP score). The ``clip_model`` / ``clip_pretrained`` options do not
apply to it.

Text: open_clip's tokenizer for the architecture (`open_clip.get_tokenizer`): 77 positions, a
longer prompt cut to 76 tokens plus the end-of-text token. torchmetrics instead cuts the ids at 77
with no end-of-text token, so prompts over 75 tokens are encoded differently there (PIE-Bench's
prompts are far shorter).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from icd_bench.errors import ConfigError
from icd_bench.metrics import icd_protocol, pie_protocol
from icd_bench.metrics.base import FLAVOURS, ICD, Metric, ScoreItem
from icd_bench.metrics.preprocess import (
    CLIP_MEAN,
    CLIP_STD,
    apply_mask,
    center_crop,
    normalize,
    resize_short_side,
    stack,
)
from icd_bench.metrics.weights import (
    CLIP_HF_VIT_L_14,
    KNOWN,
    WeightSpec,
    cached_model,
    require_extra,
    resolve,
)
from icd_bench.registry import METRICS

DEFAULT_MODEL = "ViT-L-14"
DEFAULT_PRETRAINED = "openai"
OPEN_CLIP_FILES = ("open_clip_pytorch_model.bin", "open_clip_model.safetensors")


@dataclass
class LoadedClip:
    model: torch.nn.Module
    tokenizer: Any
    preprocess: dict[str, Any]


def clip_weight_spec(model_name: str, pretrained: str) -> WeightSpec:
    """The weight of an open_clip (architecture, pretrained tag) pair: the registered spec when
    there is one (``clip-vit-l-14-openai``), else one built the same way — key
    ``clip-<model>-<pretrained>`` (lower case), a single open_clip checkpoint file, and the hub
    repository open_clip lists for the tag (when it lists one)."""
    key = f"clip-{model_name}-{pretrained}".lower()
    if key in KNOWN:
        return KNOWN[key]
    files = OPEN_CLIP_FILES
    hub = None
    try:
        import open_clip

        hf_hub = open_clip.get_pretrained_cfg(model_name, pretrained).get("hf_hub", "")
    except ImportError:
        hf_hub = ""
    if hf_hub:  # open_clip's form: 'org/repo/' (default file names) or 'org/repo/FILE'
        hub, filename = hf_hub.rsplit("/", 1) if hf_hub.count("/") > 1 else (hf_hub, "")
        if filename and filename not in files:
            files = (filename, *files)
    return WeightSpec(key, f"CLIP {model_name} with {pretrained} weights (open_clip)", files, hub=hub,
                      single_file=True)


def load_clip(model_name: str, pretrained: str, path: Path, device: torch.device) -> LoadedClip:
    """open_clip's ``model_name`` with the checkpoint at ``path``, built as open_clip builds it for
    the tag ``pretrained`` (QuickGELU, preprocessing), in eval mode on ``device``; cached per
    (file, architecture, tag, device): clip_t and clip_i share it."""

    def load():
        import open_clip

        if open_clip.get_model_config(model_name) is None:
            close = difflib.get_close_matches(model_name, open_clip.list_models(), n=5)
            raise ConfigError(f"clip_model={model_name!r} is not an open_clip architecture"
                              + (f"; did you mean {', '.join(close)}?" if close
                                 else " (see open_clip.list_models())"))
        tag = open_clip.get_pretrained_cfg(model_name, pretrained)
        preprocess = {k: tag[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in tag}
        try:
            model = open_clip.create_model(model_name, pretrained=str(path), device=device,
                                           force_quick_gelu=bool(tag.get("quick_gelu", False)),
                                           force_preprocess_cfg=preprocess or None)
        except Exception as exc:  # noqa: BLE001 - unreadable file, or weights of another architecture
            raise ConfigError(f"cannot load {path} into open_clip's {model_name}: {exc}") from None
        model.eval().requires_grad_(False)
        return LoadedClip(model, open_clip.get_tokenizer(model_name),
                          dict(open_clip.get_model_preprocess_cfg(model)))

    return cached_model("clip", (path, model_name, pretrained, device), load)


def _resize(x: torch.Tensor, h: int, w: int, mode: str) -> torch.Tensor:
    if tuple(x.shape[-2:]) == (h, w):
        return x
    return F.interpolate(x, size=(h, w), mode=mode, antialias=True, align_corners=False).clamp(0, 1)


def clip_pixels(x: torch.Tensor, cfg: dict[str, Any]) -> torch.Tensor:
    """B×3×H×W in [0, 1] → the model's normalised input, as open_clip's evaluation transform
    (`open_clip.transform.image_transform`, ``is_train=False``) on tensors: ``resize_mode``
    ``shortest`` = shorter side to the input size, then the central crop (CLIP's transform);
    ``squash`` = resize to the input size; ``longest`` = longer side to the input size, centred
    on a ``fill_color`` canvas. Resizing is antialiased, with the config's interpolation."""
    size = cfg.get("size", 224)
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[-1]))
    mode = cfg.get("interpolation", "bicubic")
    if mode not in ("bicubic", "bilinear"):
        mode = "bicubic"  # 'random' is a training-time augmentation
    resize_mode = cfg.get("resize_mode", "shortest")
    ih, iw = x.shape[-2:]
    if resize_mode == "squash":
        x = _resize(x, h, w, mode)
    elif resize_mode == "shortest" and h == w:
        x = center_crop(resize_short_side(x, h, mode=mode), h)
    elif resize_mode in ("shortest", "longest"):
        scale = (max if resize_mode == "shortest" else min)(h / ih, w / iw)
        nh, nw = max(1, round(ih * scale)), max(1, round(iw * scale))
        x = _resize(x, nh, nw, mode)
        if resize_mode == "longest":  # centre on the canvas (torchvision's CenterCrop padding offsets)
            top, left = (h - nh) // 2, (w - nw) // 2
            x = F.pad(x, (left, w - nw - left, top, h - nh - top), value=cfg.get("fill_color", 0) / 255.0)
        else:
            top, left = int(round((nh - h) / 2.0)), int(round((nw - w) / 2.0))
            x = x[..., top:top + h, left:left + w]
    else:
        raise ConfigError(f"open_clip resize_mode {resize_mode!r} is not supported "
                          f"(shortest, squash, longest)")
    return normalize(x, cfg.get("mean", CLIP_MEAN), cfg.get("std", CLIP_STD))


def clip_pixels_pie(x: torch.Tensor, cfg: dict[str, Any]) -> torch.Tensor:
    """B×3×H×W in [0, 1] → the model's input as torchmetrics' ``CLIPScore`` (PIE-Bench) computes it:
    8-bit pixels through transformers' ``CLIPImageProcessor`` (shorter side to the input size with
    PIL bicubic, central crop, rescale, mean/std of the model's config)."""
    from transformers import CLIPImageProcessor

    size = cfg.get("size", 224)
    side = size if isinstance(size, int) else int(size[0])
    processor = CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side},
                                   image_mean=list(cfg.get("mean", CLIP_MEAN)),
                                   image_std=list(cfg.get("std", CLIP_STD)))
    pixels = (x.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    out = processor(images=[p for p in pixels], return_tensors="pt")["pixel_values"]
    return out.to(x.device)


@dataclass
class IcdClip:
    """CLIP as the iCD code loads it: ``AutoProcessor`` (PIL image processor + tokenizer) and
    ``AutoModel``."""

    model: torch.nn.Module
    tokenizer: Any
    image_processor: Any


def load_icd_clip(folder: Path, device: torch.device) -> IcdClip:
    """The transformers CLIP of ``folder`` (float32, eval) with its tokenizer and PIL image processor;
    cached per (folder, device)."""
    from transformers import AutoTokenizer, CLIPModel

    def load():
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder))
        except Exception as exc:  # noqa: BLE001 - no tokenizer files in the folder: name it
            raise ConfigError(f"cannot read the CLIP tokenizer of {folder}: {exc}") from None
        return IcdClip(icd_protocol.float32_model(CLIPModel, folder).to(device), tokenizer,
                       icd_protocol.pil_image_processor(folder))

    return cached_model("clip-icd", (folder, device), load)


class _ClipMetric(Metric):
    regions = ("whole", "edited")
    flavours = (*FLAVOURS, ICD)
    option_keys = ("clip_model", "clip_pretrained", *pie_protocol.OPTION_KEYS, *icd_protocol.OPTION_KEYS)

    @property
    def model_name(self) -> str:
        return self.options.get("clip_model", DEFAULT_MODEL).strip()

    @property
    def pretrained(self) -> str:
        return self.options.get("clip_pretrained", DEFAULT_PRETRAINED).strip()

    def _clip(self) -> LoadedClip:
        spec = clip_weight_spec(self.model_name, self.pretrained)
        path = resolve(spec, needed_by=f"metric {self.name!r} (clip_model={self.model_name}, "
                                       f"clip_pretrained={self.pretrained})")
        return load_clip(self.model_name, self.pretrained, path, self.device)

    def check(self) -> None:
        if self.spec.flavour == ICD:
            require_extra("transformers", self.name)
            icd_protocol.check_options(self.options)
            self._icd_clip()
            return
        require_extra("open_clip", self.name)
        self._clip()  # resolves the checkpoint (WeightsNotFoundError) and checks that it loads

    def _icd_clip(self) -> IcdClip:
        return load_icd_clip(resolve(CLIP_HF_VIT_L_14, needed_by=f"metric '{self.name}:whole:icd'"),
                             self.device)

    def _icd_views(self, images: Sequence[torch.Tensor], role: str) -> list:
        return icd_protocol.views(images, role=role, options=self.options, task=self.task)

    def _icd_image_embeds(self, clip: IcdClip, images: list) -> torch.Tensor:
        """``get_image_features`` of the processed images under the official autocast, divided by its norm."""
        pixels = clip.image_processor(images=images, return_tensors="pt")["pixel_values"].to(self.device)
        with icd_protocol.autocast(self.options, self.device):
            embs = icd_protocol.features_tensor(clip.model.get_image_features(pixel_values=pixels))
        return icd_protocol.unit(embs)

    def _icd_text_embeds(self, clip: IcdClip, texts: Sequence[str]) -> torch.Tensor:
        ids = clip.tokenizer(list(texts), padding=True, truncation=True, max_length=77,
                             return_tensors="pt")["input_ids"].to(self.device)
        with icd_protocol.autocast(self.options, self.device):
            embs = icd_protocol.features_tensor(clip.model.get_text_features(ids))
        return icd_protocol.unit(embs)

    def _icd_scores(self, clip: IcdClip, items: Sequence[ScoreItem]) -> torch.Tensor:
        raise NotImplementedError

    def _images(self, clip: LoadedClip, images: Sequence[torch.Tensor],
                regions: Sequence[np.ndarray | None]) -> torch.Tensor:
        x = stack(images, self.device)
        if self.spec.region == "edited":
            x = apply_mask(x, regions)
        pixels = (clip_pixels_pie if self.spec.flavour == "pie" else clip_pixels)(x, clip.preprocess)
        return F.normalize(clip.model.encode_image(pixels).float(), dim=-1)

    def _texts(self, clip: LoadedClip, texts: Sequence[str]) -> torch.Tensor:
        tokens = clip.tokenizer(list(texts)).to(self.device)
        return F.normalize(clip.model.encode_text(tokens).float(), dim=-1)

    def _regions(self, items: Sequence[ScoreItem]) -> list[np.ndarray | None]:
        regions = [self.region_mask(item) for item in items]
        for item, region in zip(items, regions, strict=True):
            if region is not None and region.shape != tuple(item.output.shape[-2:]):
                raise ValueError(f"mask {region.shape} does not match the image "
                                 f"{tuple(item.output.shape[-2:])}")
        return regions

    def _values(self, cos: torch.Tensor, regions: Sequence[np.ndarray | None]) -> list[dict[str, float]]:
        cos = cos.double().cpu()
        if self.spec.flavour == "pie":
            cos = 100.0 * cos.clamp_min(0.0)
        return [{self.spec.key: self.empty_region() if r is not None and not r.any() else float(c)}
                for c, r in zip(cos, regions, strict=True)]

    def score(self, items: Sequence[ScoreItem]) -> list[dict[str, float]]:
        self.require(items)
        if self.spec.flavour == ICD:
            with torch.inference_mode():
                scores = icd_protocol.official_scores(self._icd_scores(self._icd_clip(), items))
            return [{self.spec.key: v} for v in scores]
        regions = self._regions(items)
        clip = self._clip()
        with torch.inference_mode():
            cos = self._cosines(clip, items, regions)
        return self._values(cos, regions)

    def _cosines(self, clip: LoadedClip, items: Sequence[ScoreItem],
                 regions: Sequence[np.ndarray | None]) -> torch.Tensor:
        """B cosines of the batch (one forward per tower)."""
        raise NotImplementedError


@METRICS.register("clip_t")
class ClipT(_ClipMetric):
    """
    CLIP text-image similarity of the output and the target prompt (open_clip ViT-L/14; icd: transformers').
    """

    needs = ("target_prompt",)

    def _cosines(self, clip, items, regions):
        image = self._images(clip, [item.output for item in items], regions)
        prompts = [pie_protocol.prompt(item, "target", self.options) if self.spec.flavour == "pie"
                   else item.target_prompt for item in items]
        text = self._texts(clip, prompts)
        return (image * text).sum(-1)

    def _icd_scores(self, clip, items):
        """``calc_clip_score_images_prompts(edited or generated images, target prompts)``."""
        image = self._icd_image_embeds(clip, self._icd_views([item.output for item in items], "output"))
        text = self._icd_text_embeds(clip, [item.target_prompt for item in items])
        return (text * image).sum(-1)


@METRICS.register("clip_i")
class ClipI(_ClipMetric):
    """CLIP image-image similarity of the output and the source (open_clip ViT-L/14; icd: transformers')."""

    needs = ("source",)

    def _cosines(self, clip, items, regions):
        out = self._images(clip, [item.output for item in items], regions)
        src = self._images(clip, [item.source for item in items], regions)
        return (out * src).sum(-1)

    def _icd_scores(self, clip, items):
        """``calc_clip_score_images_images(source images, edited images)``."""
        src = self._icd_image_embeds(clip, self._icd_views([item.source for item in items], "source"))
        out = self._icd_image_embeds(clip, self._icd_views([item.output for item in items], "output"))
        return (out * src).sum(-1)
