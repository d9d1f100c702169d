"""The unified runner: one loop for every method, dataset and task.

preset + overrides → `MethodSpec`; dataset → ids → limit → shard → skip finished → batches →
``method.run(task, batch, generators)`` → images + one record per sample, appended atomically.

Determinism: each sample's generator is seeded from (run seed, sample id), so outputs do not
depend on order or sharding, and depend on batch size only up to float rounding (batched kernels
sum in another order). Resuming: re-running the same command skips finished ids (a sample in
flight when a process died has no record and is redone).

Throughput: while the model works on batch k, one thread loads and decodes batch k + 1 and another
writes batch k − 1's images and records (in order; a write error stops the run at the next batch).
The model loop itself makes one device-to-host transfer per batch.

Failures of one sample never stop a run: a bad dataset item, an exception inside the method (the
batch is re-run one sample at a time to find it), non-finite values (NaN / Inf) in an output, and
CUDA out-of-memory (the batch is halved and retried, down to one sample) become error records.
Usable samples with a caveat (a prompt the text encoder truncates, local blend turned off) run, and
the caveat is kept in the record's ``warnings``.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from icd_bench.config import MethodSpec, resolve_method
from icd_bench.data.base import open_dataset
from icd_bench.errors import ConfigError, IcdBenchError, SampleError, SampleWarning
from icd_bench.imaging import psnr
from icd_bench.provenance import git_commit, versions
from icd_bench.registry import METHODS
from icd_bench.store import MANIFEST, RunStore, config_hash, resolve_shard
from icd_bench.types import TASK_PROMPTS, TASKS, EditSample
from icd_bench.words import normalize_word

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class RunConfig:
    """Everything ``icd-bench run`` takes."""

    method: str
    dataset: str
    data_dir: Path | None = None
    split: str | None = None
    backbone: str | None = None
    task: str = "edit"
    out: Path | None = None
    limit: int | None = None
    batch_size: int = 1
    seed: int = 0
    overrides: list[str] = field(default_factory=list)
    device: str = "auto"
    dtype: str = "fp32"
    shard: tuple[int, int] | None = None
    retry_errors: bool = False
    debug: bool = False
    compile: str | None = None  # torch.compile mode for the UNet (see Backbone.compile_unet)


@dataclass
class RunSummary:
    out: Path
    total: int  # samples in this shard (after --limit)
    skipped: int  # already finished before this invocation
    ok: int  # finished ok in this invocation
    failed: int  # recorded as errors in this invocation
    seconds: list[float] = field(default_factory=list)
    nfe: list[int] = field(default_factory=list)
    psnr: list[float] = field(default_factory=list)  # reconstruction PSNR (dB) of an invert run
    errors: list[tuple[str, str]] = field(default_factory=list)  # (sample id, reason) of this invocation
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (sample id, note) of ok samples run now
    # prompt words a toy backbone does not know (run-wide)
    unknown_words: set[str] = field(default_factory=set)
    # the method's run-wide caveats (`EditingMethod.run_notes`)
    notes: list[str] = field(default_factory=list)


@functools.cache
def toy_vocabulary() -> frozenset[str]:
    """The words the toy world's captions use (its text encoder has seen no others)."""
    from icd_bench.toy.tokenizer import toy_words

    return frozenset(toy_words())


def sample_seed(seed: int, sample_id: str) -> int:
    """A 63-bit seed from (run seed, sample id): independent of batching and order."""
    digest = hashlib.sha256(f"{seed}:{sample_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def resolve_device(device: str, shard: tuple[int, int]) -> torch.device:
    if device == "auto":
        if torch.cuda.is_available():
            local = int(os.environ.get("LOCAL_RANK", shard[0] if shard[1] > 1 else 0))
            return torch.device("cuda", local % torch.cuda.device_count())
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"unknown --device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    return dev


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype not in DTYPES:
        raise ConfigError(f"unknown --dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    if dtype == "fp16" and device.type == "cpu":
        raise ConfigError("fp16 needs a GPU; on the CPU use --dtype fp32 or bf16")
    return DTYPES[dtype]


def _batches(items: Sequence[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield list(items[i:i + size])


class Runner:
    """Runs one configuration into one run directory. Use `Runner(cfg).run()`."""

    def __init__(self, cfg: RunConfig, *, progress: Callable[[int, int, int], None] | None = None,
                 on_start: Callable[[Runner], None] | None = None,
                 on_method: Callable[[Any], None] | None = None):
        self.cfg = cfg
        self.progress = progress  # called as progress(done, ok, failed) after every batch
        self.on_start = on_start  # called once the work is known (total, skipped)
        self.on_method = on_method  # called with the method once it is built (timing, hooks)
        if cfg.task not in TASKS:
            raise ConfigError(f"unknown --task {cfg.task!r}; use one of {', '.join(TASKS)}")
        if cfg.batch_size < 1:
            raise ConfigError("--batch-size must be >= 1")
        if cfg.limit is not None and cfg.limit < 0:
            raise ConfigError("--limit must be >= 0")
        self.spec: MethodSpec = resolve_method(cfg.method, cfg.overrides)
        self.spec.check_weights()
        method_cls = METHODS.get(self.spec.method)
        if cfg.task not in method_cls.tasks:
            raise ConfigError(f"method {self.spec.method!r} does not support --task {cfg.task} "
                              f"(it supports: {', '.join(method_cls.tasks)})")
        self.backbone_name = cfg.backbone or self.spec.backbone
        if not self.backbone_name:
            raise ConfigError(f"{cfg.method!r} names no backbone: pass --backbone (a name from "
                              f"`icd-bench list backbones`, a hub id or a local directory)")
        self.dataset = open_dataset(cfg.dataset, data_dir=cfg.data_dir, split=cfg.split, task=cfg.task)
        self.shard = resolve_shard(cfg.shard)
        self.device = resolve_device(cfg.device, self.shard)
        self.dtype = resolve_dtype(cfg.dtype, self.device)
        if cfg.compile is not None:
            from icd_bench.backbones.base import COMPILE_MODES

            if cfg.compile not in COMPILE_MODES:
                raise ConfigError(f"unknown --compile mode {cfg.compile!r}; "
                                  f"use one of {', '.join(COMPILE_MODES)}")
        self.config = {
            "method": self.spec.method,
            "preset": self.spec.preset,
            "params": self.spec.params_dict(),
            "dataset": {k: v for k, v in self.dataset.describe().items() if k != "size"},
            "backbone": self.backbone_name,
            "task": cfg.task,
            "seed": cfg.seed,
            "dtype": cfg.dtype,
        }
        if cfg.compile:  # compiled kernels round differently: another configuration
            self.config["compile"] = cfg.compile
        self.config_hash = config_hash(self.config)
        label = self.spec.preset or self.spec.method
        self.out = (Path(cfg.out) if cfg.out
                    else Path("runs") / f"{label}-{cfg.dataset}-{cfg.task}-{self.config_hash[:8]}")
        self.total = 0
        self.skipped = 0

    def manifest(self) -> dict[str, Any]:
        return {
            "format": 1,
            "config": self.config,
            "config_hash": self.config_hash,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "runtime": {"device": str(self.device), "versions": versions(), "git_commit": git_commit(),
                        "command": " ".join(sys.argv)},
            # PIE-Bench's protocol: did the method see the dataset's edit mask
            # (icd_bench.metrics.pie_protocol)
            "protocol": {"saw_mask": bool(self.cfg.task == "edit"
                                          and METHODS.get(self.spec.method).sees_edit_mask)},
        }

    def todo(self, store: RunStore) -> list[str]:
        ids = self.dataset.ids()
        if self.cfg.limit is not None:
            ids = ids[: self.cfg.limit]
        i, n = self.shard
        ids = ids[i::n]
        finished = store.finished_ids(include_errors=not self.cfg.retry_errors)
        self.total = len(ids)
        todo = [s for s in ids if s not in finished]
        self.skipped = self.total - len(todo)
        return todo

    def run(self) -> RunSummary:
        """Run every sample not yet done. A sample's caveats (`SampleWarning`: a truncated prompt,
        blend words not in their prompt, ...) are not raised as Python warnings here: they are kept
        in its record's ``warnings`` and in the summary, with the sample's id, once."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SampleWarning)
            return self._run()

    def _run(self) -> RunSummary:
        from icd_bench.backbones import load_backbone

        fresh = not (self.out / MANIFEST).exists()
        store = RunStore.create_or_resume(self.out, self.manifest(), self.shard)
        todo = self.todo(store)
        summary = RunSummary(out=self.out, total=self.total, skipped=self.skipped, ok=0, failed=0)
        if self.on_start:
            self.on_start(self)
        if not todo:
            return summary
        try:
            backbone = load_backbone(self.backbone_name, device=self.device, dtype=self.dtype)
            method = METHODS.get(self.spec.method)(backbone, self.spec.params)
            summary.notes = method.run_notes(self.cfg.task)
            if summary.notes:  # said once per run, kept with the run
                store.annotate("notes", summary.notes)
            if self.cfg.compile:
                method.backbone.compile_unet(self.cfg.compile)
        except BaseException:
            if fresh:  # nothing ran: leave no run directory behind to refuse the corrected command
                store.discard_if_empty()
            raise
        with method:  # the backbone given back as loaded when the run ends (or dies)
            return self._run_batches(store, summary, method, todo)

    def _run_batches(self, store: RunStore, summary: RunSummary, method, todo: list[str]) -> RunSummary:
        if self.on_method:
            self.on_method(method)
        done = 0
        batches = list(_batches(todo, self.cfg.batch_size))
        with ThreadPoolExecutor(1, thread_name_prefix="icd-bench-load") as loader, \
                ThreadPoolExecutor(1, thread_name_prefix="icd-bench-write") as writer:
            loading: Future | None = loader.submit(self._load, batches[0])
            writing: Future | None = None

            def stored() -> None:  # wait for the batch being written (its errors raise here), report it
                if writing is not None:
                    writing.result()
                    if self.progress:
                        self.progress(done, summary.ok, summary.failed)

            for k, batch_ids in enumerate(batches):
                loaded = [self._annotate(method.backbone, s, summary) if isinstance(s, EditSample) else s
                          for s in loading.result()]
                loading = loader.submit(self._load, batches[k + 1]) if k + 1 < len(batches) else None
                results = self._compute(store, method, [s for s in loaded if isinstance(s, EditSample)])
                stored()
                writing = writer.submit(self._store, store, summary, loaded, results)
                done += len(batch_ids)
            stored()
        return summary

    def _load(self, batch_ids: list[str]) -> list[EditSample | tuple[str, str]]:
        """The batch's samples, or (id, reason) for those the dataset cannot load."""
        out: list[EditSample | tuple[str, str]] = []
        for sid in batch_ids:
            try:
                out.append(self.dataset.load(sid))
            except SampleError as exc:
                out.append((sid, exc.reason))
        return out

    def _annotate(self, backbone, sample: EditSample, summary: RunSummary) -> EditSample:
        """The sample with a note for each prompt of the task that the text encoder will truncate,
        and, on the toy world, for each prompt with words outside its vocabulary (collected run-wide
        in ``summary.unknown_words``: a photo's caption through ``--backbone toy`` gives toy shapes)."""
        which = TASK_PROMPTS[self.cfg.task]
        prompts = [getattr(sample, f"{w}_prompt") for w in which]
        notes = backbone.prompt_notes(prompts)
        extra = tuple(f"{w} {n}" for w, n in zip(which, notes, strict=True) if n)
        if backbone.kind == "toy":
            for w, prompt in zip(which, prompts, strict=True):
                unknown = [x for x in dict.fromkeys(normalize_word(x) for x in prompt.split())
                           if x and x not in toy_vocabulary()]
                if unknown:
                    summary.unknown_words.update(unknown)
                    extra += (f"{w} prompt has words the toy world does not know ({', '.join(unknown)}): its "
                              "text encoder never saw them, the output shows toy shapes, not the prompt",)
        return replace(sample, notes=sample.notes + extra) if extra else sample

    def _compute(self, store: RunStore, method, samples: list[EditSample]) -> dict[str, tuple]:
        """Run the method on a batch: id → ("ok", source image or None, output, seconds) or
        ("error", reason). Failing batches are split to isolate the failing samples."""
        if not samples:
            return {}
        seeds = [sample_seed(self.cfg.seed, s.id) for s in samples]
        generators = [torch.Generator("cpu").manual_seed(sd) for sd in seeds]
        start = time.perf_counter()
        out_of_memory = False
        try:
            sources, outputs = method.run(self.cfg.task, samples, generators)
        except SampleError as exc:
            if len(samples) > 1:
                return self._split(store, method, samples, halves=False)
            return {samples[0].id: ("error", exc.reason)}
        except IcdBenchError:
            raise
        except torch.cuda.OutOfMemoryError:
            if self.cfg.debug and len(samples) == 1:
                raise
            out_of_memory = True  # retried below, outside this block: the error holds the batch's tensors
        except Exception as exc:
            if self.cfg.debug:
                raise
            if len(samples) > 1:  # find which sample fails; the others still run
                return self._split(store, method, samples, halves=False)
            store.log_error(f"--- {samples[0].id}\n{traceback.format_exc()}")
            return {samples[0].id: ("error", f"{type(exc).__name__}: {exc}")}
        if out_of_memory:  # the failed batch's tensors are released by now
            torch.cuda.empty_cache()
            if len(samples) > 1:  # halve and retry
                return self._split(store, method, samples, halves=True)
            return {samples[0].id: ("error", "CUDA out of memory at batch size 1; free GPU memory, use "
                                    "--dtype fp16 or a smaller model")}
        seconds = (time.perf_counter() - start) / len(samples)
        if self.cfg.task == "invert" and sources is not None:  # reconstruction quality, for free
            values = psnr(torch.stack([o.image for o in outputs]), sources.float().cpu())
            for out, v in zip(outputs, values.tolist(), strict=True):
                out.extras["reconstruction_psnr"] = round(v, 3)
        result = {}
        for i, (s, out) in enumerate(zip(samples, outputs, strict=True)):
            if not torch.isfinite(out.image).all():
                result[s.id] = ("error", f"the output holds non-finite values (NaN / Inf): "
                                f"the model diverged under --dtype {self.cfg.dtype}; "
                                f"try --dtype fp32 or other settings")
                continue
            result[s.id] = ("ok", None if sources is None else sources[i].cpu(), out, seconds)
        return result

    def _split(self, store: RunStore, method, samples: list[EditSample], *, halves: bool) -> dict[str, tuple]:
        parts = ([samples[: len(samples) // 2], samples[len(samples) // 2:]] if halves
                 else [[s] for s in samples])
        out: dict[str, tuple] = {}
        for part in parts:
            out |= self._compute(store, method, part)
        return out

    def _store(self, store: RunStore, summary: RunSummary, loaded: list, results: dict[str, tuple]) -> None:
        """Write a computed batch in dataset order: images first, then one record per sample."""
        for item in loaded:
            if not isinstance(item, EditSample):
                self._record_error(store, summary, *item)
                continue
            res = results[item.id]
            if res[0] == "error":
                self._record_error(store, summary, item.id, res[1])
                continue
            _, source, out, seconds = res
            s, seed = item, sample_seed(self.cfg.seed, item.id)
            files = {"image": store.write_image("images", s.id, out.image)}
            if source is not None:
                files["source"] = store.write_image("sources", s.id, source)
            store.append({
                "id": s.id, "status": "ok", "error": None, "task": self.cfg.task, "seed": seed,
                "nfe": out.nfe, "seconds": round(seconds, 4), "outputs": files,
                "source_prompt": s.source_prompt, "target_prompt": s.target_prompt,
                "edit_type": s.edit_type, "warnings": list(s.notes), "extras": out.extras,
            })
            summary.ok += 1
            summary.warnings += [(s.id, note) for note in s.notes]
            summary.seconds.append(seconds)
            summary.nfe.append(out.nfe)
            if "reconstruction_psnr" in out.extras:
                summary.psnr.append(out.extras["reconstruction_psnr"])

    def _record_error(self, store: RunStore, summary: RunSummary, sample_id: str, reason: str) -> None:
        store.append({"id": sample_id, "status": "error", "error": reason, "task": self.cfg.task,
                      "seed": sample_seed(self.cfg.seed, sample_id), "nfe": None, "seconds": None,
                      "outputs": {}})
        summary.failed += 1
        summary.errors.append((sample_id, reason))
