"""Invertible Consistency Distillation (iCD): boundaries, guidance embedding, the forward and
reverse multi-boundary consistency models as LoRA adapters on one UNet, and their inference
(`ICDPipeline`: encode / decode / Prompt-to-Prompt edit); the training objectives (`losses`) and
both training stages (`train`: guidance distillation, then forward / reverse consistency
distillation with the preservation losses); `probe`, each trained step against the teacher."""

from icd_bench.icd.boundaries import BOUNDARY_SETS, Boundaries
from icd_bench.icd.guidance import guidance_code, guidance_embedding
from icd_bench.icd.pipeline import ICDPipeline

__all__ = ["BOUNDARY_SETS", "Boundaries", "ICDPipeline", "guidance_code", "guidance_embedding"]
