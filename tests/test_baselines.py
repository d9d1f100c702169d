"""The baseline editing methods on tiny random SD-shaped backbones: shapes, determinism, honest NFE
counts, and one algorithmic property each (see each test's docstring)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from icd_bench.backbones.tiny import tiny_backbone
from icd_bench.config import build_params, resolve_method
from icd_bench.diffusion import ddpm_sample, edit_friendly_inversion
from icd_bench.methods.ddim import DDIM, DDIMParams
from icd_bench.methods.ddim_p2p import DDIMP2P, DDIMP2PParams
from icd_bench.methods.ef_ddpm import EFDDPM, EFDDPMParams
from icd_bench.methods.npi import NPI
from icd_bench.methods.nti import NTI, NTIParams
from icd_bench.registry import METHODS
from icd_bench.types import EditSample

pytestmark = pytest.mark.usefixtures("one_thread")

SOURCES = ["a red circle on a white background", "a blue square on a gray background"]
TARGETS = ["a red square on a white background", "a blue circle on a gray background"]


def images(bb, n=2, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, bb.resolution, bb.resolution, generator=g)


def samples(bb, targets=TARGETS) -> list[EditSample]:
    ims = images(bb)
    return [EditSample(id=f"s{k}",
                       image=Image.fromarray((ims[k].permute(1, 2, 0).numpy() * 255).astype("uint8")),
                       source_prompt=SOURCES[k], target_prompt=targets[k]) for k in range(len(targets))]


def gens(n=2):
    return [torch.Generator().manual_seed(100 + k) for k in range(n)]


def run(method, task="edit", targets=TARGETS):
    bb = method.backbone
    return method.run(task, samples(bb, targets), gens(len(targets)))


@pytest.fixture
def bb():
    return tiny_backbone("sd15")


def test_every_baseline_is_registered_with_presets():
    from icd_bench.config import list_presets

    presets = list_presets().values()
    for name in ("ddim-p2p", "nti", "npi", "ef-ddpm"):
        assert name in METHODS
        assert METHODS.get(name).__doc__.strip()
        own = [p for p in presets if p.method == name]
        assert {p.backbone for p in own} >= {"sd15", "toy"}, name
        for p in own:  # every preset's values are valid parameters of its method
            build_params(METHODS.get(name).Params, dict(p.params), where=p.name)


@pytest.mark.parametrize("cls, params", [
    (DDIMP2P, DDIMP2PParams(num_inference_steps=4)),
    (NPI, DDIMP2PParams(num_inference_steps=4)),
    (NTI, NTIParams(num_inference_steps=4, inner_steps=2)),
    (EFDDPM, EFDDPMParams(num_inference_steps=6, skip=2)),
])
def test_shapes_and_determinism(bb, cls, params):
    m = cls(bb, params)
    sources, outs = run(m)
    assert sources.shape == (2, 3, bb.resolution, bb.resolution)
    assert [o.image.shape for o in outs] == [(3, bb.resolution, bb.resolution)] * 2
    assert all(torch.isfinite(o.image).all() and o.image.min() >= 0 and o.image.max() <= 1 for o in outs)
    _, again = run(m)
    assert all(torch.equal(a.image, b.image) for a, b in zip(outs, again, strict=True))


def test_nfe_of_ddim_p2p_and_npi(bb):
    """N unguided inversion steps + N guided decoding steps (2 each; P2P's two branches count once)."""
    for cls in (DDIMP2P, NPI):
        _, outs = run(cls(bb, DDIMP2PParams(num_inference_steps=5, guidance_scale=7.5)))
        assert {o.nfe for o in outs} == {5 + 2 * 5}
    # dynamic CFG: unguided steps cost one
    _, outs = run(DDIMP2P(bb, DDIMP2PParams(num_inference_steps=5, guidance_scale=7.5, tau=0.5)))
    assert outs[0].nfe < 15


def test_nti_counts_its_optimisation(bb):
    """Without early stopping: per step 1 conditional + `inner_steps` unconditional evaluations + the
    guided step (2) on top of DDIM + P2P's 3N."""
    n_steps, inner = 3, 4
    p = NTIParams(num_inference_steps=n_steps, inner_steps=inner, early_stop=0.0, early_stop_growth=0.0)
    _, outs = run(NTI(bb, p))
    assert {o.nfe for o in outs} == {3 * n_steps + n_steps * (1 + inner + 2)}


def test_ddim_inversion_error_falls_with_more_steps():
    """Unguided DDIM inversion → reconstruction on the trained toy teacher (a random UNet's ε is too
    rough for the ODE argument): the latent error shrinks as the grid gets finer."""
    from icd_bench.backbones import load_backbone

    bb = load_backbone("toy")
    x = images(bb)
    errors = []
    for steps in (4, 16, 50):
        m = DDIM(bb, DDIMParams(num_inference_steps=steps, guidance_scale=1.0))
        inv = m.invert(x, SOURCES, gens())
        x0 = m._sample(inv.latents, inv.state["source_cond"], m.unconditional(inv, 2), 1.0)
        errors.append((x0 - inv.image_latents).pow(2).mean().item())
    assert errors[2] < errors[1] < errors[0]
    assert errors[2] < 0.2 * errors[0]


def test_nti_lowers_the_loss_it_optimises(bb):
    """Guided (w = 7.5) decoding of the DDIM-inverted noise misses the source; NTI's optimised null
    embeddings bring the decoded latents closer, and more Adam steps closer still."""
    x = images(bb)
    errors = {}
    for inner in (0, 2, 10):
        m = NTI(bb, NTIParams(num_inference_steps=5, guidance_scale=7.5, inner_steps=inner, early_stop=0.0,
                              early_stop_growth=0.0))
        inv = m.invert(x, SOURCES, gens())
        x0 = m._sample(inv.latents, inv.state["source_cond"], m.unconditional(inv, 2), 7.5)
        errors[inner] = (x0 - inv.image_latents).pow(2).mean().item()
    assert errors[10] < errors[2] < errors[0]
    assert errors[10] < 0.9 * errors[0]


def test_nti_samples_are_independent_of_their_batch(bb):
    p = NTIParams(num_inference_steps=3, inner_steps=3, early_stop=1e-3)
    both = NTI(bb, p).invert(images(bb), SOURCES, gens())
    alone = NTI(bb, p).invert(images(bb)[1:], SOURCES[1:], gens()[1:])
    # equal up to float noise: a batch of 2 and of 1 differ in the last bits inside the UNet, and Adam's
    # normalised update turns that into at most ~lr on the few elements whose gradient is ~0
    for a, b in zip(both.state["null_embeds"], alone.state["null_embeds"], strict=True):
        diff = (a.embeds[1:] - b.embeds).abs()
        assert diff.max() < p.lr and diff.mean() < 1e-4


def test_nti_runs_half_precision_runs_in_fp32(caplog):
    bb = tiny_backbone("sd15", dtype=torch.bfloat16)
    with caplog.at_level("WARNING"):
        m = NTI(bb, NTIParams(num_inference_steps=2, inner_steps=1))
    assert m.backbone.dtype == torch.float32 and next(m.backbone.unet.parameters()).dtype == torch.float32
    assert "fp32" in caplog.text


def test_npi_with_identical_prompts_reconstructs_as_ddim(bb):
    """With the source prompt as negative prompt, CFG cancels: an 'edit' to the same prompt decodes
    exactly as unguided DDIM reconstruction, whatever the scale."""
    same = NPI(bb, DDIMP2PParams(num_inference_steps=6, guidance_scale=7.5)).run("edit", samples(bb, SOURCES),
                                                                               gens())[1]
    ddim = DDIM(bb, DDIMParams(num_inference_steps=6, guidance_scale=1.0)).run("invert", samples(bb, SOURCES),
                                                                             gens())[1]
    for a, b in zip(same, ddim, strict=True):
        torch.testing.assert_close(a.image, b.image, atol=1e-4, rtol=0)
    # while plain DDIM + P2P at the same scale does not reconstruct as well
    p2p = DDIMP2P(bb, DDIMP2PParams(num_inference_steps=6, guidance_scale=7.5)).run(
        "edit", samples(bb, SOURCES), gens())[1]
    assert not torch.allclose(p2p[0].image, ddim[0].image, atol=1e-3)


def test_ef_ddpm_reconstructs_exactly_with_an_unchanged_prompt(bb):
    """The stored noise maps retrace the inversion: decoding with the source prompt and scale lands
    on the input latents up to float error — with and without P2P, for any skip."""
    x = images(bb)
    for skip, p2p in ((0, False), (3, False), (3, True)):
        m = EFDDPM(bb, EFDDPMParams(num_inference_steps=8, skip=skip, p2p=p2p, target_guidance_scale=3.5))
        inv = m.invert(x, SOURCES, gens())
        assert len(inv.state["zs"]) == 8 - skip
        same = m.edit(x, samples(bb, SOURCES), gens())
        torch.testing.assert_close(same, bb.decode(inv.image_latents), atol=1e-3, rtol=0)
    # a different prompt changes the output
    m = EFDDPM(bb, EFDDPMParams(num_inference_steps=8, skip=2))
    assert not torch.allclose(m.edit(x, samples(bb), gens()), bb.decode(inv.image_latents), atol=1e-3)


def test_ef_ddpm_reference_options(bb, monkeypatch):
    """PIE-Bench's EF + P2P: windows are fractions of the whole grid, self-attention injection only on
    maps of <= 16² positions; zero_last_noise (its zeroed final noise map) makes the
    reconstruction inexact."""
    from icd_bench.attention import p2p as p2p_module

    x = images(bb)
    exact = EFDDPM(bb, EFDDPMParams(num_inference_steps=8, skip=2)).reconstruct(
        EFDDPM(bb, EFDDPMParams(num_inference_steps=8, skip=2)).invert(x, SOURCES, gens()))
    m = EFDDPM(bb, EFDDPMParams(num_inference_steps=8, skip=2, zero_last_noise=True))
    inv = m.invert(x, SOURCES, gens())
    assert torch.count_nonzero(inv.state["zs"][-1]) == 0
    assert not torch.allclose(m.reconstruct(inv), exact, atol=1e-4)
    seen = []
    real = p2p_module.P2PControl

    def spy(*args, **kwargs):
        control = real(*args, **kwargs)
        seen.append(control)
        return control

    monkeypatch.setattr(p2p_module, "P2PControl", spy)
    m = EFDDPM(bb, EFDDPMParams(num_inference_steps=10, skip=4, p2p=True, cross_replace=0.4,
                                self_replace=0.6))
    m.edit(x, samples(bb), gens())
    (control,) = seen
    assert control.num_steps == 10 and control.step == 6  # built for the grid, 6 decoding steps taken
    assert control.cfg.self_max_tokens == 16 * 16
    active = []
    for step in range(6):
        control.step = step
        active.append(control.cross_active())
    assert sum(active) == 4  # int(0.4 · 11) of the whole grid, not int(0.4 · 7) of the decoded steps


def test_ef_ddpm_nfe(bb):
    """Only the steps from `skip` on are inverted: 2 (guided) per step there and back."""
    _, outs = run(EFDDPM(bb, EFDDPMParams(num_inference_steps=10, skip=4)))
    assert {o.nfe for o in outs} == {2 * 6 + 2 * 6}


def test_edit_friendly_inversion_retraces_in_float64():
    """The solver alone, on an exact ε (Gaussian data): sampling with the stored maps returns the
    very latents the inversion started from (the maps are not N(0, I): the noised images are drawn
    independently, which the EF paper notes gives them a larger variance)."""
    from diffusers import DDIMScheduler

    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                          clip_sample=False, set_alpha_to_one=False)
    ac = sched.alphas_cumprod.double()
    steps = list(range(999, 0, -50))

    def eps_fn(x, t, i):  # exact ε for data ~ N(0, I): x_t ~ N(0, I) and E[ε | x_t] = √(1−ᾱ_t) x_t
        return (1 - float(ac[t])) ** 0.5 * x

    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(1, 4, 8, 8, generator=g, dtype=torch.float64)
    noise = torch.randn(len(steps), 1, 4, 8, 8, generator=g, dtype=torch.float64)
    for start in (0, 7):
        xt, zs = edit_friendly_inversion(eps_fn, x0, steps, ac, float(ac[0]), noise, start=start)
        assert len(zs) == len(steps) - start
        torch.testing.assert_close(
            xt, ac[steps[start]] ** 0.5 * x0 + (1 - ac[steps[start]]) ** 0.5 * noise[start])
        torch.testing.assert_close(ddpm_sample(eps_fn, xt, steps, ac, float(ac[0]), zs, start=start), x0)


def test_presets_resolve_to_their_methods():
    for preset, method in (("ddim-p2p-toy", "ddim-p2p"), ("nti-sd15", "nti"), ("npi-toy", "npi"),
                           ("ef-ddpm-sd15-50", "ef-ddpm")):
        spec = resolve_method(preset)
        assert spec.method == method
    ef50 = resolve_method("ef-ddpm-sd15-50").params  # PIE-Bench's EF + P2P setting
    assert ((ef50.skip, ef50.source_guidance_scale, ef50.target_guidance_scale, ef50.p2p)
            == (12, 1.0, 7.5, True))
    assert resolve_method("nti-sd15").params.guidance_scale == 7.5
