"""COCO 2014 val datasets of the iCD paper: the editing pairs and the 5K captions.

``coco-edit``: ``DATA_DIR/editing_coco.csv`` (``file_name, old_caption, edited_caption,
blended_words`` — the blend words written as a Python tuple, e.g. ``('cat', 'dog')``) over COCO 2014
images. An image is looked up in the folder its name points to — ``COCO_train2014_*`` in
``DATA_DIR/train2014/``, ``COCO_val2014_*`` in ``DATA_DIR/val2014/`` (the published list names
train2014 files) — then in the other split's folder and in ``DATA_DIR`` itself.

``coco-captions``: image + caption pairs for generation (FID-5k) and for inversion, from
``DATA_DIR/captions.csv`` or the published ``DATA_DIR/generation_coco.csv`` (``file_name, caption``)
or, failing both, the official ``DATA_DIR/annotations/captions_val2014.json`` (the first caption of
each image, images in id order); the first ``limit`` of them — 5000 by default. ``--task
generate`` reads no image (the FID reference set is given to the metric, not to the run).
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

from icd_bench.data.base import checked_blend_words, data_file, load_rgb_image, read_csv_rows, unique_id
from icd_bench.data.folder import sample_id_for
from icd_bench.errors import ConfigError, SampleError
from icd_bench.registry import DATASETS
from icd_bench.types import EditSample

COCO_HINT = ("COCO 2014 images come from the COCO project (train2014.zip / val2014.zip; "
             "annotations_trainval2014.zip for captions); unpack the split the file names point to "
             "(train2014/ for COCO_train2014_*, val2014/ for COCO_val2014_*; and annotations/) "
             "under the data directory. See datasets/coco.md.")
SPLITS = ("train2014", "val2014")
CAPTION_FILES = ("captions.csv", "generation_coco.csv")  # the second: the official iCD code's published list


def parse_blend_words(text: str) -> tuple[str, str] | None:
    """"('cat', 'dog')" → ('cat', 'dog'); "" → None; anything else raises ValueError."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise ValueError(f"blended_words is not a tuple of two words: {text!r}") from None
    if (not isinstance(value, tuple | list) or len(value) != 2
            or not all(isinstance(v, str) and v.strip() for v in value)):
        raise ValueError(f"blended_words must be two words, got {text!r}")
    return (value[0].strip(), value[1].strip())


def coco_image_file(root: Path, file_name: str, sample_id: str) -> Path:
    """Where a COCO image is: the split folder its name names (``COCO_train2014_*`` →
    ``train2014/``), then the other split's folder, then ``root``; a `SampleError` naming every
    place looked in (and the split to unpack) when it is in none."""
    named = next((s for s in SPLITS if Path(file_name).name.startswith(f"COCO_{s}_")), None)
    folders = [root / s for s in sorted(SPLITS, key=lambda s: s != named)] + [root]
    places = [data_file(folder, file_name, sample_id) for folder in folders]
    found = next((p for p in places if p.is_file()), None)
    if found is None:
        hint = f"; {file_name} is a {named} image: unpack {named}.zip into {root / named}" if named else ""
        raise SampleError(sample_id, "image file not found: looked in "
                          + ", ".join(str(p) for p in places) + hint)
    return found


@DATASETS.register("coco-edit")
class CocoEdit:
    """The iCD paper's COCO editing pairs (~140): editing_coco.csv over COCO 2014 val images."""


    def __init__(self, data_dir: str | Path | None = None, csv_name: str = "editing_coco.csv"):
        self.root = Path(data_dir or "datasets/coco").expanduser()
        path = self.root / csv_name
        if not path.is_file():
            raise ConfigError(f"coco-edit data not found: {path} does not exist. It is the editing CSV of "
                              f"the iCD reference code "
                              f"(file_name, old_caption, edited_caption, blended_words). "
                              f"{COCO_HINT}")
        self.rows: dict[str, tuple[int, dict[str, str]]] = {}
        for line, row in read_csv_rows(path, ("file_name", "old_caption", "edited_caption")):
            if row.get("file_name"):
                sid = unique_id(sample_id_for(row["file_name"]), self.rows)
                self.rows[sid] = (line, row)

    def ids(self) -> list[str]:
        return list(self.rows)

    def describe(self) -> dict:
        return {"name": self.name, "data_dir": str(self.root.resolve()), "size": len(self.rows)}

    def load(self, sample_id: str) -> EditSample:
        line, row = self.rows[sample_id]
        if not row["old_caption"] or not row["edited_caption"]:
            raise SampleError(sample_id, f"empty caption (line {line})")
        try:
            blend = parse_blend_words(row.get("blended_words", ""))
        except ValueError as exc:
            raise SampleError(sample_id, f"{exc} (line {line})") from None
        image = load_rgb_image(coco_image_file(self.root, row["file_name"], sample_id), sample_id)
        blend, notes = checked_blend_words(sample_id, row["old_caption"], row["edited_caption"], blend)
        return EditSample(id=sample_id, image=image, source_prompt=row["old_caption"],
                          target_prompt=row["edited_caption"], blend_words=blend, notes=notes,
                          edit_type="replace", meta={"file_name": row["file_name"]})


@DATASETS.register("coco-captions")
class CocoCaptions:
    """COCO 2014 val image-caption pairs (5K by default) for generation, FID and inversion."""


    def __init__(self, data_dir: str | Path | None = None, limit: int = 5000, task: str | None = None):
        self.root = Path(data_dir or "datasets/coco").expanduser()
        self.with_images = task != "generate"
        self.captions: dict[str, tuple[str, str]] = {}
        csv_path = next((p for p in (self.root / n for n in CAPTION_FILES) if p.is_file()),
                        self.root / CAPTION_FILES[0])
        ann = self.root / "annotations" / "captions_val2014.json"
        if csv_path.is_file():
            for _, row in read_csv_rows(csv_path, ("file_name", "caption"))[:limit]:
                if row.get("file_name"):
                    self.captions.setdefault(sample_id_for(row["file_name"]),
                                             (row["file_name"], row["caption"]))
        elif ann.is_file():
            try:
                data = json.loads(ann.read_text(encoding="utf-8"))
                files = {im["id"]: im["file_name"] for im in data["images"]}
                first: dict[int, str] = {}
                for a in sorted(data["annotations"], key=lambda a: a["id"]):
                    first.setdefault(a["image_id"], a["caption"].strip())
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ConfigError(f"{ann} is not a COCO captions file: {exc}") from None
            for image_id in sorted(first)[:limit]:
                self.captions[sample_id_for(files[image_id])] = (files[image_id], first[image_id])
        else:
            raise ConfigError(f"coco-captions data not found: none of {', '.join(CAPTION_FILES)} "
                              f"(file_name,caption) in {self.root}, nor {ann}. {COCO_HINT}")

    def ids(self) -> list[str]:
        return list(self.captions)

    def describe(self) -> dict:
        return {"name": self.name, "data_dir": str(self.root.resolve()), "size": len(self.captions)}

    def load(self, sample_id: str) -> EditSample:
        file_name, caption = self.captions[sample_id]
        if not caption:
            raise SampleError(sample_id, "empty caption")
        image = (load_rgb_image(coco_image_file(self.root, file_name, sample_id), sample_id)
                 if self.with_images else None)
        return EditSample(id=sample_id, image=image, source_prompt=caption, target_prompt=caption,
                          meta={"file_name": file_name})
