"""FID of a run's outputs against a reference (a folder of images or precomputed statistics).

Definition (clean-fid, Parmar et al., "On Aliased Resizing and Surprising Subtleties in GAN
Evaluation", CVPR 2022; package ``clean-fid``, mode ``clean``): every image as uint8 RGB, resized
to 299×299 with PIL bicubic in float (``cleanfid.resize.build_resizer("clean")``), features from
the Inception-v3 TorchScript model of StyleGAN2-ADA (``inception-2015-12-05.pt``, 2048-d pool
features, input in [0, 255]); FID = Fréchet distance of the two Gaussians (mean, covariance) by
``cleanfid.fid.frechet_distance``.

``fid:whole:icd`` is the iCD paper's (Tables 1 and 4; ``utils/metrics.py`` ``calculate_fid``): each
image as the official code reads it (`icd_protocol.view`; generated images as they are), torchvision's
``Resize(256, LANCZOS)``, ``CenterCrop(256)``, ``ToTensor`` on the PIL image, then pytorch-fid's
``InceptionV3`` (the FID Inception weights ``pt_inception-2015-12-05-6726825d.pth``, weight
``fid-inception-pytorch``; bilinear resize to 299 inside, inputs scaled to [-1, 1]), its 2048-d pool
features; mean and covariance (``np.cov``) in float64; the Fréchet distance of pytorch-fid's
``calculate_frechet_distance`` (the function ``utils/metrics.py`` copies) against the reference
statistics — by default the release's ``fid_stats_mscoco512_val.npz`` (weight ``fid-stats-mscoco512-val``,
from ``training/stats/download_fid_files.sh``'s archive). ``utils/inception.py`` is pytorch-fid's
``InceptionV3`` with a local-path argument, which is why pytorch-fid itself serves here.

Options (``icd-bench score --option KEY=VALUE``):

- ``fid_ref``: a folder of reference images, or an ``.npz`` with ``mu`` and ``sigma`` (the statistics
  format of both clean-fid and pytorch-fid; `save_reference_stats` writes one from a folder). Required
  for ``clean``; for ``icd`` it replaces the release's COCO statistics.
- ``fid_extractor``: ``module:factory`` — a callable ``factory(device)`` returning a function from
  B×3×H×W tensors to B×D features, used instead of Inception (another network, or a tiny model in tests,
  which run offline). It gets 299×299 inputs in [0, 255] (``clean``) or 256×256 in [0, 1] (``icd``).
- ``icd_images`` (``icd``): see `icd_protocol`.

A set metric: each image becomes one row of features (`FID.features`), and the rows of a run, streamed in
chunks, give one value (`FID.compute`: the mean in one pass, the covariance in a second), so scoring never
holds a run's images, or its features, in memory at once.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from icd_bench.errors import ConfigError
from icd_bench.imaging import IMAGE_SUFFIXES, tensor_to_pil
from icd_bench.metrics import icd_protocol
from icd_bench.metrics.base import ICD, Chunks, Metric, ScoreItem
from icd_bench.metrics.weights import (
    FID_INCEPTION,
    FID_INCEPTION_PYTORCH,
    FID_STATS_COCO512,
    cached_model,
    require_extra,
    resolve,
)
from icd_bench.registry import METRICS

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
        raise ConfigError(f"clean-fid loads the Inception file by its name: rename {path} to "
                          f"inception-2015-12-05.pt")
    return InceptionV3W(str(path.parent), download=False, resize_inside=False).to(device).eval()


@contextlib.contextmanager
def hub_checkpoints(files: dict[str, Path]) -> Iterator[None]:
    """torch.hub's checkpoint folder holding ``files`` (name → path) while a library loads them by URL
    (pytorch-fid downloads its weights with ``load_state_dict_from_url``); the folder before is restored."""
    current = Path(torch.hub.get_dir()) / "checkpoints"
    if all((current / name).is_file() and (current / name).resolve() == Path(path).resolve()
           for name, path in files.items()):
        yield
        return
    before = getattr(torch.hub, "_hub_dir", None)
    with tempfile.TemporaryDirectory(prefix="icd-bench-hub-") as d:
        (Path(d) / "checkpoints").mkdir()
        for name, path in files.items():
            os.symlink(Path(path).resolve(), Path(d) / "checkpoints" / name)
        torch.hub.set_dir(d)
        try:
            yield
        finally:
            torch.hub._hub_dir = before  # None: derived from TORCH_HOME again, as before


#: ``calculate_fid``'s InceptionV3 weights file (pytorch-fid's FID_WEIGHTS_URL names it).
PYTORCH_FID_WEIGHTS = "pt_inception-2015-12-05-6726825d.pth"


def pytorch_fid_inception(device: torch.device) -> Extractor:
    """``InceptionV3([3])`` of pytorch-fid (= ``utils/inception.py``) with the resolved FID weights, as a
    function from B×3×H×W tensors in [0, 1] to B×2048 pool features; cached per file and device."""
    path = resolve(FID_INCEPTION_PYTORCH, needed_by="metric 'fid:whole:icd'")

    def load():
        from pytorch_fid.inception import InceptionV3

        with hub_checkpoints({PYTORCH_FID_WEIGHTS: path}):
            try:
                model = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
            except Exception as exc:  # noqa: BLE001 - a file that is not the FID Inception state dict
                raise ConfigError(f"cannot load {path} as pytorch-fid's FID Inception weights: "
                                  f"{exc}") from None
        return model.to(device).eval()

    model = cached_model("fid-inception-pytorch", (path, device), load)

    def run(x: torch.Tensor) -> torch.Tensor:
        pred = model(x)[0]
        if pred.shape[2] != 1 or pred.shape[3] != 1:  # get_activations' pooling (not taken for 2048 dims)
            pred = torch.nn.functional.adaptive_avg_pool2d(pred, output_size=(1, 1))
        return pred.squeeze(3).squeeze(2)

    return run


def icd_fid_input(images: Sequence[Image.Image]) -> torch.Tensor:
    """``get_activations``' transform on PIL images: ``Resize(256, LANCZOS)``, ``CenterCrop(256)``,
    ``ToTensor``."""
    import torchvision.transforms as TF

    transform = TF.Compose([TF.Resize(256, interpolation=TF.InterpolationMode.LANCZOS), TF.CenterCrop(256),
                            TF.ToTensor()])
    return torch.stack([transform(im) for im in images])


def load_extractor(spec: str | None, device: torch.device, flavour: str = "clean") -> Extractor:
    if not spec:
        return pytorch_fid_inception(device) if flavour == ICD else inception_extractor(device)
    module, _, name = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"fid_extractor={spec!r}: cannot import it ({exc}); write module:factory") from None
    return factory(device)


@torch.inference_mode()
def clean_features(images: Sequence[np.ndarray], extractor: Extractor, device: torch.device) -> np.ndarray:
    """Features of one batch of uint8 H×W×3 images (clean resize, then the extractor), N×D float64."""
    batch = np.stack([clean_resize(im) for im in images])
    return extractor(torch.from_numpy(batch).permute(0, 3, 1, 2).to(device)).double().cpu().numpy()


@torch.inference_mode()
def icd_features(images: Sequence[Image.Image], extractor: Extractor, device: torch.device) -> np.ndarray:
    """``get_activations`` on one batch of PIL images (`icd_fid_input`, then the extractor), N×D float64."""
    return extractor(icd_fid_input(images).to(device)).double().cpu().numpy()


def image_features(images: Sequence[Image.Image], extractor: Extractor, device: torch.device,
                   flavour: str = "clean") -> np.ndarray:
    """One batch of RGB PIL images → N×D float64 features, by the flavour's pipeline."""
    if flavour == ICD:
        return icd_features(images, extractor, device)
    return clean_features([np.asarray(im) for im in images], extractor, device)


def streamed_stats(chunks: Chunks, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of ``n`` rows read chunk by chunk, as clean-fid and pytorch-fid compute them
    (``np.cov(rowvar=False)``), in two passes: the mean, then the centred scatter
    ``Σ (x − μ)ᵀ(x − μ) / (n − 1)`` (``np.cov``'s formula), in float64; memory D² whatever n."""
    if n < 2:
        raise ValueError(f"FID needs at least 2 images per set, got {n}")
    total, count = None, 0
    for chunk in chunks():
        chunk = np.asarray(chunk, dtype=np.float64)
        total = chunk.sum(axis=0) if total is None else total + chunk.sum(axis=0)
        count += len(chunk)
    if count != n:
        raise ValueError(f"{count} feature rows for {n} images")
    mu = total / n
    scatter = np.zeros((len(mu), len(mu)))
    for chunk in chunks():
        centred = np.asarray(chunk, dtype=np.float64) - mu
        scatter += centred.T @ centred
    return mu, scatter / (n - 1)


def frechet_distance(mu1, sigma1, mu2, sigma2, flavour: str = "clean") -> float:
    """clean-fid's ``frechet_distance``, or (``icd``) pytorch-fid's ``calculate_frechet_distance``."""
    if flavour == ICD:
        from pytorch_fid.fid_score import calculate_frechet_distance as fd
    else:
        from cleanfid.fid import frechet_distance as fd

    return float(fd(mu1, sigma1, mu2, sigma2))


def folder_files(folder: Path) -> list[Path]:
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ConfigError(f"fid_ref folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def folder_stats(folder: Path, extractor: Extractor, device: torch.device, flavour: str = "clean",
                 batch_size: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of a folder's images in one pass of ``batch_size`` images at a time (sums of
    the rows and their outer products, shifted by the first batch's mean for precision)."""
    files = folder_files(folder)
    if len(files) < 2:
        raise ValueError(f"FID needs at least 2 images per set, got {len(files)} in {folder}")
    shift = total = outer = None
    for start in range(0, len(files), batch_size):
        batch = []
        for path in files[start:start + batch_size]:
            with Image.open(path) as im:
                batch.append(im.convert("RGB"))
        feats = image_features(batch, extractor, device, flavour)
        if shift is None:
            shift = feats.mean(axis=0)
            total, outer = np.zeros_like(shift), np.zeros((len(shift), len(shift)))
        centred = feats - shift
        total += centred.sum(axis=0)
        outer += centred.T @ centred
    n = len(files)
    mean = total / n
    return shift + mean, (outer - n * np.outer(mean, mean)) / (n - 1)


def check_reference(ref: Path) -> None:
    """A `ConfigError` now when ``ref`` is neither an .npz with ``mu`` and ``sigma`` nor a folder of
    images."""
    if ref.is_file() and ref.suffix == ".npz":
        try:
            with np.load(ref) as data:
                names = set(data.files)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"fid_ref {ref} cannot be read as an .npz: {exc}") from None
        if not {"mu", "sigma"} <= names:
            raise ConfigError(f"fid_ref {ref} has no 'mu' and 'sigma' arrays (the statistics format of "
                              "clean-fid and pytorch-fid)")
    elif ref.is_dir():
        folder_files(ref)
    else:
        raise ConfigError(f"fid_ref {ref} is neither a folder of images nor an .npz of statistics")


def reference_stats(ref: str | Path, extractor: Extractor, device: torch.device,
                    flavour: str = "clean") -> tuple[np.ndarray, np.ndarray]:
    """``mu``, ``sigma`` of an .npz of statistics, or of a folder of images (`folder_stats`)."""
    ref = Path(ref).expanduser()
    check_reference(ref)
    if ref.is_dir():
        return folder_stats(ref, extractor, device, flavour)
    with np.load(ref) as data:
        return data["mu"], data["sigma"]


def save_reference_stats(folder: str | Path, out: str | Path, *, extractor: str | None = None,
                         device: str | torch.device = "cpu", flavour: str = "clean") -> Path:
    """Write statistics (``mu``, ``sigma``; the format of clean-fid and pytorch-fid) of a folder of images
    to ``out``, with the flavour's pipeline."""
    device = torch.device(device)
    mu, sigma = folder_stats(Path(folder), load_extractor(extractor, device, flavour), device, flavour)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, mu=mu, sigma=sigma)
    return out


@METRICS.register("fid")
class FID(Metric):
    """FID of the outputs against a reference, one value per run (clean-fid; icd: pytorch-fid's Inception).

    ``fid`` is clean-fid's (``--option fid_ref=FOLDER_OR_NPZ``), ``fid:whole:icd`` the iCD paper's
    (pytorch-fid's Inception at 256², against the release's COCO statistics unless ``fid_ref`` names
    others)."""

    flavours = ("clean", ICD)
    needs = ()
    higher_is_better = False
    per_sample = False
    option_keys = ("fid_ref", "fid_extractor", "icd_images")

    def _reference(self) -> Path:
        ref = self.options.get("fid_ref")
        if ref:
            return Path(ref).expanduser()
        return resolve(FID_STATS_COCO512, needed_by="metric 'fid:whole:icd'")

    def check(self) -> None:
        flavour = self.spec.flavour
        require_extra("scipy", "fid")
        require_extra("pytorch_fid" if flavour == ICD else "cleanfid", self.spec.key)
        if flavour == ICD:
            require_extra("torchvision", self.spec.key)
            icd_protocol.check_options(self.options)
        ref = self.options.get("fid_ref")
        if not ref and flavour != ICD:
            raise ConfigError("metric 'fid' needs a reference: --option fid_ref=FOLDER (images) or "
                              "--option fid_ref=STATS.npz (clean-fid statistics: mu, sigma)")
        if ref and not Path(ref).expanduser().exists():
            raise ConfigError(f"fid_ref {ref} does not exist")
        check_reference(self._reference())
        if not self.options.get("fid_extractor") and flavour != ICD:
            resolve(FID_INCEPTION, needed_by="metric 'fid'")
        self._extractor()  # imports a fid_extractor, or resolves and loads Inception, now

    def _extractor(self) -> Extractor:
        """The feature extractor, loaded once per metric (a factory that cannot be imported fails in
        `check`)."""
        if getattr(self, "_loaded_extractor", None) is None:
            self._loaded_extractor = load_extractor(self.options.get("fid_extractor"), self.device,
                                                    self.spec.flavour)
        return self._loaded_extractor

    def features(self, items: Sequence[ScoreItem]) -> np.ndarray:
        """One row of features per output: clean-fid's resize and extractor, or (``icd``)
        ``get_activations``'."""
        if self.spec.flavour == ICD:
            images = icd_protocol.views([i.output for i in items], role="output", options=self.options,
                                        task=self.task)
        else:
            images = [tensor_to_pil(i.output) for i in items]
        return image_features(images, self._extractor(), self.device, self.spec.flavour)

    def compute(self, chunks: Chunks, n: int) -> dict[str, float]:
        mu, sigma = streamed_stats(chunks, n)
        mu_ref, sigma_ref = reference_stats(self._reference(), self._extractor(), self.device,
                                            self.spec.flavour)
        if mu.shape != np.shape(mu_ref):
            raise ValueError(f"features of {mu.shape[0]} dimensions against reference statistics of "
                             f"{np.shape(mu_ref)[0]}")
        return {self.spec.key: frechet_distance(mu, sigma, mu_ref, sigma_ref, self.spec.flavour)}
