"""Invertible Consistency Distillation (iCD): boundaries, guidance embedding, forward/reverse
multi-boundary consistency models. Training and the full editing pipeline arrive in their issues;
what is here is the math they share."""

from icd_bench.icd.boundaries import BOUNDARY_SETS, Boundaries
from icd_bench.icd.guidance import guidance_code, guidance_embedding

__all__ = ["BOUNDARY_SETS", "Boundaries", "guidance_code", "guidance_embedding"]
