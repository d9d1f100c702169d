"""Metrics. The full metric API (registry entries, `icd-bench score`) is not built yet; what is
here are the plain functions the runner and the toy world already need."""

from icd_bench.metrics.functional import PSNR_CAP_DB, psnr

__all__ = ["PSNR_CAP_DB", "psnr"]
