"""``folder``: a directory of images plus ``prompts.csv`` — run any method on your own photos.

``prompts.csv`` has a header and the columns ``file_name,source_prompt,target_prompt`` and an
optional ``blend_words`` column ("src tgt": the Prompt-to-Prompt local-blend words). The sample
id is the file name without its extension (characters outside ``[A-Za-z0-9._-]`` become ``_``).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from icd_bench.data.base import checked_blend_words, data_file, load_rgb_image, unique_id
from icd_bench.errors import ConfigError, SampleError
from icd_bench.registry import DATASETS
from icd_bench.types import EditSample

REQUIRED = ("file_name", "source_prompt", "target_prompt")


@dataclass
class _Row:
    line: int
    file_name: str
    source_prompt: str
    target_prompt: str
    blend_words: str


def sample_id_for(file_name: str) -> str:
    stem = Path(file_name).stem or "sample"
    return re.sub(r"[^A-Za-z0-9._-]", "_", stem).lstrip("._-") or "sample"


@DATASETS.register("folder")
class FolderDataset:
    """Your own images: DATA_DIR/prompts.csv (file_name,source_prompt,target_prompt[,blend_words])."""


    def __init__(self, data_dir: str | Path | None = None, csv_name: str = "prompts.csv"):
        if data_dir is None:
            raise ConfigError("the folder dataset needs --data-dir DIR (a directory with images and "
                              "prompts.csv: file_name,source_prompt,target_prompt[,blend_words])")
        self.root = Path(data_dir).expanduser()
        if not self.root.is_dir():
            raise ConfigError(f"data directory not found: {self.root}; "
                              "--data-dir takes a directory with images and "
                              "prompts.csv (file_name,source_prompt,target_prompt[,blend_words])")
        self.csv_path = self.root / csv_name
        if not self.csv_path.is_file():
            raise ConfigError(f"{self.csv_path} not found: the folder dataset needs a CSV with the "
                              f"header file_name,source_prompt,target_prompt[,blend_words]")
        self._rows: dict[str, _Row] = {}
        self._read_csv()

    def _read_csv(self) -> None:
        try:
            with open(self.csv_path, newline="", encoding="utf-8-sig") as f:
                reader = csv.DictReader(f)
                header = [h.strip() for h in (reader.fieldnames or [])]
                missing = [c for c in REQUIRED if c not in header]
                if missing:
                    raise ConfigError(f"{self.csv_path}: missing column(s) {', '.join(missing)}; "
                                      f"found {', '.join(header) or 'no header'}")
                for line, raw in enumerate(reader, start=2):
                    row = {(k or "").strip(): (v or "").strip() if isinstance(v, str) else ""
                           for k, v in raw.items()}
                    if not row.get("file_name"):
                        continue  # blank line
                    sid = unique_id(sample_id_for(row["file_name"]), self._rows)  # same stem, other extension
                    self._rows[sid] = _Row(line, row["file_name"], row.get("source_prompt", ""),
                                           row.get("target_prompt", ""), row.get("blend_words", ""))
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{self.csv_path} is not UTF-8 text: {exc}") from None
        except csv.Error as exc:
            raise ConfigError(f"{self.csv_path}: malformed CSV: {exc}") from None

    def ids(self) -> list[str]:
        return list(self._rows)

    def describe(self) -> dict:
        return {"name": self.name, "data_dir": str(self.root.resolve()), "csv": self.csv_path.name,
                "size": len(self._rows)}

    def load(self, sample_id: str) -> EditSample:
        row = self._rows[sample_id]
        where = f"{self.csv_path.name} line {row.line}"
        if not row.source_prompt:
            raise SampleError(sample_id, f"empty source_prompt ({where})")
        if not row.target_prompt:
            raise SampleError(sample_id, f"empty target_prompt ({where})")
        blend = None
        if row.blend_words:
            words = row.blend_words.split()
            if len(words) != 2:
                raise SampleError(sample_id, f"blend_words must be two words 'source target', got "
                                  f"{row.blend_words!r} ({where})")
            blend = (words[0], words[1])
        image = load_rgb_image(data_file(self.root, row.file_name, sample_id), sample_id)
        blend, notes = checked_blend_words(sample_id, row.source_prompt, row.target_prompt, blend)
        return EditSample(id=sample_id, image=image, source_prompt=row.source_prompt,
                          target_prompt=row.target_prompt, blend_words=blend, notes=notes,
                          meta={"file_name": row.file_name})
