"""Editing-method plugins, each a thin adapter over `icd_bench.diffusion` (and `attention`)."""

from icd_bench.methods.base import EditingMethod
from icd_bench.methods import ddim  # noqa: F401  (registers "ddim")

__all__ = ["EditingMethod"]
