"""InfEdit's DDCM step equals the official sampler (golden: infedit_ddcm.json; sled-group/InfEdit
``pipeline_ead.ddcm_sampler``) on the LCM grid of its PIE-Bench run (12 steps, η = 1): the re-noised
source and target latents and the target's x̂_0 at every step. At the last step the official sampler
re-noises to the same timestep and its pipeline decodes x̂_0; the project returns x̂_0 there, so only x̂_0
is compared at that step. The whole edit, with the unified attention control: test_infedit_uac_golden.

Tolerance: 1e-5 relative (float32).
"""

from __future__ import annotations

from icd_bench.backbones.loaders import SD_SCHEDULER_CONFIG
from icd_bench.diffusion.lcm import ddcm_step, lcm_timesteps, next_alpha

import golden_inputs as gi
from golden_inputs import golden, rel

G = golden("infedit_ddcm.json")



def test_ddcm_steps_on_the_lcm_grid():
    from diffusers import DDIMScheduler

    alphas = DDIMScheduler(**SD_SCHEDULER_CONFIG).alphas_cumprod.double()
    steps = lcm_timesteps(gi.DDCM_STEPS)
    assert steps == G["timesteps"]
    for i, (t, ref) in enumerate(zip(steps, G["steps"], strict=True)):
        x = gi.ddcm_inputs(i)
        x_s, x_t, x0_t = ddcm_step(x["x_s"], x["x_t"], x["e_s"], x["e_t"], x["x_0"], float(alphas[t]),
                                   next_alpha(alphas, steps, i), x["noise"])
        assert rel(x0_t, ref["pred_x0"]) < 1e-5, i
        if i + 1 < len(steps):
            assert rel(x_s, ref["x_s"]) < 1e-5 and rel(x_t, ref["x_t"]) < 1e-5, i
