"""``direct-inversion``: Direct Inversion + Prompt-to-Prompt (Ju et al., "PnP Inversion", ICLR 2024;
PIE-Bench's "DirectInversion + P2P" row) — DDIM inversion as ``ddim-p2p``, then the P2P decode with the
source branch put back on the inversion trajectory after every step (`diffusion.direct.rectify_source`):
the source's attention, which P2P hands to the target, is that of the image's own trajectory at any
CFG, with no optimisation (NTI) and no change of the unconditional embedding (NPI).

The source branch lands on the image's latents by construction, so the reconstruction is the
encoding itself (the official editor's reconstruction pass computes the same up to rounding).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from icd_bench.methods.ddim_p2p import DDIMP2P, DDIMP2PParams
from icd_bench.registry import METHODS
from icd_bench.types import Inversion


@dataclass
class DirectInversionParams(DDIMP2PParams):
    def __post_init__(self):
        super().__post_init__()
        if not self.p2p:
            raise ValueError("direct-inversion rectifies the source branch of the P2P decode; p2p = false "
                             "leaves none (use `ddim` for a plain prompt switch)")


@METHODS.register("direct-inversion")
class DirectInversion(DDIMP2P):
    """Direct Inversion: DDIM inversion; the P2P decode's source branch kept on the inversion trajectory."""

    Params: ClassVar[type] = DirectInversionParams

    def branch_callback(self, inversion: Inversion, callback):
        return self.on_trajectory(inversion, callback)

    def reconstruct(self, inversion: Inversion) -> torch.Tensor:
        return self.backbone.decode(inversion.image_latents)
