"""Profile iCD stage-2 training steps (``train_icd``) on the CPU with ``torch.profiler``.

    python tools/perf/profile_icd_step.py --recipe training/toy-icd.toml --steps 6 --batch-size 8

Runs ``--steps`` steps of the recipe (its teacher replaced by the bundled guidance-distilled student
when the recipe's file is absent) in a scratch directory, profiles all but the first two (warm-up),
and prints seconds per step, UNet forward calls per step with their share of the time, and the top
operators by self CPU time.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    from icd_bench.icd.train import ICD_SECTIONS, train_icd
    from icd_bench.training_utils import load_recipe

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", type=Path, default=Path("training/toy-icd.toml"))
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args()
    recipe = load_recipe(args.recipe, ICD_SECTIONS)
    cfg = recipe["train"]
    changes = {"steps": args.steps, "checkpoint_every": 10 ** 9, "log_every": 10 ** 9}
    if args.batch_size:
        changes["batch_size"] = args.batch_size
    if cfg.teacher and not Path(cfg.teacher).exists():
        changes["teacher"] = "bundled:toy/icd/cfg_distill.safetensors"
    recipe["train"] = dataclasses.replace(cfg, **changes)

    from diffusers import UNet2DConditionModel

    calls = {"n": 0, "t": 0.0}
    real_forward = UNet2DConditionModel.forward

    def counted(self, *a, **kw):
        t0 = time.perf_counter()
        try:
            return real_forward(self, *a, **kw)
        finally:
            calls["n"] += 1
            calls["t"] += time.perf_counter() - t0

    UNet2DConditionModel.forward = counted
    step_times: list[float] = []
    real_sync = torch.optim.AdamW.step

    def timed_step(self, *a, **kw):  # one optimiser step marks the end of a training step (summed schedule)
        step_times.append(time.perf_counter())
        return real_sync(self, *a, **kw)

    torch.optim.AdamW.step = timed_step
    warm = 2
    with tempfile.TemporaryDirectory() as out:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t0 = time.perf_counter()
            train_icd(recipe, Path(out), device="cpu", progress=False, log=lambda *a, **k: None)
            total = time.perf_counter() - t0
    per_step = ((step_times[-1] - step_times[warm - 1]) / (len(step_times) - warm) if len(step_times) > warm
                else total)
    print(f"{len(step_times)} optimiser steps, {total:.1f} s in all; {per_step:.2f} s per step after {warm} "
          f"(batch {recipe['train'].batch_size})")
    print(f"UNet forward calls: {calls['n'] / max(1, len(step_times)):.1f} per step, "
          f"{calls['t'] / total:.0%} of the time in their forward")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top))


if __name__ == "__main__":
    main()
