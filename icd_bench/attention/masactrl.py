"""MasaCtrl's mutual self-attention (Cao et al., ICCV 2023) as a diffusers attention processor on SDPA.

A batch holds, for n samples, the source rows then the target rows (``[src_1..src_n, tgt_1..tgt_n]``),
possibly repeated in G groups (G = 2 for classifier-free guidance). From decoding step ``start_step`` on,
in the self-attention of the UNet's transformer blocks from ``start_layer`` on (counted in call order:
down blocks, mid block, up blocks — SD1.5 has 16, so the default 10 is the last six of the up path),
every row of a group queries the keys and values of its sample's source row of that group: the target
keeps its own queries (its layout follows the target prompt) and takes its content from the source. The
source rows attend to themselves as usual; cross-attention is untouched. This is the official
``MutualSelfAttentionControl`` (TencentARC/MasaCtrl, as PnPInversion runs it), whose uncond and cond
halves each attend to their first row's keys and values.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from icd_bench.attention.p2p import AttentionControl, P2PAttnProcessor
from icd_bench.diffusion.loop import StepInfo


@dataclass
class MasaCtrlParams:
    """Where mutual self-attention acts (the official defaults, ``MutualSelfAttentionControl(4, 10)``)."""

    start_step: int = 4  # from this decoding step on (0-based)
    start_layer: int = 10  # in the self-attention of transformer blocks from this one on (call order)

    def __post_init__(self):
        if self.start_step < 0 or self.start_layer < 0:
            raise ValueError(f"start_step and start_layer must be >= 0, got {self.start_step} and "
                             f"{self.start_layer}")


def self_attention_layers(unet) -> dict[str, int]:
    """Each self-attention processor's name → its transformer block's position in the UNet's call order
    (down blocks, then the mid block, then up blocks: how the official control counts its layers)."""
    part = {"down_blocks": 0, "mid_block": 1, "up_blocks": 2}
    names = [name for name in unet.attn_processors if name.endswith("attn1.processor")]
    if any(name.split(".")[0] not in part for name in names):
        others = sorted({name.split(".")[0] for name in names} - set(part))
        raise ValueError(f"MasaCtrl counts the self-attention of a UNet's down, mid and up blocks; this UNet "
                         f"has others: {others}")
    return {name: k for k, name in enumerate(sorted(names, key=lambda name: part[name.split(".")[0]]))}


class MutualSelfAttentionControl(AttentionControl):
    """The state of one batch of n (source, target) pairs over ``num_steps`` decoding steps."""

    layout = ("sources", "targets")

    def __init__(self, n: int, num_steps: int, context_length: int, config: MasaCtrlParams | None = None):
        super().__init__(n, num_steps, context_length)
        self.cfg = config or MasaCtrlParams()

    def active(self, layer: int) -> bool:
        return self.step >= self.cfg.start_step and layer >= self.cfg.start_layer

    def step_callback(self, info: StepInfo) -> torch.Tensor:
        self.check_layout(info.x)
        self.step += 1
        return info.x

    @contextlib.contextmanager
    def install(self, unet) -> Iterator[MutualSelfAttentionControl]:
        original = dict(unet.attn_processors)
        layers = self_attention_layers(unet)
        if self.cfg.start_layer >= len(layers):
            raise ValueError(f"MasaCtrl's start_layer {self.cfg.start_layer} leaves none of this UNet's "
                             f"{len(layers)} self-attention layers under control: set start_layer below "
                             f"{len(layers)}")
        unet.set_attn_processor({name: MutualSelfAttnProcessor(self, layers.get(name)) for name in original})
        try:
            yield self
        finally:
            unet.set_attn_processor(original)


class MutualSelfAttnProcessor(P2PAttnProcessor):
    """`P2PAttnProcessor`'s projections; the attention is plain but where mutual self-attention acts."""

    def __init__(self, control: MutualSelfAttentionControl, layer: int | None):
        super().__init__(control)
        self.layer = layer  # None: a cross-attention layer

    def _attend(self, q, k, v, is_cross: bool, mask) -> torch.Tensor:
        c = self.control
        n2 = 2 * c.n
        if is_cross or mask is not None or self.layer is None or q.shape[0] % n2 or not c.active(self.layer):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        groups = q.shape[0] // n2

        def source(t):  # each group's source rows, for its source and its target rows alike
            t = t.view(groups, 2, c.n, *t.shape[1:])
            return t[:, :1].expand_as(t).reshape(groups * n2, *t.shape[3:])

        return F.scaled_dot_product_attention(q, source(k), source(v))


@contextlib.contextmanager
def mutual_self_attention(backbone, n: int, num_steps: int, config: MasaCtrlParams
                          ) -> Iterator[MutualSelfAttentionControl]:
    """MasaCtrl on ``backbone``'s UNet for one batch of ``[sources; targets]`` rows (n each): decode inside
    this block with ``control.step_callback`` as the sampler's callback (`p2p.controlled_decode`)."""
    control = MutualSelfAttentionControl(n, num_steps, backbone.tokenizers[0].model_max_length, config)
    with control.install(backbone.unet):
        yield control
