"""Editing-method plugins, each a thin adapter over `icd_bench.diffusion` (and `attention`)."""

from icd_bench.methods import ddim, icd  # noqa: F401  (register "ddim", "icd")
from icd_bench.methods.base import EditingMethod

__all__ = ["EditingMethod"]
