"""The `Backbone`: tokenizer(s) + text encoder(s) + UNet + VAE + noise schedule, one interface.

Methods never touch diffusers components directly for the common operations: they encode prompts
and images, call `predict_noise` (which counts UNet evaluations) and decode. Components stay
reachable (``backbone.unet``...) for methods that need to go deeper (attention processors, LoRA).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from icd_bench.errors import ConfigError, SampleWarning

#: ``torch.compile`` modes `Backbone.compile_unet` takes.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")


@dataclass
class PromptEmbeds:
    """Text conditioning for a batch: per-token states (+ SDXL's pooled embeds and time ids)."""

    embeds: torch.Tensor  # B×L×D
    pooled: torch.Tensor | None = None  # SDXL: B×D2
    time_ids: torch.Tensor | None = None  # SDXL: B×6

    def __len__(self) -> int:
        return self.embeds.shape[0]

    @staticmethod
    def cat(items: Sequence[PromptEmbeds]) -> PromptEmbeds:
        """Stack along the batch (e.g. [uncond, cond] for one classifier-free-guided UNet call)."""
        def _cat(xs):
            return None if xs[0] is None else torch.cat(xs, dim=0)
        return PromptEmbeds(
            embeds=torch.cat([p.embeds for p in items], dim=0),
            pooled=_cat([p.pooled for p in items]),
            time_ids=_cat([p.time_ids for p in items]),
        )

    def index(self, idx: slice | Sequence[int] | torch.Tensor) -> PromptEmbeds:
        def _ix(x):
            return None if x is None else x[idx]
        return PromptEmbeds(self.embeds[idx], _ix(self.pooled), _ix(self.time_ids))

    def repeat(self, n: int) -> PromptEmbeds:
        """Repeat a batch-1 conditioning to batch n."""
        def _rep(x):
            return None if x is None else x.expand(n, *x.shape[1:])
        return PromptEmbeds(_rep(self.embeds), _rep(self.pooled), _rep(self.time_ids))

    def unet_kwargs(self) -> dict:
        kw: dict = {"encoder_hidden_states": self.embeds}
        if self.pooled is not None:
            kw["added_cond_kwargs"] = {"text_embeds": self.pooled, "time_ids": self.time_ids}
        return kw


def fit_square(im: Image.Image, side: int, resample) -> Image.Image:
    """Resize so the shorter side is ``side``, then centre-crop a square: the one geometry by which
    images reach a model (`Backbone.preprocess`) and masks follow them (`fit_mask`)."""
    w, h = im.size
    scale = side / min(w, h)
    nw, nh = max(side, round(w * scale)), max(side, round(h * scale))
    im = im.resize((nw, nh), resample)
    left, top = (nw - side) // 2, (nh - side) // 2
    return im.crop((left, top, left + side, top + side))


def fit_mask(mask: np.ndarray, side: int) -> np.ndarray:
    """An H×W bool mask carried through `fit_square` (nearest neighbour) to side × side."""
    im = Image.fromarray(np.asarray(mask, dtype=np.uint8) * 255)
    return np.asarray(fit_square(im, side, Image.Resampling.NEAREST)) > 127


@dataclass
class NFECounter:
    """Counts UNet evaluations in sample rows: a call on a batch of B rows adds B.

    Per-sample NFE of a batch of n samples is ``rows // n`` when every sample is treated alike
    (a classifier-free-guided step on n samples runs 2n rows, so it costs 2 per sample).
    Prompt-to-Prompt's source and target branches of a sample, batched in one call, add one row
    between them (see `Backbone.predict_noise`'s ``branches``).
    """

    rows: int = 0
    calls: int = 0
    _stack: list[int] = field(default_factory=list)

    def add(self, rows: int) -> None:
        self.rows += rows
        self.calls += 1

    @contextlib.contextmanager
    def measure(self) -> Iterator[list[int]]:
        """``with counter.measure() as m: ...`` then ``m[0]`` is the rows spent inside."""
        box = [0]
        start = self.rows
        try:
            yield box
        finally:
            box[0] = self.rows - start


def truncation_notes(tokenizer, prompts: Sequence[str]) -> list[str | None]:
    """Per prompt, None, or a note saying that it is longer than the text encoder's window and is
    truncated to ``model_max_length`` tokens, as diffusers' pipelines do, naming the prompt's whole
    words from the first one that does not fit (a word cut inside counts as dropped)."""
    limit = tokenizer.model_max_length
    notes: list[str | None] = []
    for prompt, ids in zip(prompts, tokenizer(list(prompts), truncation=False).input_ids, strict=True):
        if len(ids) <= limit:
            notes.append(None)
            continue
        words = prompt.split()
        lengths = [len(x) for x in tokenizer([" ".join(words[:i]) for i in range(1, len(words) + 1)],
                                             truncation=False).input_ids]
        kept = sum(n <= limit for n in lengths)  # prefixes grow monotonically in tokens
        dropped = " ".join(words[kept:])
        if len(dropped) > 80:  # the record holds the whole prompt
            dropped = dropped[:80] + "…"
        notes.append(f"prompt truncated to {limit} tokens ({len(ids)} given); ignored: {dropped!r}")
    return notes


def warn_truncated(tokenizer, prompts: Sequence[str]) -> None:
    """Warn, as diffusers' pipelines do, when a prompt is longer than the text encoder's window."""
    for note in truncation_notes(tokenizer, prompts):
        if note:
            warnings.warn(note, SampleWarning, stacklevel=3)


def _move(module: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> None:
    """Move a module, casting only when its dtype differs (diffusers warns on needless casts)."""
    current = next(module.parameters(), None)
    if current is not None and current.dtype != dtype:
        module.to(device=device, dtype=dtype)
    else:
        module.to(device=device)


class Backbone:
    """A latent (or pixel-space, ``vae=None``) text-to-image diffusion model.

    Attributes: ``kind`` ("sd15", "sdxl", "toy", ...), ``source`` (hub id or directory it came
    from), ``tokenizers`` / ``text_encoders`` (lists: one for SD1.5, two for SDXL), ``unet``,
    ``vae`` (or None), ``scheduler`` (a diffusers `DDIMScheduler`: the noise schedule),
    ``resolution`` (default image side in pixels), ``device``, ``dtype``, ``nfe`` (an
    `NFECounter`).
    """

    def __init__(self, *, kind: str, source: str, tokenizers: list, text_encoders: list, unet,
                 vae, scheduler, resolution: int, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32, force_zeros_for_empty_prompt: bool = False):
        self.kind = kind
        self.source = source
        self.tokenizers = tokenizers
        self.text_encoders = text_encoders
        self.unet = unet
        self.vae = vae
        self.scheduler = scheduler
        self.resolution = int(resolution)
        self.force_zeros_for_empty_prompt = force_zeros_for_empty_prompt
        self.nfe = NFECounter()
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self._own: dict = {}  # what `replace_unet` / `cast` changed, for `restore`
        self.to(device, dtype)

    @classmethod
    def from_components(cls, c: dict, *, kind: str, source: str, device: torch.device | str = "cpu",
                        dtype: torch.dtype = torch.float32) -> Backbone:
        """A backbone from diffusers-pipeline components built in memory (keys tokenizer, text_encoder,
        [tokenizer_2, text_encoder_2,] unet, vae, scheduler); SDXL (``kind="sdxl"``) zeroes the empty
        prompt."""
        xl = kind == "sdxl"
        names = ["", "_2"] if xl else [""]
        scale = 2 ** (len(c["vae"].config.block_out_channels) - 1)
        return cls(kind=kind, source=source, tokenizers=[c[f"tokenizer{n}"] for n in names],
                   text_encoders=[c[f"text_encoder{n}"] for n in names], unet=c["unet"], vae=c["vae"],
                   scheduler=c["scheduler"], resolution=int(c["unet"].config.sample_size) * scale,
                   device=device, dtype=dtype, force_zeros_for_empty_prompt=xl)

    # -- placement ---------------------------------------------------------------------------
    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Backbone:
        device = torch.device(device) if device is not None else self.device
        dtype = dtype or self.dtype
        for module, want in [(enc, dtype) for enc in self.text_encoders] + [(self.unet, dtype)] + (
                # The SD/SDXL VAE overflows in fp16; it stays in fp32 (as diffusers' `upcast_vae`).
                [(self.vae, torch.float32)] if self.vae is not None else []):
            _move(module, device, want)
            module.requires_grad_(False)
        self.device, self.dtype = device, dtype
        return self

    def compile_unet(self, mode: str = "default") -> None:
        """``torch.compile`` the UNet in place, with one of `COMPILE_MODES` ("reduce-overhead" adds
        CUDA graphs). Call it after the method has equipped the UNet (guidance input, adapters):
        attribute access (``config``, ``set_adapter``, attention processors) passes through to the
        compiled module. The first calls of each new shape or adapter pay the compilation."""
        if mode not in COMPILE_MODES:
            raise ConfigError(f"unknown compile mode {mode!r}; use one of {', '.join(COMPILE_MODES)}")
        self.replace_unet(torch.compile(self.unet, mode=mode))

    # -- what a method changes, and undoing it -------------------------------------------------
    def replace_unet(self, unet) -> None:
        """Run ``unet`` in place of this backbone's own (a method's equipped UNet: a guidance input,
        adapters; a compiled one) until `restore`."""
        self._own.setdefault("unet", self.unet)
        self.unet = unet

    def cast(self, dtype: torch.dtype) -> None:
        """Move the models to ``dtype`` until `restore` (a method that needs fp32, as NTI)."""
        self._own.setdefault("dtype", self.dtype)
        self.to(dtype=dtype)

    def restore(self) -> None:
        """Undo `replace_unet`, `compile_unet` and `cast`: the backbone as it was loaded."""
        if "unet" in self._own:
            self.unet = self._own.pop("unet")
        if "dtype" in self._own:
            self.to(dtype=self._own.pop("dtype"))

    # -- schedule ----------------------------------------------------------------------------
    @property
    def num_train_timesteps(self) -> int:
        return int(self.scheduler.config.num_train_timesteps)

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        """ᾱ_t for t = 0..T-1 (float64 on CPU), the α of the paper's eq. 1."""
        return self.scheduler.alphas_cumprod.to(torch.float64)

    @property
    def final_alpha_cumprod(self) -> float:
        """ᾱ of the clean end of a sampling grid (1.0, or ᾱ_0 with ``set_alpha_to_one=False``)."""
        return float(self.scheduler.final_alpha_cumprod)

    # -- geometry ----------------------------------------------------------------------------
    @property
    def vae_scale_factor(self) -> int:
        if self.vae is None:
            return 1
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        return int(self.unet.config.in_channels)

    def latent_shape(self, batch: int, resolution: int | None = None) -> tuple[int, int, int, int]:
        side = (resolution or self.resolution) // self.vae_scale_factor
        return (batch, self.latent_channels, side, side)

    def initial_noise(self, generators: Sequence[torch.Generator]) -> torch.Tensor:
        """Per-sample standard normal latents, drawn on the CPU so a seed gives the same noise on
        every device and for every batch composition."""
        shape = self.latent_shape(1)
        noise = torch.cat([torch.randn(shape, generator=g, dtype=torch.float32) for g in generators])
        return noise.to(self.device, self.dtype)

    # -- text --------------------------------------------------------------------------------
    def prompt_notes(self, prompts: Sequence[str]) -> list[str | None]:
        """Per prompt, None or the note that `encode_prompt` will truncate it (and warn)."""
        return truncation_notes(self.tokenizers[0], prompts)

    @torch.no_grad()
    def encode_prompt(self, prompts: Sequence[str]) -> PromptEmbeds:
        """Encode prompts the way the model's pipeline does (SD1.5: last hidden state; SDXL:
        penultimate hidden states of both encoders concatenated, pooled from the second)."""
        prompts = list(prompts)
        warn_truncated(self.tokenizers[0], prompts)
        states, pooled = [], None
        for tok, enc in zip(self.tokenizers, self.text_encoders, strict=True):
            ids = tok(prompts, padding="max_length", max_length=tok.model_max_length,
                      truncation=True, return_tensors="pt").input_ids.to(self.device)
            if len(self.text_encoders) == 1:
                out = enc(ids)
                states.append(out[0])
            else:
                out = enc(ids, output_hidden_states=True)
                states.append(out.hidden_states[-2])
                if hasattr(out, "text_embeds"):
                    pooled = out.text_embeds
        embeds = torch.cat(states, dim=-1).to(self.dtype)
        if len(self.text_encoders) == 1:
            return PromptEmbeds(embeds)
        time_ids = torch.tensor([[self.resolution, self.resolution, 0, 0, self.resolution, self.resolution]],
                                device=self.device, dtype=self.dtype).expand(len(prompts), 6)
        return PromptEmbeds(embeds, pooled.to(self.dtype), time_ids)

    def null_embeds(self, batch: int) -> PromptEmbeds:
        """The unconditional (null) conditioning ∅ of classifier-free guidance for a batch."""
        emb = self.encode_prompt([""])
        if self.force_zeros_for_empty_prompt:
            emb = PromptEmbeds(torch.zeros_like(emb.embeds),
                               None if emb.pooled is None else torch.zeros_like(emb.pooled),
                               emb.time_ids)
        return emb.repeat(batch)

    # -- images ------------------------------------------------------------------------------
    def preprocess(self, images: Sequence[Image.Image], resolution: int | None = None) -> torch.Tensor:
        """PIL images → B×3×H×W float tensor in [0, 1] at the model's resolution.

        Each image is resized so its shorter side equals the resolution, then centre-cropped.
        """
        side = resolution or self.resolution
        out = []
        for im in images:
            im = fit_square(im.convert("RGB"), side, Image.Resampling.BICUBIC)
            out.append(torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1))
        return torch.stack(out).to(self.device)

    @torch.no_grad()
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """B×3×H×W images in [0, 1] → latents x_0 (scaled by the VAE's scaling factor)."""
        x = images.to(self.device, torch.float32) * 2 - 1
        if self.vae is None:
            return x.to(self.dtype)
        latents = self.vae.encode(x).latent_dist.mean * self.vae.config.scaling_factor
        return latents.to(self.dtype)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents x_0 → B×3×H×W images in [0, 1] (float32)."""
        x = latents.to(self.device, torch.float32)
        if self.vae is not None:
            x = self.vae.decode(x / self.vae.config.scaling_factor).sample
        return ((x + 1) / 2).clamp(0, 1)

    # -- the model ---------------------------------------------------------------------------
    def predict_noise(self, latents: torch.Tensor, t: int | torch.Tensor, cond: PromptEmbeds,
                      timestep_cond: torch.Tensor | None = None, *, branches: int = 1,
                      counted: int | None = None) -> torch.Tensor:
        """ε_θ(x_t, t, c): one UNet evaluation on every row of ``latents`` (counted in ``nfe``).

        ``timestep_cond`` is the guidance embedding of guidance-distilled UNets
        (``time_cond_proj_dim``); plain UNets take None. ``branches`` > 1 marks rows that are
        parallel branches of the same samples in one batched call — Prompt-to-Prompt's source
        and target — counted once, the convention of the iCD paper's step counts. ``counted`` gives the
        rows to count where the branches differ in rows (Plug-and-Play's unguided source row beside its
        guided target's two: 2 per sample).
        """
        b = latents.shape[0]
        if not torch.is_tensor(t):  # a fill on the device: no host-to-device copy inside the loop
            t = torch.full((b,), int(t), device=self.device)
        t = t.to(self.device)
        if t.ndim == 0:
            t = t.expand(b)
        if b % branches:
            raise ValueError(f"{b} rows do not split into {branches} branches")
        self.nfe.add(b // branches if counted is None else counted)
        if timestep_cond is not None:
            timestep_cond = timestep_cond.to(self.device, self.dtype)
        out = self.unet(latents.to(self.device, self.dtype), t, timestep_cond=timestep_cond,
                        **cond.unet_kwargs(), return_dict=False)[0]
        return out
