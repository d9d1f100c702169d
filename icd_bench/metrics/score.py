"""Scoring a run directory: every finished sample × every requested metric → ``metrics.parquet``.

The dataset named in the run's manifest is reopened for what the images alone do not say (edit
mask, prompts, metadata); the mask is carried through the same resize-and-crop the source image
went through (`fit_mask`), so it lines up with ``sources/ID.png`` and ``images/ID.png``.
Rows: ``id, metric, value, error``; a failed computation is a row with NaN and the reason.
The summary counts n_ok and n_failed per metric and averages only the finite values.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from icd_bench.errors import ConfigError, IcdBenchError, SampleWarning
from icd_bench.metrics.base import MetricSpec, ScoreItem
from icd_bench.registry import METRICS

#: What ``icd-bench score`` computes when --metrics is not given (offline, no weights needed); the
#: background ones only when the dataset has edit masks.
DEFAULT_METRICS = ("psnr", "mse", "ssim", "psnr:background:pie", "psnr:background:clean", "ssim:background:pie",
                   "mse:background:pie")
TOY_METRICS = ("toy_edit", "toy_match")


def _image(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), np.float32) / 255.0).permute(2, 0, 1)


def load_items(run_dir: Path) -> tuple[list[ScoreItem], list[tuple[str, str]], dict]:
    """The finished samples of a run as `ScoreItem`s (+ the ids that could not be loaded, why)."""
    from icd_bench.backbones.base import fit_mask
    from icd_bench.data.base import open_dataset
    from icd_bench.store import RunStore

    store = RunStore(run_dir)
    manifest = store.manifest()  # a missing or corrupt manifest is one RunStoreError
    cfg = manifest["config"]
    ds_cfg = cfg["dataset"]
    dataset = None
    try:
        data_dir = ds_cfg.get("data_dir")
        dataset = open_dataset(ds_cfg["name"], data_dir=Path(data_dir) if data_dir else None, split=ds_cfg.get("split"),
                               task=cfg.get("task"))
    except IcdBenchError:
        pass  # scoring what the images alone allow (whole-image metrics)
    items, failed = [], []
    for rec in store.records():
        if rec.get("status") != "ok":
            continue
        try:
            out = _image(run_dir / rec["outputs"]["image"])
            src_rel = rec["outputs"].get("source")
            src = _image(run_dir / src_rel) if src_rel else None
            mask, meta = None, {}
            if dataset is not None:
                with warnings.catch_warnings():  # its caveats were warned about, and recorded, by the run
                    warnings.simplefilter("ignore", SampleWarning)
                    sample = dataset.load(rec["id"])
                meta = dict(sample.meta)
                if sample.edit_mask is not None:
                    mask = fit_mask(sample.edit_mask, out.shape[-1])
            items.append(ScoreItem(id=rec["id"], output=out, source=src, mask=mask,
                                   source_prompt=rec.get("source_prompt", ""), target_prompt=rec.get("target_prompt", ""),
                                   meta=meta))
        except (OSError, KeyError, IcdBenchError) as exc:
            failed.append((rec["id"], f"cannot load: {exc}"))
    return items, failed, manifest


#: The row id of a set metric's value (FID): one per run, not per sample.
SET_ID = "(set)"


def score_run(run_dir: str | Path, metrics: Sequence[str] | None = None, *, device: str = "cpu",
              batch_size: int = 16, options: dict[str, str] | None = None,
              progress: Callable[[int, int], None] | None = None):
    """Score a run; writes ``RUN/metrics.parquet`` and returns (rows DataFrame, summary DataFrame).
    ``options``: metric settings (``lpips_net``, ``clip_model``, ``fid_ref``, ...; see each metric)."""
    import pandas as pd

    run_dir = Path(run_dir)
    items, failed, manifest = load_items(run_dir)
    if metrics is None:
        with_masks = any(item.mask is not None for item in items)
        metrics = [m for m in DEFAULT_METRICS if with_masks or ":" not in m]
        if items and "toy_source_scene" in items[0].meta:
            metrics += ["toy_edit"] if manifest["config"].get("task") == "edit" else ["toy_match"]
    specs = [MetricSpec.parse(m) for m in metrics]
    known = {k for s in specs for k in METRICS.get(s.name).option_keys}
    unknown = sorted(set(options or {}) - known)
    if unknown:
        raise ConfigError(f"option(s) {', '.join(unknown)} are not read by the metrics asked for "
                          f"({', '.join(sorted(known)) or 'they take no options'})")
    runners = [METRICS.get(s.name)(s, device, options) for s in specs]
    problems = []
    for r in runners:  # fail before any sample is processed (missing weights, ...), naming every problem
        try:
            r.check()
        except IcdBenchError as exc:
            problems.append(str(exc))
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError(f"{len(problems)} metrics cannot run:\n" + "\n".join(f"  - {p}" for p in problems))
    rows = [{"id": i, "metric": "*", "value": math.nan, "error": why} for i, why in failed]
    total = len(runners) * len(items)
    done = 0
    for spec, runner in zip(specs, runners, strict=True):
        if not runner.per_sample:
            try:
                value, error = runner.score_set(items)[spec.key], None
            except Exception as exc:  # noqa: BLE001 - the set metric fails; the others go on
                value, error = math.nan, f"{type(exc).__name__}: {exc}"
            rows.append({"id": SET_ID, "metric": spec.key, "value": float(value), "error": error})
            done += len(items)
            if progress:
                progress(done, total)
            continue
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            failures: dict[str, str] = {}  # item id → why the metric failed on it
            try:
                results = runner.score(chunk)
            except Exception:  # noqa: BLE001 - retry one by one to attribute the failure
                results = []
                for item in chunk:
                    try:
                        results += runner.score([item])
                    except Exception as exc:  # noqa: BLE001 - a per-sample failure becomes a row
                        results.append({spec.key: math.nan})
                        failures[item.id] = f"{type(exc).__name__}: {exc}"
            for item, res in zip(chunk, results, strict=True):
                for key, value in res.items():  # a metric's values are floats, NaN where undefined
                    error = failures.get(item.id)
                    if error is None and not math.isfinite(value):
                        error = "not defined for this sample (e.g. an empty region)"
                    rows.append({"id": item.id, "metric": key, "value": float(value), "error": error})
            done += len(chunk)
            if progress:
                progress(done, total)
    frame = pd.DataFrame(rows, columns=["id", "metric", "value", "error"])
    tmp = run_dir / ".metrics.parquet.tmp"
    frame.to_parquet(tmp, index=False)
    tmp.replace(run_dir / "metrics.parquet")
    return frame, summarize(frame)


def summarize(frame):
    """Per metric: mean and std of the finite values, n_ok, n_failed (never NaN-averaged)."""
    import pandas as pd

    out = []
    for key, group in frame[frame["metric"] != "*"].groupby("metric", sort=False):
        ok = group["value"][group["error"].isna()]
        out.append({"metric": key, "mean": ok.mean() if len(ok) else math.nan,
                    "std": ok.std(ddof=0) if len(ok) else math.nan, "n_ok": int(len(ok)),
                    "n_failed": int(len(group) - len(ok))})
    return pd.DataFrame(out, columns=["metric", "mean", "std", "n_ok", "n_failed"])
