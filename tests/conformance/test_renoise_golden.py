"""ReNoise's noise regularisation equals the official code's (golden: renoise.json;
garibida/ReNoise-Inversion ``noise_regularization``): the released strengths (λ_KL 0.065 against the
forward-noised reference ε, λ_ac 20 with 5 random rolls, 4 steps), the same seeded generator for the
rolls; and with the auto-correlation term alone. The inversion loop end to end: test_renoise_loop_golden.py.

Tolerance: 1e-5 relative (float32 gradients of the same losses).
"""

from __future__ import annotations

import pytest
import torch

from icd_bench.diffusion.renoise import ReNoiseConfig, regularise_noise

import golden_inputs as gi
from golden_inputs import golden

G = golden("renoise.json")


@pytest.mark.parametrize("key, lambda_kl", [("regularised", 0.065), ("ac_only", 0.0)])
def test_noise_regularisation(key, lambda_kl):
    eps, reference = gi.renoise_inputs()
    cfg = ReNoiseConfig(lambda_kl=lambda_kl, lambda_ac=20.0, reg_steps=4, ac_rolls=5)
    out = regularise_noise(eps, reference, cfg, [torch.Generator().manual_seed(gi.RENOISE_SEED)])
    want = torch.tensor(G[key])
    assert float((out - want).norm() / want.norm()) < 1e-5
    assert float((out - eps).norm() / eps.norm()) > 1e-3  # the regularisation really moved ε
