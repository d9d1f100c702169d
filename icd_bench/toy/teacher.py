"""Training the toy world's teacher: a text encoder and a pixel-space UNet, jointly, from scratch.

ε-prediction on SD's scaled-linear 1000-step schedule, classifier-free guidance dropout (the
caption replaced by the empty prompt), an EMA of the weights (the EMA is what ships), AdamW with
a linear warm-up, and **offset noise** against the background-colour leak: SD's schedule keeps
√ᾱ_999 ≈ 0.068 of the image in x_T, so the mean colour of the noise tells a model the background,
and sampling from pure noise then ignores the prompt's background. Adding a per-image, per-channel
constant to the training noise (offset noise, strength ``offset_noise``) makes that channel mean
unreliable, so the model must read the background from the text.

Every step's data and noise are drawn from generators seeded by (seed, step): resuming from a
checkpoint replays exactly what an uninterrupted run would have done.
"""

from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from icd_bench.diffusion.schedule import alpha_rows, q_sample
from icd_bench.errors import ConfigError
from icd_bench.paths import user_path
from icd_bench.registry import TRAIN_SOURCES
from icd_bench.toy import scenes
from icd_bench.toy.model import (
    ToyModelConfig,
    build_scheduler,
    build_text_encoder,
    build_unet,
    load_tokenizer,
    save_pipeline,
)
from icd_bench.training_utils import CsvLog, TrainLoop, make_accelerator, recipe_to_dict, warmup_schedule


@dataclass
class TeacherTrainConfig:
    steps: int = 6000
    batch_size: int = 32
    lr: float = 1e-3
    warmup: int = 200
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    cfg_dropout: float = 0.1
    offset_noise: float = 0.5
    two_object_fraction: float = 0.35  # share of two-object scenes in a batch
    init_from: str = ""  # warm start: a saved toy pipeline (see `warm_start`); "" trains from scratch
    pyramid_noise: float = 0.0  # strength of each low-resolution noise level (see `training_noise`)
    pyramid_levels: tuple[int, ...] = (8, 4, 2)  # their sides; the 1×1 level is the offset noise
    seed: int = 0
    checkpoint_every: int = 500
    log_every: int = 50
    eval_every: int = 1000
    eval_samples: int = 64
    eval_pairs: int = 0  # also sample this many held-out two-object scenes at each evaluation
    eval_steps: int = 20
    eval_guidance: float = 3.0
    threads: int = 2
    mixed_precision: str = "no"


SECTIONS = {"model": ToyModelConfig, "train": TeacherTrainConfig}


class SceneBatcher:
    """Training batches of rendered scenes, cached by caption (the world is finite)."""

    def __init__(self, seed: int):
        self.seed = seed
        self.cache: dict[str, torch.Tensor] = {}

    def image(self, scene: scenes.Scene) -> torch.Tensor:
        key = scene.caption()
        if key not in self.cache:
            im, _ = scene.render()
            self.cache[key] = torch.from_numpy(np.asarray(im, np.float32) / 127.5 - 1).permute(2, 0, 1)
        return self.cache[key]

    def batch(self, step: int, size: int, dropout: float,
              p_two: float = 0.35) -> tuple[torch.Tensor, list[str]]:
        rng = random.Random(f"{self.seed}:{step}")
        chosen = [scenes.training_scene(rng, p_two) for _ in range(size)]
        captions = ["" if rng.random() < dropout else s.caption() for s in chosen]
        return torch.stack([self.image(s) for s in chosen]), captions


@TRAIN_SOURCES.register("toy")
class ToyScenes:
    """The toy world's captioned training scenes as the iCD trainers' data: images in [0, 1] at the
    backbone's resolution (nearest-neighbour when it is not the world's 32)."""

    def __init__(self, seed: int, resolution: int):
        self.scenes, self.resolution = SceneBatcher(seed), resolution

    def batch(self, step: int, size: int, process: int = 0) -> tuple[torch.Tensor, list[str]]:
        images, captions = self.scenes.batch(step * 1000 + process, size, dropout=0.0)
        images = (images + 1) / 2
        if images.shape[-1] != self.resolution:  # toy scenes on another backbone (tests, smoke runs)
            images = torch.nn.functional.interpolate(images, size=self.resolution, mode="nearest")
        return images, captions


def training_noise(shape, generator: torch.Generator, offset: float, pyramid: float = 0.0,
                   levels: tuple[int, ...] = (8, 4, 2)) -> torch.Tensor:
    """White noise + low-frequency noise: per-image, per-channel constants (offset noise) and, with
    ``pyramid`` > 0, noise drawn at each side in ``levels`` and upsampled (multi-resolution noise).

    SD's schedule keeps √ᾱ_999 ≈ 0.068 of the image in x_T; at 32×32 that is enough for x_T's mean
    to carry the background and for its coarse structure (objects of 10–16 px) to carry the
    layout, so a model trained on plain noise reads both from the noise and samples from pure
    noise ignore the prompt's background and position. Extra noise at those frequencies during
    training makes them unreliable, so the model must take them from the text.
    """
    b, c, h, w = shape
    noise = torch.randn(shape, generator=generator)
    if offset:
        noise = noise + offset * torch.randn(b, c, 1, 1, generator=generator)
    if pyramid:
        for side in levels:
            low = torch.randn(b, c, side, side, generator=generator)
            noise = noise + pyramid * torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear",
                                                                      align_corners=False)
    return noise


def evaluate(tokenizer, text_encoder, unet, cfg: TeacherTrainConfig, device) -> dict[str, float]:
    """Oracle accuracy of DDIM samples on held-out combinations (during training, to watch it
    learn; never used to pick weights): ``eval_samples`` one-object scenes (their background,
    colour, position, shape and size) and, with ``eval_pairs``, that many two-object scenes
    (``pairs``: both colours where the caption puts them)."""
    from icd_bench.toy.evaluate import sample_accuracy
    from icd_bench.toy.model import toy_backbone_from_modules

    held = scenes.held_out_single_scenes()
    pick = random.Random(0).sample(held, min(cfg.eval_samples, len(held)))
    bb = toy_backbone_from_modules(tokenizer, copy.deepcopy(text_encoder).eval(), copy.deepcopy(unet).eval(),
                                   device=device)
    accuracy, _, _ = sample_accuracy(bb, steps=cfg.eval_steps, guidance=cfg.eval_guidance, eval_scenes=pick,
                                     seed_base=1000)
    accuracy.pop("n")
    if cfg.eval_pairs:
        pairs = [s for s in scenes.held_out_eval_scenes(len(held) + cfg.eval_pairs) if len(s.objects) == 2]
        pair_acc, _, _ = sample_accuracy(bb, steps=cfg.eval_steps, guidance=cfg.eval_guidance,
                                         eval_scenes=pairs, seed_base=2000)
        accuracy["pairs"] = pair_acc["color"]
    return accuracy


def train_teacher(recipe: dict, out_dir: Path, *, device: str = "auto", progress: bool = True,
                  log=print) -> Path:
    """Train (or resume) the teacher into ``out_dir``; returns the saved pipeline directory."""
    from diffusers.training_utils import EMAModel

    from icd_bench.backbones.loaders import quiet_libraries

    quiet_libraries()
    mcfg: ToyModelConfig = recipe["model"]
    cfg: TeacherTrainConfig = recipe["train"]
    out_dir = Path(out_dir)
    accelerator = make_accelerator(device, cfg.threads, cfg.mixed_precision)
    torch.manual_seed(cfg.seed)
    tokenizer = load_tokenizer(max_length=mcfg.max_length)
    text_encoder = build_text_encoder(mcfg, tokenizer)
    unet = build_unet(mcfg)
    if cfg.init_from:
        added = warm_start(user_path(cfg.init_from), text_encoder, unet)
        log(f"warm start from {cfg.init_from}: {len(added)} new UNet tensors start as identity")
    params = list(unet.parameters()) + list(text_encoder.parameters())
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = warmup_schedule(optimizer, cfg.warmup)
    ema_unet = EMAModel(unet.parameters(), decay=cfg.ema_decay)
    ema_text = EMAModel(text_encoder.parameters(), decay=cfg.ema_decay)
    unet, text_encoder, optimizer, schedule = accelerator.prepare(unet, text_encoder, optimizer, schedule)
    accelerator.register_for_checkpointing(ema_unet, ema_text)
    dev = accelerator.device
    ema_unet.to(dev)
    ema_text.to(dev)

    loop = TrainLoop(accelerator, out_dir, recipe, cfg, ["loss"], progress, log, "toy teacher")
    evals = CsvLog(out_dir / "eval.csv", ["step", "background", "color", "position", "shape", "size"]
                   + (["pairs"] if cfg.eval_pairs else []))
    evals.truncate_after(loop.start)

    alphas = build_scheduler().alphas_cumprod.float().to(dev)
    batcher = SceneBatcher(cfg.seed)
    for step in range(loop.start, cfg.steps):
        unet.train()
        text_encoder.train()
        x0, captions = batcher.batch(step, cfg.batch_size, cfg.cfg_dropout, cfg.two_object_fraction)
        x0 = x0.to(dev)
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        t = torch.randint(0, 1000, (len(x0),), generator=g)
        noise = training_noise(x0.shape, g, cfg.offset_noise, cfg.pyramid_noise, cfg.pyramid_levels)
        noise, t = noise.to(dev), t.to(dev)
        xt = q_sample(x0, noise, alpha_rows(alphas, t, x0))
        ids = tokenizer(captions, padding="max_length", max_length=mcfg.max_length, truncation=True,
                        return_tensors="pt").input_ids.to(dev)
        with accelerator.autocast():
            emb = text_encoder(ids)[0]
            pred = unet(xt, t, encoder_hidden_states=emb).sample
            loss = torch.nn.functional.mse_loss(pred.float(), noise)
        accelerator.backward(loss)
        if cfg.grad_clip:
            accelerator.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        ema_unet.step(accelerator.unwrap_model(unet).parameters())
        ema_text.step(accelerator.unwrap_model(text_encoder).parameters())
        # checkpoints before evaluating
        loop.after_step(step, {"loss": loss.item()}, schedule.get_last_lr()[0])
        done = step + 1
        if cfg.eval_every and (done % cfg.eval_every == 0 or done == cfg.steps):
            te_eval, unet_eval = _ema_copies(accelerator, text_encoder, unet, ema_text, ema_unet)
            acc = evaluate(tokenizer, te_eval, unet_eval, cfg, dev)
            evals.append({"step": done, **{k: f"{v:.4f}" for k, v in acc.items()}})
            loop.bar.write(f"step {done}: held-out oracle accuracy "
                           + ", ".join(f"{k} {v:.0%}" for k, v in acc.items()))
            loop.t_last = time.perf_counter()  # evaluation time is not training time
    loop.close()
    te_final, unet_final = _ema_copies(accelerator, text_encoder, unet, ema_text, ema_unet)
    return save_pipeline(out_dir / "pipeline", tokenizer, te_final, unet_final, build_scheduler(),
                         extra={"resolution": mcfg.resolution, "trained_steps": cfg.steps,
                                "recipe": recipe_to_dict(recipe)})


def warm_start(pipeline_dir: Path, text_encoder, unet) -> list[str]:
    """Load a saved toy pipeline's text encoder and UNet into (possibly larger) new models.

    Every saved tensor must fit a tensor of the new models; tensors the saved models lack (an extra
    transformer layer, attention at one more level) are new, and their output projections are
    zeroed so each new block starts as the identity: the warm-started model computes exactly what
    the saved one did. Returns the names of the new UNet tensors.
    """
    from safetensors.torch import load_file

    files = {"text_encoder": pipeline_dir / "text_encoder" / "model.safetensors",
             "unet": pipeline_dir / "unet" / "diffusion_pytorch_model.safetensors"}
    for f in files.values():
        if not f.is_file():
            raise ConfigError(f"init_from: {f} not found; "
                              "give a folder written by `icd-bench train toy-teacher` "
                              "(its pipeline/) or bundled:toy/teacher")
    for name, model in (("text_encoder", text_encoder), ("unet", unet)):
        saved = load_file(files[name])
        own = model.state_dict()
        wrong = [k for k, v in saved.items() if k not in own or own[k].shape != v.shape]
        if wrong:
            raise ConfigError(f"init_from: the {name} in {pipeline_dir} does not fit this recipe's [model] "
                              f"({len(wrong)} tensors differ, e.g. {wrong[0]})")
        missing = model.load_state_dict(saved, strict=False).missing_keys
        if name == "text_encoder" and missing:
            raise ConfigError(f"init_from: the text encoder in {pipeline_dir} lacks {missing[0]}")
    saved_unet = load_file(files["unet"])
    added = [k for k in unet.state_dict() if k not in saved_unet]
    # the residual branches of a new transformer block; the output of a new Transformer2D
    with torch.no_grad():
        for module_name, module in unet.named_modules():
            if module_name.endswith(("attn1.to_out.0", "attn2.to_out.0", "ff.net.2", "proj_out")) and \
                    f"{module_name}.weight" in added:
                module.weight.zero_()
                if module.bias is not None:
                    module.bias.zero_()
    return added


def _ema_copies(accelerator, text_encoder, unet, ema_text, ema_unet):
    te = copy.deepcopy(accelerator.unwrap_model(text_encoder)).eval()
    un = copy.deepcopy(accelerator.unwrap_model(unet)).eval()
    ema_text.copy_to(te.parameters())
    ema_unet.copy_to(un.parameters())
    return te, un


