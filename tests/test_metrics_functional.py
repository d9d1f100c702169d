import math

import pytest
import torch

from icd_bench.metrics import PSNR_CAP_DB, psnr


def test_psnr_by_hand_and_capped():
    a = torch.zeros(3, 4, 4)
    b = torch.full((3, 4, 4), 0.1)
    assert float(psnr(a, b)) == pytest.approx(10 * math.log10(1 / 0.01))
    assert float(psnr(a, a)) == PSNR_CAP_DB  # identical images: finite
    batch = psnr(torch.stack([a, a]), torch.stack([b, a]))
    assert batch.shape == (2,) and batch[1] == PSNR_CAP_DB
    with pytest.raises(ValueError, match="one shape"):
        psnr(a, torch.zeros(3, 4, 5))
