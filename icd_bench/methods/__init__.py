"""Editing-method plugins, each a thin adapter over `icd_bench.diffusion` (and `attention`)."""

from icd_bench.methods import ddim, ddim_p2p, direct_inversion, ef_ddpm, icd, infedit, npi, nti, renoise  # noqa: F401  (register the built-ins)
from icd_bench.methods.base import EditingMethod

__all__ = ["EditingMethod"]
