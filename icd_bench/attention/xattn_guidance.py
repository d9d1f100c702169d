"""pix2pix-zero's cross-attention guidance (Parmar et al., SIGGRAPH 2023): the cross-attention maps of a
UNet call, kept with their autograd graph, and their distance to a reference call's.

`CrossAttentionMaps.install(unet)` puts one processor on every attention layer: self-attention runs on SDPA
as usual; cross-attention computes its probabilities explicitly, softmax(q kᵀ · scale), and, while
``recording``, appends them (rows, heads, hw, tokens) to ``maps`` in call order. `map_loss` is the official
guidance loss: per layer, each row's squared difference to the reference summed over positions and tokens,
averaged over heads and over a sample's two CFG rows (the official batch is one sample: its mean over
rows × heads), summed over layers and samples — so a sample's gradient does not depend on the batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F

from icd_bench.attention.p2p import P2PAttnProcessor


class CrossAttentionMaps:
    """The cross-attention probabilities of the UNet calls made while `recording`."""

    def __init__(self):
        self.maps: list[torch.Tensor] = []
        self._on = False

    @contextlib.contextmanager
    def recording(self) -> Iterator[list[torch.Tensor]]:
        """Record the maps of the calls inside the block (the list is fresh for each block)."""
        self.maps, self._on = [], True
        try:
            yield self.maps
        finally:
            self._on = False

    def keep(self, probs: torch.Tensor) -> None:
        if self._on:
            self.maps.append(probs)

    @contextlib.contextmanager
    def install(self, unet) -> Iterator[CrossAttentionMaps]:
        original = dict(unet.attn_processors)
        unet.set_attn_processor(MapProcessor(self))
        try:
            yield self
        finally:
            unet.set_attn_processor(original)


class MapProcessor(P2PAttnProcessor):
    """`P2PAttnProcessor`'s projections; cross-attention with explicit probabilities, which are recorded."""

    def _attend(self, q, k, v, is_cross: bool, mask) -> torch.Tensor:
        if not is_cross or mask is not None:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        probs = torch.softmax(q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5, dim=-1)
        self.control.keep(probs)
        return probs @ v


def map_loss(current: Sequence[torch.Tensor], reference: Sequence[torch.Tensor], copies: int = 1
             ) -> torch.Tensor:
    """Σ over layers and samples of each sample's mean over its rows and heads of Σ (current − reference)²
    over positions and tokens. ``current`` has ``copies`` rows per sample (blocks of n: the CFG copies),
    ``reference`` one (n rows), repeated over the copies."""
    if len(current) != len(reference):
        raise RuntimeError(f"the guided call recorded {len(current)} cross-attention layers, the reference "
                           f"{len(reference)}")
    loss = current[0].new_zeros(())
    for cur, ref in zip(current, reference, strict=True):
        ref = ref.to(cur.dtype).repeat(copies, *([1] * (ref.ndim - 1)))
        loss = loss + (cur - ref).pow(2).sum((-2, -1)).mean(-1).sum() / copies
    return loss
