"""What every trainer here shares: TOML recipes, atomic resumable checkpoints, CSV logs.

Checkpoints use accelerate's ``save_state`` / ``load_state`` (models, optimizer, LR schedule, RNG
states and registered objects such as EMA weights), written to a temporary folder and renamed, so
a kill never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import numpy as np

from icd_bench.config import build_params, params_to_dict
from icd_bench.errors import ConfigError


def read_toml(path: str | Path, what: str = "recipe") -> dict[str, Any]:
    """A TOML file as a dict; a missing or invalid file is a `ConfigError` naming ``what`` it is."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{what} {path} is not valid TOML: {exc}") from None


def load_recipe(path: str | Path, sections: dict[str, type]) -> dict[str, Any]:
    """Read a TOML recipe whose tables map onto dataclasses: ``{"model": ToyModelConfig, ...}``."""
    path = Path(path)
    data = read_toml(path)
    unknown = set(data) - set(sections) - {"description"}
    if unknown:
        raise ConfigError(f"recipe {path}: unknown table(s) {', '.join(sorted(unknown))}; "
                          f"expected {', '.join(sections)}")
    return {name: build_params(cls, data.get(name, {}), where=f"recipe {path} [{name}]")
            for name, cls in sections.items()}


def recipe_to_dict(recipe: dict[str, Any]) -> dict[str, Any]:
    return {name: params_to_dict(obj) for name, obj in recipe.items()}


def make_accelerator(device: str, threads: int, mixed_precision: str = "no"):
    """The trainers' `Accelerator`: ``device`` auto (GPU when there is one), cpu or cuda."""
    import torch
    from accelerate import Accelerator

    torch.set_num_threads(threads)
    return Accelerator(cpu=device == "cpu" or (device == "auto" and not torch.cuda.is_available()),
                       mixed_precision=mixed_precision)


LR_DECAYS = ("constant", "cosine")


def warmup_schedule(optimizer, warmup: int, decay: str = "constant", steps: int | None = None):
    """Linear warm-up over ``warmup`` steps, then a constant learning rate (``decay="constant"``) or a
    half cosine from it down to 0 at ``steps`` (``"cosine"``)."""
    import math

    import torch

    if decay not in LR_DECAYS:
        raise ValueError(f"lr_decay must be one of {', '.join(LR_DECAYS)}, got {decay!r}")
    if decay == "cosine" and (steps is None or steps <= warmup):
        raise ValueError("a cosine decay needs more steps than warm-up steps")

    def factor(s: int) -> float:
        if s < warmup or decay == "constant":
            return min(1.0, (s + 1) / max(1, warmup))
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warmup) / (steps - warmup))))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class Checkpoints:
    """``OUT/checkpoints/step-000500/``: accelerate state + ``meta.json``; keeps the last ``keep``."""

    def __init__(self, out_dir: Path, keep: int = 2):
        self.root = Path(out_dir) / "checkpoints"
        self.keep = keep

    def latest(self) -> Path | None:
        done = sorted(p for p in self.root.glob("step-*") if (p / "meta.json").is_file())
        return done[-1] if done else None

    def save(self, accelerator, step: int, meta: dict[str, Any]) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / f"step-{step:06d}"
        tmp = self.root / f".tmp-step-{step:06d}"
        shutil.rmtree(tmp, ignore_errors=True)
        accelerator.save_state(str(tmp), safe_serialization=True)
        (tmp / "meta.json").write_text(json.dumps({"step": step, **meta}, indent=2))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in sorted(p for p in self.root.glob("step-*") if (p / "meta.json").is_file())[:-self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def load(self, accelerator, path: Path) -> dict[str, Any]:
        accelerator.load_state(str(path))
        return json.loads((path / "meta.json").read_text())


class StepLog:
    """Rows with a ``step`` appended to a file; a resumed run first drops the rows after the step it
    resumes from (`truncate_after`), so it can log them again. `CsvLog` and `JsonlLog` are the formats."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after ``step`` (a resumed run logs them again)."""
        if self.path.exists():
            self._rewrite([r for r in self._read() if int(r["step"]) <= step])


class JsonlLog(StepLog):
    """One JSON object per line."""

    def _read(self) -> list[dict]:
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines()
                if line.strip()]

    def _rewrite(self, rows: list[dict]) -> None:
        self.path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")

    def append(self, row: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")


class CsvLog(StepLog):
    """A CSV file (header written once)."""

    def __init__(self, path: Path, fields: list[str]):
        super().__init__(path)
        self.fields = fields

    def _read(self) -> list[dict]:
        with open(self.path, newline="") as f:
            return list(csv.DictReader(f))

    def _rewrite(self, rows: list[dict]) -> None:
        with open(self.path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.fields)
            w.writeheader()
            w.writerows(rows)

    def append(self, row: dict[str, Any]) -> None:
        new = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.fields)
            if new:
                w.writeheader()
            w.writerow(row)


def plot_losses(csv_path: Path, png_path: Path, fields: list[str], title: str = "") -> Path | None:
    """Loss curves from a `TrainLoop` CSV: one panel per field (log scale where positive), PNG.
    Returns None when there is nothing to plot yet."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    steps = [int(r["step"]) for r in rows]
    fig, axes = plt.subplots(1, len(fields), figsize=(3.2 * len(fields), 2.6), squeeze=False)
    for ax, field in zip(axes[0], fields, strict=True):
        values = [float(r[field]) if r.get(field) not in (None, "", "nan") else np.nan for r in rows]
        ax.plot(steps, values, lw=1.2)
        if all(v > 0 for v in values if np.isfinite(v)) and any(np.isfinite(values)):
            ax.set_yscale("log")
        ax.set_title(field, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    tmp = png_path.with_name(png_path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(png_path)
    return png_path


class TrainLoop:
    """The bookkeeping of a training loop: resume from the latest checkpoint, progress bar, loss CSV
    (``OUT/loss.csv``: the mean of each field over the last ``log_every`` steps, drawn as
    ``OUT/loss.png`` at every checkpoint), ``recipe.json``, checkpoints every ``checkpoint_every``
    steps and at the end. ``cfg`` needs ``steps``,
    ``log_every`` and ``checkpoint_every``."""

    def __init__(self, accelerator, out_dir: Path, recipe: dict, cfg, fields: list[str],
                 progress: bool, log, desc: str, params=None):
        from tqdm.auto import tqdm

        from icd_bench.provenance import versions

        self.acc, self.out, self.recipe, self.cfg, self.log = accelerator, Path(out_dir), recipe, cfg, log
        self.ckpts = Checkpoints(self.out)
        self.start = 0
        latest = self.ckpts.latest()
        if latest is not None:
            self.start = self.ckpts.load(accelerator, latest)["step"]
            log(f"resuming from {latest} (step {self.start})")
        self.main = accelerator.is_main_process
        self.losses = CsvLog(self.out / "loss.csv", ["step", *fields, "lr", "seconds_per_step"])
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
            self.losses.truncate_after(self.start)
            (self.out / "recipe.json").write_text(json.dumps(
                {"recipe": recipe_to_dict(recipe), "versions": versions()}, indent=2))
        self.bar = tqdm(total=cfg.steps, initial=self.start, desc=desc, disable=not (progress and self.main),
                        dynamic_ncols=True)
        self.fields, self.desc = fields, desc
        self.params = list(params) if params is not None else []  # the trained tensors (replica check)
        self.window: list[dict[str, float]] = []
        self.t_last = time.perf_counter()

    def after_step(self, step: int, values: dict[str, float], lr: float) -> None:
        done = step + 1
        self.window.append(values)
        self.bar.update(1)
        self.bar.set_postfix({k: f"{np.mean([v[k] for v in self.window[-20:]]):.4f}" for k in values})
        if self.main and (done % self.cfg.log_every == 0 or done == self.cfg.steps):
            now = time.perf_counter()
            row = {"step": done, "lr": f"{lr:.2e}",
                   "seconds_per_step": f"{(now - self.t_last) / len(self.window):.4f}"}
            row.update({k: f"{np.mean([v.get(k, np.nan) for v in self.window]):.6f}" for k in self.fields})
            self.losses.append(row)
            self.window, self.t_last = [], now
        if done % self.cfg.checkpoint_every == 0 or done == self.cfg.steps:
            self.acc.wait_for_everyone()
            replicas = self.replica_digests()
            if self.main:
                from icd_bench.provenance import versions

                meta = {"recipe": recipe_to_dict(self.recipe), "versions": versions(),
                        "processes": self.acc.num_processes}
                if replicas:
                    meta["replica_digests"] = replicas
                self.ckpts.save(self.acc, done, meta)
                if self.losses.path.exists():
                    plot_losses(self.losses.path, self.out / "loss.png", self.fields, title=self.desc)

    def replica_digests(self) -> list[str]:
        """Under several processes: each one's SHA-256 of the trained weights, gathered — equal when
        the averaged gradients kept the replicas in step; a `RuntimeError` when they are not."""
        if self.acc.num_processes < 2 or not self.params:
            return []
        import hashlib

        from accelerate.utils import gather_object

        h = hashlib.sha256()
        for p in self.params:
            h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
        digests = gather_object([h.hexdigest()])
        if len(set(digests)) > 1:
            raise RuntimeError(f"the {len(digests)} training processes hold different weights "
                               f"(digests {', '.join(d[:12] for d in digests)}): gradients were not averaged")
        return digests

    def close(self):
        self.bar.close()
