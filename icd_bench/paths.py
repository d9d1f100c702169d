"""Paths a user gives (presets, ``--set``): ``~`` expanded, and ``bundled:REL`` naming a file that
ships inside the package (``icd_bench/assets/REL``), so presets can point at bundled weights
wherever the package is installed."""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
BUNDLED = "bundled:"


def user_path(value: str | Path) -> Path:
    """``bundled:toy/icd/fcdm.safetensors`` → the packaged file; anything else →
    ``Path(value).expanduser()``."""
    text = str(value)
    if text.startswith(BUNDLED):
        return ASSETS / text[len(BUNDLED):].lstrip("/")
    return Path(text).expanduser()
