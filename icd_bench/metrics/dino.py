"""DINO-based preservation metrics: ``dinov2`` (iCD) and ``structure_distance`` (PIE-Bench).

``dinov2`` — cosine similarity of the DINOv2 ViT-B/14 embeddings of the source and the output,
higher is better. As the iCD paper's code computes it (yandex-research/invertible-cd,
``utils/metrics.py``, ``calc_dinov2_images_images``): ``facebook/dinov2-base`` through
transformers' ``Dinov2Model``, the embedding is the **pooled output** (the final-LayerNorm'd CLS
token), L2-normalised, and the score is the dot product of the two embeddings. Preprocessing
follows the weight folder's ``preprocessor_config.json`` when present (``shortest_edge`` resize,
``crop_size`` centre crop, rescale, ``image_mean``/``image_std``, ``resample``), else the DINOv2
processor's values: shorter side to 256 (bicubic), centre crop 224, ImageNet mean/std. It runs on
tensors (`icd_bench.metrics.preprocess`: antialiased bicubic, clamped to [0, 1]), so it is close
to, not bit-identical with, the PIL resize of the Hugging Face processor; iCD also ran the model
under fp16 autocast, here it runs in float32. Whole image only. For the iCD code's exact numbers use
the ``icd`` flavour below.

``dinov2:whole:icd`` is exactly ``calc_dinov2_images_images``: both images as the official code reads
them (`icd_protocol.view`), transformers' PIL image processor of the weight folder
(``AutoImageProcessor``), ``AutoModel`` (``Dinov2Model``, float32) under the official autocast
(`icd_protocol.autocast`), each ``pooler_output`` divided by its norm in the dtype autocast leaves it,
the dot product of the two.

``structure_distance`` — PIE-Bench's structure distance (cure-lab/PnPInversion,
``evaluation/matrics_calculator.py``: ``MetricsCalculator.calculate_structure_distance`` →
``LossG.calculate_global_ssim_loss`` → ``VitExtractor.get_keys_self_sim_from_input``, the
extractor of Splice, omerbt/Splice ``models/extractor.py``), lower is better:

1. each image goes through ``transforms.Compose([Resize(224, max_size=480), Normalize(ImageNet
   mean, std)])``: the shorter side to 224 (the longer one ``int(224·long/short)``, capped at 480),
   **bilinear without antialiasing** (PIE-Bench's environment is torchvision 0.13.1, whose
   ``Resize`` on tensors defaults to ``antialias=None`` = off; reproduced with
   ``F.interpolate(mode="bilinear", align_corners=False, antialias=False)`` and torchvision's
   output-size rule);
2. DINO ViT-B/8 (``torch.hub.load('facebookresearch/dino:main', 'dino_vitb8')``, here the same
   weights in transformers' ``ViTModel`` layout, ``facebook/dino-vitb8``) runs on it; the keys of
   block 11's self-attention are taken (Splice hooks ``block.attn.qkv`` and keeps the ``k`` part;
   here a forward hook on layer 11's key projection, which holds exactly those rows of ``qkv``):
   all heads concatenated per token, CLS token included, a T×D matrix with T = 1 + (H/8)·(W/8);
3. their cosine self-similarity, ``S = K Kᵀ / clamp(‖k_i‖·‖k_j‖, min=1e-8)`` (T×T);
4. the value is ``F.mse_loss(S_output, S_source)``, the mean over the T² entries. Published
   tables print it ×10³; this metric stores the raw MSE.

Flavours differ only in the normalisation of step 1:

- ``pie`` reproduces the published computation exactly. PIE-Bench hands the transform
  ``np.array(img).astype(np.float32)`` — pixel values in **0–255**, never divided by 255 — so
  ``Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))`` computes ``(255·x − mean)/std``:
  inputs of magnitude ~10³ instead of ~1. (Splice itself maps its images to [0, 1] first:
  ``util/losses.py`` applies ``Normalize((-1,)*3, (2,)*3)`` to its [-1, 1] tensors before the
  ImageNet normalisation.) Here the [0, 1] image is taken back to the 8-bit values PIE-Bench
  reads from its files, ``round(255·x)`` (a no-op for images loaded from 8-bit files), resized,
  then normalised with the [0, 1] ImageNet statistics: PIE-Bench's values and order of operations.
- ``clean`` normalises the [0, 1] image, ``(x − mean)/std``, as DINO was trained.

Model details kept from the original: DINO's blocks use ``LayerNorm(eps=1e-6)``
(facebookresearch/dino ``vision_transformer.py``, ``vit_base``) while the hub's converted DINO
configs carry transformers' default 1e-12, so the model is loaded with ``layer_norm_eps=1e-6``; for
inputs whose patch grid is not the 28×28 the position embeddings were trained at (non-square
images), they are interpolated the way DINO's ``interpolate_pos_encoding`` does it (bicubic,
``scale_factor`` = (grid + 0.1)/28), not transformers' size-based variant. PIE-Bench's 512×512
images become 224×224 and use the embeddings as they are. Option ``structure_layer`` (default 11)
picks another block. Whole image only: PIE-Bench's ``structure_distance`` row is the whole-image one.
"""

from __future__ import annotations

import json
import math
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from icd_bench.errors import ConfigError
from icd_bench.metrics import icd_protocol
from icd_bench.metrics.base import ICD, Metric, ScoreItem
from icd_bench.metrics.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    center_crop,
    normalize,
    resize_short_side,
    stack,
    torchvision_size,
)
from icd_bench.metrics.weights import DINO_VITB8, DINOV2_BASE, cached_model, require_extra, resolve
from icd_bench.registry import METRICS


# -- shared helpers ------------------------------------------------------------------------------
def _image(x: torch.Tensor, what: str) -> torch.Tensor:
    if x.ndim != 3 or x.shape[0] != 3:
        raise ValueError(f"the {what} image must be 3xHxW, got {tuple(x.shape)}")
    return x


def _by_size(images: Sequence[torch.Tensor], fn: Callable[[torch.Tensor], torch.Tensor],
             device: torch.device) -> list[torch.Tensor]:
    """``fn`` applied to the images batched by size (one call per distinct H×W); results in input order."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, x in enumerate(images):
        groups.setdefault(tuple(x.shape), []).append(i)
    out: list[torch.Tensor | None] = [None] * len(images)
    for idx in groups.values():
        y = fn(stack([images[i] for i in idx], device))
        for j, i in enumerate(idx):
            out[i] = y[j]
    return out  # type: ignore[return-value]


def _cached(kind: str, folder: Path, device: torch.device, load: Callable[[], Any]) -> Any:
    return cached_model(kind, (folder, device), lambda: load().to(device).eval().requires_grad_(False))


def _ready(metric: Metric, items: Sequence[ScoreItem]) -> bool:
    """At the top of a DINO metric's `score`: the items carry what it needs, its weights are found
    (``check``, once); False when there is nothing to score."""
    metric.require(items)
    if getattr(metric, "_folder", None) is None:
        metric.check()
    return bool(items)


# -- DINOv2 --------------------------------------------------------------------------------------
_PIL_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic", "nearest": "nearest", "bilinear": "bilinear",
                 "bicubic": "bicubic"}


@dataclass(frozen=True)
class Dinov2Preprocess:
    """The DINOv2 image transform, as a Hugging Face ``preprocessor_config.json`` states it.

    ``short_side``: resize the shorter side to this (``size.shortest_edge``); ``resize_hw``: resize
    to exactly (H, W) (``size.height/width``); ``crop``: centre crop (square); ``scale``: the
    factor from [0, 1] to what the model sees before normalising (``255·rescale_factor``, 1 for the
    usual 1/255); ``mean``/``std``: None when ``do_normalize`` is false."""

    short_side: int | None = 256
    resize_hw: tuple[int, int] | None = None
    crop: int | None = 224
    mode: str = "bicubic"
    scale: float = 1.0
    mean: tuple[float, ...] | None = IMAGENET_MEAN
    std: tuple[float, ...] | None = IMAGENET_STD

    @staticmethod
    def from_folder(folder: Path) -> Dinov2Preprocess:
        """The folder's ``preprocessor_config.json``, else DINOv2's processor defaults (256 / 224 /
        ImageNet)."""
        path = Path(folder) / "preprocessor_config.json"
        if not path.is_file():
            return Dinov2Preprocess()
        try:
            cfg = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from None
        short_side, resize_hw, crop = None, None, None
        if cfg.get("do_resize", True):
            size = cfg.get("size", {"shortest_edge": 256})
            if isinstance(size, int):
                short_side = size
            elif isinstance(size, dict) and "shortest_edge" in size:
                short_side = int(size["shortest_edge"])
            elif isinstance(size, dict) and {"height", "width"} <= size.keys():
                resize_hw = (int(size["height"]), int(size["width"]))
            else:
                raise ConfigError(f"{path}: unsupported size {size!r}")
        if cfg.get("do_center_crop", True):
            c = cfg.get("crop_size", 224)
            hw = (c, c) if isinstance(c, int) else (c.get("height"), c.get("width"))
            if hw[0] != hw[1] or hw[0] is None:
                raise ConfigError(f"{path}: only square centre crops are supported, got crop_size {c!r}")
            crop = int(hw[0])
        resample = cfg.get("resample", 3)
        resample = resample.lower() if isinstance(resample, str) else resample
        if resample not in _PIL_RESAMPLE:
            raise ConfigError(f"{path}: resample {resample!r} is not supported (nearest, bilinear, bicubic)")
        scale = 255.0 * float(cfg.get("rescale_factor", 1 / 255)) if cfg.get("do_rescale", True) else 255.0
        scale = 1.0 if abs(scale - 1.0) < 1e-6 else scale  # 255 · 0.00392156862745098 ≠ 1.0 in floating point
        mean = std = None
        if cfg.get("do_normalize", True):
            mean = tuple(float(v) for v in cfg.get("image_mean", IMAGENET_MEAN))
            std = tuple(float(v) for v in cfg.get("image_std", IMAGENET_STD))
        return Dinov2Preprocess(short_side, resize_hw, crop, _PIL_RESAMPLE[resample], scale, mean, std)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """B×3×H×W in [0, 1] → the model's pixel values."""
        if self.short_side is not None:
            x = resize_short_side(x, self.short_side, mode=self.mode)
        elif self.resize_hw is not None and tuple(x.shape[-2:]) != self.resize_hw:
            smooth = self.mode in ("bilinear", "bicubic")
            x = F.interpolate(x, size=self.resize_hw, mode=self.mode, antialias=smooth,
                              align_corners=False if smooth else None).clamp(0, 1)
        if self.crop is not None:
            x = center_crop(x, self.crop)
        if self.scale != 1.0:
            x = x * self.scale
        if self.mean is not None:
            x = normalize(x, self.mean, self.std)
        return x


def load_dinov2(folder: Path, device: torch.device | str = "cpu"):
    """``Dinov2Model`` from a transformers folder, cached per (folder, device)."""
    from transformers import Dinov2Model

    return _cached("dinov2", folder, torch.device(device), lambda: Dinov2Model.from_pretrained(str(folder)))


def load_dinov2_icd(folder: Path, device: torch.device | str = "cpu"):
    """(PIL image processor, float32 ``Dinov2Model``) of a transformers folder, as
    ``calc_dinov2_images_images`` loads them; cached per (folder, device)."""
    from transformers import Dinov2Model

    def load():
        return (icd_protocol.pil_image_processor(folder),
                icd_protocol.float32_model(Dinov2Model, folder).to(device))

    return cached_model("dinov2-icd", (folder, torch.device(device)), load)


@METRICS.register("dinov2")
class DINOv2Similarity(Metric):
    """Cosine similarity of the DINOv2 ViT-B/14 pooled embeddings of source and output (iCD's metric)."""

    flavours = ("clean", ICD)
    needs = ("source",)
    higher_is_better = True
    option_keys = icd_protocol.OPTION_KEYS

    def check(self) -> None:
        require_extra("transformers", self.name)
        self._folder = resolve(DINOV2_BASE, needed_by=f"metric {self.name!r}")
        if self.spec.flavour == ICD:
            icd_protocol.check_options(self.options)
            load_dinov2_icd(self._folder, self.device)
        else:
            self._preprocess = Dinov2Preprocess.from_folder(self._folder)

    def _score_icd(self, items: Sequence[ScoreItem]) -> list[dict[str, float]]:
        processor, model = load_dinov2_icd(self._folder, self.device)
        sources = icd_protocol.views([it.source for it in items], role="source", options=self.options,
                                     task=self.task)
        outputs = icd_protocol.views([it.output for it in items], role="output", options=self.options,
                                     task=self.task)
        with torch.inference_mode():
            pix_src = processor(images=sources, return_tensors="pt")["pixel_values"].to(self.device)
            pix_out = processor(images=outputs, return_tensors="pt")["pixel_values"].to(self.device)
            with icd_protocol.autocast(self.options, self.device):
                emb_src = model(pixel_values=pix_src).pooler_output
            emb_src = icd_protocol.unit(emb_src)
            with icd_protocol.autocast(self.options, self.device):
                emb_out = model(pixel_values=pix_out).pooler_output
            emb_out = icd_protocol.unit(emb_out)
            scores = icd_protocol.official_scores((emb_out * emb_src).sum(-1))
        return [{self.spec.key: v} for v in scores]

    def score(self, items: Sequence[ScoreItem]) -> list[dict[str, float]]:
        if not _ready(self, items):
            return []
        if self.spec.flavour == ICD:
            return self._score_icd(items)
        sources = [_image(it.source, "source") for it in items]
        outputs = [_image(it.output, "output") for it in items]
        model = load_dinov2(self._folder, self.device)
        with torch.inference_mode():
            pixels = _by_size(sources + outputs, self._preprocess, self.device)
            # one forward per input size the transform yields (one per batch with the usual centre crop)
            emb = torch.stack(_by_size(pixels, lambda p: model(pixel_values=p).pooler_output, self.device))
            emb = F.normalize(emb.double(), dim=-1)
            n = len(items)
            cos = (emb[:n] * emb[n:]).sum(-1).cpu()
        return [{self.spec.key: float(c)} for c in cos]


# -- structure distance --------------------------------------------------------------------------
#: PIE-Bench's `Resize(224, max_size=480)`.
STRUCTURE_SIZE, STRUCTURE_MAX_SIZE = 224, 480
#: The LayerNorm epsilon of DINO's ViT blocks (facebookresearch/dino, vision_transformer.py).
DINO_LAYER_NORM_EPS = 1e-6


def structure_pixels(x: torch.Tensor, flavour: str = "clean") -> torch.Tensor:
    """B×3×H×W in [0, 1] → DINO's input as PIE-Bench builds it: ``Resize(224, max_size=480)``
    (bilinear, no antialiasing), then ImageNet normalisation of [0, 1] values (``clean``) or of
    the 8-bit values 0–255, ``round(255·x)`` (``pie``, PIE-Bench's published quirk)."""
    if flavour not in ("clean", "pie"):
        raise ValueError(f"unknown flavour {flavour!r}")
    x = x.float()
    if flavour == "pie":
        x = (x * 255.0).round()  # np.array(img).astype(np.float32) of the 8-bit file: never divided by 255
    size = torchvision_size(*x.shape[-2:], STRUCTURE_SIZE, STRUCTURE_MAX_SIZE)
    if size != tuple(x.shape[-2:]):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=False)
    return normalize(x, IMAGENET_MEAN, IMAGENET_STD)


def _dino_interpolate_pos_encoding(self, embeddings: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """DINO's own position-embedding interpolation (facebookresearch/dino, vision_transformer.py,
    ``VisionTransformer.interpolate_pos_encoding``), bound to a transformers ``ViTEmbeddings``."""
    pos = self.position_embeddings
    npatch, n = embeddings.shape[1] - 1, pos.shape[1] - 1
    if npatch == n and height == width:
        return pos
    dim = embeddings.shape[-1]
    side = int(math.sqrt(n))
    h0, w0 = height // self.patch_size + 0.1, width // self.patch_size + 0.1
    grid = F.interpolate(pos[:, 1:].reshape(1, side, side, dim).permute(0, 3, 1, 2),
                         scale_factor=(h0 / side, w0 / side), mode="bicubic")
    if grid.shape[-2:] != (int(h0), int(w0)):
        raise ValueError(f"position grid {tuple(grid.shape[-2:])} does not match the patch grid "
                         f"{(int(h0), int(w0))}")
    return torch.cat((pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, -1, dim)), dim=1)


def load_dino_vit(folder: Path, device: torch.device | str = "cpu"):
    """DINO ViT (transformers ``ViTModel``, no pooler) with DINO's LayerNorm epsilon and
    position-embedding interpolation, cached per (folder, device)."""
    from transformers import ViTModel

    def load():
        model = ViTModel.from_pretrained(str(folder), add_pooling_layer=False,
                                         layer_norm_eps=DINO_LAYER_NORM_EPS)
        model.embeddings.interpolate_pos_encoding = types.MethodType(_dino_interpolate_pos_encoding,
                                                                     model.embeddings)
        return model

    return _cached("dino-vit", folder, torch.device(device), load)


def key_projection(model, layer: int) -> torch.nn.Module:
    """The key projection of block ``layer``: ``layers[i].attention.k_proj`` (transformers ≥ 5) or
    ``encoder.layer[i].attention.attention.key`` (transformers 4)."""
    blocks = getattr(model, "layers", None)
    if blocks is None and hasattr(model, "encoder"):
        blocks = model.encoder.layer
    if blocks is None:
        raise ConfigError(f"{type(model).__name__} has no transformer blocks to hook")
    if not 0 <= layer < len(blocks):
        raise ConfigError(f"the model has {len(blocks)} blocks; block {layer} does not exist")
    attn = blocks[layer].attention
    for path in (("k_proj",), ("attention", "key")):
        mod = attn
        for name in path:
            mod = getattr(mod, name, None)
        if mod is not None:
            return mod
    raise ConfigError(f"cannot find the key projection of block {layer} in {type(model).__name__}")


def dino_keys(model, pixels: torch.Tensor, layer: int = 11) -> torch.Tensor:
    """B×T×D keys of block ``layer`` (all heads concatenated, CLS first), by a forward hook."""
    captured: list[torch.Tensor] = []
    handle = key_projection(model, layer).register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        model(pixel_values=pixels, interpolate_pos_encoding=True)
    finally:
        handle.remove()
    if len(captured) != 1:
        raise RuntimeError(f"the key hook of block {layer} fired {len(captured)} times")
    return captured[0]


def key_self_similarity(keys: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(…×)T×D → T×T cosine self-similarity, Splice's ``attn_cosine_sim``: K Kᵀ / clamp(‖k_i‖‖k_j‖, eps)."""
    norm = keys.norm(dim=-1, keepdim=True)
    factor = (norm @ norm.transpose(-1, -2)).clamp(min=eps)
    return (keys @ keys.transpose(-1, -2)) / factor


@METRICS.register("structure_distance")
class StructureDistance(Metric):
    """PIE-Bench's structure distance: MSE of DINO ViT-B/8 key self-similarities (lower is better)."""

    flavours = ("clean", "pie")
    needs = ("source",)
    higher_is_better = False
    option_keys = ("structure_layer",)

    @property
    def layer(self) -> int:
        raw = self.options.get("structure_layer", 11)
        try:
            layer = int(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"structure_layer must be a block index, got {raw!r}") from None
        if layer < 0:
            raise ConfigError(f"structure_layer must be >= 0, got {layer}")
        return layer

    def check(self) -> None:
        require_extra("transformers", self.name)
        folder = resolve(DINO_VITB8, needed_by=f"metric {self.name!r}")
        try:
            depth = int(json.loads((folder / "config.json").read_text())["num_hidden_layers"])
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"cannot read the depth of the ViT in {folder}/config.json: {exc}") from None
        if self.layer >= depth:
            raise ConfigError(f"structure_layer={self.layer}, but the ViT in {folder} has {depth} blocks")
        self._folder = folder

    def score(self, items: Sequence[ScoreItem]) -> list[dict[str, float]]:
        if not _ready(self, items):
            return []
        pairs = []
        for it in items:
            src, out = _image(it.source, "source"), _image(it.output, "output")
            if src.shape != out.shape:
                raise ValueError(f"output {tuple(out.shape)} and source {tuple(src.shape)} differ in size")
            if min(torchvision_size(*src.shape[-2:], STRUCTURE_SIZE, STRUCTURE_MAX_SIZE)) < 8:
                raise ValueError(f"image {tuple(src.shape[-2:])} is too elongated for DINO's 8-pixel patches")
            pairs.append((src, out))
        model = load_dino_vit(self._folder, self.device)
        layer, flavour = self.layer, self.spec.flavour

        def sims(batch: torch.Tensor) -> torch.Tensor:
            return key_self_similarity(dino_keys(model, structure_pixels(batch, flavour), layer).float())

        with torch.inference_mode():
            s = _by_size([p[0] for p in pairs] + [p[1] for p in pairs], sims, self.device)
            n = len(items)
            values = [float(F.mse_loss(s[n + i], s[i])) for i in range(n)]
        return [{self.spec.key: v} for v in values]
