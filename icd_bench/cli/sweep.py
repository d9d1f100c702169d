"""``icd-bench sweep``: operating curves of editing methods over their knob (`icd_bench.studies.sweep`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from icd_bench.cli.common import DeviceOption, _items, _pairs, out
from icd_bench.errors import ConfigError

TOY_METRICS, TOY_X, TOY_Y = "toy_edit", "toy_edit:background_psnr", "toy_edit:success"


def sweep(
    methods: Annotated[str, typer.Option(
        help="Comma-separated methods or presets; 'toy': every *-toy preset "
             "(the toy world's editing setting of every method).")],
    values: Annotated[str, typer.Option(
        help="Comma-separated knob values every method is run at.")] = "1,2,3,5,7",
    values_for: Annotated[list[str] | None, typer.Option(
        "--values-for",
        help="METHOD=v1,v2,... : other values for one method (repeatable).")] = None,
    knob: Annotated[str, typer.Option(
        help="What to move: 'guidance' (each method's own guidance scale: "
             "guidance_scale, EF-DDPM's / InfEdit's target scale, a consistency "
             "model's w) or any --set field, e.g. tau, cross_replace.")] = "guidance",
    dataset: Annotated[str, typer.Option(help="Dataset of the edits.")] = "demo",
    data_dir: Annotated[Path | None, typer.Option(help="The dataset's folder.")] = None,
    split: Annotated[str | None, typer.Option(help="The dataset's split or id list.")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N samples.")] = None,
    metrics: Annotated[str | None, typer.Option(
        help=f"What to score at every point (default on the demo set: {TOY_METRICS}).")] = None,
    x: Annotated[str | None, typer.Option(
        help=f"The preservation measure, a scored key (default on the demo set: {TOY_X}; "
             f"e.g. psnr:background:pie, lpips:background:pie, dinov2).")] = None,
    y: Annotated[str | None, typer.Option(
        help=f"The edit measure, a scored key (default on the "
             f"demo set: {TOY_Y}; e.g. clip_t:whole:pie).")] = None,
    at: Annotated[str | None, typer.Option(
        help="Preservation levels (values of --x) to read every method at; "
             "default: the quartiles of the points'.")] = None,
    option: Annotated[list[str] | None, typer.Option(
        "--option",
        help="Metric setting KEY=VALUE for the scoring (repeatable), as `icd-bench score --option`.")] = None,
    work: Annotated[Path, typer.Option(
        help="Where the runs go (WORK/<method>/<field>=<value>); "
             "a re-run resumes them.")] = Path("runs/sweep"),
    out_dir: Annotated[Path, typer.Option(
        "--out", "-o",
        help="Where NAME.md, NAME.csv and NAME.png go.")] = Path("reports/sweep"),
    name: Annotated[str, typer.Option(help="File name of the report.")] = "curves",
    batch_size: Annotated[int, typer.Option(help="Samples per batch.")] = 16,
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples for the intervals.")] = 1000,
    device: DeviceOption = "auto",
) -> None:
    """Run every method over its knob, score each point and draw edit strength against preservation with
    bootstrap intervals and Pareto fronts; a table reads each method at matched preservation. Each point is
    an ordinary run directory: a killed sweep resumes where it stopped. A guidance sweep of the whole demo
    set that includes ddim-toy also stores the curves in the package (toy/demo-curves.json): what `icd-bench
    run --dataset demo --task edit --score` reads DDIM-50 from."""
    from icd_bench.studies.sweep import (
        BASELINE,
        analyse,
        expand_methods,
        run_points,
        store_curves,
        write_report,
    )

    names = expand_methods(_items(methods, "--methods"))
    if not names:
        raise ConfigError("--methods names no method")
    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"--name must be a plain file name, got {name!r}")
    shared = _items(values, "--values", float)
    per = {m: shared for m in names}
    for item in values_for or []:
        method, sep, vals = item.partition("=")
        if not sep or method not in per:
            raise ConfigError(f"--values-for {item!r}: expected METHOD=v1,v2 with METHOD one of --methods")
        per[method] = _items(vals, "--values-for", float)
    if any(not v for v in per.values()):
        raise ConfigError("every method needs at least one knob value")
    toy = dataset == "demo"
    metrics_list = _items(metrics or (TOY_METRICS if toy else ""), "--metrics")
    x, y = x or (TOY_X if toy else None), y or (TOY_Y if toy else None)
    if not metrics_list or not x or not y:
        raise ConfigError("off the demo set, give --metrics (what to score), --x (preservation) "
                          "and --y (edit), e.g. --metrics psnr:background:pie,clip_t:whole:pie "
                          "--x psnr:background:pie --y clip_t:whole:pie")
    scored = {m.split(":")[0] for m in metrics_list}
    for option_name, key in (("--x", x), ("--y", y)):  # checked before hours of runs, not after
        if key.split(":")[0] not in scored:
            raise ConfigError(f"{option_name} {key} is not among what --metrics scores "
                              f"({', '.join(metrics_list)})")
    command = "icd-bench " + " ".join(sys.argv[1:])
    points = run_points(names, knob, per, metrics=metrics_list, work=work, dataset=dataset, data_dir=data_dir,
                        split=split, limit=limit, device=device, batch_size=batch_size,
                        score_options=_pairs(option, "--option", empty_value=True), log=out.print)
    table, matched = analyse(points, x, y, levels=_items(at, "--at", float) or None, resamples=resamples)
    title = f"Operating curves on {dataset}: {y} against {x}, each method over its {knob}"
    path = write_report(table, matched, x, y, out_dir, name, title=title, command=command)
    typer.echo(path.read_text(encoding="utf-8"))
    out.print(f"written to {path}, {path.with_suffix('.csv')} and {path.with_suffix('.png')}")
    if toy and limit is None and knob == "guidance" and (x, y) == (TOY_X, TOY_Y) and BASELINE in names:
        # what `run --dataset demo --task edit --score` reads DDIM-50 from
        out.print(f"stored as the demo set's curves: {store_curves(table, x, y, command)}")
