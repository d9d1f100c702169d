"""iCD training, both stages, on any backbone: `train_cfg_distill` (stage 1) and `train_icd` (stage 2).

Stage 1 distils classifier-free guidance into a student UNet with a w input (``time_cond_proj_dim``,
zero-initialised so it starts as the teacher). Stage 2 trains the forward (fCDm) and reverse (CDm)
LoRA adapters on that guidance-embedded UNet with the objectives of `icd_bench.icd.losses`:
L = L_CD + L_fCD + λ_f L_f + λ_r L_r. Each term is back-propagated as soon as it is computed
(gradients add up to the total's), so only one term's graph is alive at a time.

Engineering: accelerate picks the device and mixed precision; under ``accelerate launch`` every
process draws its own data (seeded by step and process) and the adapters' gradients are averaged
across processes before each optimizer step. Checkpoints every N steps are atomic and resume
exactly (model/adapter weights, optimizer, LR schedule, RNG-free data: batches and noise are
functions of (seed, step, process)); each carries the recipe and the package versions.
The outputs use the public release's formats (a UNet state dict; peft-key LoRA safetensors), so
``icd-bench run --method icd --set teacher=... --set forward_lora=... --set reverse_lora=...``
runs them.
"""

from __future__ import annotations

import json
import random
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from icd_bench.data.stream import SOURCES as STREAM_SOURCES
from icd_bench.data.stream import StreamData
from icd_bench.icd.boundaries import Boundaries, check_boundary_choice, choose_boundaries
from icd_bench.icd.guidance import guidance_code, guidance_embedding
from icd_bench.icd.losses import (
    Solver,
    forward_cd_loss,
    forward_preservation_loss,
    guidance_distillation_loss,
    reverse_cd_loss,
    reverse_preservation_loss,
)
from icd_bench.icd.model import (
    FORWARD,
    RELEASE_GUIDANCE_DIM,
    REVERSE,
    adapters_off,
    add_guidance_embedding,
    save_adapter,
    start_adapter_from,
)
from icd_bench.provenance import versions
from icd_bench.registry import TRAIN_SOURCES
from icd_bench.training_utils import (
    LR_DECAYS,
    JsonlLog,
    TrainLoop,
    make_accelerator,
    recipe_to_dict,
    warmup_schedule,
)


# -- recipes --------------------------------------------------------------------------------------
@dataclass
class DataConfig:
    # "toy": the toy world's scenes; "webdataset" / "hf": streamed image–caption pairs (data/stream.py);
    # else a registered dataset name (e.g. coco-captions, folder)
    source: str = "toy"
    data_dir: str | None = None
    split: str | None = None
    urls: str | list[str] | None = None  # webdataset: shards, a brace pattern / a list / a folder of .tar
    image_key: str = "jpg;jpeg;png;webp"  # webdataset: the image's extension in a sample (first found)
    caption_key: str = "txt;caption"
    dataset: str | None = None  # hf: a hub id or a local folder (save_to_disk output, or data files)
    hf_split: str = "train"
    image_column: str = "image"
    caption_column: str = "text"
    # write OUT/samples/process-I.jsonl: per step the keys of the samples process I read (streamed sources;
    # an audit of the sharding and of resume)
    log_samples: bool = False


@dataclass
class CommonTrainConfig:
    backbone: str = "toy"
    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-4
    warmup: int = 100
    lr_decay: str = "constant"  # after the warm-up: constant (the official trainers) or cosine down to 0
    grad_clip: float = 1.0
    loss: str = "l2"  # l2 | huber (pseudo-Huber, as the reference)
    huber_c: float = 0.001
    # w (1 = unguided); paper SD1.5: 1, 8, 12, 16, 20
    guidance_scales: tuple[float, ...] = (1.0, 3.0, 5.0, 7.0)
    seed: int = 0
    checkpoint_every: int = 250
    log_every: int = 25
    threads: int = 2
    mixed_precision: str = "no"
    # micro-batches per optimiser step: the global batch is processes x batch_size x accumulate
    # (the official trainers take 1 and refuse others; more reaches a paper batch on fewer devices)
    accumulate: int = 1

    def __post_init__(self):
        if self.accumulate < 1:
            raise ValueError("accumulate must be >= 1")
        if self.loss not in ("l2", "huber"):
            raise ValueError(f"loss must be l2 or huber, got {self.loss!r}")
        if not self.guidance_scales or min(self.guidance_scales) < 0:
            raise ValueError("guidance_scales must be non-empty and >= 0")
        if self.lr_decay not in LR_DECAYS:
            raise ValueError(f"lr_decay must be one of {', '.join(LR_DECAYS)}, got {self.lr_decay!r}")


@dataclass
class CfgDistillConfig(CommonTrainConfig):
    guidance_dim: int = RELEASE_GUIDANCE_DIM


@dataclass
class ICDTrainConfig(CommonTrainConfig):
    teacher: str = ""  # the stage-1 student (state dict); empty: a zero-initialised guidance input
    # warm start: the two adapters begin as these LoRA files (a continued training; a file of a lower rank
    # widens exactly: `model.start_adapter_from`), else as LoRA(lora_rank, lora_alpha) with B = 0
    init_forward_lora: str = ""
    init_reverse_lora: str = ""
    boundaries: str = "4step-tau0.8"
    reverse_boundaries: tuple[int, ...] | None = None
    forward_boundaries: tuple[int, ...] | None = None
    solver_steps: int = 50  # the teacher's grid: skip k = T / solver_steps
    lora_rank: int = 64
    lora_alpha: float = 64.0
    train_reverse: bool = True
    train_forward: bool = True
    lambda_f: float = 1.5  # forward preservation (0 disables)
    lambda_r: float = 1.5  # reverse preservation (0 disables)
    # the CFG scales L_r's CD leg runs at, one drawn per sample: (1,) unguided, the paper and the release;
    # others are this project's option, so that guided decoding too learns to return to the source
    preserve_scales: tuple[float, ...] = (1.0,)
    target: str = "online"  # "online": the student without gradient (the reference); "ema"
    target_ema_decay: float = 0.95
    # the first solver step's teacher target: the clean end (true), or ᾱ_0 as the official solver (false)
    clean_anchor: bool = True
    # "summed": the four terms' gradients summed into one optimiser step per batch; "per_term": an
    # optimiser step (clipped) after each term, one optimiser per adapter — the official trainer's schedule
    optimizer_steps: str = "summed"
    # one noise draw per batch for every term (the official trainer), else one per term
    shared_noise: bool = False
    # the UNet and its inputs in channels-last memory layout (oneDNN's convolutions; measured on the
    # 2-core CPU: a stage-2 step 5 % faster at batch 16, 3 % at batch 8)
    channels_last: bool = True

    def __post_init__(self):
        super().__post_init__()
        if self.target not in ("online", "ema"):
            raise ValueError(f"target must be online or ema, got {self.target!r}")
        if not self.preserve_scales or min(self.preserve_scales) < 0:
            raise ValueError("preserve_scales must be non-empty and >= 0")
        if self.optimizer_steps not in ("summed", "per_term"):
            raise ValueError(f"optimizer_steps must be summed or per_term, got {self.optimizer_steps!r}")
        if not (self.train_reverse or self.train_forward):
            raise ValueError("nothing to train: train_reverse and train_forward are both false")
        check_boundary_choice(self.boundaries, self.reverse_boundaries, self.forward_boundaries)

    def boundary_set(self) -> Boundaries:
        return choose_boundaries(self.boundaries, self.reverse_boundaries, self.forward_boundaries)


CFG_SECTIONS = {"data": DataConfig, "train": CfgDistillConfig}
ICD_SECTIONS = {"data": DataConfig, "train": ICDTrainConfig}


# -- data -----------------------------------------------------------------------------------------
class TrainData:
    """Deterministic batches of (images in [0, 1], captions) as functions of (seed, step, process)."""

    def __init__(self, cfg: DataConfig, seed: int, preprocess, resolution: int, process: int = 0,
                 processes: int = 1, out_dir: Path | None = None):
        self.cfg, self.seed, self.preprocess, self.resolution = cfg, seed, preprocess, resolution
        self.process = process
        self.stream = None
        self.sample_log = (JsonlLog(Path(out_dir) / "samples" / f"process-{process}.jsonl")
                           if cfg.log_samples and out_dir is not None else None)
        self._log_started = False
        if cfg.source in STREAM_SOURCES:
            self.stream = StreamData(cfg, seed, resolution, process, processes)
            self.dataset = None
        elif cfg.source in TRAIN_SOURCES:  # generated data (the toy world's scenes)
            self.scenes = TRAIN_SOURCES.get(cfg.source)(seed, resolution)
            self.dataset = None
        else:
            from icd_bench.data.base import open_dataset

            self.dataset = open_dataset(cfg.source, data_dir=Path(cfg.data_dir) if cfg.data_dir else None,
                                        split=cfg.split)
            self.ids = list(self.dataset.ids())
            if not self.ids:
                from icd_bench.errors import ConfigError

                raise ConfigError(f"dataset {cfg.source!r} has no samples to train on")

    def batch(self, step: int, size: int) -> tuple[torch.Tensor, list[str]]:
        """This process's batch of ``step``."""
        if self.stream is not None:
            batch = self.stream.batch(step, size)
            if self.sample_log is not None:
                self._log(step, self.stream.last_keys)
            return batch
        if self.dataset is None:
            return self.scenes.batch(step, size, self.process)
        rng = random.Random(f"{self.seed}:{step}:{self.process}")
        samples = [self.dataset.load(rng.choice(self.ids)) for _ in range(size)]
        return self.preprocess([s.image for s in samples]), [s.source_prompt for s in samples]

    def _log(self, step: int, keys: list[str]) -> None:
        """One JSON line per step; a resumed run first drops the lines of the steps it redoes."""
        if not self._log_started:
            self.sample_log.truncate_after(step - 1)
            self._log_started = True
        self.sample_log.append({"step": step, "keys": keys})


# -- shared machinery -------------------------------------------------------------------------------
def _step_generator(seed: int, step: int, process: int) -> torch.Generator:
    """The generator of one step's noise, timesteps and scales: a function of (seed, step, process)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 1_009 + process)


def _micro_steps(step: int, accumulate: int) -> range:
    """The data / noise indices of an optimiser step's micro-batches (``step`` itself without
    accumulation)."""
    return range(step * accumulate, (step + 1) * accumulate)


def _draw_scales(scales: tuple[float, ...], n: int, generator: torch.Generator) -> torch.Tensor:
    """n CFG scales drawn uniformly from the recipe's list."""
    return torch.tensor(scales)[torch.randint(0, len(scales), (n,), generator=generator)]


class AdapterOptimisers:
    """AdamW with warm-up over the trained adapters: one optimiser over both (``optimizer_steps =
    "summed"``: one step per batch) or one per adapter (``"per_term"``: a step after each term, the
    official trainer's schedule); before each step the gradients are averaged over processes and clipped."""

    def __init__(self, acc, unet, names: list[str], params: dict[str, torch.nn.Parameter],
                 cfg: ICDTrainConfig):
        self.acc, self.cfg = acc, cfg
        self.groups = ({"all": list(params.values())} if cfg.optimizer_steps == "summed" else
                       {name: list(adapter_parameters(unet, name).values()) for name in names})
        self.optimizers = {}
        for key, group in self.groups.items():
            optimizer = torch.optim.AdamW(group, lr=cfg.lr, weight_decay=0.0)
            self.optimizers[key] = acc.prepare(optimizer, warmup_schedule(optimizer, cfg.warmup, cfg.lr_decay,
                                                                          cfg.steps))

    def step(self, key: str) -> None:
        """Average over processes, clip, step the optimiser ``key`` (and its schedule), zero its grads."""
        group, (optimizer, schedule) = self.groups[key], self.optimizers[key]
        if self.acc.num_processes > 1:
            for p in group:
                if p.grad is not None:
                    p.grad = self.acc.reduce(p.grad, reduction="mean")
        if self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(group, self.cfg.grad_clip)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)

    def after_term(self, adapter: str) -> None:
        if self.cfg.optimizer_steps == "per_term":
            self.step(adapter)

    def after_batch(self) -> None:
        if self.cfg.optimizer_steps == "summed":
            self.step("all")

    @property
    def lr(self) -> float:
        return next(iter(self.optimizers.values()))[1].get_last_lr()[0]


class AdapterEps:
    """The losses' ε-callables ``(x, t, w) -> ε`` on the one UNet of both iCD models: the teacher's
    (adapters off), an adapter's (trained parameters kept trainable: peft's ``set_adapter`` turns
    the inactive adapter's off), or an adapter's target (its EMA weights, when the recipe has them)."""

    def __init__(self, unet, params: dict[str, torch.nn.Parameter], state: AdapterState):
        self.unet, self.params, self.state = unet, params, state
        self.dim = unet.config.time_cond_proj_dim

    def _forward(self, x, t, w, cond):
        return self.unet(x, t.to(x.device), timestep_cond=_w_embedding(w, self.dim, x),
                         **cond.unet_kwargs()).sample

    def eps(self, adapter: str | None, cond):
        """ε of the teacher (``adapter`` None) or of ``adapter``."""
        def f(x, t, w):
            if adapter is None:
                with adapters_off(self.unet):
                    return self._forward(x, t, w, cond)
            self.unet.set_adapter(adapter)  # the adapter trained by this term: left on for the next call
            for p in self.params.values():
                p.requires_grad_(True)
            return self._forward(x, t, w, cond)
        return f

    def target(self, adapter: str, cond):
        """ε of ``adapter`` under its target weights (the EMA copy, when there is one)."""
        f = self.eps(adapter, cond)

        def g(x, t, w):
            with self.state.ema_weights():
                return f(x, t, w)
        return g


def _w_embedding(w: torch.Tensor, dim: int, like: torch.Tensor) -> torch.Tensor:
    return guidance_embedding(guidance_code(w), dim).to(like.device, like.dtype)


def _load_backbone(name: str, accelerator):
    from icd_bench.backbones import load_backbone

    return load_backbone(name, device=accelerator.device, dtype=torch.float32)


# -- stage 1: guidance distillation -------------------------------------------------------------------
def train_cfg_distill(recipe: dict, out_dir: Path, *, device: str = "auto", progress: bool = True,
                      log=print) -> Path:
    """Distil CFG into a w-embedded student; returns the student's state dict file."""
    from safetensors.torch import save_file

    cfg: CfgDistillConfig = recipe["train"]
    acc = make_accelerator(device, cfg.threads, cfg.mixed_precision)
    bb = _load_backbone(cfg.backbone, acc)
    teacher = bb.unet.eval().requires_grad_(False)
    torch.manual_seed(cfg.seed)
    # a copy with its own tensors: the teacher stays as it is
    student = add_guidance_embedding(teacher, cfg.guidance_dim).train().requires_grad_(True)
    optimizer = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=0.0)
    schedule = warmup_schedule(optimizer, cfg.warmup, cfg.lr_decay, cfg.steps)
    student, optimizer, schedule = acc.prepare(student, optimizer, schedule)
    data = TrainData(recipe["data"], cfg.seed, bb.preprocess, bb.resolution, acc.process_index,
                     acc.num_processes, out_dir)
    solver = Solver(bb.alphas_cumprod.float())
    loop = TrainLoop(acc, out_dir, recipe, cfg, ["loss"], progress, log, "cfg distillation",
                     params=acc.unwrap_model(student).parameters())
    null = bb.null_embeds(1)
    dim = acc.unwrap_model(student).config.time_cond_proj_dim

    def run(unet, c, embed_w: bool):
        return lambda x, tt, ww: unet(x, tt.to(x.device), timestep_cond=_w_embedding(ww, dim, x) if embed_w
                                      else None, **c.unet_kwargs()).sample

    k = cfg.accumulate
    for step in range(loop.start, cfg.steps):
        total = 0.0
        for micro in _micro_steps(step, k):
            images, captions = data.batch(micro, cfg.batch_size)
            g = _step_generator(cfg.seed, micro, acc.process_index)
            x0 = bb.encode_image(images)
            noise = torch.randn(x0.shape, generator=g).to(x0)
            t = torch.randint(0, bb.num_train_timesteps, (len(x0),), generator=g)
            w = _draw_scales(cfg.guidance_scales, len(x0), g)
            cond = bb.encode_prompt(captions)
            uncond = null.repeat(len(x0))
            with acc.autocast():
                loss, _ = guidance_distillation_loss(run(student, cond, True), run(teacher, cond, False),
                                                     run(teacher, uncond, False), solver, x0, noise, t, w,
                                                     cfg.loss)
            acc.backward(loss / k)
            total += loss.item() / k
        if cfg.grad_clip:
            acc.clip_grad_norm_(student.parameters(), cfg.grad_clip)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        loop.after_step(step, {"loss": total}, schedule.get_last_lr()[0])
    loop.close()
    path = Path(out_dir) / "cfg_distill.safetensors"
    if acc.is_main_process:
        state = {k: v.detach().cpu().contiguous() for k, v in acc.unwrap_model(student).state_dict().items()}
        save_file(state, str(path), metadata={"time_cond_proj_dim": str(cfg.guidance_dim),
                                               "recipe": json.dumps(recipe_to_dict(recipe))})
    return path


# -- stage 2: iCD --------------------------------------------------------------------------------------
class AdapterState:
    """The trainable LoRA weights (+ the EMA target's), as an object accelerate checkpoints."""

    def __init__(self, params: dict[str, torch.nn.Parameter], ema: dict[str, torch.Tensor] | None):
        self.params, self.ema = params, ema

    def state_dict(self) -> dict[str, torch.Tensor]:
        out = {f"p.{k}": v.detach().cpu() for k, v in self.params.items()}
        if self.ema is not None:
            out.update({f"ema.{k}": v.cpu() for k, v in self.ema.items()})
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for k, p in self.params.items():
                p.copy_(state[f"p.{k}"])
            if self.ema is not None:
                for k in self.ema:
                    self.ema[k].copy_(state[f"ema.{k}"])

    @torch.no_grad()
    def update_ema(self, decay: float) -> None:
        if self.ema is not None:
            for k, p in self.params.items():
                self.ema[k].lerp_(p.detach(), 1 - decay)

    @contextmanager
    def ema_weights(self):
        """Swap the EMA weights in (for the target network), and back."""
        if self.ema is None:
            yield
            return
        saved = {k: p.detach().clone() for k, p in self.params.items()}
        with torch.no_grad():
            for k, p in self.params.items():
                p.copy_(self.ema[k])
        try:
            yield
        finally:
            with torch.no_grad():
                for k, p in self.params.items():
                    p.copy_(saved[k])


def adapter_parameters(unet, name: str) -> dict[str, torch.nn.Parameter]:
    """The LoRA parameters of adapter ``name`` (peft names them ``...lora_A.<name>.weight``)."""
    return {n: p for n, p in unet.named_parameters() if f".{name}." in n and "lora_" in n}


def train_icd(recipe: dict, out_dir: Path, *, device: str = "auto", progress: bool = True, log=print) -> dict:
    """Train fCDm and CDm; returns {"teacher": ..., "forward_lora": ..., "reverse_lora": ...} paths."""
    from icd_bench.icd.pipeline import ICDPipeline

    cfg: ICDTrainConfig = recipe["train"]
    acc = make_accelerator(device, cfg.threads, cfg.mixed_precision)
    bb = _load_backbone(cfg.backbone, acc)
    boundaries = cfg.boundary_set()
    torch.manual_seed(cfg.seed)  # the LoRA A matrices' initialisation
    pipe = ICDPipeline(bb, boundaries, teacher=cfg.teacher or None, lora_rank=cfg.lora_rank,
                       lora_alpha=cfg.lora_alpha)
    unet = pipe.unet
    for name, start in ((FORWARD, cfg.init_forward_lora), (REVERSE, cfg.init_reverse_lora)):
        if start:
            start_adapter_from(unet, name, start)
    if cfg.channels_last:
        unet.to(memory_format=torch.channels_last)
    names = ([REVERSE] if cfg.train_reverse else []) + ([FORWARD] if cfg.train_forward else [])
    params = {n: p for name in names for n, p in adapter_parameters(unet, name).items()}
    for p in params.values():
        p.requires_grad_(True)
    ema = {k: p.detach().clone() for k, p in params.items()} if cfg.target == "ema" else None
    state = AdapterState(params, ema)
    optimisers = AdapterOptimisers(acc, unet, names, params, cfg)
    acc.register_for_checkpointing(state)
    data = TrainData(recipe["data"], cfg.seed, bb.preprocess, bb.resolution, acc.process_index,
                     acc.num_processes, out_dir)
    solver = Solver(bb.alphas_cumprod.float(), cfg.solver_steps)
    fields = [f for f, on in (("cd", cfg.train_reverse), ("fcd", cfg.train_forward),
                              ("preserve_f", cfg.train_forward and cfg.lambda_f > 0),
                              ("preserve_r", cfg.train_reverse and cfg.lambda_r > 0)) if on]
    loop = TrainLoop(acc, out_dir, recipe, cfg, fields, progress, log, "iCD", params=params.values())
    unet.train()

    models = AdapterEps(unet, params, state)
    eps, target = models.eps, models.target

    n_grid, n_seg = cfg.solver_steps, boundaries.steps

    def batch_of(micro: int):
        """One micro-batch: x_0, the prompt embeddings, its generator and its noise draws."""
        images, captions = data.batch(micro, cfg.batch_size)
        g = _step_generator(cfg.seed, micro, acc.process_index)
        x0 = bb.encode_image(images)
        if cfg.channels_last:
            x0 = x0.contiguous(memory_format=torch.channels_last)
        shared = torch.randn(x0.shape, generator=g).to(x0) if cfg.shared_noise else None

        def draw():
            return shared if shared is not None else torch.randn(x0.shape, generator=g).to(x0)
        return x0, bb.encode_prompt(captions), g, draw

    def cd_term(x0, cond, g, draw):
        w = _draw_scales(cfg.guidance_scales, len(x0), g)
        index = torch.randint(0, n_grid, (len(x0),), generator=g)  # the official trainer's 0..N − 1
        return reverse_cd_loss(eps(REVERSE, cond), target(REVERSE, cond), eps(None, cond), solver, boundaries,
                               x0, draw(), index, w, cfg.loss, cfg.clean_anchor)[0]

    def fcd_term(x0, cond, g, draw):
        index = torch.randint(0, n_grid - 1, (len(x0),), generator=g)
        return forward_cd_loss(eps(FORWARD, cond), target(FORWARD, cond), eps(None, cond), solver, boundaries,
                               x0, draw(), index, cfg.loss)[0]

    def preserve_f_term(x0, cond, g, draw):
        seg = torch.randint(0, n_seg, (len(x0),), generator=g)
        return forward_preservation_loss(eps(FORWARD, cond), eps(REVERSE, cond), solver, boundaries,
                                         x0, draw(), seg, cfg.loss)[0]

    def preserve_r_term(x0, cond, g, draw):
        seg = torch.randint(0, n_seg, (len(x0),), generator=g)
        w_r = None if set(cfg.preserve_scales) == {1.0} else _draw_scales(cfg.preserve_scales, len(x0), g)
        return reverse_preservation_loss(eps(FORWARD, cond), eps(REVERSE, cond), solver, boundaries,
                                         x0, draw(), seg, cfg.loss, w=w_r)[0]

    # (field, adapter, term, coefficient), in the official trainer's order
    terms = [t for t, on in ((("cd", REVERSE, cd_term, 1.0), cfg.train_reverse),
                             (("fcd", FORWARD, fcd_term, 1.0), cfg.train_forward),
                             (("preserve_f", FORWARD, preserve_f_term, cfg.lambda_f), "preserve_f" in fields),
                             (("preserve_r", REVERSE, preserve_r_term, cfg.lambda_r), "preserve_r" in fields))
             if on]
    k = cfg.accumulate
    for step in range(loop.start, cfg.steps):
        micro = [batch_of(m) for m in _micro_steps(step, k)]
        values: dict[str, float] = {}
        with acc.autocast():
            # term by term, each over every micro-batch (each micro-batch's draws come from its own
            # generator in the same order as without accumulation); "per_term": a step after each term
            for field, adapter, term, coef in terms:
                values[field] = 0.0
                for x0, cond, g, draw in micro:
                    loss = term(x0, cond, g, draw)
                    acc.backward(coef * loss / k)
                    values[field] += loss.item() / k
                optimisers.after_term(adapter)
        optimisers.after_batch()
        state.update_ema(cfg.target_ema_decay)
        loop.after_step(step, values, optimisers.lr)
    loop.close()
    unet.eval()
    out = Path(out_dir)
    paths = {"teacher": cfg.teacher or None,
             "forward_lora": str(out / "fcdm.safetensors") if cfg.train_forward else None,
             "reverse_lora": str(out / "cdm.safetensors") if cfg.train_reverse else None}
    if acc.is_main_process:
        for name, key in ((FORWARD, "forward_lora"), (REVERSE, "reverse_lora")):
            if paths[key]:
                save_adapter(unet, name, paths[key])
        (out / "icd.json").write_text(json.dumps({
            **paths, "boundaries": {"reverse": list(boundaries.reverse), "forward": list(boundaries.forward)},
            "recipe": recipe_to_dict(recipe), "versions": versions()}, indent=2))
    return paths
