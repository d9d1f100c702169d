"""The few-step baselines (ReNoise, InfEdit) and their shared LCM math: exact inverses, the ReNoise
fixed point, DDCM's exact source branch, honest NFE counts, presets."""

from __future__ import annotations

import pytest
import torch
from test_baselines import SOURCES, gens, run, samples

from icd_bench.backbones.tiny import tiny_backbone
from icd_bench.config import build_params, list_presets, resolve_method
from icd_bench.diffusion.lcm import ddcm_step, lcm_invert_step, lcm_step, lcm_timesteps, noise_matching
from icd_bench.diffusion.renoise import (
    ReNoiseConfig,
    auto_correlation_grad,
    auto_correlation_loss,
    patch_kl,
    patch_kl_grad,
    regularise_noise,
    renoise_invert,
)
from icd_bench.methods.infedit import InfEdit, InfEditParams
from icd_bench.methods.renoise import ReNoise, ReNoiseParams
from icd_bench.registry import METHODS

pytestmark = pytest.mark.usefixtures("one_thread")

AC = torch.linspace(0.9991, 0.0047, 1000, dtype=torch.float64)  # a monotone ᾱ schedule


def test_lcm_grid_is_diffusers_lcm_schedulers():
    assert lcm_timesteps(4) == [999, 759, 499, 259]
    assert len(lcm_timesteps(12)) == 12 and lcm_timesteps(1) == [999]
    with pytest.raises(ValueError, match="1 to 50"):
        lcm_timesteps(0)


def test_lcm_step_inverse_and_noise_matching_are_exact():
    g = torch.Generator().manual_seed(0)
    x, eps, z = (torch.randn(2, 4, 8, 8, generator=g, dtype=torch.float64) for _ in range(3))
    a_t, a_next = float(AC[759]), float(AC[499])
    x_next = lcm_step(x, eps, a_t, a_next, z)
    torch.testing.assert_close(lcm_invert_step(x_next, eps, a_t, a_next, z), x)
    torch.testing.assert_close(noise_matching(x_next, x, eps, a_t, a_next), z)
    x_clean = lcm_step(x, eps, a_t, 1.0, None)  # the last step returns x̂_0
    torch.testing.assert_close(lcm_invert_step(x_clean, eps, a_t, 1.0, None), x)


def _linear_eps(x, t, i):
    """A smooth stand-in model whose ε depends on x (so plain inversion is inexact)."""
    return 0.4 * x + 0.01 * t / 1000


def _reconstruction_error(cfg: ReNoiseConfig) -> float:
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(1, 4, 16, 16, generator=g, dtype=torch.float64)
    steps = lcm_timesteps(4)
    noises = [torch.randn(1, 4, 16, 16, generator=g, dtype=torch.float64) for _ in steps]
    xT, zs = renoise_invert(_linear_eps, x0, steps, AC, noises, torch.randn_like(x0), cfg, [g])
    x = xT
    for i, t in enumerate(steps):
        a_next = float(AC[steps[i + 1]]) if i + 1 < len(steps) else 1.0
        x = lcm_step(x, _linear_eps(x, t, i), float(AC[t]), a_next, zs[i] if a_next < 1 else None)
    return float((x - x0).abs().max())


def test_renoising_iterations_converge_where_plain_inversion_does_not():
    """ReNoise's fixed point: with iterations (and noise correction) the sampler retraces the image;
    with none (plain inversion, ε(x_next) for ε(x_t)) it does not."""
    plain = ReNoiseConfig(renoise_steps=0, first_step_renoise_steps=0, average=False, reg_steps=0,
                          noise_correction=False)
    iterated = ReNoiseConfig(renoise_steps=30, first_step_renoise_steps=30,
                             average_range=(20, 31), reg_steps=0)
    assert _reconstruction_error(plain) > 0.05
    assert _reconstruction_error(iterated) < 1e-6


def test_noise_regularisation_whitens_correlated_noise():
    """Gentle at the released strength (λ_ac 20, 4 steps), steadily lower auto-correlation with more."""
    g = torch.Generator().manual_seed(2)
    smooth = torch.nn.functional.avg_pool2d(torch.randn(1, 4, 34, 34, generator=g), 3, stride=1)  # correlated
    before = auto_correlation_loss(smooth[0], torch.Generator().manual_seed(3))
    losses = []
    for steps in (4, 50):
        out = regularise_noise(smooth, None, ReNoiseConfig(lambda_kl=0.0, reg_steps=steps),
                               [torch.Generator().manual_seed(5)])
        losses.append(auto_correlation_loss(out[0], torch.Generator().manual_seed(3)))
    assert before > losses[0] > losses[1]
    assert losses[0] < 0.95 * before and losses[1] < 0.6 * before


@pytest.mark.parametrize("shape", [(4, 32, 32), (4, 37, 45), (4, 8, 8)], ids=["32", "odd-37x45", "8"])
def test_regularisation_gradients_in_closed_form_equal_autograds(shape):
    """The closed-form gradients of the regularisation (what `regularise_noise` steps with) equal autograd's
    on the losses, the random rolls included (the same generator state gives the same rolls); odd sizes
    leave pooling's and the patches' edges out as the losses do."""
    g = torch.Generator().manual_seed(11)
    x, ref = torch.randn(*shape, generator=g), 1.3 * torch.randn(*shape, generator=g) + 0.2
    v = x.clone().requires_grad_(True)
    (auto_ac,) = torch.autograd.grad(auto_correlation_loss(v, torch.Generator().manual_seed(1)), v)
    torch.testing.assert_close(auto_correlation_grad(x, torch.Generator().manual_seed(1)), auto_ac,
                               rtol=1e-5, atol=1e-9)
    (auto_kl,) = torch.autograd.grad(patch_kl(v, ref), v)
    torch.testing.assert_close(patch_kl_grad(x, ref), auto_kl, rtol=1e-4, atol=1e-6)
    # another generator state rolls elsewhere: another gradient
    assert not torch.allclose(auto_correlation_grad(x, torch.Generator().manual_seed(2)), auto_ac)


def test_ddcm_with_equal_branches_keeps_the_source_exactly():
    g = torch.Generator().manual_seed(4)
    x0, z, eps, z2 = (torch.randn(1, 4, 8, 8, generator=g, dtype=torch.float64) for _ in range(4))
    a = float(AC[759])
    x = a**0.5 * x0 + (1 - a) ** 0.5 * z
    xs, xt, pred = ddcm_step(x, x, eps, eps, x0, a, float(AC[499]), z2)
    torch.testing.assert_close(pred, x0)
    torch.testing.assert_close(xs, xt)
    # the target's correction: a different ε moves x̂_0 by exactly −sqrt(1−ᾱ)/sqrt(ᾱ)·Δε
    _, _, pred = ddcm_step(x, x, eps, eps + 1.0, x0, a, float(AC[499]), z2)
    torch.testing.assert_close(pred, x0 - (1 - a) ** 0.5 / a**0.5)


@pytest.fixture
def bb():
    return tiny_backbone("sd15")


def test_infedit_with_the_source_prompt_returns_the_source(bb):
    """DDCM's virtual inversion: same prompt, same scale in both branches → the source image (as the
    autoencoder returns it), with P2P control installed."""
    m = InfEdit(bb, InfEditParams(num_steps=4, target_guidance=1.0))
    sources, outs = run(m, targets=SOURCES)
    expected = bb.decode(bb.encode_image(sources))
    torch.testing.assert_close(torch.stack([o.image for o in outs]), expected, atol=1e-5, rtol=0)


def test_nfe_counts(bb):
    """ReNoise: per inverted step 1 + renoise_steps iterations, one extra row for the KL reference
    and one noise-correction evaluation (none after the last sampling step, which adds no noise), then
    num_steps to decode. InfEdit: one guided step (2 rows per branch pair) per step."""
    p = ReNoiseParams(num_steps=4, renoise_steps=3, average_range=(2, 4))
    _, outs = run(ReNoise(bb, p))
    assert {o.nfe for o in outs} == {4 * (1 + 3 + 1) + 3 + 4}
    _, outs = run(InfEdit(tiny_backbone("sd15"), InfEditParams(num_steps=5)))
    assert {o.nfe for o in outs} == {2 * 5}
    _, outs = run(InfEdit(tiny_backbone("sd15"), InfEditParams(num_steps=5, target_guidance=1.0)))
    assert {o.nfe for o in outs} == {5}


def test_infedit_embedded_guidance_costs_one_row_per_step_and_needs_a_guidance_input(bb):
    """``guidance = embedded``: each branch's scale goes into the guidance embedding (one row per branch
    pair and step); a UNet without a guidance input is refused with a clear error."""
    from icd_bench.errors import ConfigError
    from icd_bench.icd.model import add_guidance_embedding

    with pytest.raises(ConfigError, match="guidance-embedded UNet"):
        run(InfEdit(bb, InfEditParams(num_steps=3, guidance="embedded")))
    bb2 = tiny_backbone("sd15")
    bb2.unet = add_guidance_embedding(bb2.unet, 32)
    m = InfEdit(bb2, InfEditParams(num_steps=3, guidance="embedded", target_guidance=5.0))
    seen = []
    m.backbone.unet.register_forward_pre_hook(lambda mod, args, kw: seen.append(kw["timestep_cond"]),
                                              with_kwargs=True)
    _, outs = run(m)
    assert {o.nfe for o in outs} == {3}
    cond = seen[0]  # rows [src_1, src_2, tgt_1, tgt_2]: w = 1 and w = 5 embeddings
    assert (torch.equal(cond[0], cond[1]) and torch.equal(cond[2], cond[3])
            and not torch.equal(cond[0], cond[2]))


@pytest.mark.parametrize("task", ["edit", "invert", "generate"])
def test_renoise_shapes_and_determinism(bb, task):
    m = ReNoise(bb, ReNoiseParams(num_steps=2, renoise_steps=2, average_range=(1, 3)))
    _, outs = run(m, task=task)
    assert [o.image.shape for o in outs] == [(3, bb.resolution, bb.resolution)] * 2
    assert all(torch.isfinite(o.image).all() for o in outs)
    _, again = run(m, task=task)
    assert all(torch.equal(a.image, b.image) for a, b in zip(outs, again, strict=True))


def test_infedit_does_not_invert(bb):
    with pytest.raises(ValueError, match="does not support task 'invert'"):
        InfEdit(bb, InfEditParams(num_steps=2)).run("invert", samples(bb), gens())


def test_registered_with_presets_on_the_toy_world_and_an_sd_size_lcm():
    presets = list_presets().values()
    for name in ("renoise", "infedit"):
        assert METHODS.get(name).__doc__.strip()
        own = [p for p in presets if p.method == name]
        assert {p.backbone for p in own} == {"toy", "SimianLuo/LCM_Dreamshaper_v7"}, name
        for p in own:
            build_params(METHODS.get(name).Params, dict(p.params), where=p.name)
    assert resolve_method("infedit-lcm-sd15").params.target_guidance == 2.3
    assert resolve_method("renoise-toy").params.average_range == (8, 10)


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="num_steps"):
        ReNoiseParams(num_steps=0)
    with pytest.raises(ValueError, match="average_range"):
        ReNoiseParams(average_range=(5, 2))
    with pytest.raises(ValueError, match="kl_reference"):
        ReNoiseParams(kl_reference="forward")
    with pytest.raises(ValueError, match="blend_threshold"):
        InfEditParams(blend_threshold=1.5)


def test_bundled_toy_lcm_runs_both_presets_offline():
    """The bundled toy LCM loads with the presets; ReNoise reconstructs demo images well (measured
    ~30–34 dB on the first demo images; plain inversion without renoising: 13–26 dB) and InfEdit edits."""
    from icd_bench.backbones import load_backbone
    from icd_bench.registry import DATASETS

    ds = DATASETS.get("demo")()
    items = [ds.load(i) for i in list(ds.ids())[:2]]
    spec = resolve_method("renoise-toy")
    m = METHODS.get("renoise")(load_backbone("toy"), spec.params)
    sources, outs = m.run("invert", items, gens())
    psnr = [float(-10 * torch.log10(((o.image - sources[k]) ** 2).mean())) for k, o in enumerate(outs)]
    assert min(psnr) > 25, psnr
    spec = resolve_method("infedit-toy")
    m = METHODS.get("infedit")(load_backbone("toy"), spec.params)
    sources, outs = m.run("edit", items, gens())
    assert {o.nfe for o in outs} == {12}
    assert all(not torch.equal(o.image, sources[k]) for k, o in enumerate(outs))
