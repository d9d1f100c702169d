"""Edit-friendly DDPM equals PnPInversion's implementation (golden: ef_ddpm.json; PIE-Bench's "Edit
Friendly" rows): the noised trajectory, the noise maps z_t, the reconstruction with the source prompt
and scale, and a prompt-switch edit, on the analytic noise predictor in float64 — 10 steps, η = 1,
skip 3, CFG 3.5 (source) / 7.5 (target), both sides given the same per-timestep noise.

The reference zeroes the final step's noise map after inversion; the project keeps it (exact
reconstruction) unless ``zero_last_noise``: compared with the option on, and the default shown to
differ only there.

Tolerance: 1e-6 relative (the reference's float32 schedule scalars in float64 arithmetic).
"""

from __future__ import annotations

import pytest
import torch

from icd_bench.backbones.base import Backbone
from icd_bench.backbones.loaders import SD_SCHEDULER_CONFIG
from icd_bench.diffusion import ddim_timesteps, ddpm_sample, edit_friendly_inversion, guided_noise

import golden_inputs as gi
from golden_inputs import golden, rel

G = golden("ef_ddpm.json")



@pytest.fixture(scope="module")
def run():
    from diffusers import DDIMScheduler

    tok, te = gi.text_components()
    bb = Backbone(kind="sd15", source="analytic", tokenizers=[tok], text_encoders=[te],
                  unet=gi.AnalyticUNet(), vae=None, scheduler=DDIMScheduler(**SD_SCHEDULER_CONFIG),
                  resolution=8, dtype=torch.float64)
    steps = ddim_timesteps(bb.scheduler, gi.EF_STEPS)
    uncond = bb.null_embeds(1)

    def eps(prompt, w):
        cond = bb.encode_prompt([prompt])
        return lambda x, t, i: guided_noise(bb, x, t, cond, uncond, w)

    x0 = bb.encode_image(gi.ddim_image())
    x_start, zs = edit_friendly_inversion(eps(gi.DDIM_PROMPT, gi.EF_SOURCE_CFG), x0, steps, bb.alphas_cumprod,
                                          bb.final_alpha_cumprod, gi.ef_noise(), start=gi.EF_SKIP)
    return bb, steps, eps, x0, x_start, zs


def test_grid_trajectory_and_noise_maps(run):
    bb, steps, _, x0, x_start, zs = run
    n, skip = gi.EF_STEPS, gi.EF_SKIP
    assert steps == G["timesteps"]
    assert rel(x_start, G["xts"][n - skip]) < 1e-6  # the reference's xts[k]: noised at the k-th lowest t
    for k, z in enumerate(zs):  # our map of step skip + k is the reference's zs[n − 1 − (skip + k)]
        ref = G["zs"][n - 1 - (skip + k)]
        if skip + k == n - 1:
            assert torch.count_nonzero(torch.tensor(ref)) == 0  # the reference zeroed the final step's map
            continue
        assert rel(z, ref) < 1e-6, k


@pytest.mark.parametrize("which", ["reconstruction", "edit"])
def test_sampling_with_the_stored_maps(run, which):
    bb, steps, eps, x0, x_start, zs = run
    prompt, w = ((gi.DDIM_PROMPT, gi.EF_SOURCE_CFG) if which == "reconstruction"
                 else (gi.EF_TARGET, gi.EF_TARGET_CFG))
    zeroed = [*zs[:-1], torch.zeros_like(zs[-1])]  # zero_last_noise = true: the reference's maps
    x = ddpm_sample(eps(prompt, w), x_start, steps, bb.alphas_cumprod, bb.final_alpha_cumprod, zeroed,
                    start=gi.EF_SKIP)
    assert rel(x, G[which]) < 1e-6
    exact = ddpm_sample(eps(prompt, w), x_start, steps, bb.alphas_cumprod, bb.final_alpha_cumprod, zs,
                        start=gi.EF_SKIP)
    assert rel(exact, G[which]) > 1e-6  # the default keeps the map: the deviation shows
    if which == "reconstruction":
        assert rel(exact, x0) < 1e-12  # ... and reconstructs the input exactly
