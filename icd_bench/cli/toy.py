"""The toy group: the demo set, the teacher's quality bar and CFG scale, bundling trained models into
the package; registers the study commands of ``toy_studies`` in the group's order."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from icd_bench.cli.common import DeviceOption, _items, out
from icd_bench.cli.toy_studies import toy_compare_edits, toy_probe, toy_table2

toy_app = typer.Typer(help="The toy world: regenerate the demo set, measure the teacher's quality bar, "
                           "run the Table 2 study of iCD configurations.",
                      no_args_is_help=True)


def toy_make_demo(
    out_dir: Annotated[Path, typer.Option(
        "--out", "-o",
        help="Where to write the demo set (PIE-Bench layout).")],
    seed: Annotated[int, typer.Option(help="Seed of the edit pairs.")] = 0,
    per_type: Annotated[int, typer.Option(help="Edits per edit type (7 types).")] = 10,
) -> None:
    """Regenerate the demo set exactly (the bundled one is seed 0, 10 per type)."""
    from icd_bench.toy.demo import build_demo

    path = build_demo(out_dir, seed=seed, per_type=per_type)
    out.print(f"demo set written to {path} ({7 * per_type} edits)")


def toy_evaluate(
    backbone: Annotated[str, typer.Option(help="The teacher to measure (default: the bundled one).")] = "toy",
    out_dir: Annotated[Path, typer.Option(
        "--out", "-o",
        help="Where quality.json and teacher-samples.png go.")] = Path("reports/toy"),
    steps: Annotated[int, typer.Option(help="DDIM steps.")] = 50,
    guidance: Annotated[float | None, typer.Option(
        help="CFG scale of the samples (default: the teacher's default, picked "
             "on training combinations by `toy pick-guidance`).")] = None,
    device: DeviceOption = "auto",
) -> None:
    """The teacher's quality bar: oracle accuracy of samples on held-out combinations, inversion PSNR."""
    from icd_bench.backbones import load_backbone
    from icd_bench.runner import resolve_device
    from icd_bench.toy.evaluate import DEFAULT_GUIDANCE, evaluate_teacher

    bb = load_backbone(backbone, device=resolve_device(device, (0, 1)))
    result = evaluate_teacher(bb, out_dir, steps=steps,
                              guidance=DEFAULT_GUIDANCE if guidance is None else guidance, name=backbone)
    acc, inv = result["held_out_accuracy"], result["demo_inversion"]
    table = Table(title=f"toy teacher quality ({result['sampler']})", title_justify="left", show_edge=False)
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("bar", justify="right")
    for key in ("color", "position", "background", "shape", "size"):
        if key in acc:
            bar = result["bar"].get(key)
            table.add_row(f"{key} accuracy ({acc['n']} held-out combinations)", f"{acc[key]:.1%}",
                          f">= {bar:.0%}" if bar else "")
    for group, acc_g in result["held_out_accuracy_by_object_count"].items():
        table.add_row(f"  {group} ({acc_g['n']}): colour / position / background",
                      f"{acc_g['color']:.1%} / {acc_g['position']:.1%} / {acc_g['background']:.1%}", "")
    table.add_row(f"DDIM inversion PSNR ({inv['n']} demo images)", f"{inv['psnr_mean']:.2f} dB", "")
    out.print(table)
    out.print(f"{'PASSES' if result['passes'] else 'MISSES'} the bar; written to {out_dir}/quality.json and "
              f"{out_dir}/teacher-samples.png")


def toy_pick_guidance(
    scales: Annotated[str, typer.Option(help="Comma-separated CFG scales to try.")] = "2,3,4,5,7.5",
    backbone: Annotated[str, typer.Option(help="The teacher (default: the bundled one).")] = "toy",
    steps: Annotated[int, typer.Option(help="DDIM steps.")] = 25,
    total: Annotated[int, typer.Option(help="Training combinations sampled per scale.")] = 128,
    out_file: Annotated[Path, typer.Option(
        "--out", "-o",
        help="CSV of accuracy per scale.")] = Path("reports/toy/guidance-pick.csv"),
    device: DeviceOption = "auto",
) -> None:
    """Choose the teacher's default CFG scale on TRAINING combinations (the held-out bar stays untouched)."""
    from icd_bench.backbones import load_backbone
    from icd_bench.runner import resolve_device
    from icd_bench.toy.evaluate import pick_guidance, write_guidance_pick

    values = _items(scales, "--scales", float)
    bb = load_backbone(backbone, device=resolve_device(device, (0, 1)))
    frame, best = write_guidance_pick(pick_guidance(bb, values, steps=steps, total=total), out_file)
    table = Table(title=f"CFG scale on {total} training combinations (DDIM {steps})", title_justify="left",
                  show_edge=False)
    for col in ("guidance", "color", "position", "background", "shape", "size", "bar_mean"):
        table.add_column(col, justify="right")
    for row in frame.itertuples():
        table.add_row(f"{row.guidance:g}",
                      *(f"{getattr(row, c):.1%}"
                        for c in ("color", "position", "background", "shape", "size", "bar_mean")))
    out.print(table)
    out.print(f"best: CFG {best:g} (highest mean of colour, position, background); written to {out_file}")


def toy_bundle_icd(
    stage1: Annotated[Path, typer.Option(
        help="Stage 1's guidance-distilled student.",
    )] = Path("runs/train/toy-cfg-distill/cfg_distill.safetensors"),
    stage2: Annotated[Path, typer.Option(
        help="Stage 2's training folder (fcdm/cdm.safetensors, icd.json): training/toy-icd-continue3.toml's, "
             "which continues training/toy-icd.toml's through -continue.toml and -continue2.toml.",
    )] = Path("runs/train/toy-icd-continue3"),
    into: Annotated[Path, typer.Option(
        help="Destination (the package's bundled toy iCD models).")] = Path("icd_bench/assets/toy/icd"),
) -> None:
    """Copy the toy iCD models into the package as fp16 (what `--method icd-toy` loads by default)."""
    from icd_bench.toy.model import bundle_icd

    names = bundle_icd(stage1, stage2, into)
    out.print(f"bundled into {into}: " + ", ".join(names))


def toy_bundle_lcm(
    run: Annotated[Path, typer.Option(
        help="The toy LCM's training folder (cdm.safetensors, icd.json).")] = Path("runs/train/toy-lcm"),
    into: Annotated[Path, typer.Option(
        help="Destination (the package's bundled toy LCM).")] = Path("icd_bench/assets/toy/lcm"),
) -> None:
    """Copy the toy LCM's consistency LoRA into the package as fp16 (what `renoise-toy` and
    `infedit-toy` load; their base is the bundled guidance-distilled student)."""
    from icd_bench.toy.model import bundle_lcm

    names = bundle_lcm(run, into)
    out.print(f"bundled into {into}: " + ", ".join(names))


toy_app.command("make-demo")(toy_make_demo)
toy_app.command("evaluate")(toy_evaluate)
toy_app.command("pick-guidance")(toy_pick_guidance)
toy_app.command("probe")(toy_probe)
toy_app.command("compare-edits")(toy_compare_edits)
toy_app.command("bundle-icd")(toy_bundle_icd)
toy_app.command("bundle-lcm")(toy_bundle_lcm)
toy_app.command("table2")(toy_table2)
