"""What the command groups share: the two consoles, the trainers' common options, parsing of list and
KEY=VALUE options, progress displays, the run summary and the scores table."""

from __future__ import annotations

import contextlib
import os
import statistics
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from icd_bench.errors import ConfigError

console = Console(stderr=True)
out = Console()

#: The options every trainer (and `toy evaluate`) shares.
DeviceOption = Annotated[str, typer.Option(help="auto, cpu or cuda.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]


def _items(text: str | None, option: str, cast=str) -> list:
    """A comma-separated option value as a list (empty entries dropped), each item ``cast``."""
    try:
        return [cast(v.strip()) for v in (text or "").split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{option} expects a comma-separated list of {cast.__name__} values, "
                          f"got {text!r}") from None


def _pairs(items: list[str] | None, option: str, form: str = "KEY=VALUE", *,
           empty_value: bool = False) -> dict[str, str]:
    """Repeated ``KEY=VALUE`` option values as a dict (both sides stripped; the key never empty)."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not (value.strip() or empty_value):
            raise ConfigError(f"{option} expects {form}, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def _parse_shard(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        i, n = (int(x) for x in value.split("/"))
    except ValueError:
        raise ConfigError(f"--shard expects I/N (e.g. 0/4), got {value!r}") from None
    return i, n


def _check_run_dirs(runs: list[Path]) -> None:
    for run in runs:
        if not run.is_dir():
            raise ConfigError(f"{run}: no such run directory")


def _run_with_progress(runner):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TextColumn("ETA"),
               TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False) as progress:
        bar = {}

        def on_start(r):
            bar["id"] = progress.add_task(f"{r.spec.preset or r.spec.method} · {r.cfg.task}",
                                          total=r.total, completed=r.skipped, status="")

        def on_progress(done, ok, failed):
            progress.update(bar["id"], completed=runner.skipped + done,
                            status=f"[green]{ok} ok[/]" + (f" [red]{failed} failed[/]" if failed else ""))

        runner.on_start, runner.progress = on_start, on_progress
        return runner.run()


@contextlib.contextmanager
def _progress(quiet: bool):
    """A rich progress display (hidden with --quiet): ``bar.add_task`` / ``bar.update`` as rich's."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True, disable=quiet) as bar:
        yield bar


def _print_summary(summary) -> None:
    table = Table(show_header=False, show_edge=False, title="run summary", title_justify="left")
    table.add_row("run directory", str(summary.out))
    table.add_row("samples", f"{summary.total} ({summary.skipped} already done, {summary.ok} ok and "
                  f"{summary.failed} failed now)")
    if summary.seconds:
        table.add_row("seconds / sample", f"{statistics.median(summary.seconds):.3f} (median)")
        table.add_row("UNet evaluations / sample", f"{statistics.median(summary.nfe):g} (median)")
    if summary.psnr:
        table.add_row("reconstruction PSNR", f"{statistics.mean(summary.psnr):.2f} dB (mean over "
                      f"{len(summary.psnr)}; output vs the source as the model saw it)")
    if summary.unknown_words:  # once per run; each sample's record says it too
        words = sorted(summary.unknown_words)
        listed = ", ".join(words[:12]) + (f" … ({len(words)} in all)" if len(words) > 12 else "")
        table.add_row("[yellow]toy vocabulary[/]",
                      escape(f"prompts use words the toy world does not know: {listed}; "
                             "its outputs show toy shapes, not those words"))
    for k, note in enumerate(getattr(summary, "notes", [])):
        table.add_row("[yellow]note[/]" if k == 0 else "", f"[yellow]{escape(note)}[/]")
    shown = 10
    for label, items, colour in (("failed", summary.errors, "red"), ("warnings", summary.warnings, "yellow")):
        for k, (sample_id, reason) in enumerate(items[:shown]):
            table.add_row(label if k == 0 else "", f"[{colour}]{escape(sample_id)}[/]: {escape(reason)}")
        if len(items) > shown:
            table.add_row("", f"… and {len(items) - shown} more (in records.jsonl)")
    out.print(table)


def _use_weights_dir(weights_dir: Path | None) -> None:
    """--weights-dir: metric weights laid out as DIR/<weight key>/ (put in front of ICD_BENCH_WEIGHTS)."""
    from icd_bench.metrics.weights import ENV

    if weights_dir is not None:
        if not weights_dir.is_dir():
            raise ConfigError(f"--weights-dir {weights_dir} is not a folder")
        os.environ[ENV] = ",".join(filter(None, [str(weights_dir), os.environ.get(ENV, "")]))


def _score_and_show(run_dir: Path, names, device: str, batch_size: int = 16, options=None,
                    quiet: bool = False, restart: bool = False) -> None:
    """Score a run (default metrics when ``names`` is None) and print the means table (process 0 of
    several)."""
    from icd_bench.metrics.score import score_run
    from icd_bench.runner import resolve_device, resolve_shard

    process = resolve_shard(None)  # under accelerate launch: this process's rank
    with _progress(quiet or process[0] != 0) as bar:
        task = bar.add_task("scoring" if process[1] == 1
                            else f"scoring (process {process[0]} of {process[1]})", total=None)
        frame, summary = score_run(run_dir, names, device=str(resolve_device(device, process)),
                                   batch_size=batch_size, options=options or {}, restart=restart,
                                   process=process,
                                   progress=lambda done, total: bar.update(task, completed=done, total=total))
    if process[0] != 0:
        return summary
    table = Table(title=f"scores of {run_dir}", title_justify="left", show_edge=False)
    for col, justify in (("metric", "left"), ("mean", "right"), ("std", "right"), ("n ok", "right"),
                         ("n failed", "right")):
        table.add_column(col, justify=justify)
    for row in summary.itertuples():
        failed = f"[red]{row.n_failed}[/]" if row.n_failed else "0"
        table.add_row(row.metric, f"{row.mean:.4f}", f"{row.std:.4f}", str(row.n_ok), failed)
    out.print(table)
    out.print(f"per-sample values: {run_dir / 'metrics.parquet'}")
    return summary
