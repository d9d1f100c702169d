"""LPIPS between the output and the source: whole image, background and edited region.

Definition (Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual
Metric", CVPR 2018; package ``lpips`` 0.1, `lpips/lpips.py`, version ``0.1``): both images scaled
to [-1, 1] (``normalize=True``), ImageNet-style shift/scale (lpips' ``ScalingLayer``), the
activations of an ImageNet classifier trunk at L layers, each unit-normalised over channels;
the squared difference at each layer goes through the layer's learned 1×1 "lin" weights (shipped
in the ``lpips`` wheel, ``weights/v0.1/<net>.pth``) and is averaged over space; LPIPS is the sum
over layers. Lower is more similar; LPIPS(x, x) = 0.

Option ``lpips_net`` (``--option lpips_net=...``): ``alex`` (default, the lpips package's
default), ``vgg`` or ``squeeze``, at the images' own resolution. Papers differ: the iCD paper's
(Table 2) is piq's VGG LPIPS at 224², ``lpips:whole:icd`` below; PIE-Bench
(Ju et al., "Direct Inversion", ICLR 2024; `evaluation/matrics_calculator.py`) reports LPIPS
from torchmetrics' ``LearnedPerceptualImagePatchSimilarity(net_type='squeeze')``, which is the
same network and lin weights: ``--option lpips_net=squeeze`` with the ``pie`` flavour reproduces
its tables.

Trunk weights are torchvision's ImageNet state dicts (weight specs ``lpips-alex``,
``lpips-vgg``, ``lpips-squeeze``: ``alexnet-owt-7be5be79.pth``, ``vgg16-397923af.pth``,
``squeezenet1_1-b8a52dc0.pth``), resolved like every other weight (``--weights-dir`` /
``ICD_BENCH_WEIGHTS``, torch's hub cache, download when online) and loaded into lpips' slices
(`load_trunk`) — lpips itself would fetch them from torchvision's servers.

Regions and flavours:

- ``whole``: LPIPS of the two frames (both flavours are the same number).
- ``pie`` (PIE-Bench): both images multiplied by the region mask (0 outside the region, i.e. -1
  after scaling), then LPIPS of the whole frame. Pixels outside the region never change the
  value, but the masked-out area and the mask's edge enter the average.
- ``clean``: lpips' spatial map (``spatial=True``: every layer's lin output upsampled
  bilinearly to the input size and summed) averaged over the region's pixels only. The map at a
  pixel is computed from the unmasked images, so it sees the trunk's receptive field around that
  pixel: near the mask's border, changes on the other side of it do move a ``clean`` value.

An empty region gives NaN (counted as failed, as the pixel metrics do).

``lpips:whole:icd`` is the iCD paper's (Table 2; ``utils/metrics.py`` ``calculate_lpips``):
``piq.LPIPS(reduction='none')`` — piq's VGG-16 LPIPS: ImageNet mean/std on [0, 1] inputs (the same
affine map as lpips' scaling layer on [-1, 1]), unit-normalised relu1_2 … relu5_3 features, squared
differences weighted by piq's lin weights (``lpips_weights.pt``, weight ``lpips-piq``), averaged over
space, summed — on both images as the official code reads them (`icd_protocol.view`) resized to
224 × 224 with PIL's default filter, in [0, 1], float32. It is built here from piq's own
``ContentLoss`` with the layers, weights and settings ``piq.LPIPS`` passes it, the VGG-16 trunk loaded
from the resolved ``lpips-vgg`` file (``piq.LPIPS`` itself downloads both files).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from icd_bench.errors import ConfigError
from icd_bench.metrics import icd_protocol, pie_protocol
from icd_bench.metrics.base import FLAVOURS, ICD, REGIONS, Metric, ScoreItem
from icd_bench.metrics.preprocess import IMAGENET_MEAN, IMAGENET_STD, apply_mask, stack
from icd_bench.metrics.weights import (
    LPIPS_ALEX,
    LPIPS_PIQ,
    LPIPS_SQUEEZE,
    LPIPS_VGG,
    WeightSpec,
    cached_model,
    require_extra,
    resolve,
)
from icd_bench.registry import METRICS

#: ``lpips_net`` value → the torchvision trunk weight it needs.
NETS: dict[str, WeightSpec] = {"alex": LPIPS_ALEX, "vgg": LPIPS_VGG, "squeeze": LPIPS_SQUEEZE}
DEFAULT_NET = "alex"



def load_trunk(model: torch.nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    """Load a torchvision classifier state dict (``features.N.*`` keys; ``classifier.*`` is
    ignored) into the trunk of an ``lpips.LPIPS``: lpips splits torchvision's ``features``
    into ``sliceK`` sequentials whose children keep torchvision's index as their name
    (`lpips/pretrained_networks.py`), so ``features.3.weight`` becomes ``sliceK.3.weight`` for
    the slice that holds module 3. Every trunk parameter must be filled (strict)."""
    slice_of = {idx: name for name, sl in model.net.named_children() for idx, _ in sl.named_children()}
    features = {k[len("features."):]: v for k, v in state_dict.items() if k.startswith("features.")}
    if not features:
        raise ConfigError("the LPIPS trunk file is not a torchvision classifier state dict "
                          "(no 'features.*' keys)")
    mapped = {}
    for key, value in features.items():
        idx, _, rest = key.partition(".")
        if idx not in slice_of:
            raise ConfigError(f"the LPIPS trunk file has 'features.{key}', which lpips' {model.pnet_type} "
                              f"trunk does not use")
        mapped[f"{slice_of[idx]}.{idx}.{rest}"] = value
    try:
        model.net.load_state_dict(mapped, strict=True)
    except RuntimeError as exc:
        raise ConfigError(f"the LPIPS trunk file does not fit lpips' {model.pnet_type} trunk: "
                          f"{exc}") from None


def load_lpips(net: str, path: Path, device: torch.device) -> torch.nn.Module:
    """``lpips.LPIPS(net=net)`` with its lin layers from the wheel and the trunk from ``path``
    (a torchvision state dict), in eval mode on ``device``; cached per (file, net, device)."""

    def load():
        import lpips

        # lpips builds its random trunk with torchvision's deprecated `pretrained=`
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - unreadable / not a state dict: say which file
            raise ConfigError(f"cannot read the LPIPS {net} trunk weights {path}: {exc}") from None
        if not isinstance(state, dict):
            raise ConfigError(f"{path} holds a {type(state).__name__}, not a torchvision state dict")
        load_trunk(model, state)
        return model.eval().requires_grad_(False).to(device)

    return cached_model("lpips", (path, net, device), load)


#: ``piq.LPIPS``: its layers (relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 = torchvision's vgg16.features
#: children 3, 8, 15, 22, 29) and the channels of each, which its lin weights scale.
PIQ_LAYERS = ("3", "8", "15", "22", "29")
PIQ_CHANNELS = (64, 128, 256, 512, 512)
#: ``calculate_lpips`` resizes both images to this side (PIL's default filter) before LPIPS.
ICD_LPIPS_SIDE = 224


def piq_lin_weights(path: Path) -> list[torch.Tensor]:
    """piq's ``lpips_weights.pt``: five per-channel weights (one per layer), each as a 1×C×1×1 tensor."""
    try:
        weights = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unreadable: say which file
        raise ConfigError(f"cannot read piq's LPIPS weights {path}: {exc}") from None
    if isinstance(weights, dict):
        weights = list(weights.values())
    sizes = ([int(w.numel()) if torch.is_tensor(w) else -1 for w in weights]
             if isinstance(weights, list | tuple) else [])
    if sizes != list(PIQ_CHANNELS):
        raise ConfigError(f"{path} is not piq's lpips_weights.pt: expected 5 per-channel weights of "
                          f"{', '.join(map(str, PIQ_CHANNELS))} values, "
                          f"got sizes {sizes or type(weights).__name__}")
    return [w.float().reshape(1, -1, 1, 1) for w in weights]


def load_piq_lpips(trunk: Path, lin: Path, device: torch.device) -> torch.nn.Module:
    """``piq.LPIPS(reduction='none')`` without its downloads: piq's ``ContentLoss`` over torchvision's
    VGG-16 features loaded from ``trunk``, with piq's lin weights from ``lin``; cached per files and
    device."""

    def load():
        import piq
        import torchvision

        features = torchvision.models.vgg16(weights=None).features
        try:
            state = torch.load(trunk, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - unreadable / not a state dict: say which file
            raise ConfigError(f"cannot read the VGG-16 weights {trunk}: {exc}") from None
        state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")} \
            if isinstance(state, dict) else {}
        try:
            features.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ConfigError(f"{trunk} is not torchvision's VGG-16 state dict: {exc}") from None
        model = piq.ContentLoss(feature_extractor=features, layers=PIQ_LAYERS, weights=piq_lin_weights(lin),
                                replace_pooling=False, distance="mse", reduction="none", mean=IMAGENET_MEAN,
                                std=IMAGENET_STD, normalize_features=True)
        return model.eval().requires_grad_(False).to(device)

    return cached_model("lpips-piq", (trunk, lin, device), load)


def icd_lpips_input(images) -> torch.Tensor:
    """``calculate_lpips``'s batch: each PIL image resized to 224 × 224 (PIL's default filter), uint8 →
    B×3×224×224 float in [0, 1]."""
    side = ICD_LPIPS_SIDE
    batch = np.concatenate([np.array(im.resize((side, side))).reshape(1, side, side, 3) for im in images])
    return torch.tensor(batch).permute(0, 3, 1, 2) / 255.0


def lpips_distance(model: torch.nn.Module, a: torch.Tensor, b: torch.Tensor, *,
                   spatial: bool = False) -> torch.Tensor:
    """LPIPS of B×3×H×W images in [0, 1] (lpips' ``normalize=True``): B values, or B×H×W maps
    with ``spatial`` (lpips' ``spatial=True``)."""
    before = model.spatial
    model.spatial = spatial  # lpips reads the flag in forward(); the loaded model is shared
    try:
        out = model(a, b, normalize=True)
    finally:
        model.spatial = before
    return out[:, 0] if spatial else out.flatten()


@METRICS.register("lpips")
class LPIPS(Metric):
    """LPIPS between output and source (lpips 0.1, ``lpips_net=alex|vgg|squeeze``; icd: piq's VGG at 224²)."""

    regions = REGIONS
    flavours = (*FLAVOURS, ICD)
    needs = ("source",)
    higher_is_better = False
    option_keys = ("lpips_net", *pie_protocol.OPTION_KEYS, *icd_protocol.OPTION_KEYS)

    @property
    def net(self) -> str:
        net = self.options.get("lpips_net", DEFAULT_NET).strip().lower()
        if net not in NETS:
            raise ConfigError(f"lpips_net={net!r}: choose one of {', '.join(NETS)}")
        return net

    def _model(self) -> torch.nn.Module:
        if self.spec.flavour == ICD:
            return load_piq_lpips(resolve(LPIPS_VGG, needed_by="metric 'lpips:whole:icd'"),
                                  resolve(LPIPS_PIQ, needed_by="metric 'lpips:whole:icd'"), self.device)
        path = resolve(NETS[self.net], needed_by=f"metric 'lpips' (lpips_net={self.net})")
        return load_lpips(self.net, path, self.device)

    def check(self) -> None:
        if self.spec.flavour == ICD:
            require_extra("piq", "lpips:whole:icd")
            icd_protocol.check_options(self.options)
        else:
            require_extra("lpips", self.name)
        require_extra("torchvision", self.name)
        self._model()  # resolves the trunk (WeightsNotFoundError) and checks that it loads

    def _score_icd(self, items: Sequence[ScoreItem]) -> list[dict[str, float]]:
        outputs = icd_protocol.views([it.output for it in items], role="output", options=self.options,
                                     task=self.task)
        sources = icd_protocol.views([it.source for it in items], role="source", options=self.options,
                                     task=self.task)
        with torch.inference_mode():  # calculate_lpips(generated or edited, real or source)
            values = self._model()(icd_lpips_input(outputs).to(self.device),
                                   icd_lpips_input(sources).to(self.device))
        return [{self.spec.key: float(v)} for v in values.float().cpu()]

    def score(self, items: Sequence[ScoreItem]) -> list[dict[str, float]]:
        self.require(items)
        if self.spec.flavour == ICD:
            return self._score_icd(items)
        model = self._model()
        for item in items:
            if item.output.shape != item.source.shape:
                raise ValueError(f"output {tuple(item.output.shape)} and source {tuple(item.source.shape)} "
                                 f"differ in size")
        regions = [self.region_mask(item) for item in items]
        for item, region in zip(items, regions, strict=True):
            if region is not None and region.shape != tuple(item.output.shape[-2:]):
                raise ValueError(f"mask {region.shape} does not match the image "
                                 f"{tuple(item.output.shape[-2:])}")
        with torch.inference_mode():
            a = stack([item.output for item in items], self.device)
            b = stack([item.source for item in items], self.device)
            if self.spec.region == "whole":
                values = lpips_distance(model, a, b).double().cpu().numpy()
            elif self.spec.flavour == "pie":
                values = lpips_distance(model, apply_mask(a, regions),
                                        apply_mask(b, regions)).double().cpu().numpy()
            else:
                maps = lpips_distance(model, a, b, spatial=True).double().cpu().numpy()
                values = np.array([m[r].mean() if r.any() else np.nan
                                   for m, r in zip(maps, regions, strict=True)])
        out = []
        for value, region in zip(values, regions, strict=True):
            if region is not None and not region.any():
                value = self.empty_region()  # nothing to score
            out.append({self.spec.key: float(value)})
        return out
