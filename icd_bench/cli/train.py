"""The train group: the toy world's teacher and iCD's two training stages."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from icd_bench.cli.common import DeviceOption, QuietOption, out

train_app = typer.Typer(help="Train models: the toy world's teacher; iCD's guidance distillation (stage 1) "
                             "and forward/reverse consistency distillation (stage 2).", no_args_is_help=True)


@train_app.command("toy-teacher")
def train_toy_teacher(
    recipe: Annotated[Path, typer.Option(
        help="TOML recipe with \\[model] and \\[train] tables.")] = Path("training/toy-teacher.toml"),
    out_dir: Annotated[Path, typer.Option(
        "--out", "-o",
        help="Training directory: checkpoints, loss.csv, eval.csv, pipeline/. "
             "Re-running resumes.")] = Path("runs/train/toy-teacher"),
    device: DeviceOption = "auto",
    quiet: QuietOption = False,
) -> None:
    """Train the toy world's teacher (text encoder + pixel-space UNet) from scratch, resumably."""
    from icd_bench.toy.teacher import SECTIONS, train_teacher
    from icd_bench.training_utils import load_recipe

    loaded = load_recipe(recipe, SECTIONS)
    pipeline = train_teacher(loaded, out_dir, device=device, progress=not quiet, log=out.print)
    out.print(f"teacher saved to {pipeline} (use it with --backbone {pipeline})")


@train_app.command("cfg-distill")
def train_cfg_distill_cmd(
    recipe: Annotated[Path, typer.Option(
        help="TOML recipe with \\[data] and \\[train] tables.")] = Path("training/toy-cfg-distill.toml"),
    out_dir: Annotated[Path, typer.Option(
        "--out", "-o",
        help="Training directory: checkpoints, loss.csv, cfg_distill.safetensors. "
             "Re-running resumes.")] = Path("runs/train/toy-cfg-distill"),
    device: DeviceOption = "auto",
    quiet: QuietOption = False,
) -> None:
    """iCD stage 1: distil classifier-free guidance into a UNet with a w input (time_cond_proj_dim)."""
    from icd_bench.icd.train import CFG_SECTIONS, train_cfg_distill
    from icd_bench.training_utils import load_recipe

    path = train_cfg_distill(load_recipe(recipe, CFG_SECTIONS), out_dir, device=device, progress=not quiet,
                             log=out.print)
    out.print(f"guidance-distilled UNet saved to {path} (stage 2: set train.teacher to it)")


@train_app.command("icd")
def train_icd_cmd(
    recipe: Annotated[Path, typer.Option(
        help="TOML recipe with \\[data] and \\[train] tables.")] = Path("training/toy-icd.toml"),
    out_dir: Annotated[Path, typer.Option(
        "--out", "-o",
        help="Training directory: checkpoints, loss.csv, fcdm/cdm.safetensors. "
             "Re-running resumes.")] = Path("runs/train/toy-icd"),
    device: DeviceOption = "auto",
    quiet: QuietOption = False,
) -> None:
    """iCD stage 2: train the forward (fCDm) and reverse (CDm) LoRA adapters with preservation losses."""
    from icd_bench.icd.train import ICD_SECTIONS, train_icd
    from icd_bench.training_utils import load_recipe

    loaded = load_recipe(recipe, ICD_SECTIONS)
    paths = train_icd(loaded, out_dir, device=device, progress=not quiet, log=out.print)
    bb = loaded["train"].backbone
    if paths["forward_lora"] is None:  # a reverse model alone: an LCM-style consistency model
        unet = f"--set unet={paths['teacher']} " if paths["teacher"] else ""
        out.print(f"consistency LoRA saved; run it with: icd-bench run --method renoise --backbone {bb} "
                  f"{unet}--set lora={paths['reverse_lora']}"
                  + (" (or icd-bench toy bundle-lcm)" if bb == "toy" else ""))
        return
    sets = " ".join(f"--set {k}={v}" for k, v in paths.items() if v)
    out.print(f"adapters saved; run them with: icd-bench run --method icd --backbone {bb} {sets}")
