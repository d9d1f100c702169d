"""Soak test of the run store, for manual use (``nox -s soak``; not part of the test suite): the demo
job is started and SIGKILLed at a random moment ``--rounds`` times into one run directory, the store is
checked after every kill, and a last uninterrupted pass must complete it with every sample once and
images byte-identical to an uninterrupted reference run.

    python tests/soak.py --rounds 20 --work runs/soak
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from PIL import Image

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def command(out: Path, limit: int) -> list[str]:
    return [sys.executable, "-m", "icd_bench", "run", "--method", "icd-toy", "--dataset", "demo", "--task", "edit",
            "--limit", str(limit), "--batch-size", "4", "--out", str(out), "--device", "cpu", "--quiet"]


def check(out: Path) -> int:
    """Store invariants after a kill; returns the number of stored samples. Raises AssertionError."""
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
    if (out / "manifest.json").exists():
        json.loads((out / "manifest.json").read_text())
    return len(records)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--limit", type=int, default=32, help="demo samples per run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("runs/soak"))
    args = parser.parse_args()
    rng = random.Random(args.seed)
    shutil.rmtree(args.work, ignore_errors=True)
    ref, out = args.work / "reference", args.work / "killed"
    start = time.time()
    subprocess.run(command(ref, args.limit), env=ENV, check=True, capture_output=True)
    full = time.time() - start
    for k in range(args.rounds):
        proc = subprocess.Popen(command(out, args.limit), env=ENV, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.2, full))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        print(f"round {k + 1}/{args.rounds}: killed, {check(out)} samples stored, store consistent", flush=True)
    subprocess.run(command(out, args.limit), env=ENV, check=True, capture_output=True)
    assert check(out) == args.limit
    for image in sorted((ref / "images").glob("*.png")):
        assert (out / "images" / image.name).read_bytes() == image.read_bytes(), image.name
    print(f"soak passed: {args.rounds} kills, {args.limit} samples, outputs identical to the reference")
    return 0


if __name__ == "__main__":
    sys.exit(main())
