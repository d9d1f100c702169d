"""The schedule, every step formula and every sampler loop the methods share: ᾱ and q(x_t | x_0)
(`schedule`), the ε callable and the `StepInfo` callback of every loop (`loop`), DDIM (eq. 1) and its
inversion, DDPM steps and the edit-friendly noise space, iCD's multi-boundary consistency step
(`consistency`, eq. 3), LCM and DDCM (`lcm`), ReNoise (`renoise`), CFG and dynamic CFG (`guidance`)."""

from icd_bench.diffusion.ddim import ddim_invert, ddim_path, ddim_sample, ddim_step, ddim_timesteps
from icd_bench.diffusion.ddpm import ddpm_sample, ddpm_step_mean, edit_friendly_inversion
from icd_bench.diffusion.guidance import cfg_combine, dynamic_guidance_scale, guided_noise

__all__ = [
    "cfg_combine",
    "ddim_invert",
    "ddim_path",
    "ddim_sample",
    "ddim_step",
    "ddim_timesteps",
    "ddpm_sample",
    "ddpm_step_mean",
    "edit_friendly_inversion",
    "dynamic_guidance_scale",
    "guided_noise",
]
