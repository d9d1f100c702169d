"""Plug-and-Play's injection (`attention.pnp`) and the `pnp` method on a tiny random SD-shaped backbone:
which rows and layers it touches and when, the source row's latents, the evaluation count, and clear errors.
Equality with the official editors: tests/conformance/test_pie_pnp_golden.py."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from icd_bench.attention.pnp import PnPControl, PnPParams
from icd_bench.backbones.tiny import tiny_backbone
from icd_bench.config import resolve_method
from icd_bench.diffusion.loop import StepInfo
from icd_bench.registry import METHODS
from icd_bench.types import EditSample

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = ["num_inference_steps=5", "feature_layer=up_blocks.0.resnets.1", "attention_start_layer=2"]


@pytest.fixture
def bb():
    return tiny_backbone("sd15")


def _unet_out(bb, control, x, cond, step):
    control.step = step
    with control.install(bb.unet):
        return bb.unet(x, torch.tensor(500), encoder_hidden_states=cond).sample


def _rows(bb, n=2, seed=0):
    """[sources; ∅ targets; c targets] of n samples: the targets' two rows share their latents."""
    g = torch.Generator().manual_seed(seed)
    src, tgt = torch.randn(n, 4, 16, 16, generator=g), torch.randn(n, 4, 16, 16, generator=g)
    cond = bb.encode_prompt(["", ""] + ["a cat", "a house"] + ["a dog", "a car"]).embeds
    return torch.cat([src, tgt, tgt]), cond


@pytest.mark.parametrize(("step", "features", "attention"), [(0, True, True), (2, True, False),
                                                             (4, False, False)])
def test_the_injection_leaves_the_sources_and_steers_the_targets_in_its_windows(bb, step, features,
                                                                                attention):
    """5 steps, features for int(5·0.8) = 4, attention for int(5·0.5) = 2: the source rows are untouched;
    the targets differ from the plain UNet's while either injection is on, and from the features-only
    output exactly while the attention injection is on."""
    x, cond = _rows(bb)
    plain = bb.unet(x, torch.tensor(500), encoder_hidden_states=cond).sample
    cfg = PnPParams(feature_layer="up_blocks.0.resnets.1", attention_start_layer=2)
    out = _unet_out(bb, PnPControl(2, 5, 77, cfg), x, cond, step)
    no_attn = _unet_out(bb, PnPControl(2, 5, 77, PnPParams(feature_layer="up_blocks.0.resnets.1",
                                                           attention_start_layer=2, attention_injection=0)),
                        x, cond, step)
    assert torch.allclose(out[:2], plain[:2], atol=1e-5)
    assert ((out[2:] - plain[2:]).abs().max() > 1e-3) == (features or attention)
    assert ((out[2:] - no_attn[2:]).abs().max() > 1e-4) == attention


def test_a_target_equal_to_its_source_comes_out_as_the_source_under_injection(bb):
    x, _ = _rows(bb)
    cond = bb.encode_prompt(["a cat", "a house"] * 3).embeds
    same = torch.cat([x[:2]] * 3)
    out = _unet_out(bb, PnPControl(2, 5, 77, PnPParams(feature_layer="up_blocks.0.resnets.1",
                                                       attention_start_layer=2)), same, cond, 0)
    assert torch.allclose(out[2:4], out[:2], atol=1e-5) and torch.allclose(out[4:], out[:2], atol=1e-5)


def test_other_batches_pass_through_and_the_unet_is_restored(bb):
    """A batch not of 3n rows (the inversion's, the reconstruction's) is not injected; after the block the
    UNet has its own processors and no hook."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 16, 16, generator=g)
    cond = bb.encode_prompt(["a cat", "a dog"]).embeds
    plain = bb.unet(x, torch.tensor(500), encoder_hidden_states=cond).sample
    before = dict(bb.unet.attn_processors)
    out = _unet_out(bb, PnPControl(2, 5, 77, PnPParams(feature_layer="up_blocks.0.resnets.1",
                                                       attention_start_layer=2)), x, cond, 0)
    assert torch.allclose(out, plain, atol=1e-6)
    assert {k: type(v) for k, v in bb.unet.attn_processors.items()} == {k: type(v) for k, v in before.items()}
    assert not bb.unet.get_submodule("up_blocks.0.resnets.1").conv2._forward_hooks


def test_the_callback_advances_the_schedule_and_checks_the_layout():
    control = PnPControl(2, 5, 77)
    x = torch.zeros(2, 4, 8, 8)
    control.step_callback(StepInfo(0, 981, 961, 0.1, 0.2, x))
    assert control.step == 1
    with pytest.raises(RuntimeError, match="layout"):
        control.step_callback(StepInfo(1, 961, 941, 0.2, 0.3, torch.zeros(6, 4, 8, 8)))


def test_bad_layers_and_fractions_are_refused_plainly(bb):
    with pytest.raises(ValueError, match="attention_start_layer 8 leaves none of this UNet's 4"):
        with PnPControl(1, 5, 77, PnPParams(feature_layer="up_blocks.0.resnets.1")).install(bb.unet):
            pass
    with pytest.raises(ValueError, match=r"'up_blocks.1.resnets.7' is not a residual block .*up_blocks.0"):
        with PnPControl(1, 5, 77, PnPParams(feature_layer="up_blocks.1.resnets.7",
                                            attention_start_layer=2)).install(bb.unet):
            pass
    with pytest.raises(ValueError, match=r"feature_injection must be in \[0, 1\]"):
        PnPParams(feature_injection=1.5)


def _sample(bb, seed=0):
    g = torch.Generator().manual_seed(seed)
    im = (torch.rand(bb.resolution, bb.resolution, 3, generator=g) * 255).to(torch.uint8).numpy()
    return EditSample(id="s", image=Image.fromarray(im), source_prompt="a red circle",
                      target_prompt="a blue circle")


def _method(bb, preset, *overrides):
    spec = resolve_method(preset, [*TINY, *overrides])
    return METHODS.get(spec.method)(bb, spec.params)


def test_the_method_counts_its_evaluations_and_the_injection_changes_the_edit(bb):
    """DDIM + PnP at 5 steps: 5 to invert, 5 for the source's reconstruction, 2 per decoding step (the
    unguided source row beside the guided target's two, counted as a parallel branch); Direct Inversion
    needs no reconstruction."""
    _, out = _method(bb, "pnp-sd15").run("edit", [_sample(bb)], [torch.Generator().manual_seed(0)])
    assert out[0].nfe == 20 and out[0].image.shape == (3, bb.resolution, bb.resolution)
    _, di = _method(bb, "direct-inversion-pnp-sd15").run("edit", [_sample(bb)], [torch.Generator()])
    assert di[0].nfe == 15
    _, off = _method(bb, "pnp-sd15", "feature_injection=0", "attention_injection=0").run(
        "edit", [_sample(bb)], [torch.Generator().manual_seed(0)])
    assert (out[0].image - off[0].image).abs().max() > 1e-4


def test_the_source_rows_latents(bb):
    """Direct Inversion: the inversion trajectory at each step's timestep, from x_T; DDIM: the unguided
    reconstruction, from x_T, step i fed its latents at t_i (the official's, with reference_compat: one
    step further down, starting there)."""
    images = bb.preprocess([_sample(bb).image])
    di = _method(bb, "direct-inversion-pnp-sd15")
    inv = di.invert(images, ["a red circle"], [torch.Generator()])
    rows, start = di.source_latents(inv)
    assert torch.equal(start, inv.latents) and torch.equal(rows[0], inv.latents) and len(rows) == 5
    assert torch.equal(rows[3], inv.state["trajectory"][3])
    ddim = _method(bb, "pnp-sd15")
    landed = ddim._reconstruction_path(inv)
    rows, start = ddim.source_latents(inv)
    assert torch.equal(start, inv.latents) and torch.equal(rows[1], landed[0]) and len(rows) == 5
    official = _method(bb, "pnp-sd15", "reference_compat=true")
    rows, start = official.source_latents(inv)
    assert torch.equal(start, landed[0]) and torch.equal(rows[4], landed[4])
    recon = ddim.reconstruct(inv)
    assert torch.allclose(recon, bb.decode(landed[-1]))
