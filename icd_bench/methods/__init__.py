"""Editing-method plugins, each a thin adapter over `icd_bench.diffusion` (and `attention`)."""

from icd_bench.methods import (  # noqa: F401  (register the built-ins)
    ddim,
    ddim_p2p,
    direct_inversion,
    ef_ddpm,
    icd,
    infedit,
    masactrl,
    npi,
    nti,
    pix2pix_zero,
    pnp,
    renoise,
    turboedit,
)
from icd_bench.methods.base import EditingMethod

__all__ = ["EditingMethod"]
