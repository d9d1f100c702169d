"""What the few-step baselines (``renoise``, ``infedit``) share: an LCM-style consistency model on the
backbone, and its multistep sampler.

The model is the backbone's own UNet when it is one (e.g. ``SimianLuo/LCM_Dreamshaper_v7``), or a
guidance-distilled UNet (``unet``, a state dict as iCD's ``teacher``) plus a consistency LoRA
(``lora``) — the toy world's LCM, trained by `icd-bench train icd` with one reverse boundary
(``training/toy-lcm.toml``) and bundled. A UNet with a guidance input (``time_cond_proj_dim``) is
given the embedding of ``model_guidance`` (LCM's w) unless ``guidance_embedding`` is false.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from icd_bench.backbones.base import PromptEmbeds
from icd_bench.diffusion import guided_noise
from icd_bench.diffusion.lcm import lcm_sample, lcm_timesteps
from icd_bench.diffusion.loop import Callback
from icd_bench.icd.guidance import guidance_code, guidance_embedding
from icd_bench.icd.model import load_adapter, load_guidance_distilled_unet, shared_copy
from icd_bench.methods.base import EditingMethod

LCM_ADAPTER = "lcm"


@dataclass
class ConsistencyParams:
    num_steps: int = 4  # LCM grid (diffusers' LCMScheduler timesteps)
    model_guidance: float = 1.0  # w given to a guidance-embedded UNet
    guidance_embedding: bool = True  # false: leave the UNet's guidance input empty (InfEdit's LCM use)
    unet: str | None = None  # guidance-distilled UNet state dict; None: the backbone's UNet
    lora: str | None = None  # consistency LoRA (.safetensors, peft keys); None: none
    lora_alpha: float | None = None  # None: the file's metadata

    def __post_init__(self):
        if not 1 <= self.num_steps <= 50:
            raise ValueError(f"num_steps must be in 1..50 (LCM's 50-step origin schedule), "
                             f"got {self.num_steps}")
        if self.model_guidance < 0:
            raise ValueError("model_guidance must be >= 0")


class ConsistencyMethod(EditingMethod):
    """Base of methods that run an LCM-style consistency model (see the module doc)."""

    Params: ClassVar[type] = ConsistencyParams

    def __init__(self, backbone, params=None):
        super().__init__(backbone, params)
        p = self.params
        if p.unet or p.lora:  # a UNet of the method's own: the backbone's stays as it was (`close`)
            unet = (load_guidance_distilled_unet(p.unet, backbone.unet) if p.unet
                    else shared_copy(backbone.unet))
            if p.lora:
                load_adapter(unet, LCM_ADAPTER, p.lora, alpha=p.lora_alpha)
                unet.set_adapter(LCM_ADAPTER)  # its only adapter
            backbone.replace_unet(unet)
        backbone.unet.requires_grad_(False)
        self.timesteps = lcm_timesteps(p.num_steps, backbone.num_train_timesteps)

    @property
    def embeds_guidance(self) -> bool:
        return (bool(getattr(self.backbone.unet.config, "time_cond_proj_dim", None))
                and self.params.guidance_embedding)

    def guidance_cond(self, rows: int, w: torch.Tensor | None = None) -> torch.Tensor | None:
        """The guidance embedding of ``model_guidance`` (or of per-row scales ``w``) for ``rows``
        rows, or None when the model takes none."""
        if not self.embeds_guidance:
            return None
        dim = self.backbone.unet.config.time_cond_proj_dim
        w = torch.full((rows,), self.params.model_guidance) if w is None else w
        return guidance_embedding(guidance_code(w), dim).to(self.backbone.device, self.backbone.dtype)

    def eps(self, x: torch.Tensor, t: int, cond: PromptEmbeds, uncond: PromptEmbeds | None = None,
            w: float | torch.Tensor = 1.0, *, branches: int = 1,
            embedded_w: torch.Tensor | None = None) -> torch.Tensor:
        """ε of the consistency model, with explicit CFG of scale w (per row allowed) on top;
        ``embedded_w``: per-row scales for the guidance embedding instead of ``model_guidance``."""
        return guided_noise(self.backbone, x, t, cond, uncond, w, self.guidance_cond(x.shape[0], embedded_w),
                            branches=branches)

    def draw_noises(self, generators, count: int) -> list[torch.Tensor]:
        """``count`` per-sample standard normal latents (one per sampling step, then extras)."""
        return [self.initial_noise(generators) for _ in range(count)]

    @torch.no_grad()
    def sample(self, x: torch.Tensor, cond: PromptEmbeds, noises: list[torch.Tensor],
               uncond: PromptEmbeds | None = None, w: float = 1.0, *,
               callback: Callback | None = None) -> torch.Tensor:
        """LCM multistep sampling (`diffusion.lcm.lcm_sample`) from x at ``timesteps[0]`` with stored
        re-noisings; returns x̂_0."""
        return lcm_sample(lambda x, t, i: self.eps(x, t, cond, uncond, w), x, self.timesteps,
                          self.backbone.alphas_cumprod, noises, callback=callback)

    def generate(self, prompts: list[str], generators) -> torch.Tensor:
        bb = self.backbone
        noises = self.draw_noises(generators, len(self.timesteps) + 1)
        return bb.decode(self.sample(noises[-1], bb.encode_prompt(prompts), noises))
