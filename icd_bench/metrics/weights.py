"""Where metric weights come from: one resolution rule for every metric.

1. **Explicit**: ``--weights-dir DIR`` (the CLI sets ``ICD_BENCH_WEIGHTS``) or the environment
   variable ``ICD_BENCH_WEIGHTS`` itself — comma-separated entries, each either a root directory
   (the weight ``KEY`` is then looked up as ``ROOT/KEY``) or ``KEY=PATH`` for one weight.
2. **Local caches** of the library that would download it: the Hugging Face cache for hub
   repositories, torch's hub cache (``torch.hub.get_dir()/checkpoints``) for single files.
3. **Download** when online (``HF_HUB_OFFLINE`` unset); the files then land in those caches.

With nothing found, `WeightsNotFoundError` names the weight, the layout expected and the variable
to set; metrics call `resolve` in their ``check()``, so this happens before any sample is scored.
Loaded models are kept in one per-process cache, `cached_model`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from icd_bench.errors import ConfigError

T = TypeVar("T")

ENV = "ICD_BENCH_WEIGHTS"


class WeightsNotFoundError(ConfigError):
    """A metric's weights are neither given, nor cached, nor downloadable."""


@dataclass(frozen=True)
class WeightSpec:
    """One weight a metric needs.

    ``files``: the layout of a local copy (``ROOT/KEY/<file>``); the first file is the one a
    single-file weight resolves to. ``hub``: a Hugging Face repository (a local copy is then the
    repository's folder). ``url``: a single file's download address (torch hub cache).
    """

    key: str
    description: str
    files: tuple[str, ...]
    hub: str | None = None
    url: str | None = None
    single_file: bool = False

    def layout(self) -> str:
        """Where a local copy goes under a weights folder, in words."""
        if self.single_file:
            return " or ".join(f"DIR/{self.key}/{f}" for f in self.files)
        folder = f"DIR/{self.key}/ holding {', '.join(self.files)}"
        return folder + (f" (a copy of the hub repository {self.hub})" if self.hub else "")


#: Every weight a built-in metric can ask for.
KNOWN: dict[str, WeightSpec] = {}


def register(spec: WeightSpec) -> WeightSpec:
    KNOWN[spec.key] = spec
    return spec


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def explicit_entries(value: str | None = None) -> tuple[list[Path], dict[str, Path]]:
    """Parse ``ICD_BENCH_WEIGHTS``: (root directories, KEY → PATH)."""
    value = os.environ.get(ENV, "") if value is None else value
    roots: list[Path] = []
    mapping: dict[str, Path] = {}
    for entry in (e.strip() for e in value.split(",")):
        if not entry:
            continue
        if "=" in entry:
            key, _, path = entry.partition("=")
            mapping[key.strip()] = Path(path.strip()).expanduser()
        else:
            roots.append(Path(entry).expanduser())
    return roots, mapping


def _complete(path: Path, spec: WeightSpec) -> Path | None:
    """``path`` as the weight if it holds what ``spec`` needs (a file, or a folder with the layout)."""
    if path.is_file() and spec.single_file:
        return path
    if path.is_dir():
        if spec.single_file:
            for name in spec.files:
                if (path / name).is_file():
                    return path / name
            return None
        if all((path / name).exists() for name in spec.files):
            return path
    return None


def _from_caches(spec: WeightSpec, *, download: bool) -> Path | None:
    if spec.hub:
        from huggingface_hub import snapshot_download

        # a single-file weight fetches only its file (a hub repository may hold several formats)
        patterns = list(spec.files) if spec.single_file else None
        try:
            folder = Path(snapshot_download(spec.hub, local_files_only=not download, allow_patterns=patterns))
        except Exception:  # noqa: BLE001 - not cached / not reachable: the caller reports it
            return None
        return _complete(folder, spec)
    if spec.url:
        import torch

        target = Path(torch.hub.get_dir()) / "checkpoints" / spec.files[0]
        if target.is_file():
            return target
        if download:
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                torch.hub.download_url_to_file(spec.url, str(target), progress=False)
                return target
            except Exception:  # noqa: BLE001 - offline or unreachable
                return None
    return None


def resolve(key: str | WeightSpec, *, needed_by: str = "") -> Path:
    """The local path of a weight (a file for single-file weights, else a folder), or a
    `WeightsNotFoundError` saying where to put it."""
    spec = key if isinstance(key, WeightSpec) else KNOWN[key]
    roots, mapping = explicit_entries()
    looked: list[str] = []
    if spec.key in mapping:
        found = _complete(mapping[spec.key], spec)
        if found is None:
            raise WeightsNotFoundError(
                f"{ENV} maps {spec.key!r} to {mapping[spec.key]}, which does not hold {spec.description} "
                f"""(expected {'the file ' + spec.files[0] if spec.single_file
                               else 'a folder with ' + ', '.join(spec.files)})""")
        return found
    for root in roots:
        looked.append(str(root / spec.key))
        found = _complete(root / spec.key, spec)
        if found is not None:
            return found
    found = _from_caches(spec, download=False)
    if found is None and not offline():
        found = _from_caches(spec, download=True)
    if found is not None:
        return found
    where = f"looked in {', '.join(looked)} and the local caches" if looked else "looked in the local caches"
    source = f"hub repository {spec.hub}" if spec.hub else (spec.url or "where its description says")
    why = ("offline (HF_HUB_OFFLINE=1)" if offline() else
           "download failed" if spec.hub or spec.url else "it has no address to download from automatically")
    raise WeightsNotFoundError(
        f"{needed_by + ' needs ' if needed_by else ''}{spec.description} ({spec.key!r}) and none was found; "
        f"{where}; {why}. Get it from {source} and lay it out as {spec.layout()}, "
        f"then pass --weights-dir DIR (or set {ENV}=DIR, or {ENV}={spec.key}=PATH)")


def require_extra(module: str, metric: str) -> None:
    """A clear error when a metric's optional dependency (the ``metrics`` extra) is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"metric {metric!r} needs the Python package {module!r}: "
                          f"pip install 'icd-bench[metrics]'")


# -- the weights of the built-in metrics --------------------------------------------------------
CLIP_VIT_L_14 = register(WeightSpec(
    "clip-vit-l-14-openai", "CLIP ViT-L/14 with OpenAI weights (open_clip)",
    ("open_clip_pytorch_model.bin", "open_clip_model.safetensors"),
    hub="timm/vit_large_patch14_clip_224.openai", single_file=True))
CLIP_HF_VIT_L_14 = register(WeightSpec(
    "clip-vit-large-patch14", "CLIP ViT-L/14 in transformers' layout (openai/clip-vit-large-patch14: "
    "config, weights, image processor, tokenizer)",
    ("config.json", "preprocessor_config.json", "vocab.json", "merges.txt"),
    hub="openai/clip-vit-large-patch14"))
DINOV2_BASE = register(WeightSpec(
    "dinov2-base", "DINOv2 ViT-B/14 (facebook/dinov2-base, transformers layout)",
    ("config.json",), hub="facebook/dinov2-base"))
DINO_VITB8 = register(WeightSpec(
    "dino-vitb8", "DINO ViT-B/8 (facebook/dino-vitb8, transformers layout)",
    ("config.json",), hub="facebook/dino-vitb8"))
LPIPS_ALEX = register(WeightSpec(
    "lpips-alex", "the AlexNet trunk of LPIPS (torchvision ImageNet weights)", ("alexnet-owt-7be5be79.pth",),
    url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth", single_file=True))
LPIPS_VGG = register(WeightSpec(
    "lpips-vgg", "the VGG-16 trunk of LPIPS (torchvision ImageNet weights)", ("vgg16-397923af.pth",),
    url="https://download.pytorch.org/models/vgg16-397923af.pth", single_file=True))
LPIPS_SQUEEZE = register(WeightSpec(
    "lpips-squeeze", "the SqueezeNet 1.1 trunk of LPIPS (torchvision ImageNet weights)",
    ("squeezenet1_1-b8a52dc0.pth",),
    url="https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth", single_file=True))
LPIPS_PIQ = register(WeightSpec(
    "lpips-piq", "piq's LPIPS lin weights (lpips_weights.pt, the file piq.LPIPS downloads)",
    ("lpips_weights.pt",),
    url="https://github.com/photosynthesis-team/photosynthesis.metrics/releases/download/v0.4.0/lpips_weights.pt",
    single_file=True))
IMAGEREWARD_V1 = register(WeightSpec(
    "imagereward-v1", "ImageReward-v1.0 (THUDM/ImageReward: ImageReward.pt and med_config.json)",
    ("ImageReward.pt", "med_config.json"), hub="THUDM/ImageReward"))
BERT_BASE_UNCASED = register(WeightSpec(
    "bert-base-uncased", "the bert-base-uncased tokenizer files (vocab.txt) ImageReward tokenizes with",
    ("vocab.txt",), hub="google-bert/bert-base-uncased"))
FID_INCEPTION = register(WeightSpec(
    "fid-inception", "clean-fid's Inception-v3 feature extractor (inception-2015-12-05.pt)",
    ("inception-2015-12-05.pt",),
    url="https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt",
    single_file=True))

FID_INCEPTION_PYTORCH = register(WeightSpec(
    "fid-inception-pytorch", "pytorch-fid's FID Inception weights (pt_inception-2015-12-05-6726825d.pth), "
    "the iCD code's utils/inception.py weights", ("pt_inception-2015-12-05-6726825d.pth",),
    url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
    single_file=True))
FID_STATS_COCO512 = register(WeightSpec(
    "fid-stats-mscoco512-val", "the iCD release's FID reference statistics of COCO 2014 val at 512 px "
    "(fid_stats_mscoco512_val.npz, in https://storage.yandexcloud.net/yandex-research/invertible-cd/"
    "fid-files.tar.gz, which the release's training/stats/download_fid_files.sh unpacks)",
    ("fid_stats_mscoco512_val.npz",), single_file=True))


#: the metric models this process has loaded, by (kind, key): every metric and every run scored reuses them
_LOADED: dict[tuple, Any] = {}


def cached_model(kind: str, key: tuple, load: Callable[[], T]) -> T:
    """``load()`` once per (``kind``, ``key``) in this process — the one cache of the metrics' models
    (clip_t and clip_i share a CLIP, structure and dinov2 their DINO weights)."""
    k = (kind, *(str(v) for v in key))
    if k not in _LOADED:
        _LOADED[k] = load()
    return _LOADED[k]
