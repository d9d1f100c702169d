"""InfEdit's unified attention control (UAC; Xu et al., CVPR 2024) as diffusers attention processors on SDPA.

Three branches of n samples run in one batch, ``[src_1..n, tgt_1..n, mut_1..n]`` in every CFG group
(``[uncond block, cond block]``): the source branch (source prompt, the virtually inverted source),
the target branch (target prompt) and the mutual "layout" branch (source prompt, its own latents,
sampled by DDCM against the source like the target). With N steps and step i counted from 0, let
f = (i + 1)/N (the official schedule):

- **self-attention**, in every CFG group and at every resolution: while f < ``self_replace`` the target
  attends with the source's queries and keys to its own values (P2P's self-attention injection) and
  the mutual branch attends as the source; from then on the target attends as usual and the mutual
  branch with the target's queries to the source's keys and values (mutual self-attention, MasaCtrl);
- **cross-attention**, in the conditional group: while f ≤ ``cross_replace`` the target's
  probabilities are the mutual branch's refined onto the target's tokens,
  ``P_mut[:, mapper]·α + P_tgt·(1 − α)`` (InfEdit's alignment, `align.infedit_refine_mapper`), run
  as ``SDPA(q_mut, k_mut, A·v_tgt) + SDPA(q_tgt, k_tgt, B·v_tgt)`` as in `p2p`;
- **local blend**, after every step but the first (the last one's cannot reach the output, x̂_0):
  the refined mutual maps, summed over the steps so far and averaged over the heads of the layers at
  a quarter of the latent side (SD1.5's 16² layers, the official ``down_cross[2:4] + up_cross[:3]``),
  are taken at the blend word's tokens (max over them), upsampled (nearest) and divided by their
  maximum; the target latents keep their values where this exceeds
  max(``blend_temperature``/√ᾱ_t, ``blend_threshold``) and take the mutual branch's elsewhere (so at
  high noise, where the bound is above 1, the target is the mutual branch). Samples without a blend
  word are not blended.

Not offered: the release's "mutual words" (target words whose region keeps the source), which its
PIE-Bench run leaves empty. `UACControl` shares `p2p.AttentionControl` with P2P: the mixing matrices,
the map store, the step counter and the installation; its windows and blend are its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from icd_bench.attention.align import infedit_refine_mapper, token_ids
from icd_bench.attention.p2p import AttentionControl, P2PAttnProcessor, blend_resolution
from icd_bench.diffusion.loop import StepInfo


@dataclass
class UACParams:
    """UAC's parameters, the fields InfEdit's ``Params`` inherits and `UACControl` reads."""

    cross_replace: float = 0.7  # cross-attention refined from the mutual branch while (i + 1)/N ≤ this
    self_replace: float = 0.7  # self-attention injection before, mutual self-attention from (i + 1)/N ≥ this
    local_blend: bool = True  # local blend with the sample's (target) blend word, when it has one
    blend_threshold: float = 0.55  # the mask threshold's floor ...
    blend_temperature: float = 0.15  # ... of max(temperature / √ᾱ_t, threshold)

    def __post_init__(self):
        for name in ("cross_replace", "self_replace", "blend_threshold"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.blend_temperature < 0:
            raise ValueError(f"blend_temperature must be >= 0, got {self.blend_temperature}")


class UACControl(AttentionControl):
    """The state of one batch of n (source, target) prompt pairs over ``num_steps`` steps."""

    layout = ("source", "target", "mutual")

    def __init__(self, tokenizer, sources: Sequence[str], targets: Sequence[str], num_steps: int,
                 source_states: torch.Tensor, target_states: torch.Tensor, config: UACParams | None = None,
                 blend_words: Sequence[str | None] | None = None, blend_resolution: int | None = None):
        super().__init__(len(sources), num_steps, tokenizer.model_max_length,
                         blend_resolution=blend_resolution)
        self.cfg = config or UACParams()
        L = tokenizer.model_max_length
        for k, (src, tgt) in enumerate(zip(sources, targets, strict=True)):
            word = (blend_words[k] if blend_words else None) or ""
            mapper, alphas, blend = infedit_refine_mapper(tokenizer, src, tgt, source_states[k].float(),
                                                          target_states[k].float(), word)
            self.A[k, mapper, torch.arange(L)] = alphas
            self.B[k] = torch.diag(1.0 - alphas)
            tokens = [j for j in range(1, len(token_ids(tokenizer, tgt)) - 1) if blend[j]]
            self.blend_tokens.append(tokens if self.cfg.local_blend and tokens else None)
        self.has_b = True
        self.last_masks: dict[int, torch.Tensor] = {}  # sample → the mask of the last blend (to look at)

    # -- schedule ----------------------------------------------------------------------------
    def _fraction(self) -> float:
        return (self.step + 1) / self.num_steps

    def cross_active(self) -> bool:
        return self.cfg.cross_replace >= self._fraction()

    def mutual_self_attention(self) -> bool:
        return self.cfg.self_replace <= self._fraction()

    # -- local blend ---------------------------------------------------------------------------
    def blend(self, x_tgt: torch.Tensor, x_mut: torch.Tensor, alpha_t: float) -> torch.Tensor:
        """The target latents after a step: their own inside the blend word's mask, the mutual branch's
        outside."""
        if not self.blending or not self.maps:
            return x_tgt
        (hw, maps), = self.maps.items()
        s = int(round(hw**0.5))
        threshold = max(self.cfg.blend_temperature / alpha_t**0.5, self.cfg.blend_threshold)
        out, self.last_masks = x_tgt.clone(), {}
        for k, tokens in enumerate(self.blend_tokens):
            if tokens is None:
                continue
            m = maps[k][:, tokens].amax(-1).view(1, 1, s, s)
            m = F.interpolate(m, size=x_tgt.shape[-2:], mode="nearest")[0]
            mask = self.last_masks[k] = m / m.amax() > threshold
            out[k] = torch.where(mask, x_tgt[k], x_mut[k])
        return out

    def step_callback(self, info: StepInfo) -> torch.Tensor:
        """The sampler callback of a ``[source; target; mutual]`` batch (InfEdit's DDCM loop): `advance`
        on its blocks, no blend after the last step (its output is x̂_0, not the landed latents)."""
        self.check_layout(info.x)
        x_src, x_tgt, x_mut = info.x.chunk(3)
        return torch.cat([x_src,
                          self.advance(x_tgt, x_mut, info.alpha_from, blend=info.index + 1 < self.num_steps),
                          x_mut])

    def advance(self, x_tgt: torch.Tensor, x_mut: torch.Tensor, alpha_t: float,
                blend: bool = True) -> torch.Tensor:
        """After a step, with the new target and mutual latents: local blend (``blend``), then the
        schedule's next step (what `step_callback` does with the batch's blocks)."""
        if blend and self.step > 0:
            x_tgt = self.blend(x_tgt, x_mut, alpha_t)
        self.step += 1
        return x_tgt


class UACAttnProcessor(P2PAttnProcessor):
    """`P2PAttnProcessor`'s projections with UAC's attention (module doc)."""

    def _attend(self, q, k, v, is_cross: bool, mask) -> torch.Tensor:
        n3 = 3 * self.control.n
        if mask is not None or q.shape[0] % n3:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        if is_cross:  # only the conditional (last) group's cross-attention is controlled
            if q.shape[0] == n3:
                return self._cross(q, k, v)
            plain = F.scaled_dot_product_attention(q[:-n3], k[:-n3], v[:-n3])
            return torch.cat([plain, self._cross(q[-n3:], k[-n3:], v[-n3:])])
        return torch.cat([self._self(q[g:g + n3], k[g:g + n3], v[g:g + n3])
                          for g in range(0, q.shape[0], n3)])

    def _self(self, q, k, v) -> torch.Tensor:
        n = self.control.n
        (qs, qt, _), (ks, kt, _), (vs, vt, _) = q.split(n), k.split(n), v.split(n)
        if self.control.mutual_self_attention():  # source and mutual (target queries) on the source's keys
            both = F.scaled_dot_product_attention(torch.cat([qs, qt], dim=-2), ks, vs)
            out_s, out_m = both.split(qs.shape[-2], dim=-2)
            return torch.cat([out_s, F.scaled_dot_product_attention(qt, kt, vt), out_m])
        both = F.scaled_dot_product_attention(qs, ks, torch.cat([vs, vt], dim=-1))  # the source's pattern
        out_s, out_t = both.split(vs.shape[-1], dim=-1)
        return torch.cat([out_s, out_t, out_s])

    def _cross(self, q, k, v) -> torch.Tensor:
        c = self.control
        edit, keep = c.cross_active(), c.keeps_maps_at(q.shape[-2])
        if not edit and not keep:
            return F.scaled_dot_product_attention(q, k, v)
        (qs, qt, qm), (ks, kt, km), (vs, vt, vm) = q.split(c.n), k.split(c.n), v.split(c.n)
        out_s = F.scaled_dot_product_attention(qs, ks, vs)
        if keep:  # the explicit maps, at the blend resolution only
            scale = q.shape[-1] ** -0.5
            pm = torch.softmax(qm @ km.transpose(-1, -2) * scale, dim=-1)
            pt = torch.softmax(qt @ kt.transpose(-1, -2) * scale, dim=-1)
            A, B = c.matrices(pm)
            refined = pm @ A + pt @ B
            c.record(refined)
            return torch.cat([out_s, (refined if edit else pt) @ vt, pm @ vm])
        A, B = c.matrices(v)
        out_t = (F.scaled_dot_product_attention(qm, km, A @ vt)
                 + F.scaled_dot_product_attention(qt, kt, B @ vt))
        return torch.cat([out_s, out_t, F.scaled_dot_product_attention(qm, km, vm)])


UACControl.processor_class = UACAttnProcessor  # what `install` puts on the UNet


@contextlib.contextmanager
def unified_attention_control(backbone, sources: Sequence[str], targets: Sequence[str], num_steps: int,
                              config: UACParams, blend_words: Sequence[str | None] | None = None
                              ) -> Iterator[UACControl]:
    """UAC on ``backbone``'s UNet for one batch: run ``[sources; targets; sources]`` rows inside this
    block with ``control.step_callback`` as the sampler's callback."""
    source_states = backbone.encode_prompt(sources).embeds
    target_states = backbone.encode_prompt(targets).embeds
    control = UACControl(backbone.tokenizers[0], sources, targets, num_steps, source_states, target_states,
                         config=config, blend_words=blend_words, blend_resolution=blend_resolution(backbone))
    with control.install(backbone.unet):
        yield control
