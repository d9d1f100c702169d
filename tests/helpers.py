"""Small builders shared by the tests."""

from __future__ import annotations

import csv
from pathlib import Path

from PIL import Image, ImageDraw


def make_image(path: Path, color=(200, 30, 30), bg=(255, 255, 255), size=48) -> Path:
    im = Image.new("RGB", (size, size), bg)
    ImageDraw.Draw(im).ellipse((size // 4, size // 4, 3 * size // 4, 3 * size // 4), fill=color)
    im.save(path)
    return path


def write_prompts(root: Path, rows: list[tuple]) -> Path:
    path = root / "prompts.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file_name", "source_prompt", "target_prompt", "blend_words"])
        for r in rows:
            w.writerow(list(r) + [""] * (4 - len(r)))
    return path
