"""Soak test of the run store, for manual use (``nox -s soak``; not part of the test suite): the demo
job is started and SIGKILLed at a random moment ``--rounds`` times into one run directory, the store is
checked after every kill, and a last uninterrupted pass must complete it with every sample once and
images byte-identical to an uninterrupted reference run.

    python tests/soak.py --rounds 20 --work runs/soak
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from helpers import check_run_store  # tests/ is on the path when run as a script

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def command(out: Path, limit: int) -> list[str]:
    return [sys.executable, "-m", "icd_bench", "run", "--method", "icd-toy", "--dataset", "demo",
            "--task", "edit", "--limit", str(limit), "--batch-size", "4", "--out", str(out),
            "--device", "cpu", "--quiet"]


def same_as_reference(out: Path, ref: Path, limit: int) -> None:
    """Every sample once, each ok, and byte-identical images to the uninterrupted run."""
    records = check_run_store(out)
    assert sorted(r["id"] for r in records) == sorted(r["id"] for r in check_run_store(ref)), "other samples"
    assert len(records) == limit and all(r["status"] == "ok" for r in records)
    for image in sorted((ref / "images").glob("*.png")):
        assert (out / "images" / image.name).read_bytes() == image.read_bytes(), image.name


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
    landed = completed = 0
    for k in range(args.rounds):
        proc = subprocess.Popen(command(out, args.limit), env=ENV, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.2, full))
        proc.send_signal(signal.SIGKILL)
        landed += proc.wait() == -signal.SIGKILL
        stored = len(check_run_store(out))
        state = "killed" if proc.returncode == -signal.SIGKILL else "finished before the kill"
        print(f"round {k + 1}/{args.rounds}: {state}, {stored} samples stored, store consistent", flush=True)
        if stored == args.limit:  # complete: check it, then start over so later kills land mid-run again
            same_as_reference(out, ref, args.limit)
            completed += 1
            shutil.rmtree(out)
    subprocess.run(command(out, args.limit), env=ENV, check=True, capture_output=True)
    same_as_reference(out, ref, args.limit)
    print(f"soak passed: {landed} of {args.rounds} kills landed mid-run; {completed + 1} run directories "
          f"completed through kills, each with {args.limit} samples identical to the uninterrupted run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
