"""TurboEdit's pieces (`diffusion.turboedit`) and the `turboedit` method on a tiny random SDXL-shaped
backbone: the official grids, the shifted noised latents, the norm cap, the evaluation count, clear errors,
and how the comparisons treat a method without CFG. Equality with the official code:
tests/conformance/test_turboedit_golden.py."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from icd_bench.backbones.loaders import SD_SCHEDULER_CONFIG
from icd_bench.backbones.tiny import tiny_backbone
from icd_bench.config import resolve_method
from icd_bench.diffusion import turboedit as te
from icd_bench.registry import METHODS
from icd_bench.types import EditSample

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_grid_is_the_cut_trailing_ddpm_grid():
    """5 trailing DDPM steps (999 … 199) from step 1 on: 799, 599, 399, 199; leading spacing differs."""
    assert te.turbo_timesteps(SD_SCHEDULER_CONFIG, 5, 1) == [799, 599, 399, 199]
    assert te.turbo_timesteps(SD_SCHEDULER_CONFIG, 5, 2) == [599, 399, 199]
    assert te.turbo_timesteps(SD_SCHEDULER_CONFIG, 5, 1, "leading") != [799, 599, 399, 199]
    assert te.shifted_noise_timesteps([799, 599, 399, 199], 1.0) == [599, 399, 199, -1]


def test_the_targets_noise_the_leading_steps_and_keep_the_image_after():
    bb = tiny_backbone("sdxl")
    x0 = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(2, 1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    targets = te.shifted_targets(x0, noise, bb.alphas_cumprod, [599, 299, 0])
    assert len(targets) == 4 and torch.equal(targets[2], x0) and torch.equal(targets[3], x0)
    a = float(bb.alphas_cumprod[299])
    torch.testing.assert_close(targets[1], a ** 0.5 * x0 + (1 - a) ** 0.5 * noise[1])


def test_the_norm_cap_scales_only_samples_over_it():
    z = torch.cat([torch.full((1, 4, 2, 2), 10.0), torch.full((1, 4, 2, 2), 0.1)])  # norms 40 and 0.4
    c = te.norm_coefficient(z, 15.5).flatten()
    assert c[0] == pytest.approx(15.5 / 40) and c[1] == 1
    assert torch.equal(te.norm_coefficient(z, -1.0).flatten(), torch.ones(2))


def _sample(bb, seed=0):
    g = torch.Generator().manual_seed(seed)
    im = (torch.rand(bb.resolution, bb.resolution, 3, generator=g) * 255).to(torch.uint8).numpy()
    return EditSample(id="s", image=Image.fromarray(im), source_prompt="a red circle",
                      target_prompt="a blue circle")


def test_the_method_runs_three_rows_a_step_and_refuses_mismatched_settings():
    bb = tiny_backbone("sdxl")
    spec = resolve_method("turboedit-sdxl-turbo")
    method = METHODS.get(spec.method)(bb, spec.params)
    _, out = method.run("edit", [_sample(bb)], [torch.Generator().manual_seed(2)])
    assert out[0].nfe == 12 and out[0].image.shape == (3, bb.resolution, bb.resolution)
    _, again = method.run("edit", [_sample(bb)], [torch.Generator().manual_seed(2)])
    assert torch.equal(out[0].image, again[0].image)  # the noise comes from the sample's generator
    three = METHODS.get(spec.method)(bb, resolve_method("turboedit-sdxl-turbo-3step").params)
    assert three.run("edit", [_sample(bb)], [torch.Generator().manual_seed(2)])[1][0].nfe == 9
    bad = METHODS.get(spec.method)(bb, resolve_method("turboedit-sdxl-turbo", ["max_norms=-1,15.5"]).params)
    with pytest.raises(ValueError, match=r"max_norms has 2 values for 4 steps \(\[799, 599, 399, 199\]\)"):
        bad.run("edit", [_sample(bb)], [torch.Generator()])
    from icd_bench.errors import ConfigError

    with pytest.raises(ConfigError, match="step_start must be in 1..num_inversion_steps - 1, got 5"):
        resolve_method("turboedit-sdxl-turbo", ["step_start=5"])


def test_without_cfg_it_keeps_its_setting_in_the_shared_scale_table_and_sweeps_its_w():
    from icd_bench.studies.compare_edits import guidance_override
    from icd_bench.studies.sweep import knob_field

    assert guidance_override("turboedit-toy", 5.0) is None
    assert guidance_override("ddim-toy", 5.0) == "guidance_scale=5.0"
    assert knob_field("turboedit-toy", "guidance") == "w"
