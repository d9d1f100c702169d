"""Metrics behind one API (`base.Metric`, registered in `METRICS`, spelled ``name[:region[:flavour]]``)
and the run scorer behind ``icd-bench score`` (`score.score_run`).

Built in: ``psnr``, ``mse``, ``ssim`` (whole, background, edited; ``pie`` and ``clean``), ``lpips``
(`perceptual`), ``clip_t`` / ``clip_i`` (`clip_score`), ``dinov2`` and ``structure_distance``
(`dino`), ``imagereward`` (`imagereward`, an adapter of the published checkpoint), ``fid``
(`fid`, a set metric) and the toy oracle (``toy_edit``, ``toy_match``). Model-based metrics import
their packages (the ``metrics`` extra) only when used, and find weights by one rule (`weights`).
"""

from icd_bench.metrics import clip_score, dino, fid, imagereward, perceptual, pixel, toy  # noqa: F401  (register them)
from icd_bench.metrics.functional import PSNR_CAP_DB, psnr

__all__ = ["PSNR_CAP_DB", "psnr"]
