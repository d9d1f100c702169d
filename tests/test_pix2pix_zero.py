"""pix2pix-zero's pieces (`diffusion.pix2pix_zero`, `attention.xattn_guidance`) and the `pix2pix-zero` method
on a tiny random SD-shaped backbone: the official inverse grid, the regularisation's gradient, the guidance
loss's batch independence, the evaluation count and what each part changes. Equality with the official
editors: tests/conformance/test_pie_pix2pix_zero_golden.py."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from icd_bench.attention.xattn_guidance import CrossAttentionMaps, map_loss
from icd_bench.backbones.tiny import tiny_backbone
from icd_bench.config import resolve_method
from icd_bench.diffusion import ddim_timesteps
from icd_bench.diffusion import pix2pix_zero as p2pz
from icd_bench.registry import METHODS
from icd_bench.types import EditSample

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def bb():
    return tiny_backbone("sd15")


def test_the_inverse_grid_is_the_official_schedulers(bb):
    """SD's grid at 50 steps (981 … 1): ε at 1, 21, …, 981; ᾱ indices 0 → 20 → … → 980 → 999."""
    steps = p2pz.inverse_steps(ddim_timesteps(bb.scheduler, 50), 1000)
    assert steps[0] == (1, 0, 20) and steps[1] == (21, 20, 40) and steps[-1] == (981, 980, 999)
    assert len(steps) == 50


def test_the_kl_gradient_is_autograds():
    x = torch.randn(4, 16, 16, generator=torch.Generator().manual_seed(0)) * 1.3 + 0.2
    v = x.clone().requires_grad_(True)
    var = v.var()
    (auto,) = torch.autograd.grad(var + v.mean() ** 2 - 1 - torch.log(var + 1e-7), v)
    torch.testing.assert_close(p2pz.gaussian_kl_grad(x), auto, rtol=1e-4, atol=1e-7)


def test_the_regularisation_whitens_the_noise():
    """Smooth (auto-correlated, off-scale) noise comes out closer to unit variance and less correlated."""
    g = torch.Generator().manual_seed(1)
    smooth = torch.nn.functional.avg_pool2d(torch.randn(1, 4, 34, 34, generator=g), 3, 1) * 0.3 + 0.5
    out = p2pz.regularise_white(smooth, p2pz.WhiteNoiseRegularisation(), [torch.Generator().manual_seed(2)])

    def neighbour_corr(x):
        return (x[..., 1:] * x[..., :-1]).mean() / x.pow(2).mean()

    assert abs(out.var() - 1) < abs(smooth.var() - 1) and abs(out.mean()) < abs(smooth.mean())
    assert neighbour_corr(out - out.mean()) < neighbour_corr(smooth - smooth.mean())


def test_the_guidance_loss_does_not_depend_on_the_batch():
    """Two samples' loss is the sum of each alone; a sample's gradient is what it is alone."""
    g = torch.Generator().manual_seed(3)
    ref = [torch.rand(2, 1, 16, 7, generator=g)]
    cur = torch.rand(4, 1, 16, 7, generator=g).requires_grad_(True)  # [u1, u2, c1, c2]
    both = map_loss([cur], ref, copies=2)
    one = map_loss([cur[[0, 2]]], [ref[0][:1]], copies=2) + map_loss([cur[[1, 3]]], [ref[0][1:]], copies=2)
    torch.testing.assert_close(both, one)
    with pytest.raises(RuntimeError, match="recorded 2 cross-attention layers, the reference 1"):
        map_loss([cur, cur], ref, copies=2)


def test_the_recorder_keeps_only_the_cross_attention_maps_inside_its_block(bb):
    maps = CrossAttentionMaps()
    x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(4))
    cond = bb.encode_prompt(["a cat"])
    plain = bb.predict_noise(x, 500, cond)
    with maps.install(bb.unet):
        with maps.recording() as kept:
            out = bb.predict_noise(x, 500, cond)
        bb.predict_noise(x, 500, cond)
    torch.testing.assert_close(out, plain, rtol=1e-4, atol=1e-5)
    n_cross = sum(name.endswith("attn2.processor") for name in bb.unet.attn_processors)
    assert len(kept) == n_cross and kept[0].shape[-1] == bb.tokenizers[0].model_max_length
    torch.testing.assert_close(kept[0].sum(-1), torch.ones_like(kept[0].sum(-1)))


def _sample(bb, seed=0):
    g = torch.Generator().manual_seed(seed)
    im = (torch.rand(bb.resolution, bb.resolution, 3, generator=g) * 255).to(torch.uint8).numpy()
    return EditSample(id="s", image=Image.fromarray(im), source_prompt="a red circle",
                      target_prompt="a blue circle")


def _edit(bb, preset, *overrides):
    spec = resolve_method(preset, ["num_inference_steps=4", *overrides])
    return METHODS.get(spec.method)(bb, spec.params).run("edit", [_sample(bb)],
                                                         [torch.Generator().manual_seed(0)])[1][0]


def test_the_method_counts_its_evaluations_and_each_part_changes_the_edit(bb):
    """4 steps: 4 to invert, then per step 1 reference row, 2 guided rows (with a backward pass) and the 2
    rows ε is recomputed on: 24. Without guidance 2 fewer per step."""
    out = _edit(bb, "pix2pix-zero-sd15")
    assert out.nfe == 24 and out.image.shape == (3, bb.resolution, bb.resolution)
    plain = _edit(bb, "pix2pix-zero-sd15", "xa_guidance=0")
    assert plain.nfe == 16
    for other in (plain, _edit(bb, "pix2pix-zero-sd15", "reg_steps=0"),
                  _edit(bb, "direct-inversion-pix2pix-zero-sd15")):
        assert (out.image - other.image).abs().max() > 1e-4


def test_direct_inversion_reconstructs_the_encoding(bb):
    spec = resolve_method("direct-inversion-pix2pix-zero-sd15", ["num_inference_steps=4"])
    src, recon = METHODS.get(spec.method)(bb, spec.params).run("invert", [_sample(bb)],
                                                                [torch.Generator().manual_seed(0)])
    decoded = bb.decode(bb.encode_image(src.to(bb.dtype))).float().cpu()
    assert torch.allclose(recon[0].image, decoded[0], atol=1e-5)
