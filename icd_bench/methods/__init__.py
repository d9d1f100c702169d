"""Editing-method plugins, each a thin adapter over `icd_bench.diffusion` (and `attention`)."""

from icd_bench.methods import ddim  # noqa: F401  (registers "ddim")
from icd_bench.methods.base import EditingMethod

__all__ = ["EditingMethod"]
