"""Scoring at paper scale keeps its memory: ``icd-bench score`` of 5,000 generated 512² images with
``psnr``, ``ssim``, ``lpips`` (its default AlexNet trunk, random weights) and ``fid`` (a tiny extractor) peaks
within 10 % of the resident memory it needs for 500, and the images per second of both go to
``reports/perf/score-memory.{json,md}``. A benchmark, not a timed test: about half an hour on a 2-core CPU.

    python -m pytest -m bench tests/bench/test_score_memory.py -s
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from icd_bench.store import RunStore, config_hash

from conftest import REPO

pytestmark = pytest.mark.bench
SIDE = 512
SIZES = tuple(int(n) for n in os.environ.get("ICD_SCORE_BENCH_SIZES", "500,5000").split(","))
METRICS = "psnr,ssim,lpips,fid"
REPORT = REPO / "reports" / "perf" / "score-memory"


def _image(k: int, shift: float) -> Image.Image:
    """A smooth 512² image with a disc, distinct per k (PNG-friendly: the run stays a few hundred MB)."""
    rng = np.random.default_rng(k)
    y, x = np.mgrid[0:SIDE, 0:SIDE] / SIDE
    c = rng.uniform(0.2, 0.8, size=(3, 3))
    img = np.stack([c[i, 0] * x + c[i, 1] * y + c[i, 2] * shift for i in range(3)], axis=-1)
    cy, cx = rng.uniform(0.2, 0.8, size=2)
    img[(y - cy) ** 2 + (x - cx) ** 2 < 0.02] = rng.uniform(0, 1, size=3)
    return Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8))


def write_run(root: Path, n: int) -> Path:
    config = {"method": "external", "task": "generate", "dataset": {"name": "unavailable-dataset"}}
    store = RunStore.create_or_resume(root, {"config": config, "config_hash": config_hash(config)})
    done = store.finished_ids()
    for k in range(n):
        sample_id = f"s{k:05d}"
        if sample_id in done:
            continue
        outputs = {}
        for folder, shift in (("images", 0.1), ("sources", 0.0)):
            rel = f"{folder}/{sample_id}.png"
            _image(k, shift).save(root / rel, compress_level=1)
            outputs["image" if folder == "images" else "source"] = rel
        store.append({"id": sample_id, "status": "ok", "outputs": outputs})
    return root


def peak_rss_of(cmd: list[str], env: dict) -> tuple[float, float]:
    """(peak resident MiB, seconds) of a command in a fresh child process."""
    probe = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
             "rc = subprocess.run(sys.argv[1:]).returncode; dt = time.perf_counter() - t; "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, dt); sys.exit(rc)")
    res = subprocess.run([sys.executable, "-c", probe, *cmd], capture_output=True,
                         text=True, env=env, cwd=REPO)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    kib, seconds = res.stdout.split()[-2:]
    return int(kib) / 1024, float(seconds)


def test_peak_memory_does_not_grow_with_the_number_of_images(tmp_path_factory):
    root = Path(os.environ.get("ICD_SCORE_BENCH_DIR", tmp_path_factory.mktemp("score-memory")))
    weights = root / "weights"
    (weights / "lpips-alex").mkdir(parents=True, exist_ok=True)
    import torchvision

    torch.save(torchvision.models.alexnet(weights=None).state_dict(),
               weights / "lpips-alex" / "alexnet-owt-7be5be79.pth")
    ref_dir = root / "ref"
    ref_dir.mkdir(exist_ok=True)
    for k in range(64):
        _image(10_000 + k, 0.05).save(ref_dir / f"{k:03d}.png")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO / "tests" / "bench"),
           "ICD_BENCH_WEIGHTS": str(weights)}
    rows = []
    for n in SIZES:
        run = write_run(root / f"run-{n}", n)
        cmd = [sys.executable, "-m", "icd_bench", "score", str(run), "--metrics", METRICS, "--device", "cpu",
               "--batch-size", "16", "--restart", "-q", "--option", f"fid_ref={ref_dir}",
               "--option", "fid_extractor=score_bench_extractor:tiny_fid_extractor"]
        peak, seconds = peak_rss_of(cmd, env)
        frame = pd.read_parquet(run / "metrics.parquet")
        assert (frame.error.isna().all()
                and set(frame.metric) == {"psnr", "ssim", "lpips", "fid"}), frame.error.dropna()[:3]
        rows.append({"images": n, "peak_rss_mib": round(peak, 1), "seconds": round(seconds, 1),
                     "images_per_second": round(n / seconds, 2)})
        print(rows[-1])
    small, large = rows
    ratio = large["peak_rss_mib"] / small["peak_rss_mib"]
    report = {"what": f"icd-bench score of generated {SIDE}x{SIDE} PNG runs, metrics {METRICS} "
                      "(lpips' AlexNet trunk with random weights, fid on a 64-d tiny extractor against 64 "
                      "reference images), batch size 16, CPU",
              "device": f"cpu: {platform.machine()}, {torch.get_num_threads()} threads",
              "command": "python -m pytest -m bench tests/bench/test_score_memory.py -s", "rows": rows,
              "peak_ratio": round(ratio, 3), "date": time.strftime("%Y-%m-%d")}
    REPORT.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    lines = ["# Scoring memory at paper scale", "", f"{report['what']}; {report['device']}. Regenerate with "
             f"`{report['command']}` ({report['date']}).", "",
             "| images | peak RSS (MiB) | seconds | images / s |", "|---:|---:|---:|---:|"]
    lines += [f"| {r['images']} | {r['peak_rss_mib']} | {r['seconds']} | {r['images_per_second']} |"
              for r in rows]
    lines += ["", f"Peak of {large['images']} / peak of {small['images']}: {ratio:.3f} (the bound: 1.10)."]
    REPORT.with_suffix(".md").write_text("\n".join(lines) + "\n")
    assert ratio <= 1.10, report
