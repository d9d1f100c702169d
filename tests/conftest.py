"""Shared fixtures. Tests never reach a model hub: offline mode is forced before any import."""

from __future__ import annotations

import csv
import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))

REPO = Path(__file__).resolve().parents[1]


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


@pytest.fixture
def images_dir(tmp_path: Path) -> Path:
    """A folder dataset of 5 good images."""
    root = tmp_path / "images"
    root.mkdir()
    colors = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (30, 200, 200)]
    rows = []
    for k, c in enumerate(colors):
        make_image(root / f"img{k}.png", color=c)
        rows.append((f"img{k}.png", f"a circle number {k}", f"a square number {k}", "circle square"))
    write_prompts(root, rows)
    return root


@pytest.fixture(scope="session")
def tiny_sd15_dir(tmp_path_factory) -> Path:
    from icd_bench.backbones.tiny import save_tiny

    return save_tiny(tmp_path_factory.mktemp("models") / "tiny-sd15", kind="sd15", seed=0)
