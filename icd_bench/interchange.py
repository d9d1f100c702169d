"""Outputs made elsewhere, imported as ordinary run directories (``icd-bench import``), and a run's
outputs written in the layouts the official evaluators read (``icd-bench export``).

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

Export (`export_run`) writes a run's finished outputs back out:

- ``piebench``: ``OUT/output/<name>/annotation_images/<image_path>``, the tree PIE-Bench's
  ``evaluation/evaluate.py`` reads (run from ``OUT``, with ``"<name>": "output/<name>/annotation_images"``
  among its ``all_tgt_image_folders``). Encoded as PNG by default — lossless, under the mapping's own
  file name (PIL, and so ``evaluate.py``, reads a file by its content, not its suffix), so the evaluator
  sees the run's pixels and its columns equal ``score``'s ``pie`` flavour; ``encoding="jpeg"`` encodes as
  PnPInversion's scripts save (``Image.save`` to the ``.jpg`` name: PIL's JPEG, quality 75).
- ``icd``: ``OUT/edited_images/<j>.jpg`` in the order of the run's dataset (row j of its list), JPEG as
  ``running/sd1.5/edit.py`` saves them — what the ``icd`` flavour's ``files`` view models. A sample the run
  did not finish leaves its ``j`` absent; ``calc_all`` pairs files by position, so every later pair
  shifts there (the export lists those rows).

Each export writes ``export.json`` (the run, its configuration hash, layout, encoding, what was skipped
and why) beside the images: in ``output/<name>/``, or in ``OUT`` for the ``icd`` layout.
"""

from __future__ import annotations

import io
import json
import shutil
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from PIL import Image

from icd_bench.data.base import load_rgb_image, open_dataset, open_run_dataset, read_csv_rows
from icd_bench.errors import ConfigError, SampleError, SampleWarning
from icd_bench.imaging import IMAGE_SUFFIXES
from icd_bench.provenance import git_commit, versions
from icd_bench.store import MANIFEST, RunStore, atomic_write_bytes, config_hash

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


def _pie_image_paths(ds, ids: list[str], dataset: str | None) -> dict[str, str]:
    """Each sample's ``image_path`` in a PIE-Bench mapping ("" where its entry has none)."""
    if not hasattr(ds, "entries"):
        raise ConfigError(f"the piebench layout needs a PIE-Bench dataset (piebench, demo), not {dataset!r}")
    return {i: str(e.get("image_path", "")) if isinstance(e := ds.entries[i], dict) else "" for i in ids}


def _by_csv(folder: Path, mapping: Path) -> dict[str, Path]:
    """Sample id → image file (relative to ``folder``) from a CSV with the columns ``id`` and ``file``."""
    if not mapping.is_file():
        raise ConfigError(f"cannot read the mapping {mapping}: no such file")
    rows = [r for _, r in read_csv_rows(mapping, ("id", "file")) if r["id"]]
    if not rows:
        raise ConfigError(f"{mapping} maps no sample: it needs rows of id (sample id) and file (relative "
                          f"to {folder})")
    return {r["id"]: folder / r["file"] for r in rows}


def _by_name(folder: Path, ids: list[str]) -> dict[str, Path]:
    stems: dict[str, list[Path]] = {}
    for p in sorted(_images_under(folder, recursive=False)):
        if p.suffix.lower() in IMAGE_SUFFIXES:
            stems.setdefault(p.stem, []).append(p)
    return {i: stems[i][0] if i in stems else folder / f"{i}.png" for i in ids}


def crop_piebench(image: Image.Image, crop: str) -> Image.Image:
    """``evaluate.py``'s crop of a non-square image: the last 512 × 512 (the edit), or the panel
    before it."""
    w, h = image.size
    if w == h:
        return image
    if crop == "reconstruction":
        return image.crop((w - 2 * PIE_SIDE, h - PIE_SIDE, w - PIE_SIDE, h))
    return image.crop((w - PIE_SIDE, h - PIE_SIDE, w, h))


def _checked(image: Image.Image, path: Path, layout: str, size: int | None) -> Image.Image:
    """A `SampleError` for an image of the wrong size (what PIE-Bench's crop would silently pad with
    black)."""
    w, h = image.size
    if layout == "piebench":
        if w != h and (h != PIE_SIDE or w % PIE_SIDE):
            raise ValueError(f"{path} is {w}×{h}: expected {PIE_SIDE}×{PIE_SIDE} "
                             f"or a strip of {PIE_SIDE}-px panels")
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
                   size: int | None = None, force: bool = False, saw_mask: bool | None = None,
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
            raise ConfigError(f"{out} already holds a run: choose another --out, "
                              f"or pass --force to replace it")
        shutil.rmtree(out)
    ds = open_dataset(dataset, data_dir=Path(data_dir) if data_dir else None, split=split, task=task)
    ids = ds.ids()
    if layout == "piebench":
        root = _piebench_root(folder)
        # a malformed entry (no image_path) points at the folder itself: its sample fails as the
        # dataset says why
        wanted = {i: root / path for i, path in _pie_image_paths(ds, ids, dataset).items()}
    elif layout == "icd":
        root = folder
        wanted = {i: root / f"{j}.jpg" for j, i in enumerate(ids)}
    else:
        root = folder
        wanted = _by_csv(folder, Path(mapping)) if mapping else _by_name(folder, ids)
    # PnPInversion names each method by its folder, output/<method>: tables match it to the paper's row
    producer = ((root.parent if root.name == "annotation_images" else root).name if layout == "piebench"
                else None)
    config = {"method": "imported", "preset": name or f"imported-{layout}",
              "params": {"layout": layout, "folder": str(folder.resolve()), "crop": crop,
                         **({"producer_method": producer} if producer else {}),
                         **({"mapping": str(Path(mapping).resolve())} if mapping else {})},
              "dataset": {k: v for k, v in ds.describe().items() if k != "size"},
              "backbone": None, "task": task, "seed": None, "dtype": None}
    claimed = {p.resolve() for p in wanted.values()}
    extras = sorted(str(p.relative_to(root)) for p in _images_under(root, recursive=layout == "piebench")
                    if p.resolve() not in claimed)
    manifest = {"format": 1, "config": config, "config_hash": config_hash(config),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "imported": {"from": str(folder.resolve()), "layout": layout, "nfe": "unknown",
                             "seconds": "unknown", "extra_files": extras},
                "protocol": {"saw_mask": saw_mask},  # as declared by the importer; None: unknown
                "runtime": {"versions": versions(), "git_commit": git_commit(),
                            "command": " ".join(sys.argv)}}
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


EXPORT_LAYOUTS = ("piebench", "icd")
ENCODINGS = ("png", "jpeg")
EXPORT_MANIFEST = "export.json"


@dataclass
class ExportSummary:
    root: Path  # the folder the images were written to
    written: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (sample id, why)
    odd_sizes: list[str] = field(default_factory=list)


def _safe_name(name: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise ConfigError(f"--name {name!r} must be a plain folder name")
    return name


def export_run(run_dir: str | Path, layout: str, out: str | Path, *, name: str | None = None,
               encoding: str | None = None, force: bool = False,
               progress: Callable[[int, int], None] | None = None) -> ExportSummary:
    """Write ``run_dir``'s finished outputs under ``out`` in ``layout`` (see the module docstring)."""
    if layout not in EXPORT_LAYOUTS:
        raise ConfigError(f"unknown layout {layout!r}; choose one of {', '.join(EXPORT_LAYOUTS)}")
    encoding = encoding or ("png" if layout == "piebench" else "jpeg")
    if encoding not in ENCODINGS:
        raise ConfigError(f"encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
    run_dir, out = Path(run_dir).expanduser(), Path(out).expanduser()
    store = RunStore(run_dir)
    manifest = store.manifest()
    cfg = manifest["config"]
    try:
        ds = open_run_dataset(cfg)
    except ConfigError as exc:
        raise ConfigError(f"exporting {run_dir} needs its dataset (for the file names and their order): "
                          f"{exc}") from None
    ids = ds.ids()
    if layout == "piebench":
        files = _pie_image_paths(ds, ids, (cfg.get("dataset") or {}).get("name"))
        name = _safe_name(name or str(cfg.get("preset") or cfg.get("method") or run_dir.name))
        root = out / "output" / name / "annotation_images"
        target = out / "output" / name
    else:
        root = target = out / "edited_images"
        files = {i: f"{j}.jpg" for j, i in enumerate(ids)}
    if target.exists() and any(target.iterdir()):
        if not force:
            raise ConfigError(f"{target} already holds images: choose another --out or --name, "
                              "or pass --force to replace it")
        shutil.rmtree(target)
    records = {r["id"]: r for r in store.records()}
    summary = ExportSummary(root=root)
    for k, sample_id in enumerate(ids, 1):
        rec = records.get(sample_id)
        if rec is None or rec.get("status") != "ok":
            why = "not run" if rec is None else f"failed in the run: {rec.get('error')}"
            summary.skipped.append((sample_id, why))
        elif not files[sample_id]:
            summary.skipped.append((sample_id, "its mapping entry has no image_path"))
        else:
            try:
                with Image.open(run_dir / rec["outputs"]["image"]) as im:
                    image = im.convert("RGB")
            except (OSError, KeyError) as exc:
                summary.skipped.append((sample_id, f"cannot read its image: {exc}"))
            else:
                if layout == "piebench" and image.size != (PIE_SIDE, PIE_SIDE):
                    summary.odd_sizes.append(sample_id)
                buf = io.BytesIO()
                image.save(buf, format="PNG" if encoding == "png" else "JPEG")
                path = root / files[sample_id]
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(path, buf.getvalue())
                summary.written += 1
        if progress:
            progress(k, len(ids))
    record = {"run": str(run_dir.resolve()), "config_hash": manifest.get("config_hash"), "layout": layout,
              "name": name if layout == "piebench" else None, "encoding": encoding,
              "written": summary.written, "skipped": dict(summary.skipped), "not_512": summary.odd_sizes,
              "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    # beside the images, never among them: calc_all lists edited_images/ and takes every name for a number
    where = target / EXPORT_MANIFEST if layout == "piebench" else out / EXPORT_MANIFEST
    atomic_write_bytes(where, (json.dumps(record, indent=1) + "\n").encode())
    return summary
