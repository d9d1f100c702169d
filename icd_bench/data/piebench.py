"""``piebench``: PIE-Bench (PnPInversion, 700 images, 10 edit types) read in its published layout.

    DATA_DIR/mapping_file.json              {12-digit id: {image_path, original_prompt,
                                              editing_prompt, editing_instruction, editing_type_id,
                                              blended_word, mask}}
    DATA_DIR/annotation_images/<image_path>

Edited words are marked ``[like this]`` in the prompts; the brackets are removed from the text the
model sees and kept in ``meta``. The mask is run-length pairs (start, length) over a row-major
512×512 grid; as the benchmark's own evaluation does, the 1-pixel border is forced into the mask.
Splits: ``all`` (700), ``realistic`` (the iCD paper's 420: ids whose first digit is 0 or second
digit is 2) and ``random`` (the 140 of edit type 0) — or the path of an id list: a published
editing CSV as is (``editing_pie_bench_140.csv``, ``editing_pie_bench_all.csv``: the ids are the
``file_name`` stems, whatever the column order) or a text file of ids, one per line. Prompts,
masks and edit types always come from ``mapping_file.json``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from icd_bench.data.base import checked_blend_words, data_file, load_rgb_image, read_csv_rows
from icd_bench.errors import ConfigError, SampleError
from icd_bench.registry import DATASETS
from icd_bench.types import EditSample

MASK_GRID = (512, 512)
EDIT_TYPES = {
    "0": "random", "1": "change object", "2": "add object", "3": "delete object",
    "4": "change content", "5": "change pose", "6": "change color", "7": "change material",
    "8": "change background", "9": "change style",
}
SPLITS = ("all", "realistic", "random")
ID_RE = re.compile(r"^\d{12}$")
BRACKETS = re.compile(r"\[([^\[\]]*)\]")

DOWNLOAD_HINT = ("PIE-Bench comes from the PnPInversion project (cure-lab/PnPInversion): download its "
                 "data folder (mapping_file.json and annotation_images/) and pass --data-dir to it, "
                 "or put it at datasets/piebench. See datasets/piebench.md.")


def decode_mask(pairs: list[int], shape: tuple[int, int] = MASK_GRID, border: bool = True) -> np.ndarray:
    """Run-length pairs (start, length) over a row-major grid → H×W bool mask.

    Runs past the end are clipped, as in the benchmark's ``mask_decode``; with ``border`` the
    1-pixel frame is set, also as the benchmark does ("to avoid annotation errors in boundary").
    """
    if len(pairs) % 2:
        raise ValueError(f"run-length mask has an odd number of values ({len(pairs)})")
    total = shape[0] * shape[1]
    flat = np.zeros(total, dtype=bool)
    for start, length in zip(pairs[0::2], pairs[1::2], strict=True):
        if not isinstance(start, int) or not isinstance(length, int) or start < 0 or length < 0:
            raise ValueError(f"run-length mask has an invalid run ({start!r}, {length!r})")
        flat[start:min(start + length, total)] = True
    mask = flat.reshape(shape)
    return with_border(mask) if border else mask


def with_border(mask: np.ndarray) -> np.ndarray:
    """The mask with its 1-pixel frame set (PIE-Bench's ``mask_decode``: "to avoid annotation errors in
    boundary"); a copy."""
    mask = mask.copy()
    mask[0, :] = mask[-1, :] = True
    mask[:, 0] = mask[:, -1] = True
    return mask


def encode_mask(mask: np.ndarray) -> list[int]:
    """The inverse of `decode_mask` (without the border rule): bool H×W → run-length pairs."""
    flat = np.concatenate([[False], mask.reshape(-1).astype(bool), [False]])
    edges = np.flatnonzero(flat[1:] != flat[:-1])
    starts, ends = edges[0::2], edges[1::2]
    out: list[int] = []
    for s, e in zip(starts, ends, strict=True):
        out += [int(s), int(e - s)]
    return out


def strip_brackets(prompt: str) -> tuple[str, list[str]]:
    """'a [red] car' → ('a red car', ['red'])."""
    words = BRACKETS.findall(prompt)
    text = BRACKETS.sub(lambda m: m.group(1), prompt)
    return " ".join(text.split()), words


def read_id_list(path: Path) -> list[str]:
    """The sample ids of a list file: a CSV with a ``file_name`` (ids = the names' stems) or ``id``
    column, as the official iCD code publishes its PIE-Bench lists, or one id per line."""
    if path.suffix.lower() == ".csv":
        rows = [row for _, row in read_csv_rows(path, ())]
        header = list(rows[0]) if rows else []
        column = next((c for c in ("file_name", "id") if c in header), None)
        if column is None:
            raise ConfigError(f"{path}: an id list needs a file_name or id column; "
                              f"found {', '.join(header) or 'none'}")
        ids = [Path(r[column]).stem if column == "file_name" else r[column] for r in rows]
    else:
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the id list {path}: {exc}") from None
        ids = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return list(dict.fromkeys(i for i in ids if i))


def in_split(sample_id: str, split: str) -> bool:
    if split == "all":
        return True
    if split == "realistic":
        return sample_id[0] == "0" or sample_id[1] == "2"
    if split == "random":
        return sample_id[0] == "0"
    raise ConfigError(f"unknown PIE-Bench split {split!r}; use one of {', '.join(SPLITS)}")


@DATASETS.register("piebench")
class PieBench:
    """
    PIE-Bench (700 edits, 10 types) in its published layout; --split all|realistic|random or an id list file.
    """

    default_dir: ClassVar[str] = "datasets/piebench"

    def __init__(self, data_dir: str | Path | None = None, split: str = "all"):
        self.root = Path(data_dir or self.default_dir).expanduser()
        self.split = split
        listed = None
        if split not in SPLITS:
            if not Path(split).expanduser().is_file():
                if "/" in split or Path(split).suffix in (".csv", ".txt"):
                    raise ConfigError(f"{self.name} split file {split} does not exist (the published lists "
                                      f"editing_pie_bench_140.csv / editing_pie_bench_all.csv: "
                                      f"see datasets/piebench.md)")
                raise ConfigError(f"unknown {self.name} split {split!r}; use one of {', '.join(SPLITS)} "
                                  f"or the path of an id list (e.g. the published editing_pie_bench_140.csv)")
            listed = read_id_list(Path(split).expanduser())
        mapping = self.root / "mapping_file.json"
        if not mapping.is_file():
            raise ConfigError(f"{self.name} data not found: {mapping} does not exist. {self.download_hint()}")
        if not (self.root / "annotation_images").is_dir():
            raise ConfigError(f"{self.name} data incomplete: {self.root / 'annotation_images'} is missing. "
                              f"{self.download_hint()}")
        try:
            data = json.loads(mapping.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{mapping} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{mapping} must map ids to entries")
        if listed is not None:
            absent = [i for i in listed if i not in data]
            if absent:
                raise ConfigError(f"{len(absent)} id(s) of {split} are not in {mapping}: "
                                  f"{', '.join(absent[:5])}"
                                  + (" ..." if len(absent) > 5 else ""))
            self.entries: dict[str, Any] = {k: data[k] for k in listed}
        else:
            self.entries = {k: v for k, v in data.items() if len(k) < 2 or in_split(k, split)}

    def download_hint(self) -> str:
        return DOWNLOAD_HINT

    def ids(self) -> list[str]:
        return list(self.entries)

    def describe(self) -> dict:
        return {"name": self.name, "data_dir": str(self.root.resolve()), "split": self.split,
                "size": len(self.entries)}

    def load(self, sample_id: str) -> EditSample:
        if not ID_RE.match(sample_id):
            raise SampleError(sample_id, "PIE-Bench ids are 12 digits; this entry's key is malformed")
        e = self.entries[sample_id]
        if not isinstance(e, dict):
            raise SampleError(sample_id, "mapping entry is not an object")
        missing = [k for k in ("image_path", "original_prompt", "editing_prompt", "mask") if k not in e]
        if missing:
            raise SampleError(sample_id, f"mapping entry lacks {', '.join(missing)}")
        source, src_words = strip_brackets(str(e["original_prompt"]))
        target, tgt_words = strip_brackets(str(e["editing_prompt"]))
        if not source or not target:
            raise SampleError(sample_id, "empty original_prompt or editing_prompt")
        blend = None
        words = str(e.get("blended_word") or "").split()
        if words:
            if len(words) != 2:
                raise SampleError(sample_id,
                                  f"blended_word must be 'source target', got {e['blended_word']!r}")
            blend = (words[0], words[1])
        image = load_rgb_image(data_file(self.root / "annotation_images", str(e["image_path"]), sample_id),
                               sample_id)
        blend, notes = checked_blend_words(sample_id, source, target, blend)
        try:
            drawn = decode_mask(list(e["mask"]), border=False)
        except (TypeError, ValueError) as exc:
            raise SampleError(sample_id, f"malformed mask: {exc}") from None
        mask = with_border(drawn)
        if image.size != (MASK_GRID[1], MASK_GRID[0]):
            mask, drawn = (np.asarray(Image.fromarray(m).resize(image.size, Image.Resampling.NEAREST))
                           for m in (mask, drawn))
        type_id = str(e.get("editing_type_id", sample_id[0]))
        return EditSample(
            id=sample_id, image=image, source_prompt=source, target_prompt=target, blend_words=blend,
            notes=notes, edit_mask=mask, edit_type=EDIT_TYPES.get(type_id, type_id),
            meta={"editing_type_id": type_id, "editing_instruction": e.get("editing_instruction", ""),
                  "source_words": src_words, "target_words": tgt_words, "image_path": e["image_path"],
                  # as published, for the pie protocol's switches (icd_bench.metrics.pie_protocol)
                  "original_prompt": str(e["original_prompt"]), "editing_prompt": str(e["editing_prompt"]),
                  "mask_without_border": drawn,
                  **{k: v for k, v in e.items() if k.startswith("toy_")}})


@DATASETS.register("demo")
class Demo(PieBench):
    """The bundled demo set: 70 toy-scene edits (7 edit types) in the PIE-Bench layout."""

    default_dir: ClassVar[str] = str(Path(__file__).resolve().parents[1] / "assets" / "demo")

    def download_hint(self) -> str:
        return "The demo set ships with icd-bench; regenerate it with `icd-bench toy make-demo --out DIR`."
