"""Metrics behind one API (`base.Metric`, registered in `METRICS`, spelled ``name[:region[:flavour]]``)
and the run scorer behind ``icd-bench score`` (`score.score_run`). Built in so far: ``psnr``,
``mse``, ``ssim`` (whole, background, edited; ``pie`` and ``clean``) and the toy oracle
(``toy_edit``, ``toy_match``). The model-based metrics of the paper (LPIPS, DINOv2, CLIP,
ImageReward, FID, structure distance) are not built yet."""

from icd_bench.metrics import pixel, toy  # noqa: F401  (register the built-in metrics)
from icd_bench.metrics.functional import PSNR_CAP_DB, psnr

__all__ = ["PSNR_CAP_DB", "psnr"]
