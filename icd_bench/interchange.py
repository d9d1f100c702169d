"""Outputs made elsewhere, imported as ordinary run directories (``icd-bench import``).

A run directory written here holds what ``icd-bench run`` would have written — ``images/ID.png``, the
source as ``sources/ID.png``, one record per sample — so ``score``, ``report``, ``gallery``, ``stats`` and
``reproduce`` treat it like any other. Its manifest's config names the method ``imported`` and says where
the outputs came from; NFE and seconds are unknown (``None`` in every record, "—" in tables).

Layouts, as their producers write them:

- ``piebench``: PnPInversion's ``output/<method>/annotation_images/<image_path>`` (the folder given is the
  method folder or its ``annotation_images``), joined with the dataset's ``mapping_file.json`` by
  ``image_path``. An image wider than tall is cropped as PIE-Bench's ``evaluation/evaluate.py`` does: the
  last 512 × 512 (the edit of a [source | reconstruction | edit] strip; ``crop="reconstruction"``: the
  panel before it).
- ``icd``: the iCD code's ``edited_images/<j>.jpg``, row j of the instruction list the run was made on
  (the dataset's ids in their order: ``coco-edit`` over the published ``editing_coco.csv``, ``piebench``
  with ``--split`` a published ``editing_pie_bench_*.csv``). ``calc_all`` pairs row j with the j-th file
  in numeric order, so one missing file shifts every later pair there; here file ``j`` is row j's, and a
  missing file fails only its row. The source is stored as ``load_512`` reads it (512 × 512).
- ``folder``: a folder of images, matched to sample ids by a CSV (``id`` and ``file`` columns) or, without
  one, by file name (``ID.png``, ``ID.jpg``, …).

A missing, unreadable or wrongly sized image fails its sample, with the file named (an error record, as a
sample the runner could not finish); files that belong to no sample are listed in the manifest
(``imported.extra_files``), never taken for one. Importing into an existing run directory is refused
unless ``force`` (which replaces it).
"""

from __future__ import annotations

import csv
import shutil
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from PIL import Image

from icd_bench.data.base import load_rgb_image, open_dataset
from icd_bench.errors import ConfigError, SampleError, SampleWarning
from icd_bench.imaging import IMAGE_SUFFIXES
from icd_bench.provenance import git_commit, versions
from icd_bench.store import MANIFEST, RunStore, config_hash

LAYOUTS = ("piebench", "icd", "folder")
PIE_SIDE = 512  # PIE-Bench's images and panels
CROPS = ("edit", "reconstruction")


@dataclass
class ImportSummary:
    out: Path
    total: int = 0
    ok: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    extra_files: list[str] = field(default_factory=list)


def _images_under(folder: Path, recursive: bool) -> set[Path]:
    files = folder.rglob("*") if recursive else folder.iterdir()
    return {p for p in files if p.is_file()}


def _piebench_root(folder: Path) -> Path:
    return folder / "annotation_images" if (folder / "annotation_images").is_dir() else folder


def _by_csv(folder: Path, mapping: Path) -> dict[str, Path]:
    try:
        with open(mapping, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"cannot read the mapping {mapping}: {exc}") from None
    if not rows or not {"id", "file"} <= set(rows[0]):
        raise ConfigError(f"{mapping} needs the columns id and file (sample id → image file relative to {folder})")
    return {r["id"].strip(): folder / r["file"].strip() for r in rows if r["id"].strip()}


def _by_name(folder: Path, ids: list[str]) -> dict[str, Path]:
    stems: dict[str, list[Path]] = {}
    for p in sorted(_images_under(folder, recursive=False)):
        if p.suffix.lower() in IMAGE_SUFFIXES:
            stems.setdefault(p.stem, []).append(p)
    return {i: stems[i][0] if i in stems else folder / f"{i}.png" for i in ids}


def crop_piebench(image: Image.Image, crop: str) -> Image.Image:
    """``evaluate.py``'s crop of a non-square image: the last 512 × 512 (the edit), or the panel before it."""
    w, h = image.size
    if w == h:
        return image
    if crop == "reconstruction":
        return image.crop((w - 2 * PIE_SIDE, h - PIE_SIDE, w - PIE_SIDE, h))
    return image.crop((w - PIE_SIDE, h - PIE_SIDE, w, h))


def _checked(image: Image.Image, path: Path, layout: str, size: int | None) -> Image.Image:
    """A `SampleError` for an image of the wrong size (what PIE-Bench's crop would silently pad with black)."""
    w, h = image.size
    if layout == "piebench":
        if w != h and (h != PIE_SIDE or w % PIE_SIDE):
            raise ValueError(f"{path} is {w}×{h}: expected {PIE_SIDE}×{PIE_SIDE} or a strip of {PIE_SIDE}-px panels")
        if w == h and w != PIE_SIDE:
            raise ValueError(f"{path} is {w}×{h}: PIE-Bench's outputs are {PIE_SIDE}×{PIE_SIDE}")
    elif layout == "icd" and w != h:
        raise ValueError(f"{path} is {w}×{h}: the iCD code's outputs are square")
    if size is not None and layout != "piebench" and (w, h) != (size, size):
        raise ValueError(f"{path} is {w}×{h}: expected {size}×{size} (--size)")
    return image


def import_outputs(layout: str, folder: str | Path, *, dataset: str, out: str | Path,
                   data_dir: str | Path | None = None, split: str | None = None, task: str = "edit",
                   name: str | None = None, mapping: str | Path | None = None, crop: str = "edit",
                   size: int | None = None, force: bool = False,
                   progress: Callable[[int, int], None] | None = None) -> ImportSummary:
    """Write the run directory ``out`` from ``folder``'s images in ``layout`` for ``dataset``'s samples."""
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if crop not in CROPS:
        raise ConfigError(f"crop must be one of {', '.join(CROPS)}, got {crop!r}")
    folder, out = Path(folder).expanduser(), Path(out).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder of images")
    if (out / MANIFEST).exists() or (out.is_dir() and any(out.iterdir())):
        if not force:
            raise ConfigError(f"{out} already holds a run: choose another --out, or pass --force to replace it")
        shutil.rmtree(out)
    ds = open_dataset(dataset, data_dir=Path(data_dir) if data_dir else None, split=split, task=task)
    ids = ds.ids()
    if layout == "piebench":
        root = _piebench_root(folder)
        if not hasattr(ds, "entries"):
            raise ConfigError(f"the piebench layout needs a PIE-Bench dataset (piebench, demo), not {dataset!r}")
        # a malformed entry (no image_path) points at the folder itself: its sample fails as the dataset says why
        wanted = {i: root / str(e.get("image_path", "") if isinstance(e := ds.entries[i], dict) else "") for i in ids}
    elif layout == "icd":
        root = folder
        wanted = {i: root / f"{j}.jpg" for j, i in enumerate(ids)}
    else:
        root = folder
        wanted = _by_csv(folder, Path(mapping)) if mapping else _by_name(folder, ids)
    config = {"method": "imported", "preset": name or f"imported-{layout}",
              "params": {"layout": layout, "folder": str(folder.resolve()), "crop": crop,
                         **({"mapping": str(Path(mapping).resolve())} if mapping else {})},
              "dataset": {k: v for k, v in ds.describe().items() if k != "size"},
              "backbone": None, "task": task, "seed": None, "dtype": None}
    claimed = {p.resolve() for p in wanted.values()}
    extras = sorted(str(p.relative_to(root)) for p in _images_under(root, recursive=layout == "piebench")
                    if p.resolve() not in claimed)
    manifest = {"format": 1, "config": config, "config_hash": config_hash(config),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "imported": {"from": str(folder.resolve()), "layout": layout, "nfe": "unknown", "seconds": "unknown",
                             "extra_files": extras},
                "runtime": {"versions": versions(), "git_commit": git_commit(), "command": " ".join(sys.argv)}}
    store = RunStore.create_or_resume(out, manifest)
    summary = ImportSummary(out=out, total=len(ids), extra_files=extras)
    with warnings.catch_warnings():  # a sample's caveats go into its record, as the runner keeps them
        warnings.simplefilter("ignore", SampleWarning)
        for k, sample_id in enumerate(ids, 1):
            _import_one(store, ds, sample_id, wanted.get(sample_id), root, layout, task, crop, size, summary)
            if progress:
                progress(k, len(ids))
    return summary


def _import_one(store: RunStore, ds, sample_id: str, path: Path | None, root: Path, layout: str, task: str,
                crop: str, size: int | None, summary: ImportSummary) -> None:
    """One sample's image (and its source) into the store, or its error record naming the file."""
    from icd_bench.metrics.icd_protocol import load_512

    try:
        sample = ds.load(sample_id)
        if path is None:
            raise SampleError(sample_id, "the mapping names no file for it")
        image = _checked(load_rgb_image(path, sample_id), path, layout, size)
    except (SampleError, ValueError) as exc:
        reason = exc.reason if isinstance(exc, SampleError) else str(exc)
        store.append({"id": sample_id, "status": "error", "error": reason, "task": task, "seed": None,
                      "nfe": None, "seconds": None, "outputs": {}})
        summary.errors.append((sample_id, reason))
        return
    if layout == "piebench":
        image = crop_piebench(image, crop)
    source = load_512(sample.image) if layout == "icd" else sample.image.convert("RGB")
    files = {"image": store.write_image("images", sample_id, image),
             "source": store.write_image("sources", sample_id, source)}
    where = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
    store.append({"id": sample_id, "status": "ok", "error": None, "task": task, "seed": None, "nfe": None,
                  "seconds": None, "outputs": files, "source_prompt": sample.source_prompt,
                  "target_prompt": sample.target_prompt, "edit_type": sample.edit_type,
                  "warnings": list(sample.notes), "extras": {"imported_from": where}})
    summary.ok += 1
