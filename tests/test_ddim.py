"""DDIM math: eq. 1 by hand, agreement with diffusers, inversion → reconstruction, guidance."""

import math

import pytest
import torch
from diffusers import DDIMScheduler

from icd_bench.backbones.base import NFECounter, PromptEmbeds
from icd_bench.diffusion import (
    cfg_combine,
    ddim_invert,
    ddim_sample,
    ddim_step,
    ddim_timesteps,
    dynamic_guidance_scale,
    guided_noise,
)


def sd_scheduler() -> DDIMScheduler:
    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         clip_sample=False, set_alpha_to_one=False, steps_offset=1)


def gaussian_eps(alphas_cumprod, sigma_data=0.7):
    """The exact noise prediction for data ~ N(0, σ²I): smooth, so DDIM is nearly exact."""
    def eps_fn(x, t, i):
        a = float(alphas_cumprod[t])
        return math.sqrt(1 - a) * x / (a * sigma_data**2 + 1 - a)
    return eps_fn


def test_one_step_matches_eq1_by_hand():
    x = torch.tensor([0.3, -1.2])
    eps = torch.tensor([0.5, 0.1])
    a_t, a_s = 0.4, 0.9
    by_hand = (math.sqrt(a_s / a_t) * x
               + eps * (math.sqrt(1 - a_s) - math.sqrt(a_s / a_t) * math.sqrt(1 - a_t)))
    assert torch.allclose(ddim_step(x, eps, a_t, a_s), by_hand)
    # the same formula walks the other way: inverting the step with the same ε gives x back
    assert torch.allclose(ddim_step(ddim_step(x, eps, a_t, a_s), eps, a_s, a_t), x, atol=1e-6)


def test_timesteps_match_diffusers():
    sched = sd_scheduler()
    ts = ddim_timesteps(sched, 50)
    sched.set_timesteps(50)
    assert ts == [int(t) for t in sched.timesteps]
    assert ts[0] == 981 and ts[-1] == 1
    assert sched.timesteps is not None and len(ddim_timesteps(sched, 4)) == 4


def test_sampling_matches_diffusers_scheduler_step():
    sched = sd_scheduler()
    ac = sched.alphas_cumprod.double()
    eps_fn = gaussian_eps(ac)
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ts = ddim_timesteps(sched, 25)
    ours = ddim_sample(eps_fn, x.clone(), ts, ac, float(sched.final_alpha_cumprod))
    sched.set_timesteps(25)
    ref = x.clone()
    for i, t in enumerate(sched.timesteps):
        ref = sched.step(eps_fn(ref, int(t), i), t, ref, eta=0.0).prev_sample
    assert torch.allclose(ours, ref, atol=1e-10)


@pytest.mark.parametrize("steps, tol", [(500, 2e-3), (50, 3e-2)])
def test_inversion_then_reconstruction_recovers_latent(steps, tol):
    sched = sd_scheduler()
    ac = sched.alphas_cumprod.double()
    final = float(sched.final_alpha_cumprod)
    eps_fn = gaussian_eps(ac)
    x0 = 0.7 * torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ts = ddim_timesteps(sched, steps)
    xT = ddim_invert(eps_fn, x0, ts, ac, final)
    assert xT.std() > 0.9  # it really went to noise
    rec = ddim_sample(eps_fn, xT, ts, ac, final)
    rel = (rec - x0).norm() / x0.norm()
    assert rel < tol


def test_inversion_error_shrinks_with_more_steps():
    sched = sd_scheduler()
    ac = sched.alphas_cumprod.double()
    final = float(sched.final_alpha_cumprod)
    eps_fn = gaussian_eps(ac)
    x0 = 0.7 * torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    errs = []
    for steps in (5, 50, 500):
        ts = ddim_timesteps(sched, steps)
        rec = ddim_sample(eps_fn, ddim_invert(eps_fn, x0, ts, ac, final), ts, ac, final)
        errs.append(float((rec - x0).norm() / x0.norm()))
    assert errs[0] > errs[1] > errs[2]


def test_dynamic_guidance_is_a_step_function():
    assert dynamic_guidance_scale(999, 1000, 8.0, 0.8) == 1.0
    assert dynamic_guidance_scale(801, 1000, 8.0, 0.8) == 1.0
    assert dynamic_guidance_scale(800, 1000, 8.0, 0.8) == 8.0
    assert dynamic_guidance_scale(779, 1000, 8.0, 0.8) == 8.0
    assert dynamic_guidance_scale(999, 1000, 8.0, 1.0) == 8.0  # tau = 1: always guided


class _FakeBackbone:
    """ε(x, t, c) = x + c.mean(): enough to check batching and row counts."""

    def __init__(self):
        self.nfe = NFECounter()

    def predict_noise(self, x, t, cond, timestep_cond=None, *, branches=1):
        self.nfe.add(x.shape[0] // branches)  # the rule of `Backbone.predict_noise`
        return x + cond.embeds.mean(dim=(1, 2)).view(-1, 1, 1, 1)


def test_guided_noise_costs_one_row_unguided_and_two_guided():
    bb = _FakeBackbone()
    x = torch.zeros(3, 1, 2, 2)
    cond = PromptEmbeds(torch.full((3, 2, 2), 2.0))
    uncond = PromptEmbeds(torch.zeros(3, 2, 2))
    with bb.nfe.measure() as m:
        eps = guided_noise(bb, x, 10, cond, uncond, 1.0)
    assert m[0] == 3 and torch.allclose(eps, torch.full_like(x, 2.0))
    with bb.nfe.measure() as m:
        eps = guided_noise(bb, x, 10, cond, uncond, 7.5)
    assert m[0] == 6 and bb.nfe.calls == 2  # 2B rows in ONE call
    assert torch.allclose(eps, cfg_combine(torch.zeros_like(x), torch.full_like(x, 2.0), 7.5))
    assert torch.allclose(eps, torch.full_like(x, 15.0))
    with pytest.raises(ValueError, match="unconditional"):
        guided_noise(bb, x, 10, cond, None, 2.0)
    # P2P: source and target rows of the same samples ride in one call and count once
    pair = PromptEmbeds(torch.full((4, 2, 2), 2.0))
    with bb.nfe.measure() as m:
        guided_noise(bb, torch.zeros(4, 1, 2, 2), 10, pair,
                     PromptEmbeds(torch.zeros(4, 2, 2)), 7.5, branches=2)
    assert m[0] == 4  # 2 samples × 2 (guided)


def test_invert_records_the_encoded_latents_nll_and_inversion_tau_guides_only_low_noise_steps():
    """The runner's record of an invert run carries each sample's latent NLL under N(0, I) (Table 1);
    DDIM's ``inversion_tau`` is encoding-side dynamic CFG: 1.0 guides every step, 0.0 none."""
    from icd_bench.backbones import load_backbone
    from icd_bench.config import resolve_method
    from icd_bench.diffusion.schedule import latent_nll
    from icd_bench.registry import METHODS
    from icd_bench.runner import open_dataset

    ds = open_dataset("demo")
    samples = [ds.load(i) for i in ds.ids()[:2]]
    gens = [torch.Generator().manual_seed(0) for _ in samples]

    def method(*sets):
        spec = resolve_method("ddim-toy", ["num_inference_steps=4", *sets])
        return METHODS.get("ddim")(load_backbone(spec.backbone), spec.params)

    m = method()
    _, outs = m.run("invert", samples, gens)
    inv = m.invert(m.backbone.preprocess([s.image for s in samples]),
                   [s.source_prompt for s in samples], gens)
    assert [o.extras["latent_nll"] for o in outs] == pytest.approx(latent_nll(inv.latents).tolist(), abs=1e-6)
    assert (latent_nll(torch.randn(1, 4096, generator=torch.Generator().manual_seed(0))).item()
            == pytest.approx(0.5 + 0.5 * math.log(2 * math.pi), abs=0.02))

    def encoded(*sets):
        mm = method("inversion_guidance_scale=5", *sets)
        return mm.invert(mm.backbone.preprocess([s.image for s in samples]),
                         [s.source_prompt for s in samples], gens).latents

    unguided = method().invert(m.backbone.preprocess([s.image for s in samples]),
                               [s.source_prompt for s in samples], gens).latents
    assert torch.equal(encoded("inversion_tau=0.0"), unguided)
    guided, half = encoded(), encoded("inversion_tau=0.5")
    assert (not torch.allclose(guided, unguided) and not torch.allclose(half, guided)
            and not torch.allclose(half, unguided))
