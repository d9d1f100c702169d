"""Where a result came from: the package versions and the source tree's git commit, recorded in
run manifests, training outputs, benchmarks and regression reports."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

from icd_bench import __version__


def git_commit() -> str | None:
    root = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=True)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"icd-bench": __version__, "python": platform.python_version()}
    for pkg in ("torch", "diffusers", "transformers", "peft", "accelerate"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out
