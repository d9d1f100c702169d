"""iCD inference on a `Backbone`: encode with fCDm, decode with CDm, edit = encode + decode.

- ``encode(x0, prompts)``: noise x_0 to the first forward step, then fCDm (w = 1, unguided) up
  through every forward boundary to T − 1;
- ``decode(x_T, prompts, w, τ)``: CDm through every reverse boundary down to the clean end, with
  dynamic (step) CFG: the guidance embedding carries w = 1 while t/T > τ and w at or below τ —
  one UNet row per sample and step either way, since w is an input of the guidance-embedded UNet;
- ``edit``: encode with the source prompt, decode with the target prompt; with Prompt-to-Prompt
  the source and target branches decode together in one batched call per step, the source
  branch unguided (w = 1) and the target with the step CFG, as the official SD1.5 editing code
  (its guidance codes are ``[0, 0, 0, w]`` over ``[uncond src, uncond tgt, cond src, cond tgt]``;
  only the conditional rows are kept).

The base UNet is the backbone's, given a guidance input (the release's guidance-distilled UNet,
or a zero-initialised one); fCDm and CDm are the LoRA adapters "fcdm" and "cdm" on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from icd_bench.attention.p2p import P2PParams, p2p_decode
from icd_bench.backbones.base import Backbone, PromptEmbeds
from icd_bench.diffusion.guidance import dynamic_guidance_scale
from icd_bench.icd.boundaries import Boundaries
from icd_bench.icd.guidance import guidance_code, guidance_embedding
from icd_bench.icd.model import (
    FORWARD,
    RELEASE_GUIDANCE_DIM,
    RELEASE_LORA_ALPHA,
    REVERSE,
    active_adapter,
    add_guidance_embedding,
    attach_adapter,
    load_adapter,
    load_guidance_distilled_unet,
)
from icd_bench.icd.sampling import icd_decode, icd_encode


class ICDPipeline:
    """The two iCD models on one UNet in ``backbone`` (which it equips; see the module doc)."""

    def __init__(self, backbone: Backbone, boundaries: Boundaries, *, teacher: str | Path | None = None,
                 forward_lora: str | Path | None = None, reverse_lora: str | Path | None = None,
                 lora_rank: int = 64, lora_alpha: float | None = None,
                 guidance_dim: int = RELEASE_GUIDANCE_DIM):
        if boundaries.num_train_timesteps != backbone.num_train_timesteps:
            raise ValueError("boundaries and backbone disagree on the number of training timesteps")
        self.backbone = backbone
        self.boundaries = boundaries
        self._guidance_cache: dict[tuple, torch.Tensor] = {}
        unet = backbone.unet
        if getattr(unet, "peft_config", None):
            raise ValueError("the backbone's UNet already carries adapters; give iCD a fresh backbone")
        unet = (load_guidance_distilled_unet(teacher, unet) if teacher
                else add_guidance_embedding(unet, guidance_dim, share_weights=True))
        backbone.replace_unet(unet)  # the backbone's own UNet stays as it was (`Backbone.restore`)
        self.adapters: dict[str, dict] = {}
        for name, path in ((FORWARD, forward_lora), (REVERSE, reverse_lora)):
            if path:
                self.adapters[name] = {"source": str(path),
                                       **load_adapter(unet, name, path, alpha=lora_alpha)}
            else:
                alpha = lora_alpha if lora_alpha is not None else RELEASE_LORA_ALPHA
                attach_adapter(unet, name, rank=lora_rank, alpha=alpha)
                self.adapters[name] = {"source": None, "rank": lora_rank, "alpha": alpha}
        unet.requires_grad_(False)

    @property
    def unet(self):
        return self.backbone.unet

    @property
    def trained(self) -> bool:
        """Both adapters were loaded from files (not zero-initialised)."""
        return all(a["source"] for a in self.adapters.values())

    def guidance_cond(self, w: float, rows: int) -> torch.Tensor:
        """The guidance embedding of scale w for ``rows`` rows (code w − 1; w = 1 is unguided), made
        once per (w, device, dtype) and kept on the device: no host-to-device copy per step."""
        bb = self.backbone
        key = (float(w), bb.device, bb.dtype)
        if key not in self._guidance_cache:
            dim = self.unet.config.time_cond_proj_dim
            self._guidance_cache[key] = guidance_embedding(guidance_code(w), dim).to(bb.device, bb.dtype)
        emb = self._guidance_cache[key]
        return emb.expand(rows, emb.shape[-1])

    # -- the two directions ------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, x0: torch.Tensor, cond: PromptEmbeds, noise: torch.Tensor) -> torch.Tensor:
        """fCDm: latents x_0 → noise latents at T − 1, unguided (``noise`` noises x_0 to the first
        forward step)."""
        bb = self.backbone
        tc = self.guidance_cond(1.0, x0.shape[0])
        with active_adapter(self.unet, FORWARD):
            return icd_encode(lambda x, t, i: bb.predict_noise(x, t, cond, tc), x0, noise, self.boundaries,
                              bb.alphas_cumprod)

    @torch.no_grad()
    def decode(self, x: torch.Tensor, cond: PromptEmbeds, w: float, tau: float, *, callback=None,
               branches: int = 1, unguided_rows: int = 0) -> torch.Tensor:
        """CDm: noise latents → latents x_0 with step CFG (w while t/T ≤ τ, else unguided); the
        first ``unguided_rows`` rows always decode unguided (P2P's source branch)."""
        bb = self.backbone
        T = bb.num_train_timesteps

        def eps_fn(x, t, i):
            guided = self.guidance_cond(dynamic_guidance_scale(t, T, w, tau), x.shape[0] - unguided_rows)
            tc = torch.cat([self.guidance_cond(1.0, unguided_rows), guided]) if unguided_rows else guided
            return bb.predict_noise(x, t, cond, tc, branches=branches)

        with active_adapter(self.unet, REVERSE):
            return icd_decode(eps_fn, x, self.boundaries, bb.alphas_cumprod, callback=callback)

    def decode_p2p(self, x: torch.Tensor, sources: Sequence[str], targets: Sequence[str], w: float,
                   tau: float, config: P2PParams, blend_words=None,
                   source_cond: PromptEmbeds | None = None) -> torch.Tensor:
        """Decode the same noise latents with the source (unguided) and the target prompts in one
        batch, the target steered by Prompt-to-Prompt (`attention.p2p_decode`); returns the target
        branch's latents. ``source_cond``: the sources' embeddings when the caller has them already."""
        n = x.shape[0]

        def sample(x2, cond, callback):
            return self.decode(x2, cond, w, tau, callback=callback, branches=2, unguided_rows=n)

        return p2p_decode(self.backbone, sample, x, sources, targets, self.boundaries.steps, config,
                          blend_words, source_cond=source_cond)

