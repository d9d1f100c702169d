"""``prompts``: prompts only, for ``--task generate`` (FID / CLIP-T / ImageReward of generations).

``--data-dir`` is the prompts file: a CSV with a ``caption`` or ``prompt`` column — the official
iCD code's ``generation_parti-prompts.csv`` (``,id,caption``) and ``generation_coco.csv``
(``,file_name,caption``) as published — or a text file with one prompt per line. Sample ids: the
``id`` column, else the ``file_name`` stem, else the row number (1-based).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from icd_bench.data.base import read_csv_rows, unique_id
from icd_bench.data.folder import sample_id_for
from icd_bench.errors import ConfigError, SampleError
from icd_bench.registry import DATASETS
from icd_bench.types import EditSample


@DATASETS.register("prompts")
class Prompts:
    """Prompts only (a CSV with a caption/prompt column, or one prompt per line): --task generate."""

    tasks: ClassVar[tuple[str, ...]] = ("generate",)

    def __init__(self, data_dir: str | Path | None = None):
        if data_dir is None:
            raise ConfigError("the prompts dataset needs --data-dir PROMPTS_FILE "
                              "(a CSV with a caption or prompt column, "
                              "e.g. the published generation_parti-prompts.csv, or one prompt per line)")
        self.path = Path(data_dir).expanduser()
        if not self.path.is_file():
            raise ConfigError(f"prompts file not found: {self.path} (--data-dir is the prompts file itself)")
        self.prompts: dict[str, str] = {}
        if self.path.suffix.lower() == ".csv":
            rows = read_csv_rows(self.path, ())
            header = set(rows[0][1]) if rows else set()
            column = next((c for c in ("caption", "prompt") if c in header), None)
            if column is None:
                raise ConfigError(f"{self.path}: a prompts CSV needs a caption or prompt column; "
                                  f"found {', '.join(sorted(header)) or 'none'}")
            for line, row in rows:
                base = row.get("id") or row.get("file_name") or str(line - 1)  # cells come stripped
                self.prompts[unique_id(sample_id_for(base), self.prompts)] = row[column]
        else:
            try:
                lines = self.path.read_text(encoding="utf-8-sig").splitlines()
            except UnicodeDecodeError as exc:
                raise ConfigError(f"{self.path}: not UTF-8 text: {exc}") from None
            for i, text in enumerate((t.strip() for t in lines if t.strip()), start=1):
                self.prompts[str(i)] = text

    def ids(self) -> list[str]:
        return list(self.prompts)

    def describe(self) -> dict:
        return {"name": self.name, "data_dir": str(self.path.resolve()), "size": len(self.prompts)}

    def load(self, sample_id: str) -> EditSample:
        prompt = self.prompts[sample_id].strip()
        if not prompt:
            raise SampleError(sample_id, "empty prompt")
        return EditSample(id=sample_id, image=None, source_prompt=prompt, target_prompt=prompt)
