"""Plug-and-Play's feature and self-attention injection (Tumanyan et al., CVPR 2023) on SDPA.

A UNet call holds, for n samples, three row blocks ``[sources; unconditional targets; conditional
targets]`` (n rows each): the source branch, evaluated on the source image's latents at the step's timestep,
and the target's two classifier-free-guidance rows. During the first ``int(feature_injection · N)`` of N
decoding steps, the output of one residual block's second convolution (SD1.5: ``up_blocks.1.resnets.1``,
before its skip connection) is copied from each sample's source row into its two target rows; during the
first ``int(attention_injection · N)`` steps, in the self-attention of the transformer blocks from
``attention_start_layer`` on (counted in call order as `masactrl.self_attention_layers` counts them; SD1.5's
8 to 15 are the official ``up_blocks`` 1 (blocks 1, 2), 2 and 3), the target rows take the source's queries
and keys and keep their own values. This is the official injection (MichalGeyer/plug-and-play, as
PnPInversion's ``run_editing_pnp.py`` runs it); the source's attention pattern is computed once and applied
to all three rows' values, as in P2P's self-attention injection.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from icd_bench.attention.masactrl import self_attention_layers
from icd_bench.attention.p2p import AttentionControl, P2PAttnProcessor
from icd_bench.diffusion.loop import StepInfo


@dataclass
class PnPParams:
    """Where and when Plug-and-Play injects (the official defaults: PnPInversion's ``run_pnp``)."""

    feature_injection: float = 0.8  # pnp_f_t: fraction of decoding steps with the residual feature injection
    attention_injection: float = 0.5  # pnp_attn_t: fraction with the self-attention injection
    feature_layer: str = "up_blocks.1.resnets.1"  # the residual block whose conv2 output is injected
    attention_start_layer: int = 8  # self-attention injected from this transformer block on (call order)

    def __post_init__(self):
        for name in ("feature_injection", "attention_injection"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.attention_start_layer < 0:
            raise ValueError(f"attention_start_layer must be >= 0, got {self.attention_start_layer}")


class PnPControl(AttentionControl):
    """The injection state of one batch of n samples over ``num_steps`` decoding steps. The sampler's
    latents are the n target rows; the UNet sees `ROWS` blocks."""

    layout = ("targets",)
    ROWS = ("sources", "unconditional targets", "conditional targets")

    def __init__(self, n: int, num_steps: int, context_length: int, config: PnPParams | None = None):
        super().__init__(n, num_steps, context_length)
        self.cfg = config or PnPParams()

    def feature_active(self) -> bool:
        return self.step < int(self.num_steps * self.cfg.feature_injection)

    def attention_active(self) -> bool:
        return self.step < int(self.num_steps * self.cfg.attention_injection)

    def injects(self, rows: int) -> bool:
        return rows == len(self.ROWS) * self.n

    def step_callback(self, info: StepInfo) -> torch.Tensor:
        self.check_layout(info.x)
        self.step += 1
        return info.x

    def inject_features(self, module, inputs, output: torch.Tensor) -> torch.Tensor:
        """A forward hook on the residual block's second convolution: the target rows take the source's."""
        if not (self.injects(output.shape[0]) and self.feature_active()):
            return output
        src = output[: self.n]
        return torch.cat([src, src, src])

    @contextlib.contextmanager
    def install(self, unet) -> Iterator[PnPControl]:
        layers = self_attention_layers(unet)
        if self.cfg.attention_start_layer >= len(layers):
            raise ValueError(f"PnP's attention_start_layer {self.cfg.attention_start_layer} leaves none of "
                             f"this UNet's {len(layers)} self-attention layers injected: set it below "
                             f"{len(layers)}")
        try:
            block = unet.get_submodule(self.cfg.feature_layer)
        except AttributeError:
            block = None
        conv = getattr(block, "conv2", None)
        if not isinstance(conv, torch.nn.Conv2d):
            raise ValueError(f"PnP's feature_layer {self.cfg.feature_layer!r} is not a residual block of "
                             f"this UNet (one of {', '.join(sorted(_resnets(unet)))})")
        original = dict(unet.attn_processors)
        injected = {name for name, k in layers.items() if k >= self.cfg.attention_start_layer}
        unet.set_attn_processor({name: PnPAttnProcessor(self) if name in injected else proc
                                 for name, proc in original.items()})
        hook = conv.register_forward_hook(self.inject_features)
        try:
            yield self
        finally:
            hook.remove()
            unet.set_attn_processor(original)


def _resnets(unet) -> list[str]:
    return [name for name, m in unet.named_modules() if hasattr(m, "conv2") and hasattr(m, "time_emb_proj")]


class PnPAttnProcessor(P2PAttnProcessor):
    """`P2PAttnProcessor`'s projections; while the injection is on, every row attends with its sample's
    source queries and keys (a self-attention layer under injection)."""

    def _attend(self, q, k, v, is_cross: bool, mask) -> torch.Tensor:
        c = self.control
        if is_cross or mask is not None or not c.injects(q.shape[0]) or not c.attention_active():
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        n, d = c.n, v.shape[-1]
        values = torch.cat(v.split(n), dim=-1)  # (n, H, N, 3D): each sample's three rows side by side
        out = F.scaled_dot_product_attention(q[:n], k[:n], values)
        return torch.cat(out.split(d, dim=-1))


@contextlib.contextmanager
def plug_and_play(backbone, n: int, num_steps: int, config: PnPParams) -> Iterator[PnPControl]:
    """Plug-and-Play on ``backbone``'s UNet for one batch of n samples: decode inside this block, the UNet
    called on `PnPControl.ROWS`, with ``control.step_callback`` as the sampler's callback."""
    control = PnPControl(n, num_steps, backbone.tokenizers[0].model_max_length, config)
    with control.install(backbone.unet):
        yield control
