"""The tiny FID extractor of ``test_score_memory.py``, in a module of its own so that the ``icd-bench score``
processes it starts can import it (``--option fid_extractor=score_bench_extractor:tiny_fid_extractor``)."""

from __future__ import annotations

import torch


def tiny_fid_extractor(device):
    """A fixed random projection of 8×8-pooled pixels (64 features): an offline stand-in for Inception."""
    proj = torch.randn(3 * 8 * 8, 64, generator=torch.Generator().manual_seed(0),
                       dtype=torch.float64).to(device)
    return lambda x: torch.nn.functional.adaptive_avg_pool2d(x.double() / 255.0, 8).flatten(1) @ proj
