"""Solvers and guidance shared by every method: DDIM (eq. 1) and its inversion, DDPM steps and the
edit-friendly noise space, CFG, dynamic CFG."""

from icd_bench.diffusion.ddim import ddim_invert, ddim_sample, ddim_step, ddim_timesteps
from icd_bench.diffusion.ddpm import ddpm_sample, ddpm_step_mean, edit_friendly_inversion
from icd_bench.diffusion.guidance import cfg_combine, dynamic_guidance_scale, guided_noise

__all__ = [
    "cfg_combine",
    "ddim_invert",
    "ddim_sample",
    "ddim_step",
    "ddim_timesteps",
    "ddpm_sample",
    "ddpm_step_mean",
    "edit_friendly_inversion",
    "dynamic_guidance_scale",
    "guided_noise",
]
