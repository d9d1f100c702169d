"""The iCD paper's measurement protocol, shared by the metrics' ``icd`` flavour.

Every number of the paper's Tables 1–4 comes from the official repository's ``utils/metrics.py``
(yandex-research/invertible-cd, commit 1bf9010; called by ``running/sd1.5/edit.py``,
``running/sd1.5/generate.py`` and, over saved images, by its own ``calc_all`` / ``calc_inversion``).
The ``icd`` flavour of ``psnr``, ``lpips``, ``dinov2``, ``clip_t``, ``clip_i``, ``imagereward`` and
``fid`` computes what those functions compute; this module holds what they share:

**Which pixels a metric sees** (option ``icd_images``):

- ``files`` — as ``calc_all`` (edits) and ``calc_inversion`` (Table 2) read them: the official
  scripts save every output as ``<j>.jpg`` (PIL's JPEG defaults: quality 75, 4:2:0), and
  ``utils.generation.load_512`` reads a file back, converts it to RGB and resizes it to 512 × 512 with
  PIL's default filter (bicubic), whatever its size (a 1024² SDXL output becomes 512²). The source of an
  ``invert`` run went through the same round trip (``generate.py`` saves ``real_images/<j>.jpg``); the
  source of an ``edit`` run is read by ``load_512`` from the dataset's file, so it is only resized. Here
  the source is the run's ``sources/ID.png`` (the image the method saw).
- ``memory`` — as ``sd1.5/edit.py`` and ``generate.py`` score them in the same process: the PIL images
  as they are (512² for SD1.5, 1024² for SDXL).

The default (``auto``) is ``memory`` for ``generate`` runs (Table 4) and ``files`` otherwise (Tables 2
and 3, and every SDXL number, which the release only scores through ``calc_all``).

**Precision** (option ``autocast``): DINOv2 and CLIP run under ``torch.cuda.amp.autocast()``. On a GPU
that is float16 autocast (matrix products in float16, normalisations and reductions in float32); on a
CPU it does nothing (CUDA autocast does not touch CPU tensors), so the official code computes in float32
there. ``auto`` (the default) does the same on the device the metric runs on; ``fp16`` / ``bf16`` force
autocast with that type on any device (``--option autocast=fp16`` on a GPU reproduces the paper's runs;
on a CPU, torch's CPU autocast casts another set of operations, so it approximates them); ``off``
computes in float32 everywhere. LPIPS, ImageReward and FID run in float32 in the official code.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from icd_bench.errors import ConfigError
from icd_bench.imaging import tensor_to_pil

#: The official repository and the commit its metric code is read at.
REFERENCE = "yandex-research/invertible-cd utils/metrics.py (commit 1bf901060e15fef4259223e7a31c1e83b88ea0d2)"
IMAGES_MODES = ("auto", "files", "memory")
AUTOCAST_MODES = ("auto", "off", "fp16", "bf16")
#: The side ``utils.generation.load_512`` resizes every image to.
LOAD_SIDE = 512
#: The option keys every ``icd``-flavour metric reads.
OPTION_KEYS = ("icd_images", "autocast")


def _choice(options: dict[str, str], key: str, allowed: tuple[str, ...]) -> str:
    value = options.get(key, "auto").strip().lower()
    if value not in allowed:
        raise ConfigError(f"{key}={value!r}: choose one of {', '.join(allowed)}")
    return value


def images_mode(options: dict[str, str], task: str | None) -> str:
    """``files`` or ``memory`` (see the module docstring); ``auto`` → ``memory`` for ``generate`` runs."""
    mode = _choice(options, "icd_images", IMAGES_MODES)
    if mode == "auto":
        return "memory" if task == "generate" else "files"
    return mode


def jpeg_round_trip(image: Image.Image) -> Image.Image:
    """``image.save('<j>.jpg')`` then ``Image.open``: PIL's JPEG encoder with its defaults (quality 75)."""
    buf = io.BytesIO()
    image.save(buf, format="JPEG")
    buf.seek(0)
    with Image.open(buf) as saved:
        return saved.convert("RGB")


def load_512(image: Image.Image) -> Image.Image:
    """``utils.generation.load_512`` on an opened image: RGB, resized to 512 × 512 with PIL's default
    filter (no crop: a non-square image is squashed), as the uint8 image ``to_pil_images`` returns."""
    array = np.array(image.convert("RGB"))[:, :, :3]
    return Image.fromarray(np.array(Image.fromarray(array).resize((LOAD_SIDE, LOAD_SIDE))).astype(np.uint8))


def view(image: torch.Tensor, *, role: str, mode: str, task: str | None) -> Image.Image:
    """The PIL image the official code scores for a run's ``output`` or ``source`` (3×H×W in [0, 1]).

    ``files``: outputs (and an ``invert`` run's source) through the JPEG file the official scripts
    write, then `load_512`; an ``edit`` run's source through `load_512` only. ``memory``: as it is."""
    if role not in ("output", "source"):
        raise ValueError(f"unknown role {role!r}")
    pil = tensor_to_pil(image)
    if mode == "memory":
        return pil
    if role == "output" or task == "invert":
        pil = jpeg_round_trip(pil)
    return load_512(pil)


def views(images, *, role: str, options: dict[str, str], task: str | None) -> list[Image.Image]:
    """`view` of each image, in the mode the options (and the run's task) ask for."""
    mode = images_mode(options, task)
    return [view(x, role=role, mode=mode, task=task) for x in images]


def check_options(options: dict[str, str]) -> None:
    """A `ConfigError` now (before any sample) for a bad ``icd_images`` or ``autocast`` value."""
    _choice(options, "icd_images", IMAGES_MODES)
    _choice(options, "autocast", AUTOCAST_MODES)


@contextlib.contextmanager
def autocast(options: dict[str, str], device: torch.device) -> Iterator[None]:
    """The precision of ``with torch.cuda.amp.autocast():`` on ``device`` (``auto``), or the one asked for."""
    mode = _choice(options, "autocast", AUTOCAST_MODES)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(mode)
    if mode == "auto" and device.type == "cuda":
        dtype = torch.float16
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def unit(x: torch.Tensor) -> torch.Tensor:
    """``x / torch.norm(x, dim=-1, keepdim=True)``: the official normalisation of an embedding, in the dtype
    autocast left it in."""
    return x / torch.norm(x, dim=-1, keepdim=True)


def official_scores(values: torch.Tensor) -> list[float]:
    """The values as the official code stores them (``scores = torch.zeros(n); scores[i:j] = ...``:
    float32)."""
    scores = torch.zeros(len(values))
    scores[:] = values
    return [float(v) for v in scores]


def _transformers_major() -> int:
    import transformers

    return int(transformers.__version__.split(".")[0])


def pil_image_processor(folder: Path):
    """``AutoImageProcessor.from_pretrained(folder)`` with the PIL (slow) processor, the only one of the
    transformers 4 releases the official code ran with (transformers 5 defaults to a torchvision one)."""
    from transformers import AutoImageProcessor

    kwargs = {"backend": "pil"} if _transformers_major() >= 5 else {"use_fast": False}
    try:
        return AutoImageProcessor.from_pretrained(str(folder), **kwargs)
    except Exception as exc:  # noqa: BLE001 - a folder without a readable preprocessor_config.json
        raise ConfigError(f"cannot read the image processor of {folder}: {exc}") from None


def float32_model(cls, folder: Path):
    """``cls.from_pretrained(folder)`` in float32 (transformers 4's default; transformers 5 keeps the
    checkpoint's dtype unless told), in eval mode."""
    kwargs = {"dtype": torch.float32} if _transformers_major() >= 5 else {"torch_dtype": torch.float32}
    try:
        return cls.from_pretrained(str(folder), **kwargs).eval().requires_grad_(False)
    except Exception as exc:  # noqa: BLE001 - a folder of another model or a broken file: name it
        raise ConfigError(f"cannot load {folder} as a {cls.__name__}: {exc}") from None


def features_tensor(out) -> torch.Tensor:
    """``get_image_features`` / ``get_text_features``: a tensor in transformers 4, an output object whose
    ``pooler_output`` is that tensor in transformers 5."""
    return out if torch.is_tensor(out) else out.pooler_output
