"""Scoring a run directory: every finished sample × every requested metric → ``metrics.parquet``.

The dataset named in the run's manifest is reopened for what the images alone do not say (edit
mask, prompts, metadata); the mask is carried through the same resize-and-crop the source image
went through (`fit_mask`), so it lines up with ``sources/ID.png`` and ``images/ID.png``.

**Streaming and resuming.** The samples are read in batches of ``batch_size``, in the order of their
ids, and nothing of a batch outlives it: a per-sample metric's values are appended to
``RUN/scoring/<metric>-<digest>/rows.jsonl`` as each batch finishes, a set metric's rows of features
(FID's Inception features) to one ``.npz`` per batch beside them, and the set value is computed at
the end by streaming those rows back in fixed chunks (`Metric.compute`). Memory does not grow with the
number of images. A killed ``score`` resumes: a metric's finished ids are read back from its folder
and only the rest are computed; the folder's digest covers the metric key, the options it reads and the
device type, so another setting starts its own folder (``restart=True`` / ``--restart`` discards them).

**Several processes.** Under ``accelerate launch`` (or ``process=(i, n)``) process i scores the ids
``i::n`` into its own ``rows.shard-i-of-n.jsonl`` / ``features.shard-i-of-n/``; process 0 waits for the
others, then merges everything into one ``metrics.parquet``. The value does not depend on the number
of processes (a set metric reads its rows back in id order).

Rows of ``metrics.parquet``: ``id, metric, value, error``; a failed computation is a row with NaN and
the reason. The summary counts n_ok and n_failed per metric and averages only the finite values.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import shutil
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from icd_bench.errors import ConfigError, IcdBenchError, SampleWarning
from icd_bench.metrics.base import Metric, MetricSpec, ScoreItem
from icd_bench.registry import METRICS
from icd_bench.store import METRIC_OPTIONS, atomic_write_bytes

#: What ``icd-bench score`` computes when --metrics is not given (offline, no weights needed); the
#: background ones only when the dataset has edit masks.
DEFAULT_METRICS = ("psnr", "mse", "ssim", "psnr:background:pie", "psnr:background:clean",
                   "ssim:background:pie", "mse:background:pie")
TOY_METRICS = ("toy_edit", "toy_match")
#: The row id of a set metric's value (FID): one per run, not per sample.
SET_ID = "(set)"
#: Where a run's scoring state lives.
SCORING = "scoring"
#: A set metric's rows are read back in chunks of this many (fixed, so a resumed scoring reduces them
#: in the same order as an uninterrupted one).
CHUNK = 1024


def _image(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), np.float32) / 255.0).permute(2, 0, 1)


def metric_options(metric: Metric) -> dict[str, str]:
    """The options given that ``metric`` reads (part of its scoring folder's identity)."""
    return {k: metric.options[k] for k in sorted(metric.option_keys) if k in metric.options}


class RunItems:
    """A run's finished samples, loaded as `ScoreItem`s one batch at a time."""

    def __init__(self, run_dir: Path):
        from icd_bench.data.base import open_run_dataset
        from icd_bench.store import RunStore

        self.run_dir = Path(run_dir)
        store = RunStore(self.run_dir)
        self.manifest = store.manifest()  # a missing or corrupt manifest is one RunStoreError
        cfg = self.manifest["config"]
        self.task = cfg.get("task")
        self.records = {rec["id"]: rec for rec in store.records() if rec.get("status") == "ok"}
        self.ids = sorted(self.records)
        self.dataset = None
        try:
            self.dataset = open_run_dataset(cfg)
        except IcdBenchError:
            pass  # scoring what the images alone allow (whole-image metrics)

    def load(self, ids: Sequence[str]) -> tuple[list[ScoreItem], list[tuple[str, str]]]:
        """The items of ``ids`` (+ the ids that could not be loaded, why)."""
        from icd_bench.backbones.base import fit_mask

        items, failed = [], []
        for sample_id in ids:
            rec = self.records[sample_id]
            try:
                out = _image(self.run_dir / rec["outputs"]["image"])
                src_rel = rec["outputs"].get("source")
                src = _image(self.run_dir / src_rel) if src_rel else None
                mask, meta = None, {}
                if self.dataset is not None:
                    with warnings.catch_warnings():  # its caveats were warned about, and recorded, by the run
                        warnings.simplefilter("ignore", SampleWarning)
                        sample = self.dataset.load(sample_id)
                    meta = dict(sample.meta)
                    if sample.edit_mask is not None:
                        mask = fit_mask(sample.edit_mask, out.shape[-1])
                items.append(ScoreItem(id=sample_id, output=out, source=src, mask=mask,
                                       source_prompt=rec.get("source_prompt", ""),
                                       target_prompt=rec.get("target_prompt", ""), meta=meta))
            except (OSError, KeyError, IcdBenchError) as exc:
                failed.append((sample_id, f"cannot load: {exc}"))
        return items, failed


def load_items(run_dir: Path) -> tuple[list[ScoreItem], list[tuple[str, str]], dict]:
    """Every finished sample of a run as `ScoreItem`s at once (+ the ids that could not be loaded, why).
    For a few samples (tests, studies); `score_run` streams instead."""
    run = RunItems(run_dir)
    items, failed = run.load(run.ids)
    return items, failed, run.manifest


def _shard_suffix(process: tuple[int, int]) -> str:
    i, n = process
    return "" if n == 1 else f".shard-{i}-of-{n}"


@dataclass
class MetricState:
    """One metric's scoring folder: its rows (per-sample values, and failures) and, for a set metric,
    its feature files; what is in them is finished."""

    spec: MetricSpec
    metric: Metric
    folder: Path
    process: tuple[int, int] = (0, 1)
    done: set[str] = field(default_factory=set)
    _next_file: int = 0

    @classmethod
    def open(cls, run_dir: Path, spec: MetricSpec, metric: Metric, process: tuple[int, int]) -> MetricState:
        relevant = metric_options(metric)
        what = {"metric": spec.key, "options": relevant, "per_sample": metric.per_sample,
                "device": metric.device.type}
        digest = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:10]
        folder = Path(run_dir) / SCORING / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', spec.key)}-{digest}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "metric.json").write_text(json.dumps(what, indent=1, sort_keys=True) + "\n")
        state = cls(spec, metric, folder, process)
        state.done = {row["id"] for row in state.rows()}
        for ids, _ in state.feature_files():
            state.done.update(ids)
        mine = sorted(state.feature_dir().glob("*.npz"))
        state._next_file = int(mine[-1].stem) + 1 if mine else 0
        return state

    # -- files ---------------------------------------------------------------------------------
    def rows_path(self) -> Path:
        return self.folder / f"rows{_shard_suffix(self.process)}.jsonl"

    def feature_dir(self) -> Path:
        return self.folder / f"features{_shard_suffix(self.process)}"

    def rows(self) -> list[dict]:
        """Every process's rows (a torn last line, from a killed process, is skipped)."""
        from icd_bench.store import read_jsonl

        out = []
        for path in sorted(self.folder.glob("rows*.jsonl")):
            with warnings.catch_warnings():  # a torn line is the sample in flight when scoring was killed
                warnings.simplefilter("ignore")
                out += read_jsonl(path)
        return out

    def feature_files(self) -> Iterator[tuple[list[str], Path]]:
        """(ids, file) of every process's feature files."""
        for path in sorted(self.folder.glob("features*/*.npz")):
            with np.load(path) as data:
                yield [str(i) for i in data["ids"]], path

    # -- writing -------------------------------------------------------------------------------
    def append_rows(self, rows: list[dict]) -> None:
        from icd_bench.store import append_line

        if rows:
            append_line(self.rows_path(), "".join(json.dumps(r) + "\n" for r in rows).encode())
            self.done.update(r["id"] for r in rows)

    def append_features(self, ids: list[str], rows: np.ndarray) -> None:
        if not ids:
            return
        if rows.shape[0] != len(ids):
            raise ValueError(f"{self.spec.key}: {rows.shape[0]} feature rows for {len(ids)} images")
        buf = io.BytesIO()
        np.savez(buf, ids=np.array(ids), rows=np.asarray(rows))
        self.feature_dir().mkdir(exist_ok=True)
        atomic_write_bytes(self.feature_dir() / f"{self._next_file:06d}.npz", buf.getvalue())
        self._next_file += 1
        self.done.update(ids)

    # -- scoring one batch ---------------------------------------------------------------------
    def score(self, items: list[ScoreItem]) -> None:
        items = [it for it in items if it.id not in self.done]
        if not items:
            return
        if self.metric.per_sample:
            self.append_rows(self._per_sample(items))
        else:
            self._features(items)

    def _per_sample(self, items: list[ScoreItem]) -> list[dict]:
        rows = []
        for item, res, error in _batch_or_each(self.metric.score, items):
            for k, value in (res if error is None else dict.fromkeys(self.metric.keys(), math.nan)).items():
                why = error if error is not None else (None if math.isfinite(value)
                                                       else self.metric.undefined(k, value))
                rows.append({"id": item.id, "metric": k, "value": float(value), "error": why})
        return rows

    def _features(self, items: list[ScoreItem]) -> None:
        done = _batch_or_each(self.metric.features, items)
        kept = [(item, row) for item, row, error in done if error is None]
        if kept:
            self.append_features([item.id for item, _ in kept], np.stack([row for _, row in kept]))
        self.append_rows([{"id": item.id, "metric": self.spec.key, "value": math.nan,
                           "error": f"left out of the set: {error}"}
                          for item, _, error in done if error is not None])

    # -- the result ----------------------------------------------------------------------------
    def result_rows(self, ids: set[str]) -> list[dict]:
        """Rows of ``metrics.parquet`` for the run's ids: per-sample values (the last row of an (id, key)
        wins), or a set metric's failures and its one value over every stored row, in id order."""
        latest = {(r["id"], r["metric"]): r for r in self.rows() if r["id"] in ids}
        rows = list(latest.values())
        if self.metric.per_sample:
            return rows
        where: dict[str, tuple[Path, int]] = {}
        for file_ids, path in self.feature_files():
            for k, sample_id in enumerate(file_ids):
                if sample_id in ids:
                    where[sample_id] = (path, k)
        order = sorted(where)

        def chunks() -> Iterator[np.ndarray]:
            cache: dict[Path, np.ndarray] = {}
            for start in range(0, len(order), CHUNK):
                block = order[start:start + CHUNK]
                wanted = {where[i][0] for i in block}
                # only this block's files
                cache = {p: cache[p] if p in cache else _stored_rows(p) for p in wanted}
                yield np.stack([cache[where[i][0]][where[i][1]] for i in block])

        try:
            value, error = self.metric.compute(chunks, len(order))[self.spec.key], None
        except Exception as exc:  # noqa: BLE001 - the set metric fails; the others go on
            value, error = math.nan, f"{type(exc).__name__}: {exc}"
        if error is None and not math.isfinite(value):
            error = self.metric.undefined(self.spec.key, value)
        return rows + [{"id": SET_ID, "metric": self.spec.key, "value": float(value), "error": error}]


def _batch_or_each(fn: Callable, items: list[ScoreItem]) -> list[tuple[ScoreItem, object, str | None]]:
    """(item, its result, None) for each item of ``fn(items)`` — a metric's `score` or `features`, one
    result per item —; when the batch fails, ``fn([item])`` item by item, so that a failure is its sample's
    (item, None, why). A `ConfigError` stops: the setting is wrong, not the samples."""
    try:
        results = fn(items)
        return [(item, results[k], None) for k, item in enumerate(items)]
    except ConfigError:
        raise
    except Exception:  # noqa: BLE001 - retry one by one to attribute the failure
        pass
    out = []
    for item in items:
        try:
            out.append((item, fn([item])[0], None))
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - a per-sample failure, with its reason
            out.append((item, None, f"{type(exc).__name__}: {exc}"))
    return out


def _stored_rows(path: Path) -> np.ndarray:
    with np.load(path) as data:
        return data["rows"]


def _process(process: tuple[int, int] | None) -> tuple[int, int]:
    """``process``, else this process's rank under ``accelerate launch`` / torchrun, else (0, 1)."""
    from icd_bench.store import resolve_shard

    return resolve_shard(process)


def _wait_for_everyone(process: tuple[int, int], device: str) -> None:
    """A barrier of the processes scoring one run (accelerate's; gloo on CPUs)."""
    if process[1] > 1:
        from accelerate import PartialState

        PartialState(cpu=torch.device(device).type == "cpu").wait_for_everyone()


def default_metrics(run: RunItems) -> list[str]:
    """What ``score`` computes when no metrics are named: the pixel metrics (with the background ones when
    the dataset has edit masks) and, on toy runs, the oracle."""
    first: list[ScoreItem] = []
    for sample_id in run.ids:  # the dataset's kind, read off its first loadable sample
        first = run.load([sample_id])[0]
        if first:
            break
    metrics = [m for m in DEFAULT_METRICS if (first and first[0].mask is not None) or ":" not in m]
    if first and "toy_source_scene" in first[0].meta:
        metrics += ["toy_edit"] if run.task == "edit" else ["toy_match"]
    return metrics


def checked_metrics(specs: Sequence[MetricSpec], device: str, options: dict[str, str] | None,
                    task: str | None) -> list[Metric]:
    """The metrics, each `check`ed before any sample (missing weights, bad options): every problem at once."""
    known = {k for s in specs for k in METRICS.get(s.name).option_keys}
    unknown = sorted(set(options or {}) - known)
    if unknown:
        raise ConfigError(f"option(s) {', '.join(unknown)} are not read by the metrics asked for "
                          f"({', '.join(sorted(known)) or 'they take no options'})")
    metrics = [METRICS.get(s.name)(s, device, options, task=task) for s in specs]
    problems = []
    for m in metrics:
        try:
            m.check()
        except IcdBenchError as exc:
            problems.append(str(exc))
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError(f"{len(problems)} metrics cannot run:\n" + "\n".join(f"  - {p}" for p in problems))
    return metrics


def _score_share(run: RunItems, states: list[MetricState], ids: list[str], batch_size: int,
                 progress: Callable[[int, int], None] | None) -> list[tuple[str, str]]:
    """Score this process's ``ids`` batch by batch, each metric only where it has no value yet; returns the
    samples whose images could not be read (never finished: found again by every call)."""
    total = len(ids) * len(states)
    done = sum(1 for st in states for i in ids if i in st.done)
    if progress:
        progress(done, total)
    todo = [i for i in ids if any(i not in st.done for st in states)]
    unreadable: list[tuple[str, str]] = []
    for start in range(0, len(todo), batch_size):
        items, failed = run.load(todo[start:start + batch_size])
        unreadable += failed
        for st in states:
            before = len(st.done)
            st.score(items)
            done += len(st.done) - before
        done += len(failed) * len(states)
        if progress:
            progress(min(done, total), total)
    return unreadable


def score_run(run_dir: str | Path, metrics: Sequence[str] | None = None, *, device: str = "cpu",
              batch_size: int = 16, options: dict[str, str] | None = None,
              progress: Callable[[int, int], None] | None = None, restart: bool = False,
              process: tuple[int, int] | None = None):
    """Score a run; writes ``RUN/metrics.parquet`` and returns (rows DataFrame, summary DataFrame).

    ``options``: metric settings (``lpips_net``, ``clip_model``, ``fid_ref``, ...; see each metric).
    ``batch_size``: samples per batch (what each metric sees at once on the device). ``restart``:
    discard the run's scoring state first. ``process``: (index, count) of this process among several
    scoring one run (default: from ``accelerate launch``); every process returns the merged result."""
    import pandas as pd

    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}")
    run_dir = Path(run_dir)
    process = _process(process)
    _wait_for_everyone(process, device)  # every process sees the same finished samples (after `run --score`)
    run = RunItems(run_dir)
    specs = [MetricSpec.parse(m) for m in (default_metrics(run) if metrics is None else metrics)]
    runners = checked_metrics(specs, device, options, run.task)
    if restart and process[0] == 0:
        shutil.rmtree(run_dir / SCORING, ignore_errors=True)
    _wait_for_everyone(process, device)
    (run_dir / SCORING).mkdir(parents=True, exist_ok=True)
    states = [MetricState.open(run_dir, s, r, process) for s, r in zip(specs, runners, strict=True)]
    unreadable = _score_share(run, states, run.ids[process[0]::process[1]], batch_size, progress)
    (run_dir / SCORING / f"unreadable{_shard_suffix(process)}.json").write_text(json.dumps(unreadable))
    _wait_for_everyone(process, device)
    target = run_dir / "metrics.parquet"
    if process[0] == 0:  # merge every process's values into one table
        unreadable = [tuple(u) for k in range(process[1]) for u in json.loads(
            (run_dir / SCORING / f"unreadable{_shard_suffix((k, process[1]))}.json").read_text())]
        rows = [{"id": i, "metric": "*", "value": math.nan, "error": why} for i, why in sorted(unreadable)]
        for st in states:
            rows += st.result_rows(set(run.ids))
        frame = pd.DataFrame(rows, columns=["id", "metric", "value", "error"])
        tmp = run_dir / ".metrics.parquet.tmp"
        frame.to_parquet(tmp, index=False)
        tmp.replace(target)
        # the settings each metric read (tables name a protocol switch set away from its default)
        atomic_write_bytes(run_dir / METRIC_OPTIONS, json.dumps(
            {st.spec.key: metric_options(st.metric) for st in states}, indent=1, sort_keys=True).encode())
    _wait_for_everyone(process, device)
    frame = pd.read_parquet(target) if process[0] != 0 else frame
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
