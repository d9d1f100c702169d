"""Plain metric functions on image tensors in [0, 1] (they live in `icd_bench.imaging`, below every
layer that uses them)."""

from icd_bench.imaging import PSNR_CAP_DB, psnr, psnr_from_mse

__all__ = ["PSNR_CAP_DB", "psnr", "psnr_from_mse"]
