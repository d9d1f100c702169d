"""MasaCtrl's mutual self-attention (`attention.masactrl`) and the `masactrl` method on a tiny random
SD-shaped backbone: the layer order the official control counts in, where the control acts, what it
leaves alone, and clear errors. Equality with the official editors: tests/conformance."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from icd_bench.attention.masactrl import MasaCtrlParams, MutualSelfAttentionControl, self_attention_layers
from icd_bench.backbones.tiny import tiny_backbone
from icd_bench.config import resolve_method
from icd_bench.diffusion.loop import StepInfo
from icd_bench.registry import METHODS
from icd_bench.types import EditSample

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def bb():
    return tiny_backbone("sd15")


def test_layers_are_counted_in_call_order_down_mid_up(bb):
    """diffusers lists a UNet's processors down, up, mid; the official control counts calls: down, mid, up."""
    layers = self_attention_layers(bb.unet)
    listed = [name for name in bb.unet.attn_processors if name.endswith("attn1.processor")]
    assert [name.split(".")[0] for name in listed] == ["down_blocks", "up_blocks", "up_blocks", "mid_block"]
    order = sorted(layers, key=layers.get)
    assert [name.split(".")[0] for name in order] == ["down_blocks", "mid_block", "up_blocks", "up_blocks"]
    assert sorted(layers.values()) == list(range(4))


def _unet_out(bb, control, x, cond, step):
    control.step = step
    with control.install(bb.unet):
        return bb.unet(x, torch.tensor(500), encoder_hidden_states=cond).sample


def test_the_source_rows_are_untouched_and_the_targets_take_the_sources_keys_and_values(bb):
    """2 samples × [source; target] × 2 CFG groups: from start_step on, the source rows come out as without
    control, the target rows differ; before start_step nothing changes. A target row whose latents and
    prompt equal its source's comes out as the source (it then attends to the same keys and values)."""
    g = torch.Generator().manual_seed(0)
    n = 2
    x = torch.randn(n, 4, 16, 16, generator=g)
    x = torch.cat([x, torch.randn(n, 4, 16, 16, generator=g)]).repeat(2, 1, 1, 1)  # [src; tgt] per group
    cond = bb.encode_prompt(["a cat", "a house", "a dog", "a car"] * 2).embeds
    plain = bb.unet(x, torch.tensor(500), encoder_hidden_states=cond).sample
    control = MutualSelfAttentionControl(n, 10, 77, MasaCtrlParams(start_step=4, start_layer=2))
    before = _unet_out(bb, control, x, cond, step=3)
    after = _unet_out(bb, control, x, cond, step=4)
    assert torch.allclose(before, plain, atol=1e-5)
    src = torch.tensor([0, 1, 4, 5])
    tgt = torch.tensor([2, 3, 6, 7])
    assert torch.allclose(after[src], plain[src], atol=1e-5)
    assert (after[tgt] - plain[tgt]).abs().max() > 1e-3
    same = torch.cat([x[:n], x[:n]]).repeat(2, 1, 1, 1)
    same_cond = bb.encode_prompt(["a cat", "a house"] * 4).embeds
    out = _unet_out(bb, control, same, same_cond, step=4)
    assert torch.allclose(out[tgt], out[src], atol=1e-5)


def test_the_callback_advances_the_schedule_and_checks_the_layout():
    control = MutualSelfAttentionControl(2, 5, 77)
    x = torch.zeros(4, 4, 8, 8)
    control.step_callback(StepInfo(0, 981, 961, 0.1, 0.2, x))
    assert control.step == 1
    with pytest.raises(RuntimeError, match="layout"):
        control.step_callback(StepInfo(1, 961, 941, 0.2, 0.3, x[:3]))
    with pytest.raises(RuntimeError, match="saw 1 steps"):
        control.check_finished()


def test_a_start_layer_past_the_unets_layers_is_refused_plainly(bb):
    control = MutualSelfAttentionControl(1, 5, 77, MasaCtrlParams(start_layer=10))
    with pytest.raises(ValueError, match="start_layer 10 leaves none of this UNet's 4 self-attention layers"):
        with control.install(bb.unet):
            pass
    with pytest.raises(ValueError, match="start_step and start_layer must be >= 0"):
        MasaCtrlParams(start_step=-1)


def _sample(bb, seed=0):
    g = torch.Generator().manual_seed(seed)
    im = (torch.rand(bb.resolution, bb.resolution, 3, generator=g) * 255).to(torch.uint8).numpy()
    return EditSample(id="s", image=Image.fromarray(im), source_prompt="a red circle",
                      target_prompt="a blue circle")


def test_the_method_edits_with_the_empty_prompt_as_source_and_counts_its_evaluations(bb):
    """The PIE-Bench setting at 5 steps: the inversion's and the decode's source branch use the empty
    prompt; 15 evaluations per edit, counted as for the P2P methods (5 to invert, 2 per guided step of the
    two-branch decode); with mutual self-attention off the edit differs."""
    spec = resolve_method("masactrl-sd15", ["num_inference_steps=5", "start_layer=2", "start_step=1"])
    method = METHODS.get(spec.method)(bb, spec.params)
    _, out = method.run("edit", [_sample(bb)], [torch.Generator().manual_seed(0)])
    assert out[0].nfe == 15 and out[0].image.shape == (3, bb.resolution, bb.resolution)
    inv = method.invert(bb.preprocess([_sample(bb).image]), ["a red circle"], [torch.Generator()])
    assert torch.equal(inv.state["source_cond"].embeds, bb.encode_prompt([""]).embeds)
    source = METHODS.get(spec.method)(bb, resolve_method("masactrl-sd15", [
        "num_inference_steps=5", "source_prompt=source"]).params)
    inv = source.invert(bb.preprocess([_sample(bb).image]), ["a red circle"], [torch.Generator()])
    assert torch.equal(inv.state["source_cond"].embeds, bb.encode_prompt(["a red circle"]).embeds)
    off = METHODS.get(spec.method)(bb, resolve_method("masactrl-sd15", [
        "num_inference_steps=5", "start_layer=2", "start_step=1000"]).params)
    _, plain = off.run("edit", [_sample(bb)], [torch.Generator().manual_seed(0)])
    assert (out[0].image - plain[0].image).abs().max() > 1e-4  # the control changes the edit


def test_direct_inversion_puts_the_source_branch_on_the_trajectory(bb):
    """With direct_inversion the reconstruction is the encoding; the edit differs from plain MasaCtrl's."""
    over = ["num_inference_steps=5", "start_layer=2", "source_prompt=source"]  # a guided source branch drifts
    di = METHODS.get("masactrl")(bb, resolve_method("direct-inversion-masactrl-sd15", over).params)
    plain = METHODS.get("masactrl")(bb, resolve_method("masactrl-sd15", over).params)
    src, recon = di.run("invert", [_sample(bb)], [torch.Generator().manual_seed(0)])
    decoded = bb.decode(bb.encode_image(src.to(bb.dtype))).float().cpu()
    assert torch.allclose(recon[0].image, decoded[0], atol=1e-5)
    a = di.run("edit", [_sample(bb)], [torch.Generator().manual_seed(0)])[1][0].image
    b = plain.run("edit", [_sample(bb)], [torch.Generator().manual_seed(0)])[1][0].image
    assert (a - b).abs().max() > 1e-4
