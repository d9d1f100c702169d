"""The run directory: an append-only, resumable store of one run's results.

Layout::

    RUN_DIR/
      manifest.json          what ran: method + resolved parameters, dataset, backbone, task, seed,
                             dtype (the "config", hashed), plus versions, device, git commit
      records.jsonl          one JSON line per finished sample (records.shard-I-of-N.jsonl per shard)
      images/ID.png          the method's output
      sources/ID.png         the source image as the method saw it (resized / cropped)
      errors.log             tracebacks of unexpected per-sample failures

Crash safety: images are written to a temporary name and renamed; a record is appended with one
``write`` on an ``O_APPEND`` descriptor after its images exist, then fsync'd; the manifest is
created once, atomically. A torn last line (a crash mid-write) is skipped with a warning and the
next append starts on a fresh line. Readers see the union of all records files; the last record
of an id wins.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from icd_bench.errors import ConfigError, RunStoreError
from icd_bench.imaging import tensor_to_pil

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
METRIC_OPTIONS = "metrics.json"  # beside metrics.parquet: metric key → the options it was scored with


def config_hash(config: dict[str, Any]) -> str:
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def resolve_shard(shard: tuple[int, int] | None) -> tuple[int, int]:
    """``--shard i/n``, else the process rank under ``accelerate launch`` / torchrun, else 0/1: which share of
    a run (or of its scoring) this process writes."""
    if shard is None:
        n = int(os.environ.get("WORLD_SIZE", "1"))
        i = int(os.environ.get("RANK", "0"))
        shard = (i, n)
    i, n = shard
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"shard {i}/{n} is not valid: need 0 <= i < n")
    return shard


def records_name(shard: tuple[int, int]) -> str:
    i, n = shard
    return "records.jsonl" if n == 1 else f"records.shard-{i}-of-{n}.jsonl"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def append_line(path: Path, line: bytes) -> None:
    """Append ``line`` (one or more whole lines) with one ``write`` on an ``O_APPEND`` descriptor, then
    fsync; a line torn by an earlier crash is closed first, so the new one starts fresh."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size:
            with open(path, "rb") as f:  # a crash may have left a line without its newline
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    line = b"\n" + line
        written = os.write(fd, line)
        if written != len(line):
            raise OSError(f"short write to {path} ({written} of {len(line)} bytes)")
        os.fsync(fd)
    finally:
        os.close(fd)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Read a JSON-lines file, skipping (with a warning) lines torn by a crash."""
    out: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                warnings.warn(f"{path.name} line {lineno}: ignoring a torn record (an earlier run "
                              f"was killed mid-write)", stacklevel=2)
    return out


class RunStore:
    """One run directory. Open it with `RunStore.create_or_resume` (writers) or `RunStore(path)`."""

    def __init__(self, root: str | Path, shard: tuple[int, int] = (0, 1)):
        self.root = Path(root)
        self.shard = shard

    # -- opening -----------------------------------------------------------------------------
    @classmethod
    def create_or_resume(cls, root: str | Path, manifest: dict[str, Any],
                         shard: tuple[int, int] = (0, 1)) -> RunStore:
        """Create a run directory for ``manifest`` or resume it if it holds the same config.

        A directory holding another configuration is refused (`RunStoreError` naming what
        differs); so is a non-empty directory that is not a run.
        """
        store = cls(root, shard)
        root = store.root
        try:
            root.mkdir(parents=True, exist_ok=True)
            for sub in ("images", "sources"):
                (root / sub).mkdir(exist_ok=True)
        except OSError as exc:
            raise RunStoreError(f"cannot create run directory {root}: {exc.strerror or exc}") from None
        if not os.access(root, os.W_OK):
            raise RunStoreError(f"run directory {root} is not writable; choose another --out")
        path = root / MANIFEST
        if not path.exists():
            # another shard may be writing the manifest right now (its temporary file)
            others = [p.name for p in root.iterdir()
                      if p.name not in ("images", "sources") and not p.name.startswith(".manifest.")]
            if others:
                raise RunStoreError(f"{root} is not empty and has no {MANIFEST}: it is not an "
                                    f"icd-bench run directory; choose another --out")
            data = json.dumps(manifest, indent=2, sort_keys=True).encode()
            fd, tmp = tempfile.mkstemp(dir=root, prefix=".manifest.", suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)  # fails if another shard created it first: then compare below
            except FileExistsError:
                pass
            finally:
                os.unlink(tmp)
        existing = store.manifest()
        if existing.get("config_hash") != manifest["config_hash"]:
            diff = _diff(existing.get("config", {}), manifest["config"])
            raise RunStoreError(
                f"{root} holds a run of another configuration ({'; '.join(diff) or 'format differs'}). "
                f"Use another --out, or delete {root} to start over.")
        return store

    def manifest(self) -> dict[str, Any]:
        path = self.root / MANIFEST
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunStoreError(f"{self.root} is not a run directory (no {MANIFEST}); "
                                "give a folder written by `icd-bench run`") from None
        except json.JSONDecodeError as exc:
            raise RunStoreError(f"{path} is corrupt: {exc}") from None

    def annotate(self, key: str, value: Any) -> None:
        """Set ``key`` of the manifest (outside ``config``, so the run's identity is unchanged)."""
        if key in ("config", "config_hash"):
            raise ValueError(f"{key} is the run's identity, not an annotation")
        manifest = self.manifest()
        manifest[key] = value
        try:
            atomic_write_bytes(self.root / MANIFEST,
                               (json.dumps(manifest, indent=2, sort_keys=True)).encode())
        except OSError as exc:
            raise _write_error(self.root / MANIFEST, exc) from None

    # -- reading -----------------------------------------------------------------------------
    def records_files(self) -> list[Path]:
        return sorted(self.root.glob("records*.jsonl"))

    def records(self) -> list[dict[str, Any]]:
        """The latest record of every sample id, over all shards, in first-seen order."""
        latest: dict[str, dict[str, Any]] = {}
        for path in self.records_files():
            for rec in read_jsonl(path):
                if "id" in rec:
                    latest[rec["id"]] = rec
        return list(latest.values())

    def finished_ids(self, include_errors: bool = True) -> set[str]:
        return {r["id"] for r in self.records() if include_errors or r.get("status") == "ok"}

    # -- writing -----------------------------------------------------------------------------
    def write_image(self, folder: str, sample_id: str, image: torch.Tensor | Image.Image) -> str:
        """Write an image atomically; returns its path relative to the run directory."""
        pil = image if isinstance(image, Image.Image) else tensor_to_pil(image)
        rel = f"{folder}/{sample_id}.png"
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        pil.save(buf, format="PNG")
        try:
            atomic_write_bytes(path, buf.getvalue())
        except OSError as exc:
            raise _write_error(path, exc) from None
        return rel

    def append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, sort_keys=True, default=_json_default) + "\n").encode()
        path = self.root / records_name(self.shard)
        try:
            append_line(path, line)
        except OSError as exc:  # a partly written line is torn: readers skip it, the next append starts fresh
            raise _write_error(path, exc) from None

    def discard_if_empty(self) -> None:
        """Remove a run directory that holds nothing but its manifest (a run that could not start), so
        the same command with corrected settings is not refused as another configuration."""
        if any(p.stat().st_size for p in self.records_files()):
            return
        for sub in ("images", "sources"):
            folder = self.root / sub
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        (self.root / MANIFEST).unlink(missing_ok=True)
        for path in self.records_files():
            path.unlink()
        if not any(self.root.iterdir()):
            self.root.rmdir()

    def log_error(self, text: str) -> None:
        with open(self.root / "errors.log", "a", encoding="utf-8") as f:
            f.write(text.rstrip("\n") + "\n")


def _write_error(path: Path, exc: OSError) -> RunStoreError:
    """A failed write (disk full, permissions, ...) as one clear error: what is stored stays valid."""
    return RunStoreError(f"cannot write {path}: {exc.strerror or exc}. "
                         f"Free space (or fix the permissions) and "
                         f"re-run the same command: finished samples are kept and the run resumes")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, tuple | set):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    out: list[str] = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _diff(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} there, {b!r} now")
    return out
