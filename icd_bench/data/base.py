"""The dataset protocol and the image loading every dataset shares."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np
from PIL import Image, UnidentifiedImageError

from icd_bench.errors import ConfigError, SampleError, SampleWarning
from icd_bench.registry import DATASETS
from icd_bench.types import TASKS, EditSample
from icd_bench.words import has_word

#: Images larger than this many pixels are refused (decompression bombs, mistakes).
MAX_PIXELS = 64_000_000


@runtime_checkable
class Dataset(Protocol):
    """A dataset lists its sample ids cheaply and loads one sample on demand.

    The runner lists ids first (to shard, limit and skip finished ones), then loads only what it
    runs. `load` raises `SampleError` for a bad item; the runner records it and goes on.
    Constructors take keyword options (``data_dir`` and dataset-specific ones).
    """

    name: ClassVar[str]

    def ids(self) -> list[str]: ...

    def load(self, sample_id: str) -> EditSample: ...

    def describe(self) -> dict: ...


def unique_id(base: str, taken) -> str:
    """``base``, or ``base-2``, ``base-3``, ... — the first not in ``taken`` (rows sharing a stem)."""
    sid, n = base, 2
    while sid in taken:
        sid, n = f"{base}-{n}", n + 1
    return sid


def data_file(root: Path, relative: str, sample_id: str) -> Path:
    """``root / relative`` for a path read from a dataset file, refused (`SampleError`) when it is
    absolute or leads outside ``root`` (``../``, symlinks resolved): a dataset cannot make the
    harness read files elsewhere."""
    base = root.resolve()
    path = (base / relative).resolve()
    if Path(relative).is_absolute() or not path.is_relative_to(base):
        raise SampleError(sample_id, f"image path {relative!r} leads outside the data directory {root}; "
                          "dataset paths must be relative and stay inside it")
    return path


def checked_blend_words(sample_id: str, source: str, target: str, blend: tuple[str, str] | None
                        ) -> tuple[tuple[str, str] | None, tuple[str, ...]]:
    """(blend words, notes): the blend words if each is a word of its prompt; otherwise None, with a
    warning and the same text as a note for the sample's record (local blend is turned off for that
    sample rather than blending with an empty mask)."""
    if blend is None:
        return None, ()
    for word, prompt, which in ((blend[0], source, "source"), (blend[1], target, "target")):
        if not has_word(prompt, word):
            note = (f"blend word {word!r} is not in the {which} prompt {prompt!r}; "
                    f"local blend is off for this sample")
            warnings.warn(f"{sample_id}: {note}", SampleWarning, stacklevel=2)
            return None, (note,)
    return blend, ()


def load_rgb_image(path: Path, sample_id: str) -> Image.Image:
    """Open an image file as 8-bit RGB, or raise `SampleError` saying why it cannot be used.

    Grayscale, palette, RGBA (composited on white) and 16-bit images are converted; truncated,
    unreadable and oversized files are errors.
    """
    if not path.is_file():
        raise SampleError(sample_id, f"image file not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if im.width * im.height > MAX_PIXELS:
                    raise SampleError(sample_id, f"image too large ({im.width}x{im.height} > "
                                      f"{MAX_PIXELS} pixels): {path}")
                im.load()
                return _to_rgb(im)
    except SampleError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise SampleError(sample_id, f"unreadable image {path}: {exc}") from None


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if arr.max() > 255 else 255.0
        im = Image.fromarray(np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return im.convert("RGB")


def read_csv_rows(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) of a CSV with a header, cells stripped, unnamed columns (a pandas index) dropped;
    `ConfigError` naming the missing ``required`` columns or why the file is unreadable."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in reader.fieldnames or []]
            missing = [c for c in required if c not in header]
            if missing:
                raise ConfigError(f"{path}: missing column(s) {', '.join(missing)}; "
                                  f"found {', '.join(header)}")
            return [(i, {(k or "").strip(): (v or "").strip() for k, v in row.items() if k})
                    for i, row in enumerate(reader, start=2)]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"{path}: unreadable CSV: {exc}") from None


def open_dataset(name: str, *, data_dir: Path | None = None, split: str | None = None,
                 task: str | None = None):
    """Instantiate a registered dataset with the options given (unset ones keep its defaults). A
    dataset that declares ``tasks`` refuses the others; one whose constructor takes ``task`` is told
    it (e.g. to read no images for ``generate``)."""
    import inspect

    cls = DATASETS.get(name)
    if task is not None and task not in getattr(cls, "tasks", TASKS):
        raise ConfigError(f"dataset {name!r} has no source images: it supports --task {', '.join(cls.tasks)}")
    options = {k: v for k, v in (("data_dir", data_dir), ("split", split)) if v is not None}
    accepted = inspect.signature(cls).parameters
    for key in options:
        if key not in accepted:
            raise ConfigError(f"dataset {name!r} takes no --{key.replace('_', '-')}")
    if task is not None and "task" in accepted:
        options["task"] = task
    return cls(**options)


def open_run_dataset(config: dict):
    """The dataset a run was made on, reopened from its manifest's ``config`` (name, data folder, split,
    task)."""
    ds = config.get("dataset") or {}
    return open_dataset(ds.get("name", "?"), data_dir=Path(ds["data_dir"]) if ds.get("data_dir") else None,
                        split=ds.get("split"), task=config.get("task"))
