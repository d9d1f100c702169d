"""iCD's consistency-distillation losses equal the official trainer's (golden: icd_training.json):
``reverse_train_step`` (CD on the guided process, the w codes of its launch script, indices over the
whole grid including the first step's anchor) and ``forward_train_step`` (fCD, unguided), pseudo-Huber
with c = 0.001, on guidance-embedded analytic predictors, SD's schedule, the 4-step boundaries.

The official solver lands the first step's target on ᾱ_0, the project on the clean end by default:
compared with ``clean_anchor=False``, and the default shown to differ (the drawn batch holds index 0).
Tolerance: 1e-5 relative (float32).
"""

from __future__ import annotations

import pytest
import torch

from icd_bench.backbones.loaders import SD_SCHEDULER_CONFIG
from icd_bench.icd import Boundaries
from icd_bench.icd.boundaries import choose_boundaries
from icd_bench.icd.guidance import guidance_code, guidance_embedding
from icd_bench.icd.losses import Solver, forward_cd_loss, reverse_cd_loss

import golden_inputs as gi
from golden_inputs import golden

G = golden("icd_training.json")


@pytest.fixture(scope="module")
def world():
    from diffusers import DDPMScheduler

    tok, te = gi.text_components()
    with torch.no_grad():
        cond = te.float()(tok([gi.DDIM_PROMPT] * gi.TRAIN_BATCH, padding="max_length", max_length=77,
                              return_tensors="pt").input_ids)[0]
    sched = DDPMScheduler(**{k: v for k, v in SD_SCHEDULER_CONFIG.items() if k != "set_alpha_to_one"})
    solver = Solver(sched.alphas_cumprod.float(), 50)
    student, teacher = gi.AnalyticUNet(seed=11, guidance_dim=512), gi.AnalyticUNet(seed=12, guidance_dim=512)

    def eps(unet):  # the paper's w → the embedding of code w − 1, as the project's trainer
        return lambda x, t, w: unet(x, t, timestep_cond=guidance_embedding(guidance_code(w), 512),
                                    encoder_hidden_states=cond).sample
    return solver, eps(student), eps(teacher)


def test_reverse_cd_loss(world):
    solver, student, teacher = world
    x0, noise = gi.train_inputs()
    index = gi.train_index(50, gi.TRAIN_SEEDS["reverse_cd"])
    assert (index == 0).any()
    w = torch.tensor(gi.TRAIN_CODES) + 1  # codes → the paper's w
    bounds: Boundaries = choose_boundaries("4step-tau0.8", None, None)
    with torch.no_grad():
        ours, _ = reverse_cd_loss(student, student, teacher, solver, bounds, x0, noise, index, w, "huber",
                                  clean_anchor=False)
        clean, _ = reverse_cd_loss(student, student, teacher, solver, bounds, x0, noise, index, w, "huber")
    assert float(ours) == pytest.approx(G["reverse_cd"]["loss"], rel=1e-5)
    assert float(clean) != pytest.approx(G["reverse_cd"]["loss"], rel=1e-4)  # the clean-end anchor differs


def test_forward_cd_loss(world):
    solver, student, teacher = world
    x0, noise = gi.train_inputs()
    index = gi.train_index(49, gi.TRAIN_SEEDS["forward_cd"])
    bounds = choose_boundaries("4step-tau0.8", None, None)
    with torch.no_grad():
        ours, _ = forward_cd_loss(student, student, teacher, solver, bounds, x0, noise, index, "huber")
    assert float(ours) == pytest.approx(G["forward_cd"]["loss"], rel=1e-5)
