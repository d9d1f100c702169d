"""FID of a run's outputs against a reference (a folder of images or precomputed statistics).

Definition (clean-fid, Parmar et al., "On Aliased Resizing and Surprising Subtleties in GAN
Evaluation", CVPR 2022; package ``clean-fid``, mode ``clean``): every image as uint8 RGB, resized
to 299×299 with PIL bicubic in float (``cleanfid.resize.build_resizer("clean")``), features from
the Inception-v3 TorchScript model of StyleGAN2-ADA (``inception-2015-12-05.pt``, 2048-d pool
features, input in [0, 255]); FID = Fréchet distance of the two Gaussians (mean, covariance) by
``cleanfid.fid.frechet_distance``. The iCD paper's Table 4 reports FID on 5K COCO captions
(FID-5k) against COCO 2014 val images.

Options (``icd-bench score --option KEY=VALUE``):

- ``fid_ref`` (required): a folder of reference images, or an ``.npz`` with ``mu`` and ``sigma``
  (clean-fid's statistics format; `save_reference_stats` writes one from a folder).
- ``fid_extractor``: ``module:factory`` — a callable ``factory(device)`` returning a function from
  B×3×299×299 tensors in [0, 255] to B×D features, used instead of Inception (e.g. another
  network, or a tiny model in tests, which run offline).

A set metric: one value per run (row id ``(set)``), from every scored output.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from icd_bench.errors import ConfigError
from icd_bench.imaging import tensor_to_pil
from icd_bench.metrics.base import Metric, ScoreItem
from icd_bench.metrics.weights import FID_INCEPTION, require_extra, resolve
from icd_bench.registry import METRICS

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
Extractor = Callable[[torch.Tensor], torch.Tensor]


def clean_resize(image: np.ndarray) -> np.ndarray:
    """uint8 H×W×3 → float32 299×299×3 in [0, 255]: clean-fid's resize (PIL bicubic, no quantisation)."""
    from cleanfid.resize import build_resizer

    return build_resizer("clean")(image)


def inception_extractor(device: torch.device) -> Extractor:
    """clean-fid's Inception-v3 feature extractor, loaded from the resolved weight file (no download)."""
    from cleanfid.inception_torchscript import InceptionV3W

    path = resolve(FID_INCEPTION, needed_by="metric 'fid'")
    if path.name != "inception-2015-12-05.pt":
        raise ConfigError(f"clean-fid loads the Inception file by its name: rename {path} to inception-2015-12-05.pt")
    return InceptionV3W(str(path.parent), download=False, resize_inside=False).to(device).eval()


def load_extractor(spec: str | None, device: torch.device) -> Extractor:
    if not spec:
        return inception_extractor(device)
    module, _, name = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"fid_extractor={spec!r}: cannot import it ({exc}); write module:factory") from None
    return factory(device)


@torch.inference_mode()
def features(images: Sequence[np.ndarray], extractor: Extractor, device: torch.device, batch_size: int = 32) -> np.ndarray:
    """Features of uint8 H×W×3 images (clean resize, then the extractor), as an N×D float64 array."""
    out = []
    for start in range(0, len(images), batch_size):
        batch = np.stack([clean_resize(im) for im in images[start:start + batch_size]])
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).to(device)
        out.append(extractor(x).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))


def stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance, as clean-fid computes them (``np.cov(rowvar=False)``)."""
    if len(feats) < 2:
        raise ValueError(f"FID needs at least 2 images per set, got {len(feats)}")
    return feats.mean(axis=0), np.cov(feats, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    from cleanfid.fid import frechet_distance as fd

    return float(fd(mu1, sigma1, mu2, sigma2))


def folder_images(folder: Path) -> list[np.ndarray]:
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ConfigError(f"fid_ref folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return [np.asarray(Image.open(p).convert("RGB")) for p in files]


def reference_stats(ref: str | Path, extractor: Extractor, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    ref = Path(ref).expanduser()
    if ref.is_file() and ref.suffix == ".npz":
        with np.load(ref) as data:
            if not {"mu", "sigma"} <= set(data.files):
                raise ConfigError(f"fid_ref {ref} has no 'mu' and 'sigma' arrays (clean-fid's statistics format)")
            return data["mu"], data["sigma"]
    if ref.is_dir():
        return stats(features(folder_images(ref), extractor, device))
    raise ConfigError(f"fid_ref {ref} is neither a folder of images nor an .npz of statistics")


def save_reference_stats(folder: str | Path, out: str | Path, *, extractor: str | None = None,
                         device: str | torch.device = "cpu") -> Path:
    """Write clean-fid-format statistics (``mu``, ``sigma``) of a folder of images to ``out``."""
    device = torch.device(device)
    mu, sigma = stats(features(folder_images(Path(folder)), load_extractor(extractor, device), device))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, mu=mu, sigma=sigma)
    return out


@METRICS.register("fid")
class FID(Metric):
    """FID (clean-fid) of the run's outputs against ``--option fid_ref=FOLDER_OR_NPZ``; one value per run."""

    name = "fid"
    needs = ()
    higher_is_better = False
    per_sample = False
    option_keys = ("fid_ref", "fid_extractor")

    def check(self) -> None:
        require_extra("cleanfid", "fid")
        require_extra("scipy", "fid")
        ref = self.options.get("fid_ref")
        if not ref:
            raise ConfigError("metric 'fid' needs a reference: --option fid_ref=FOLDER (images) or "
                              "--option fid_ref=STATS.npz (clean-fid statistics: mu, sigma)")
        if not Path(ref).expanduser().exists():
            raise ConfigError(f"fid_ref {ref} does not exist")
        if not self.options.get("fid_extractor"):
            resolve(FID_INCEPTION, needed_by="metric 'fid'")

    def score_set(self, items: Sequence[ScoreItem]) -> dict[str, float]:
        extractor = load_extractor(self.options.get("fid_extractor"), self.device)
        mu_ref, sigma_ref = reference_stats(self.options["fid_ref"], extractor, self.device)
        mu, sigma = stats(features([np.asarray(tensor_to_pil(i.output)) for i in items], extractor, self.device))
        if mu.shape != mu_ref.shape:
            raise ValueError(f"features of {mu.shape[0]} dimensions against reference statistics of {mu_ref.shape[0]}")
        return {self.spec.key: frechet_distance(mu, sigma, mu_ref, sigma_ref)}
