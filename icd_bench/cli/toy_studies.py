"""The toy group's studies: probe trained iCD adapters, compare editing methods on the demo set, and
the Table 2 study of iCD configurations (registered on the group by ``toy``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from icd_bench.cli.common import DeviceOption, QuietOption, _items, out
from icd_bench.errors import ConfigError


def toy_probe(
    label: Annotated[str, typer.Option(help="The row's name in the CSV (e.g. the recipe variant).")],
    forward_lora: Annotated[str | None, typer.Option(
        help="fCDm adapter (default: the bundled one; 'none': untrained).")] = None,
    reverse_lora: Annotated[str | None, typer.Option(
        help="CDm adapter (default: the bundled one; 'none': untrained).")] = None,
    teacher: Annotated[str, typer.Option(
        help="The guidance-distilled student.")] = "bundled:toy/icd/cfg_distill.safetensors",
    guidance: Annotated[float, typer.Option(help="CFG scale of the guided reverse probe.")] = 5.0,
    images: Annotated[int, typer.Option(help="Toy scenes probed.")] = 16,
    csv_file: Annotated[Path, typer.Option(
        "--csv",
        help="CSV the row is appended to.")] = Path("reports/toy/probe.csv"),
) -> None:
    """Probe trained iCD adapters against the toy teacher: each step's distance to the teacher's DDIM
    trajectory (vs a plain DDIM jump), encoding statistics, reconstruction PSNR, unguided sample noise."""
    from icd_bench.toy.probe import BUNDLED, append_row, probe_models, write_markdown

    def pick(value, key):
        return None if value == "none" else (value or BUNDLED[key])

    fwd, rev = pick(forward_lora, "forward_lora"), pick(reverse_lora, "reverse_lora")
    values = probe_models(teacher=teacher, forward_lora=fwd, reverse_lora=rev, guidance=guidance,
                          images=images)
    append_row(csv_file, label, values, {"forward_lora": fwd or "untrained",
                                         "reverse_lora": rev or "untrained", "guidance": f"{guidance:g}"})
    write_markdown(csv_file, csv_file.with_suffix(".md"))
    table = Table(title=f"iCD probe: {label}", title_justify="left", show_edge=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in values.items():
        table.add_row(k, f"{v:.4g}")
    out.print(table)
    out.print(f"appended to {csv_file}; summary in {csv_file.with_suffix('.md')}")


def toy_compare_edits(
    methods: Annotated[str, typer.Option(
        help="Comma-separated methods or presets to compare.")] = "icd-toy,ddim-toy",
    guidance: Annotated[float | None, typer.Option(
        help="CFG scale every method edits with (default: the first method's).")] = None,
    work: Annotated[Path, typer.Option(
        help="Where the edit runs go; re-running reuses finished samples.")] = Path("runs/toy-compare-edits"),
    out_dir: Annotated[Path, typer.Option(
        "--out", "-o",
        help="Where NAME.md, NAME.csv and NAME.png go.")] = Path("reports/toy"),
    name: Annotated[str, typer.Option(help="File name of the report (NAME.md / .csv / .png).")] = "edits",
    limit: Annotated[int | None, typer.Option(help="Only the first N demo edits.")] = None,
    device: DeviceOption = "auto",
) -> None:
    """Edit the demo set with each method at one CFG scale; the toy oracle scores edit success,
    background PSNR and kept attributes; a table with UNet evaluations and seconds per edit, and a
    before/after grid. The methods table: --methods \
icd-toy,ddim-toy,ddim-p2p-toy,npi-toy,nti-toy,direct-inversion-toy,masactrl-toy,pnp-toy,\
pix2pix-zero-toy,ef-ddpm-toy,renoise-toy,infedit-toy,turboedit-toy
    --name methods. Each method over its own guidance: `icd-bench sweep`."""
    from icd_bench.config import resolve_method
    from icd_bench.studies.compare_edits import compare_edits

    names = _items(methods, "--methods")
    if not names:
        raise ConfigError("--methods names no method")
    if guidance is None:
        guidance = float(resolve_method(names[0], []).params_dict().get("guidance_scale", 1.0))
    command = f"icd-bench toy compare-edits --methods {','.join(names)} --guidance {guidance:g}" + (
        f" --name {name}" if name != "edits" else "") + (f" --limit {limit}" if limit else "")
    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"--name must be a plain file name, got {name!r}")
    path = compare_edits(names, guidance, work, out_dir, device=device, limit=limit, command=command,
                         name=name, log=out.print)
    typer.echo(path.read_text(encoding="utf-8"))
    out.print(f"written to {path}, {path.with_suffix('.csv')} and {path.with_suffix('.png')}")


def toy_table2(
    plan: Annotated[Path, typer.Option(
        help="Study plan (TOML): base recipe, configurations, "
             "table rows.")] = Path("training/toy-table2.toml"),
    teacher: Annotated[str, typer.Option(
        help="Guidance-distilled student every configuration trains on "
             "(stage 1's output).")] = "bundled:toy/icd/cfg_distill.safetensors",
    work: Annotated[Path, typer.Option(
        help="Training folders and invert runs; re-running "
             "resumes and reuses them.")] = Path("runs/toy-table2"),
    out_dir: Annotated[Path, typer.Option(
        "--out", "-o",
        help="Where table2.md and table2.csv go.")] = Path("reports/toy"),
    only: Annotated[str | None, typer.Option(
        help="Comma-separated row names to (re)compute, e.g. A,C; the other "
             "rows are kept from the table2.csv already in --out.")] = None,
    device: DeviceOption = "auto",
    quiet: QuietOption = False,
) -> None:
    """The paper's Table 2 on the toy world: train each iCD configuration, invert the demo set with
    it, and tabulate reconstruction PSNR, MSE and the oracle's preservation score against DDIM 50."""
    from icd_bench.paths import user_path
    from icd_bench.studies.table2 import load_plan, run_study

    if not user_path(teacher).is_file():
        raise ConfigError(f"--teacher {teacher}: no such file (train one with `icd-bench train cfg-distill`)")
    study = load_plan(plan)
    names = _items(only, "--only") or None
    path = run_study(study, work, out_dir, teacher=teacher, device=device, only=names, progress=not quiet,
                     log=out.print)
    typer.echo(path.read_text(encoding="utf-8"))
    out.print(f"written to {path} and {path.with_suffix('.csv')}")
