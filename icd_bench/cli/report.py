"""The report commands: stats, report, reproduce, figure, gallery."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from icd_bench.cli.common import (
    _check_run_dirs,
    _pairs,
    _run_with_progress,
    _score_and_show,
    _use_weights_dir,
    out,
)
from icd_bench.errors import ConfigError


def stats(
    votes: Annotated[Path, typer.Argument(
        help="Votes CSV: item_id, method_a, method_b, choice (a, b or tie)[, rater].")],
    resamples: Annotated[int, typer.Option(
        help="Bootstrap resamples (the paper's human study: 1000).")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    resample: Annotated[str, typer.Option(
        help="What the bootstrap draws: items (all votes on an item together: "
             "several raters per item are not independent) or votes.")] = "items",
    out_dir: Annotated[Path | None, typer.Option(
        "--out", "-o",
        help="Write win-rates.csv, ranking.csv and a forest plot (PNG + SVG) here.")] = None,
) -> None:
    """Human-study statistics: per-pair win rates (ties split, and reported) and, for more than two
    methods, a Bradley–Terry ranking — each with 95 % bootstrap confidence intervals."""
    from icd_bench.reports.stats import bradley_terry, read_votes, win_rates

    if resamples < 1:
        raise ConfigError("--resamples must be at least 1")
    df = read_votes(votes)
    rates = win_rates(df, resamples=resamples, seed=seed, resample=resample)
    table = Table(title=f"win rates ({len(df)} votes, {resamples} resamples over {resample})",
                  title_justify="left")
    for col in ("method", "vs", "votes", "items", "wins", "losses", "ties", "win rate", "95 % CI"):
        table.add_column(col, justify="left" if col in ("method", "vs") else "right")
    for r in rates.itertuples():
        table.add_row(r.method, r.opponent, str(r.votes), str(r.items), str(r.wins), str(r.losses),
                      str(r.ties), f"{r.win_rate:.1%}", f"{r.ci_low:.1%} – {r.ci_high:.1%}")
    out.print(table)
    ranking = None
    if rates[["method", "opponent"]].stack().nunique() > 2:
        ranking = bradley_terry(df, resamples=resamples, seed=seed, resample=resample)
        bt = Table(title="Bradley–Terry ranking (log-strength, mean 0)", title_justify="left")
        for col in ("rank", "method", "strength", "95 % CI"):
            bt.add_column(col, justify="left" if col == "method" else "right")
        for r in ranking.itertuples():
            bt.add_row(str(r.rank), r.method, f"{r.strength:+.3f}", f"{r.ci_low:+.3f} – {r.ci_high:+.3f}")
        out.print(bt)
    if out_dir is not None:
        from icd_bench.reports.stats import write_outputs

        written = write_outputs(rates, ranking, out_dir)
        out.print("written: " + ", ".join(str(p) for p in written))


def report(
    runs: Annotated[list[Path], typer.Argument(
        help="Scored run directories (icd-bench run, then icd-bench score).")],
    table: Annotated[str, typer.Option(
        help="The paper table's layout: table2, table3, table4, table5, table6 or piebench.")] = "table2",
    fmt: Annotated[str, typer.Option(
        "--format",
        help="md, csv (long: one row per run and column), tex or html.")] = "md",
    out_dir: Annotated[Path | None, typer.Option(
        "--out", "-o",
        help="Write TABLE.FORMAT here (default: print it).")] = None,
    resamples: Annotated[int, typer.Option(
        help="Bootstrap resamples for the 95 % intervals on means.")] = 1000,
    match: Annotated[list[str] | None, typer.Option(
        "--match",
        help="RUN=SECTION/ROW: set this run (by folder name) beside a paper "
             "row, e.g. g=unguided/G or ddim50='unguided/fDDIM50 | DDIM50' "
             "(repeatable; presets of paper settings match by themselves).")] = None,
    by_edit_type: Annotated[bool, typer.Option(
        "--by-edit-type",
        help="Also one row per edit type of each run (PIE-Bench's ten, "
             "in its order), after its row over all samples.")] = False,
) -> None:
    """Scored runs as one of the paper's tables: per run and metric the mean with a 95 % bootstrap
    interval and sample count, and the paper's number beside it where the run's preset is the setting
    of a paper row. Missing metrics show as "—" with a footnote."""
    from icd_bench.reports.tables import TABLES, build_table, render

    if table not in TABLES:
        raise ConfigError(f"unknown table {table!r}; choose one of {', '.join(TABLES)}")
    if fmt not in ("md", "csv", "tex", "html"):
        raise ConfigError(f"unknown format {fmt!r}: use md, csv, tex or html")
    _check_run_dirs(runs)
    spec = TABLES[table]
    matches = _pairs(match, "--match", "RUN=SECTION/ROW")
    long, notes = build_table(spec, list(runs), resamples=resamples, matches=matches,
                              by_edit_type=by_edit_type)
    command = ("icd-bench report " + " ".join(str(r) for r in runs) + f" --table {table} --format {fmt}"
               + "".join(f" --match '{k}={v}'" for k, v in matches.items())
               + (" --by-edit-type" if by_edit_type else ""))
    text = render(spec, long, notes, fmt, command)
    if out_dir is None:
        typer.echo(text)
        return
    path = out_dir / f"{table}.{fmt}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    out.print(f"written to {path}")


def reproduce(
    suite_name: Annotated[str, typer.Argument(
        metavar="SUITE",
        help="A suite name (see `icd-bench list suites`) or the path of a suite .toml.")],
    out_dir: Annotated[Path | None, typer.Option(
        "--out", "-o",
        help="Folder for the suite's runs (one per entry) and the table "
             "(default: runs/suites/SUITE). Re-running resumes.")] = None,
    data_dir: Annotated[list[str] | None, typer.Option(
        "--data-dir",
        help="DATASET=PATH (e.g. piebench=data/PIE-Bench), or PATH "
             "for every dataset of the suite (repeatable).")] = None,
    lists: Annotated[Path, typer.Option(
        help="Folder with the published instruction files "
             "(editing_pie_bench_140.csv, …) that suites name as {lists}/FILE.")] = Path("benchmarks"),
    overrides: Annotated[list[str] | None, typer.Option(
        "--set",
        help="RUN.KEY=VALUE: a method parameter of one run "
             "(e.g. icd-xl.teacher=weights/sdxl_cfg_distill.pt), "
             "or *.KEY=VALUE for every run (repeatable).")] = None,
    only: Annotated[list[str] | None, typer.Option(
        "--only",
        help="Only these runs of the suite (repeatable).")] = None,
    limit: Annotated[int | None, typer.Option(
        help="Only the first N samples of every run (a quick look, not the paper's numbers).")] = None,
    batch_size: Annotated[int | None, typer.Option(
        help="Samples per batch for every run (default: each run's own).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    dry_run: Annotated[bool, typer.Option(
        "--dry-run",
        help="List what would run, what is already done, and every "
             "missing weight, data file or folder; run nothing.")] = False,
    weights_dir: Annotated[Path | None, typer.Option(
        help="Folder of metric weights laid out as DIR/<weight key>/... "
             "(as `icd-bench score --weights-dir`).")] = None,
    corrections: Annotated[bool, typer.Option(
        "--corrections",
        help="Run the project's corrections of the official implementations (the README's "
             "deviations table) instead of the official behaviour, into OUT/corrections/.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Reproduce a paper table: run every entry of a suite through the runner (resumable: finished
    samples and up-to-date scores are skipped), score it, and write TABLE.md / TABLE.csv with the
    paper's numbers beside (and the figure where the suite names one). Every missing weight and data
    file is named at once, before any work.

    The runs reproduce the official implementations: where a method's defaults correct them, the
    official switches are set (the table names them); --corrections runs the corrections instead."""
    from icd_bench.studies import reproduce as rep

    _use_weights_dir(weights_dir)
    suite = rep.load_suite(suite_name)
    options = rep.Options(out=out_dir or Path("runs") / "suites" / suite.name,
                          data_dirs=rep.parse_data_dirs(list(data_dir or [])), lists=lists,
                          sets=rep.parse_sets(list(overrides or []), suite), limit=limit,
                          only=tuple(only or ()), device=device, batch_size=batch_size,
                          corrections=corrections)
    if dry_run:
        planned = rep.plan(suite, options)
        table = Table(title=f"suite {suite.name} → {suite.table} in {options.root}", title_justify="left",
                      show_edge=False)
        for col in ("run", "method", "backbone", "dataset", "task", "metrics", "official switches", "done"):
            table.add_column(col)
        for p in planned:
            finished, current = rep.status(p)
            done = ("not started" if current is None
                    else f"{finished} samples" + (", scored" if current else ""))
            split = f" ({Path(p.config.split).name})" if p.config.split else ""
            table.add_row(p.run.name, p.run.method, p.config.backbone or "preset's", p.run.dataset + split,
                          p.run.task, ", ".join(p.run.metrics) if p.run.metrics is not None else "defaults",
                          ", ".join(p.switches) or ("corrections" if corrections else "—"), done)
        out.print(table)
        problems = rep.group_problems(rep.preflight(planned))
        if not problems:
            out.print("[green]ready[/]: every method, weight, backbone, dataset and metric was found")
            return
        out.print(f"[red]{len(problems)} problem(s)[/] stop this suite:")
        for msg, runs in problems:
            out.print(f"  - [bold]{escape(', '.join(runs))}[/]: {escape(msg)}")
        raise typer.Exit(1)
    result = rep.reproduce(suite, options, run_one=None if quiet else _run_with_progress,
                           score_one=lambda p: _score_and_show(p.out, p.metrics, device,
                                                               options=p.metric_options, quiet=quiet),
                           log=out.print)
    for path in result.written:
        out.print(f"written: {path}")


def figure(
    runs: Annotated[list[Path], typer.Argument(help="Scored run directories.")],
    kind: Annotated[str, typer.Option(
        help="tradeoff: a metric vs seconds and vs UNet evaluations per edit (Fig. 9); tau: "
             "reconstruction vs generation quality over a τ sweep (Fig. 5a).")] = "tradeoff",
    metric: Annotated[str, typer.Option(
        help="tradeoff: the quality metric key (as in metrics.parquet, "
             "e.g. clip_t, toy_edit:success).")] = "clip_t",
    x_metric: Annotated[str, typer.Option(help="tau: the reconstruction metric (e.g. psnr).")] = "psnr",
    y_metric: Annotated[str, typer.Option(
        help="tau: the generation metric (e.g. clip_t, imagereward).")] = "clip_t",
    out_dir: Annotated[Path, typer.Option(
        "--out", "-o",
        help="Folder for KIND.png / KIND.svg.")] = Path("reports/figures"),
) -> None:
    """Figures from scored runs, PNG + SVG."""
    from icd_bench.reports.figures import tau_figure, tradeoff_figure

    _check_run_dirs(runs)
    if kind == "tradeoff":
        paths = tradeoff_figure(list(runs), metric, out_dir / "tradeoff")
    elif kind == "tau":
        paths = tau_figure(list(runs), x_metric, y_metric, out_dir / "tau")
    else:
        raise ConfigError(f"unknown figure kind {kind!r}: tradeoff or tau")
    out.print("written: " + ", ".join(str(p) for p in paths))


def gallery(
    runs: Annotated[list[Path], typer.Argument(help="Run directories (scored or not) to show side by side.")],
    out_file: Annotated[Path | None, typer.Option(
        "--out", "-o",
        help="The page to write (default: RUN/gallery.html for one run, gallery.html for several).")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N samples.")] = None,
) -> None:
    """A static HTML page: per sample the source and each run's output, prompts and per-sample metrics,
    sortable by any column; opens from disk (relative image paths)."""
    from icd_bench.reports.html_gallery import write_gallery

    _check_run_dirs(runs)
    target = out_file or (runs[0] / "gallery.html" if len(runs) == 1 else Path("gallery.html"))
    path = write_gallery(list(runs), target, limit=limit)
    out.print(f"gallery: {path.resolve()}")
