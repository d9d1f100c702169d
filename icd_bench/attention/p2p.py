"""Prompt-to-Prompt as diffusers attention processors, on PyTorch SDPA wherever no map is kept.

A batch holds, for n samples, the source rows then the target rows (``[src_1..src_n,
tgt_1..tgt_n]``), possibly repeated in G groups (G = 2 for classifier-free guidance:
``[uncond block, cond block]``). Only the last (conditional) group is edited and only its maps
are kept, as in the original controllers (they edit ``attn[h // 2:]``); the other groups attend
as usual. While an edit is active, the target branch is steered by the source branch (Hertz et
al., 2022):

- **cross-attention** (the first ``int(cross_replace · (N + 1))`` of N steps, the original's
  window): the target's attention probabilities become ``P_src @ A + P_tgt @ B`` — A is the
  replace matrix (B = 0), or for refine the gather of aligned source tokens weighted by α (and
  B = diag(1 − α)); reweighting multiplies the columns of the target's edited words (its words not
  in the source, stop words skipped: the iCD editing script) or of its blend word (PIE-Bench's
  runs) by the amplify factor. Because ``(P @ A) @ V = P @ (A @ V)``, this runs as
  ``SDPA(q_src, k_src, A·v_tgt) [+ SDPA(q_tgt, k_tgt, B·v_tgt)]``: no L×N map is materialised;
- **self-attention** (the first ``int(self_replace · N)`` steps): the target takes the source's
  attention pattern, ``SDPA(q_src, k_src, v_tgt)`` — the source's queries and keys swapped in;
- **local blend** (from ``blend_start`` on): cross-attention maps of the blend words are kept only
  at the blend resolution (the only place probabilities are computed explicitly), and after each
  step the target latents outside the words' mask are reset to the source's.

`P2PControl.install(unet)` swaps these processors in and restores the originals afterwards;
`prompt_to_prompt(backbone, ...)` builds the control for a backbone and installs it; `p2p_decode` is
the one decode every P2P-based method (iCD, DDIM + P2P, NTI, NPI, EF-DDPM) runs: the
``[sources; targets]`` batch, the control advanced by the sampler's `StepInfo` callback, the step
count and the batch layout checked. `P2PParams` is the one parameter class: those methods' ``Params``
inherit it and the control reads it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F

from icd_bench.attention.align import refine_mapper, replace_mapper, word_token_positions
from icd_bench.backbones.base import PromptEmbeds
from icd_bench.diffusion.loop import Callback, StepInfo
from icd_bench.words import STOPWORDS


@dataclass
class P2PParams:
    """Prompt-to-Prompt's parameters (PIE-Bench's setting by default): the fields every P2P method's
    ``Params`` inherits, and what `P2PControl` reads."""

    p2p: bool = True  # edit with Prompt-to-Prompt; false: plain prompt switch
    p2p_mode: Literal["replace", "refine", "auto"] = "auto"  # auto: replace when the word counts match
    cross_replace: float = 0.4  # fraction of decoding steps with cross-attention injection
    self_replace: float = 0.6  # fraction with self-attention injection
    amplify: float = 1.0  # reweighting (1 = none) ...
    amplify_words: Literal["edited", "blend"] = "edited"  # ... of the target's edited words or its blend word
    local_blend: bool = True  # with the sample's blend words, when it has them
    blend_start: float = 0.2  # fraction of steps before local blend starts
    blend_threshold: float = 0.3  # of the normalised word maps, the source's and the target's
    self_max_tokens: int = 32 * 32  # self-attention injection only on maps this small (the reference's rule)
    # the original's replace matrix after the last swapped word, and its reweighting of only the exact
    # occurrences of a word (align.word_token_positions): the official code where the project differs
    reference_compat: bool = False
    #: the values that reproduce the official implementations where the defaults correct them (README's
    #: deviations table); `config.official_switches` merges them over a Params class's bases
    OFFICIAL_SWITCHES: ClassVar[dict[str, Any]] = {"reference_compat": True}

    def __post_init__(self):
        if self.p2p_mode not in ("replace", "refine", "auto"):
            raise ValueError(f"p2p_mode must be replace, refine or auto, got {self.p2p_mode!r}")
        if self.amplify_words not in ("edited", "blend"):
            raise ValueError(f"amplify_words must be edited or blend, got {self.amplify_words!r}")
        for name in ("cross_replace", "self_replace", "blend_start", "blend_threshold"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.self_max_tokens < 0:
            raise ValueError(f"self_max_tokens must be >= 0 (0: no self-attention injection), "
                             f"got {self.self_max_tokens}")


def edited_target_words(source: str, target: str) -> list[str]:
    """The target's words that are not words of the source, stop words left out (the official iCD
    editing script's choice of the words to amplify)."""
    s = set(source.split())
    return [w for w in dict.fromkeys(target.split()) if w not in s and w not in STOPWORDS]


class AttentionControl:
    """What an attention control of one batch of n (source, target) prompt pairs over ``num_steps``
    steps shares (`P2PControl` and InfEdit's `uac.UACControl`): the step counter its sampler callback
    advances, the per-sample mixing matrices A and B (cross-attention of the edited branch:
    ``P·A + P'·B``), the store of cross-attention maps at the blend resolution, and its installation on
    a UNet. A subclass fills A, B and ``blend_tokens``, and sets `layout`, ``processor_class`` and
    `step_callback`."""

    layout: tuple[str, ...] = ()  # the row blocks of the batch it steers, n rows each
    processor_class: type  # what `install` puts on the UNet

    def __init__(self, n: int, num_steps: int, context_length: int, *, blend_resolution: int | None = None,
                 store_maps: bool = False):
        self.n, self.num_steps, self.step = n, num_steps, 0
        self.store_maps = store_maps  # compute cross-attention explicitly everywhere (the reference path)
        L = context_length
        self.A, self.B = torch.zeros(n, L, L), torch.zeros(n, L, L)
        self.has_b = False  # whether B is used at all (P2P's replace leaves it zero)
        self._placed: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self.blend_tokens: list = []  # per sample: the blend words' token positions, or None
        self.blend_resolution = blend_resolution
        self.maps: dict[int, torch.Tensor] = {}  # hw → the summed maps of the blend resolution

    def matrices(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A and B as (n, 1, L, L) on ``like``'s device and dtype, copied there once per batch
        (not once per attention layer and step)."""
        key = (like.device, like.dtype)
        if key not in self._placed:
            self._placed[key] = tuple(m.to(like.device, like.dtype)[:, None] for m in (self.A, self.B))
        return self._placed[key]

    @property
    def blending(self) -> bool:
        return any(b is not None for b in self.blend_tokens)

    def keeps_maps_at(self, hw: int) -> bool:
        if not self.blending:
            return False
        if self.blend_resolution is None:
            return True
        return hw == self.blend_resolution**2

    def record(self, probs: torch.Tensor) -> None:
        """Add head-averaged cross-attention probs (rows, heads, hw, L) to the store."""
        hw = probs.shape[-2]
        maps = probs.mean(1).float()
        self.maps[hw] = self.maps[hw] + maps if hw in self.maps else maps

    @contextlib.contextmanager
    def install(self, unet) -> Iterator[AttentionControl]:
        original = dict(unet.attn_processors)
        unet.set_attn_processor(self.processor_class(self))
        try:
            yield self
        finally:
            unet.set_attn_processor(original)

    def check_layout(self, x: torch.Tensor) -> None:
        """Raise unless ``x`` holds the batch's row blocks (`layout`, n rows each)."""
        if x.shape[0] != len(self.layout) * self.n:
            raise RuntimeError(f"the sampler must keep the [{'; '.join(self.layout)}] layout of "
                               f"{len(self.layout) * self.n} rows, got {x.shape[0]}")

    def step_callback(self, info: StepInfo) -> torch.Tensor:
        """The sampler callback (`loop.Callback`): the latents after the step, and the schedule advanced."""
        raise NotImplementedError

    def check_finished(self, steps: int | None = None) -> None:
        """Raise unless the sampler reported ``steps`` steps (default ``num_steps``): the schedule
        advances only through the callback."""
        expected = self.num_steps if steps is None else steps
        if self.step != expected:
            raise RuntimeError(f"the attention control's schedule saw {self.step} steps, the sampler should "
                               f"have reported {expected}")


class P2PControl(AttentionControl):
    """The edit state of one batch of n (source, target) prompt pairs over ``num_steps`` steps."""

    layout = ("sources", "targets")

    def __init__(self, tokenizer, sources: Sequence[str], targets: Sequence[str], num_steps: int,
                 config: P2PParams | None = None, blend_words: Sequence[tuple[str, str] | None] | None = None,
                 blend_resolution: int | None = None, store_maps: bool = False):
        super().__init__(len(sources), num_steps, tokenizer.model_max_length,
                         blend_resolution=blend_resolution, store_maps=store_maps)
        self.cfg = config or P2PParams()
        L = tokenizer.model_max_length
        A, B = self.A, self.B
        for k, (src, tgt) in enumerate(zip(sources, targets, strict=True)):
            mode = self.cfg.p2p_mode
            if mode == "auto":
                mode = "replace" if len(src.split()) == len(tgt.split()) else "refine"
            if mode == "replace":
                A[k] = replace_mapper(tokenizer, src, tgt, official_tail=self.cfg.reference_compat)
            else:
                mapper, alphas = refine_mapper(tokenizer, src, tgt)
                A[k, mapper, torch.arange(L)] = alphas  # P_src[:, mapper] * α  as  P_src @ A
                B[k] = torch.diag(1.0 - alphas)
                self.has_b = self.has_b or bool((alphas < 1).any())
            if self.cfg.amplify != 1.0:
                eq = torch.ones(L)
                for w in self.amplified_words(k, src, tgt, blend_words):
                    eq[word_token_positions(tokenizer, tgt, w,
                                            exact=self.cfg.reference_compat)] = self.cfg.amplify
                A[k] = A[k] * eq
                B[k] = B[k] * eq
        # local blend: the token positions of each sample's blend words, in each branch
        for k in range(self.n):
            words = blend_words[k] if blend_words else None
            if not (self.cfg.local_blend and words):
                self.blend_tokens.append(None)
                continue
            self.blend_tokens.append((word_token_positions(tokenizer, sources[k], words[0]),
                                      word_token_positions(tokenizer, targets[k], words[1])))

    def amplified_words(self, k: int, source: str, target: str, blend_words) -> list[str]:
        if self.cfg.amplify_words == "edited":
            return edited_target_words(source, target)
        words = blend_words[k] if blend_words else None  # PIE-Bench: the target's blend word
        return [words[1]] if words else []

    # -- schedule ----------------------------------------------------------------------------
    def cross_active(self) -> bool:
        # the original's window: its per-step weights have N + 1 rows, the first int(f·(N + 1)) on
        return self.step < int(self.cfg.cross_replace * (self.num_steps + 1))

    def self_active(self) -> bool:
        return self.step < int(self.cfg.self_replace * self.num_steps)

    def after_step(self, x: torch.Tensor) -> torch.Tensor:
        """Call after every decoding step: local blend, then advance."""
        x = self.blend_latents(x)
        self.step += 1
        return x

    def step_callback(self, info: StepInfo) -> torch.Tensor:
        """`after_step` as a sampler callback, the batch layout checked."""
        self.check_layout(info.x)
        return self.after_step(info.x)

    def blend_latents(self, x: torch.Tensor) -> torch.Tensor:
        """After a step: outside the blend words' mask the target latents take the source's."""
        if not self.blending or not self.maps or self.step < int(self.cfg.blend_start * self.num_steps):
            return x
        side = x.shape[-1]
        masks = []
        for hw, maps in self.maps.items():
            s = int(round(hw**0.5))
            word_maps = torch.zeros(2 * self.n, hw, device=maps.device)
            for k, tokens in enumerate(self.blend_tokens):
                if tokens is not None:
                    word_maps[k] = maps[k][:, tokens[0]].sum(-1)
                    word_maps[self.n + k] = maps[self.n + k][:, tokens[1]].sum(-1)
            m = word_maps.view(2 * self.n, 1, s, s)
            m = F.max_pool2d(m, kernel_size=3, stride=1, padding=1)
            masks.append(F.interpolate(m, size=(side, side), mode="nearest"))
        mask = torch.stack(masks).mean(0)
        mask = mask / mask.flatten(1).amax(-1).clamp_min(1e-12).view(-1, 1, 1, 1)
        th = self.cfg.blend_threshold
        mask = torch.maximum((mask[: self.n] > th).float(), (mask[self.n:] > th).float())  # union
        groups = x.shape[0] // (2 * self.n)
        xg = x.view(groups, 2, self.n, *x.shape[1:]).clone()
        for k, tokens in enumerate(self.blend_tokens):
            if tokens is not None:
                xg[:, 1, k] = xg[:, 0, k] + mask[k].to(x.dtype) * (xg[:, 1, k] - xg[:, 0, k])
        return xg.view_as(x)


class P2PAttnProcessor:
    """One processor for every attention layer; self- or cross-attention by its inputs."""

    def __init__(self, control: AttentionControl):
        self.control = control

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            b, ch, h, w = hidden_states.shape
            hidden_states = hidden_states.view(b, ch, h * w).transpose(1, 2)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        is_cross = encoder_hidden_states is not None
        batch = hidden_states.shape[0]
        query = attn.to_q(hidden_states)
        context = hidden_states if not is_cross else (
            attn.norm_encoder_hidden_states(encoder_hidden_states) if attn.norm_cross
            else encoder_hidden_states)
        key, value = attn.to_k(context), attn.to_v(context)
        heads = attn.heads
        d = key.shape[-1] // heads
        q, k, v = (t.view(batch, -1, heads, d).transpose(1, 2) for t in (query, key, value))
        if attn.norm_q is not None:
            q = attn.norm_q(q)
        if attn.norm_k is not None:
            k = attn.norm_k(k)

        out = self._attend(q, k, v, is_cross, attention_mask)

        out = out.transpose(1, 2).reshape(batch, -1, heads * d).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if input_ndim == 4:
            out = out.transpose(-1, -2).reshape(b, ch, h, w)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor

    def _attend(self, q, k, v, is_cross: bool, mask) -> torch.Tensor:
        c = self.control
        n2 = 2 * c.n
        if mask is not None or q.shape[0] % n2:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        if q.shape[0] > n2:  # CFG groups: the unconditional rows attend as usual, the last group is edited
            plain = F.scaled_dot_product_attention(q[:-n2], k[:-n2], v[:-n2])
            return torch.cat([plain, self._attend(q[-n2:], k[-n2:], v[-n2:], is_cross, None)])
        hw = q.shape[-2]
        keep = is_cross and c.keeps_maps_at(hw)
        edit = c.cross_active() if is_cross else (c.self_active() and hw <= c.cfg.self_max_tokens)
        if not edit and not keep:
            return F.scaled_dot_product_attention(q, k, v)

        def split(t):  # (2n, H, N, D) → source, target: (n, H, N, D)
            return t[: c.n], t[c.n:]

        (qs, qt), (ks, kt), (vs, vt) = split(q), split(k), split(v)
        if is_cross and (keep or c.store_maps):
            scale = q.shape[-1] ** -0.5
            ps = torch.softmax(qs @ ks.transpose(-1, -2) * scale, dim=-1)
            pt = torch.softmax(qt @ kt.transpose(-1, -2) * scale, dim=-1)
            if edit:
                A, B = c.matrices(ps)
                pt = ps @ A + (pt @ B if c.has_b else 0)
            if keep:
                c.record(torch.cat([ps, pt]))
            out_s, out_t = ps @ vs, pt @ vt
        elif is_cross:  # edit through SDPA: (P_src A) v = P_src (A v)
            A, B = c.matrices(v)
            out_s = F.scaled_dot_product_attention(qs, ks, vs)
            out_t = F.scaled_dot_product_attention(qs, ks, A @ vt)
            if c.has_b:
                out_t = out_t + F.scaled_dot_product_attention(qt, kt, B @ vt)
        else:  # self-attention injection: the source's queries and keys, the target's values
            both = F.scaled_dot_product_attention(qs, ks, torch.cat([vs, vt], dim=-1))
            out_s, out_t = both.split(vs.shape[-1], dim=-1)
        return torch.cat([out_s, out_t])


P2PControl.processor_class = P2PAttnProcessor  # what `install` puts on the UNet


def blend_resolution(backbone) -> int:
    """The side of the attention maps local blend uses: the latent side / 4 (16 at SD1.5's 64×64,
    as the P2P reference), at least the lowest attention resolution a toy UNet has."""
    side = backbone.resolution // backbone.vae_scale_factor
    return max(side // 4, side // 2 ** (len(backbone.unet.config.block_out_channels) - 1))


@contextlib.contextmanager
def prompt_to_prompt(backbone, sources: Sequence[str], targets: Sequence[str], num_steps: int,
                     config: P2PParams, blend_words=None) -> Iterator[P2PControl]:
    """Prompt-to-Prompt on ``backbone``'s UNet for one batch: decode ``[sources; targets]`` rows
    inside this block with ``control.step_callback`` as the sampler's callback (`p2p_decode` does both)."""
    control = P2PControl(backbone.tokenizers[0], sources, targets, num_steps=num_steps, config=config,
                         blend_words=blend_words, blend_resolution=blend_resolution(backbone))
    with control.install(backbone.unet):
        yield control


#: sample(latents, cond, callback) -> latents: a method's sampler loop over 2n rows, ``callback`` after
#: each step
Sampler = Callable[[torch.Tensor, PromptEmbeds, Callback], torch.Tensor]


def p2p_decode(backbone, sample: Sampler, x: torch.Tensor, sources: Sequence[str], targets: Sequence[str],
               num_steps: int, config: P2PParams, blend_words=None, *,
               source_cond: PromptEmbeds | None = None, steps_run: int | None = None) -> torch.Tensor:
    """Decode the latents ``x`` (n rows) with the source and the target prompts in one batch
    ``[sources; targets]`` of 2n rows, the target steered by Prompt-to-Prompt; returns the target rows.

    ``sample`` is the method's sampler loop; P2P's windows are fractions of ``num_steps`` and the
    control advances once per ``callback`` call, so the loop must report every step it runs:
    ``steps_run`` of them (default ``num_steps``; fewer when it starts later on the grid, as EF-DDPM's
    skip). ``source_cond``: the sources' embeddings when the caller has them already.
    """
    n = x.shape[0]
    if not n == len(sources) == len(targets):
        raise ValueError(f"P2P decodes n latents with n source and n target prompts, got {n}, "
                         f"{len(sources)} and {len(targets)}")
    if source_cond is None:
        source_cond = backbone.encode_prompt(sources)
    cond = PromptEmbeds.cat([source_cond, backbone.encode_prompt(targets)])

    with prompt_to_prompt(backbone, sources, targets, num_steps, config, blend_words) as control:
        out = controlled_decode(control, sample, torch.cat([x, x]), cond, steps_run)
    return out[n:]


def controlled_decode(control: AttentionControl, sample: Sampler, x: torch.Tensor, cond: PromptEmbeds,
                      steps_run: int | None = None) -> torch.Tensor:
    """Run ``sample`` on the batch ``x`` (the control's `layout`) with ``control.step_callback`` as its
    callback, the control installed already; then check that it reported ``steps_run`` steps (default its
    ``num_steps``) and kept the layout. Every attention-controlled decode (P2P, MasaCtrl) ends here."""
    out = sample(x, cond, control.step_callback)
    control.check_finished(steps_run)
    control.check_layout(out)
    return out
