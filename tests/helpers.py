"""Small builders shared by the tests."""

from __future__ import annotations

import csv
import json
from collections import Counter
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


def check_run_store(out: Path) -> list[dict]:
    """The invariants a killed run must keep; returns its records. Parseable records but a torn last
    line, each id at most once, every recorded image present and decodable, a parseable manifest
    wherever there are records (or a manifest at all)."""
    path = out / "records.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    records = []
    for i, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            assert i == len(lines) - 1, f"{path}: torn line {i + 1} is not the last"
    counts = Counter(r["id"] for r in records)
    assert not counts or max(counts.values()) == 1, f"duplicate records: {counts.most_common(3)}"
    for r in records:
        for rel in r["outputs"].values():
            with Image.open(out / rel) as im:
                im.load()
    if records or (out / "manifest.json").exists():
        json.loads((out / "manifest.json").read_text())
    return records



def write_image_run(root: Path, images, *, task: str = "generate", prompts=None, sources=None) -> Path:
    """A run directory holding ``images`` (3×H×W tensors in [0, 1] or PIL images) as finished samples
    ``s00000``, … of a dataset nobody can reopen: what `score` sees of a run made elsewhere (images,
    sources, prompts)."""
    from icd_bench.store import RunStore, config_hash

    config = {"method": "external", "task": task, "dataset": {"name": "unavailable-dataset"}}
    store = RunStore.create_or_resume(root, {"config": config, "config_hash": config_hash(config)})
    for k, image in enumerate(images):
        sample_id = f"s{k:05d}"
        outputs = {"image": store.write_image("images", sample_id, image)}
        if sources is not None:
            outputs["source"] = store.write_image("sources", sample_id, sources[k])
        store.append({"id": sample_id, "status": "ok", "outputs": outputs,
                      "target_prompt": prompts[k] if prompts else ""})
    return root
