"""The ``icd-bench`` command line (typer)."""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from icd_bench import __version__
from icd_bench.errors import ConfigError, IcdBenchError

app = typer.Typer(
    name="icd-bench",
    help="Benchmark and evaluation harness for fast text-guided image editing, built around "
         "invertible Consistency Distillation (iCD).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
console = Console(stderr=True)
out = Console()
_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        out.print(f"icd-bench {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks for errors.")] = False,
    version: Annotated[bool | None, typer.Option("--version", callback=_version, is_eager=True,
                                                    help="Print the version and exit.")] = None,
) -> None:
    _state["debug"] = debug


LIST_KINDS = ("methods", "presets", "datasets", "metrics", "backbones", "suites")


@app.command("list")
def list_cmd(
    kind: Annotated[str | None, typer.Argument(
        help=f"What to list: {', '.join(LIST_KINDS)} (default: all).")] = None,
) -> None:
    """List registered methods, presets, datasets, metrics and backbones."""
    from icd_bench.config import list_presets
    from icd_bench.registry import REGISTRIES

    kinds = LIST_KINDS if kind is None else (kind,)
    for k in kinds:
        if k not in LIST_KINDS:
            raise ConfigError(f"cannot list {k!r}; choose one of {', '.join(LIST_KINDS)}")
        table = Table(title=k, title_justify="left", show_edge=False)
        if k == "presets":
            table.add_column("name")
            table.add_column("method")
            table.add_column("backbone")
            table.add_column("description")
            for p in list_presets().values():
                table.add_row(p.name, p.method, p.backbone or "", p.description)
        elif k == "suites":
            from icd_bench.studies.reproduce import list_suites, load_suite

            table.add_column("name")
            table.add_column("table")
            table.add_column("runs")
            table.add_column("description")
            for name in list_suites():
                suite = load_suite(name)
                table.add_row(name, suite.table, str(len(suite.runs)), suite.description.split("\n")[0])
        elif k == "methods":
            presets = list_presets().values()
            table.add_column("name")
            table.add_column("origin")
            table.add_column("description")
            table.add_column("presets")
            for e in REGISTRIES[k].entries():
                table.add_row(e.name, e.origin, e.summary,
                              ", ".join(sorted(p.name for p in presets if p.method == e.name)) or "—")
        else:
            table.add_column("name")
            table.add_column("origin")
            table.add_column("description")
            for e in REGISTRIES[k].entries():
                table.add_row(e.name, e.origin, e.summary)
        if table.row_count == 0:
            out.print(f"[bold]{k}[/]: none registered yet")
        else:
            out.print(table)
        out.print()


def _items(text: str | None, option: str, cast=str) -> list:
    """A comma-separated option value as a list (empty entries dropped), each item ``cast``."""
    try:
        return [cast(v.strip()) for v in (text or "").split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{option} expects a comma-separated list of {cast.__name__} values, got {text!r}") from None


def _pairs(items: list[str] | None, option: str, form: str = "KEY=VALUE", *, empty_value: bool = False) -> dict[str, str]:
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


@app.command()
def run(
    method: Annotated[str, typer.Option("--method", "-m", help="Method or preset name (see `icd-bench list methods` and `icd-bench list presets`).")],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset name (see `icd-bench list datasets`).")],
    data_dir: Annotated[Path | None, typer.Option(help="Where the dataset's files are.")] = None,
    split: Annotated[str | None, typer.Option(help="Dataset split, e.g. piebench: all, realistic (the paper's 420), random (140), or the path of an id list (the published editing_pie_bench_140.csv / _all.csv as they are, or one id per line).")] = None,
    backbone: Annotated[str | None, typer.Option(help="Backbone: a registered name, a hub id or a local diffusers directory. Default: the preset's.")] = None,
    task: Annotated[str, typer.Option(help="edit (source → target prompt), invert (invert + reconstruct) or generate (from noise).")] = "edit",
    out_dir: Annotated[Path | None, typer.Option("--out", "-o", help="Run directory (default: runs/<method>-<dataset>-<task>-<hash>). Re-running resumes it.")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N samples of the dataset.")] = None,
    batch_size: Annotated[int, typer.Option(help="Samples per batch (each sample keeps its own seed: results agree across batch sizes up to float rounding, ~1e-4 dB PSNR on the demo).")] = 1,
    seed: Annotated[int, typer.Option(help="Run seed; each sample's seed derives from (seed, sample id).")] = 0,
    overrides: Annotated[list[str] | None, typer.Option("--set", help="Override a method parameter: --set key=value (repeatable).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    dtype: Annotated[str, typer.Option(help="fp32, fp16 (GPU only) or bf16.")] = "fp32",
    compile_mode: Annotated[str | None, typer.Option("--compile", help="torch.compile the UNet: default, reduce-overhead (CUDA graphs) or max-autotune. Compiled kernels round differently, so it is part of the run's configuration.")] = None,
    shard: Annotated[str | None, typer.Option(help="Run shard I of N (I/N); set automatically under `accelerate launch`.")] = None,
    retry_errors: Annotated[bool, typer.Option("--retry-errors", help="Redo samples recorded as errors.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary table.")] = False,
    score_after: Annotated[bool, typer.Option("--score", help="Then score the run with the default metrics (as `icd-bench score RUN`).")] = False,
    report_after: Annotated[bool, typer.Option("--report", help="Then write RUN/gallery.html: sources and outputs side by side with prompts and per-sample scores.")] = False,
) -> None:
    """Run a method on a dataset into a resumable run directory (records.jsonl + images); with
    --score and --report, also score it and write a gallery page to look at."""
    from icd_bench.runner import RunConfig, Runner

    cfg = RunConfig(method=method, dataset=dataset, data_dir=data_dir, split=split, backbone=backbone, task=task,
                    out=out_dir, limit=limit, batch_size=batch_size, seed=seed,
                    overrides=list(overrides or []), device=device, dtype=dtype, compile=compile_mode,
                    shard=_parse_shard(shard), retry_errors=retry_errors, debug=_state["debug"])
    runner = Runner(cfg)
    if quiet:
        summary = runner.run()
    else:
        summary = _run_with_progress(runner)
    if not quiet:
        _print_summary(summary)
    else:
        warned = f", {len({i for i, _ in summary.warnings})} ok with warnings" if summary.warnings else ""
        out.print(f"{summary.out}: {summary.ok} ok{warned}, {summary.failed} failed, {summary.skipped} already done")
    if summary.total and summary.ok == 0 and summary.failed and summary.skipped == 0:
        raise typer.Exit(1)
    if score_after:
        scores = _score_and_show(summary.out, None, device, quiet=quiet)
        if dataset == "demo" and task == "edit":
            _print_demo_comparison(summary.out, runner.spec.preset or runner.spec.method, scores)
    if report_after:
        from icd_bench.reports.html_gallery import write_gallery

        page = write_gallery([summary.out], summary.out / "gallery.html")
        out.print(f"gallery: {page.resolve()} (open it in a browser)")


def _print_demo_comparison(run_dir: Path, label: str, scores) -> None:
    """This run's oracle figures beside the stored whole-demo-set ones of DDIM-50 (``ddim-toy``)."""
    from icd_bench.store import RunStore
    from icd_bench.studies.compare_edits import REFERENCE, load_reference

    reference, means = load_reference(), dict(zip(scores["metric"], scores["mean"], strict=True))
    if reference is None or "ddim-toy" not in reference["methods"] or "toy_edit:success" not in means:
        return
    ok = [r for r in RunStore(run_dir).records() if r["status"] == "ok"]
    table = Table(title="the demo edits, judged by the toy oracle", title_justify="left", show_edge=False)
    for col in ("", "edits", "edit success", "background PSNR", "UNet evals / edit", "s / edit"):
        table.add_column(col, justify="left" if not col else "right")
    table.add_row(f"this run ({label})", str(len(ok)), f"{means['toy_edit:success']:.0%}",
                  f"{means['toy_edit:background_psnr']:.1f} dB", f"{statistics.mean(r['nfe'] for r in ok):g}",
                  f"{statistics.mean(r['seconds'] for r in ok):.2f}")
    ddim = reference["methods"]["ddim-toy"]
    table.add_row("DDIM-50 (ddim-toy)", str(ddim["edits"]), f"{ddim['toy_edit:success']:.0%}",
                  f"{ddim['toy_edit:background_psnr']:.1f} dB", f"{ddim['nfe']:g}", f"{ddim['seconds_per_edit']:.2f}")
    out.print(table)
    out.print(f"DDIM-50: a prompt switch at CFG {reference['guidance']:g}, stored in {REFERENCE.name} by "
              f"`{reference['command']}` ({reference['machine']}, {reference['date']}); that command measures "
              "both on this machine")


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

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=quiet) as bar:
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
        table.add_row("[yellow]toy vocabulary[/]", escape(f"prompts use words the toy world does not know: {listed}; "
                                                          "its outputs show toy shapes, not those words"))
    shown = 10
    for label, items, colour in (("failed", summary.errors, "red"), ("warnings", summary.warnings, "yellow")):
        for k, (sample_id, reason) in enumerate(items[:shown]):
            table.add_row(label if k == 0 else "", f"[{colour}]{escape(sample_id)}[/]: {escape(reason)}")
        if len(items) > shown:
            table.add_row("", f"… and {len(items) - shown} more (in records.jsonl)")
    out.print(table)


@app.command()
def score(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by `icd-bench run`.")],
    metrics: Annotated[str | None, typer.Option(help="Comma-separated metrics, spelled name[:region[:flavour]], e.g. psnr,ssim:background:pie,lpips,clip_t:edited:pie,toy_edit. Default: PSNR/MSE/SSIM (whole and background) + the toy oracle on toy runs. `icd-bench list metrics` shows them.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    batch_size: Annotated[int, typer.Option(help="Samples per metric batch.")] = 16,
    option: Annotated[list[str] | None, typer.Option("--option", help="Metric setting KEY=VALUE, repeatable: lpips_net=alex|vgg|squeeze, clip_model=ViT-L-14, clip_pretrained=openai, fid_ref=FOLDER_OR_NPZ, fid_extractor=module:factory, structure_layer=11.")] = None,
    weights_dir: Annotated[Path | None, typer.Option(help="Folder of metric weights laid out as DIR/<weight key>/... (sets ICD_BENCH_WEIGHTS; a missing weight's error names its key and layout).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Score a run: every finished sample × metric into RUN_DIR/metrics.parquet, with a summary table.

    Model-based metrics (lpips, dinov2, clip_t, clip_i, imagereward, fid, structure_distance) need
    the metrics extra (pip install 'icd-bench[metrics]') and their weights: --weights-dir, then the
    local Hugging Face / torch caches, then a download when online; missing weights stop the
    command before any sample is scored.
    """
    if not run_dir.is_dir():
        raise ConfigError(f"run directory not found: {run_dir}")
    options = _pairs(option, "--option", empty_value=True)
    _use_weights_dir(weights_dir)
    names = _items(metrics, "--metrics") or None
    _score_and_show(run_dir, names, device, batch_size, options, quiet)


def _use_weights_dir(weights_dir: Path | None) -> None:
    """--weights-dir: metric weights laid out as DIR/<weight key>/ (put in front of ICD_BENCH_WEIGHTS)."""
    from icd_bench.metrics.weights import ENV

    if weights_dir is not None:
        if not weights_dir.is_dir():
            raise ConfigError(f"--weights-dir {weights_dir} is not a folder")
        os.environ[ENV] = ",".join(filter(None, [str(weights_dir), os.environ.get(ENV, "")]))


def _score_and_show(run_dir: Path, names, device: str, batch_size: int = 16, options=None, quiet: bool = False) -> None:
    """Score a run (default metrics when ``names`` is None) and print the means table."""
    from icd_bench.metrics.score import score_run
    from icd_bench.runner import resolve_device

    with _progress(quiet) as bar:
        task = bar.add_task("scoring", total=None)
        frame, summary = score_run(run_dir, names, device=str(resolve_device(device, (0, 1))), batch_size=batch_size,
                                   options=options or {}, progress=lambda done, total: bar.update(task, completed=done, total=total))
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


#: The options every trainer (and `toy evaluate`) shares.
DeviceOption = Annotated[str, typer.Option(help="auto, cpu or cuda.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]

train_app = typer.Typer(help="Train models: the toy world's teacher; iCD's guidance distillation (stage 1) "
                             "and forward/reverse consistency distillation (stage 2).", no_args_is_help=True)
app.add_typer(train_app, name="train")


@train_app.command("toy-teacher")
def train_toy_teacher(
    recipe: Annotated[Path, typer.Option(help="TOML recipe with \\[model] and \\[train] tables.")] = Path("training/toy-teacher.toml"),
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Training directory: checkpoints, loss.csv, eval.csv, pipeline/. Re-running resumes.")] = Path("runs/train/toy-teacher"),
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
    recipe: Annotated[Path, typer.Option(help="TOML recipe with \\[data] and \\[train] tables.")] = Path("training/toy-cfg-distill.toml"),
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Training directory: checkpoints, loss.csv, cfg_distill.safetensors. Re-running resumes.")] = Path("runs/train/toy-cfg-distill"),
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
    recipe: Annotated[Path, typer.Option(help="TOML recipe with \\[data] and \\[train] tables.")] = Path("training/toy-icd.toml"),
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Training directory: checkpoints, loss.csv, fcdm/cdm.safetensors. Re-running resumes.")] = Path("runs/train/toy-icd"),
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


toy_app = typer.Typer(help="The toy world: regenerate the demo set, measure the teacher's quality bar, run the "
                           "Table 2 study of iCD configurations.",
                      no_args_is_help=True)
app.add_typer(toy_app, name="toy")


@toy_app.command("make-demo")
def toy_make_demo(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Where to write the demo set (PIE-Bench layout).")],
    seed: Annotated[int, typer.Option(help="Seed of the edit pairs.")] = 0,
    per_type: Annotated[int, typer.Option(help="Edits per edit type (7 types).")] = 10,
) -> None:
    """Regenerate the demo set exactly (the bundled one is seed 0, 10 per type)."""
    from icd_bench.toy.demo import build_demo

    path = build_demo(out_dir, seed=seed, per_type=per_type)
    out.print(f"demo set written to {path} ({7 * per_type} edits)")


@toy_app.command("evaluate")
def toy_evaluate(
    backbone: Annotated[str, typer.Option(help="The teacher to measure (default: the bundled one).")] = "toy",
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Where quality.json and teacher-samples.png go.")] = Path("reports/toy"),
    steps: Annotated[int, typer.Option(help="DDIM steps.")] = 50,
    guidance: Annotated[float | None, typer.Option(help="CFG scale of the samples (default: the teacher's default, picked on training combinations by `toy pick-guidance`).")] = None,
    device: DeviceOption = "auto",
) -> None:
    """The teacher's quality bar: oracle accuracy of samples on held-out combinations, inversion PSNR."""
    from icd_bench.backbones import load_backbone
    from icd_bench.runner import resolve_device
    from icd_bench.toy.evaluate import DEFAULT_GUIDANCE, evaluate_teacher

    bb = load_backbone(backbone, device=resolve_device(device, (0, 1)))
    result = evaluate_teacher(bb, out_dir, steps=steps, guidance=DEFAULT_GUIDANCE if guidance is None else guidance,
                              name=backbone)
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


@toy_app.command("pick-guidance")
def toy_pick_guidance(
    scales: Annotated[str, typer.Option(help="Comma-separated CFG scales to try.")] = "2,3,4,5,7.5",
    backbone: Annotated[str, typer.Option(help="The teacher (default: the bundled one).")] = "toy",
    steps: Annotated[int, typer.Option(help="DDIM steps.")] = 25,
    total: Annotated[int, typer.Option(help="Training combinations sampled per scale.")] = 128,
    out_file: Annotated[Path, typer.Option("--out", "-o", help="CSV of accuracy per scale.")] = Path("reports/toy/guidance-pick.csv"),
    device: DeviceOption = "auto",
) -> None:
    """Choose the teacher's default CFG scale on TRAINING combinations (the held-out bar stays untouched)."""
    import pandas as pd

    from icd_bench.backbones import load_backbone
    from icd_bench.runner import resolve_device
    from icd_bench.toy.evaluate import pick_guidance

    values = _items(scales, "--scales", float)
    bb = load_backbone(backbone, device=resolve_device(device, (0, 1)))
    frame = pd.DataFrame(pick_guidance(bb, values, steps=steps, total=total))
    out_file.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out_file, index=False, float_format="%.4f")
    table = Table(title=f"CFG scale on {total} training combinations (DDIM {steps})", title_justify="left", show_edge=False)
    for col in ("guidance", "color", "position", "background", "shape", "size", "bar_mean"):
        table.add_column(col, justify="right")
    for row in frame.itertuples():
        table.add_row(f"{row.guidance:g}", *(f"{getattr(row, c):.1%}" for c in ("color", "position", "background", "shape", "size", "bar_mean")))
    out.print(table)
    best = frame.loc[frame["bar_mean"].idxmax(), "guidance"]
    out.print(f"best: CFG {best:g} (highest mean of colour, position, background); written to {out_file}")


@toy_app.command("probe")
def toy_probe(
    label: Annotated[str, typer.Option(help="The row's name in the CSV (e.g. the recipe variant).")],
    forward_lora: Annotated[str | None, typer.Option(help="fCDm adapter (default: the bundled one; 'none': untrained).")] = None,
    reverse_lora: Annotated[str | None, typer.Option(help="CDm adapter (default: the bundled one; 'none': untrained).")] = None,
    teacher: Annotated[str, typer.Option(help="The guidance-distilled student.")] = "bundled:toy/icd/cfg_distill.safetensors",
    guidance: Annotated[float, typer.Option(help="CFG scale of the guided reverse probe.")] = 5.0,
    images: Annotated[int, typer.Option(help="Toy scenes probed.")] = 16,
    csv_file: Annotated[Path, typer.Option("--csv", help="CSV the row is appended to.")] = Path("reports/toy/probe.csv"),
) -> None:
    """Probe trained iCD adapters against the toy teacher: each step's distance to the teacher's DDIM
    trajectory (vs a plain DDIM jump), encoding statistics, reconstruction PSNR, unguided sample noise."""
    from icd_bench.toy.probe import BUNDLED, append_row, probe_models, write_markdown

    def pick(value, key):
        return None if value == "none" else (value or BUNDLED[key])

    fwd, rev = pick(forward_lora, "forward_lora"), pick(reverse_lora, "reverse_lora")
    values = probe_models(teacher=teacher, forward_lora=fwd, reverse_lora=rev, guidance=guidance, images=images)
    append_row(csv_file, label, values, {"forward_lora": fwd or "untrained", "reverse_lora": rev or "untrained"})
    write_markdown(csv_file, csv_file.with_suffix(".md"))
    table = Table(title=f"iCD probe: {label}", title_justify="left", show_edge=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in values.items():
        table.add_row(k, f"{v:.4g}")
    out.print(table)
    out.print(f"appended to {csv_file}; summary in {csv_file.with_suffix('.md')}")


@toy_app.command("compare-edits")
def toy_compare_edits(
    methods: Annotated[str, typer.Option(help="Comma-separated methods or presets to compare.")] = "icd-toy,ddim-toy",
    guidance: Annotated[float | None, typer.Option(help="CFG scale every method edits with (default: the first method's).")] = None,
    work: Annotated[Path, typer.Option(help="Where the edit runs go; re-running reuses finished samples.")] = Path("runs/toy-compare-edits"),
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Where NAME.md, NAME.csv and NAME.png go.")] = Path("reports/toy"),
    name: Annotated[str, typer.Option(help="File name of the report (NAME.md / .csv / .png).")] = "edits",
    limit: Annotated[int | None, typer.Option(help="Only the first N demo edits.")] = None,
    device: DeviceOption = "auto",
) -> None:
    """Edit the demo set with each method at one CFG scale; the toy oracle scores edit success,
    background PSNR and kept attributes; a table with UNet evaluations and seconds per edit, and a
    before/after grid. The methods table: --methods icd-toy,ddim-toy,ddim-p2p-toy,npi-toy,nti-toy,ef-ddpm-toy,renoise-toy,infedit-toy
    --name methods. A whole-demo-set comparison that includes ddim-toy also stores its overall rows
    in the package (toy/demo-edits.json): what `icd-bench run --dataset demo --task edit --score`
    prints beside its own figures."""
    from icd_bench.config import resolve_method
    from icd_bench.studies.compare_edits import REFERENCE, compare_edits

    names = _items(methods, "--methods")
    if not names:
        raise ConfigError("--methods names no method")
    if guidance is None:
        guidance = float(resolve_method(names[0], []).params_dict().get("guidance_scale", 1.0))
    command = f"icd-bench toy compare-edits --methods {','.join(names)} --guidance {guidance:g}" + (
        f" --name {name}" if name != "edits" else "") + (f" --limit {limit}" if limit else "")
    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"--name must be a plain file name, got {name!r}")
    whole = limit is None and "ddim-toy" in names  # the figures `run --dataset demo --score` compares with
    path = compare_edits(names, guidance, work, out_dir, device=device, limit=limit, command=command, name=name,
                         reference=REFERENCE if whole else None, log=out.print)
    typer.echo(path.read_text(encoding="utf-8"))
    out.print(f"written to {path}, {path.with_suffix('.csv')} and {path.with_suffix('.png')}")


@toy_app.command("bundle-icd")
def toy_bundle_icd(
    stage1: Annotated[Path, typer.Option(help="Stage 1's guidance-distilled student.")] = Path("runs/train/toy-cfg-distill/cfg_distill.safetensors"),
    stage2: Annotated[Path, typer.Option(help="Stage 2's training folder (fcdm/cdm.safetensors, icd.json).")] = Path("runs/train/toy-icd"),
    into: Annotated[Path, typer.Option(help="Destination (the package's bundled toy iCD models).")] = Path("icd_bench/assets/toy/icd"),
) -> None:
    """Copy the toy iCD models into the package as fp16 (what `--method icd-toy` loads by default)."""
    from icd_bench.toy.model import bundle_icd

    names = bundle_icd(stage1, stage2, into)
    out.print(f"bundled into {into}: " + ", ".join(names))


@toy_app.command("bundle-lcm")
def toy_bundle_lcm(
    run: Annotated[Path, typer.Option(help="The toy LCM's training folder (cdm.safetensors, icd.json).")] = Path("runs/train/toy-lcm"),
    into: Annotated[Path, typer.Option(help="Destination (the package's bundled toy LCM).")] = Path("icd_bench/assets/toy/lcm"),
) -> None:
    """Copy the toy LCM's consistency LoRA into the package as fp16 (what `renoise-toy` and
    `infedit-toy` load; their base is the bundled guidance-distilled student)."""
    from icd_bench.toy.model import bundle_lcm

    names = bundle_lcm(run, into)
    out.print(f"bundled into {into}: " + ", ".join(names))


@toy_app.command("table2")
def toy_table2(
    plan: Annotated[Path, typer.Option(help="Study plan (TOML): base recipe, configurations, table rows.")] = Path("training/toy-table2.toml"),
    teacher: Annotated[str, typer.Option(help="Guidance-distilled student every configuration trains on (stage 1's output).")] = "bundled:toy/icd/cfg_distill.safetensors",
    work: Annotated[Path, typer.Option(help="Training folders and invert runs; re-running resumes and reuses them.")] = Path("runs/toy-table2"),
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Where table2.md and table2.csv go.")] = Path("reports/toy"),
    only: Annotated[str | None, typer.Option(help="Comma-separated row names to (re)compute, e.g. A,C (the table then holds only those).")] = None,
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


def _check_run_dirs(runs: list[Path]) -> None:
    for run in runs:
        if not run.is_dir():
            raise ConfigError(f"{run}: no such run directory")


@app.command()
def stats(
    votes: Annotated[Path, typer.Argument(help="Votes CSV: item_id, method_a, method_b, choice (a, b or tie)[, rater].")],
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples (the paper's human study: 1000).")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    resample: Annotated[str, typer.Option(help="What the bootstrap draws: items (all votes on an item together: several raters per item are not independent) or votes.")] = "items",
    out_dir: Annotated[Path | None, typer.Option("--out", "-o", help="Write win-rates.csv, ranking.csv and a forest plot (PNG + SVG) here.")] = None,
) -> None:
    """Human-study statistics: per-pair win rates (ties split, and reported) and, for more than two
    methods, a Bradley–Terry ranking — each with 95 % bootstrap confidence intervals."""
    from icd_bench.reports.stats import bradley_terry, forest_plot, read_votes, win_rates

    if resamples < 1:
        raise ConfigError("--resamples must be at least 1")
    df = read_votes(votes)
    rates = win_rates(df, resamples=resamples, seed=seed, resample=resample)
    table = Table(title=f"win rates ({len(df)} votes, {resamples} resamples over {resample})", title_justify="left")
    for col in ("method", "vs", "votes", "items", "wins", "losses", "ties", "win rate", "95 % CI"):
        table.add_column(col, justify="left" if col in ("method", "vs") else "right")
    for r in rates.itertuples():
        table.add_row(r.method, r.opponent, str(r.votes), str(r.items), str(r.wins), str(r.losses), str(r.ties),
                      f"{r.win_rate:.1%}", f"{r.ci_low:.1%} – {r.ci_high:.1%}")
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
        out_dir.mkdir(parents=True, exist_ok=True)
        rates.to_csv(out_dir / "win-rates.csv", index=False)
        written = [out_dir / "win-rates.csv"]
        if ranking is not None:
            ranking.to_csv(out_dir / "ranking.csv", index=False)
            written.append(out_dir / "ranking.csv")
        written += forest_plot(rates, out_dir / "win-rates")
        out.print("written: " + ", ".join(str(p) for p in written))


@app.command()
def report(
    runs: Annotated[list[Path], typer.Argument(help="Scored run directories (icd-bench run, then icd-bench score).")],
    table: Annotated[str, typer.Option(help="The paper table's layout: table2, table3, table4, table5, table6 or piebench.")] = "table2",
    fmt: Annotated[str, typer.Option("--format", help="md, csv (long: one row per run and column), tex or html.")] = "md",
    out_dir: Annotated[Path | None, typer.Option("--out", "-o", help="Write TABLE.FORMAT here (default: print it).")] = None,
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples for the 95 % intervals on means.")] = 1000,
    match: Annotated[list[str] | None, typer.Option("--match", help="RUN=SECTION/ROW: set this run (by folder name) beside a paper row, e.g. g=unguided/G or ddim50='unguided/fDDIM50 | DDIM50' (repeatable; presets of paper settings match by themselves).")] = None,
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
    long, notes = build_table(spec, list(runs), resamples=resamples, matches=matches)
    command = ("icd-bench report " + " ".join(str(r) for r in runs) + f" --table {table} --format {fmt}"
               + "".join(f" --match '{k}={v}'" for k, v in matches.items()))
    text = render(spec, long, notes, fmt, command)
    if out_dir is None:
        typer.echo(text)
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{table}.{fmt}"
    path.write_text(text, encoding="utf-8")
    out.print(f"written to {path}")


@app.command()
def reproduce(
    suite_name: Annotated[str, typer.Argument(metavar="SUITE", help="A suite name (see `icd-bench list suites`) or the path of a suite .toml.")],
    out_dir: Annotated[Path | None, typer.Option("--out", "-o", help="Folder for the suite's runs (one per entry) and the table (default: runs/suites/SUITE). Re-running resumes.")] = None,
    data_dir: Annotated[list[str] | None, typer.Option("--data-dir", help="DATASET=PATH (e.g. piebench=data/PIE-Bench), or PATH for every dataset of the suite (repeatable).")] = None,
    lists: Annotated[Path, typer.Option(help="Folder with the published instruction files (editing_pie_bench_140.csv, …) that suites name as {lists}/FILE.")] = Path("benchmarks"),
    overrides: Annotated[list[str] | None, typer.Option("--set", help="RUN.KEY=VALUE: a method parameter of one run (e.g. icd-xl.teacher=weights/sdxl_cfg_distill.pt), or *.KEY=VALUE for every run (repeatable).")] = None,
    only: Annotated[list[str] | None, typer.Option("--only", help="Only these runs of the suite (repeatable).")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N samples of every run (a quick look, not the paper's numbers).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Samples per batch for every run (default: each run's own).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would run, what is already done, and every missing weight, data file or folder; run nothing.")] = False,
    weights_dir: Annotated[Path | None, typer.Option(help="Folder of metric weights laid out as DIR/<weight key>/... (as `icd-bench score --weights-dir`).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Reproduce a paper table: run every entry of a suite through the runner (resumable: finished
    samples and up-to-date scores are skipped), score it, and write TABLE.md / TABLE.csv with the
    paper's numbers beside (and the figure where the suite names one). Every missing weight and data
    file is named at once, before any work."""
    from icd_bench.studies import reproduce as rep

    _use_weights_dir(weights_dir)
    suite = rep.load_suite(suite_name)
    options = rep.Options(out=out_dir or Path("runs") / "suites" / suite.name,
                          data_dirs=rep.parse_data_dirs(list(data_dir or [])), lists=lists,
                          sets=rep.parse_sets(list(overrides or []), suite), limit=limit, only=tuple(only or ()),
                          device=device, batch_size=batch_size)
    if dry_run:
        planned = rep.plan(suite, options)
        table = Table(title=f"suite {suite.name} → {suite.table} in {options.out}", title_justify="left", show_edge=False)
        for col in ("run", "method", "backbone", "dataset", "task", "metrics", "done"):
            table.add_column(col)
        for p in planned:
            finished, current = rep.status(p)
            done = "not started" if current is None else f"{finished} samples" + (", scored" if current else "")
            split = f" ({Path(p.config.split).name})" if p.config.split else ""
            table.add_row(p.run.name, p.run.method, p.config.backbone or "preset's", p.run.dataset + split, p.run.task,
                          ", ".join(p.run.metrics) if p.run.metrics is not None else "defaults", done)
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
                           score_one=lambda p: _score_and_show(p.out, p.metrics, device, options=p.metric_options,
                                                               quiet=quiet),
                           log=out.print)
    for path in result.written:
        out.print(f"written: {path}")


@app.command()
def figure(
    runs: Annotated[list[Path], typer.Argument(help="Scored run directories.")],
    kind: Annotated[str, typer.Option(help="tradeoff: a metric vs seconds and vs UNet evaluations per edit (Fig. 9); tau: reconstruction vs generation quality over a τ sweep (Fig. 5a).")] = "tradeoff",
    metric: Annotated[str, typer.Option(help="tradeoff: the quality metric key (as in metrics.parquet, e.g. clip_t, toy_edit:success).")] = "clip_t",
    x_metric: Annotated[str, typer.Option(help="tau: the reconstruction metric (e.g. psnr).")] = "psnr",
    y_metric: Annotated[str, typer.Option(help="tau: the generation metric (e.g. clip_t, imagereward).")] = "clip_t",
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for KIND.png / KIND.svg.")] = Path("reports/figures"),
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


@app.command()
def gallery(
    runs: Annotated[list[Path], typer.Argument(help="Run directories (scored or not) to show side by side.")],
    out_file: Annotated[Path | None, typer.Option("--out", "-o", help="The page to write (default: RUN/gallery.html for one run, gallery.html for several).")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N samples.")] = None,
) -> None:
    """A static HTML page: per sample the source and each run's output, prompts and per-sample metrics,
    sortable by any column; opens from disk (relative image paths)."""
    from icd_bench.reports.html_gallery import write_gallery

    _check_run_dirs(runs)
    target = out_file or (runs[0] / "gallery.html" if len(runs) == 1 else Path("gallery.html"))
    path = write_gallery(list(runs), target, limit=limit)
    out.print(f"gallery: {path.resolve()}")


@app.command()
def bench(
    methods: Annotated[str, typer.Option(help="Comma-separated presets, or all: every toy method; with an sd15 backbone the SD1.5 presets of Table 6 and the baselines; with an sdxl backbone icd-sdxl and renoise-lcm-sd15 (Table 6's SDXL rows).")] = "all",
    backbone: Annotated[str | None, typer.Option(help="Backbone for every method (default: each preset's), e.g. toy, sd15-random, sdxl-random (the real architectures with random weights: timing needs no trained weights).")] = None,
    batch_sizes: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1",
    repeats: Annotated[int, typer.Option(help="Timed batches per method and batch size (after one warm-up).")] = 3,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    dtype: Annotated[str, typer.Option(help="fp32, fp16 (GPU) or bf16.")] = "fp32",
    resolution: Annotated[int | None, typer.Option(help="Image side in pixels (default: the backbone's; smaller sides make SD-size checks feasible on a CPU).")] = None,
    compile_mode: Annotated[str | None, typer.Option("--compile", help="torch.compile the UNet: default, reduce-overhead (CUDA graphs) or max-autotune; the warm-up batch pays the compilation.")] = None,
    demo: Annotated[bool, typer.Option("--demo", help="Instead: time the demo job (run + score + report of 64 demo samples, batch 16) phase by phase; --methods picks the method (default icd-toy).")] = False,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Where bench-*.json and bench-*.md go.")] = Path("reports/perf"),
) -> None:
    """Time editing methods in one process: seconds per edit (median, IQR), UNet evaluations, the
    bound of the bare UNet and VAE calls and each method's overhead, the ratio to iCD, peak memory;
    written as JSON and Markdown. Not here: multi-GPU throughput (run `accelerate launch` yourself)."""
    from icd_bench.studies.bench import default_methods, run_bench, run_demo_bench

    presets = default_methods(backbone) if methods == "all" else _items(methods, "--methods")
    sizes = _items(batch_sizes, "--batch-sizes", int)
    if repeats < 1 or any(b < 1 for b in sizes):
        raise ConfigError("--repeats and batch sizes must be at least 1")
    command = "icd-bench " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["bench"] else "icd-bench bench"
    if demo:
        path = run_demo_bench(presets if methods != "all" else None, device=device, out=out_dir, command=command,
                              log=out.print)
    else:
        path = run_bench(presets, backbone=backbone, batch_sizes=sizes, repeats=repeats, device=device, dtype=dtype,
                         out=out_dir, command=command, resolution=resolution, compile_mode=compile_mode, log=out.print)
    typer.echo(path.read_text(encoding="utf-8"))
    out.print(f"written to {path} and {path.with_suffix('.json')}")


@app.command()
def regress(
    update: Annotated[bool, typer.Option("--update", help="Write the current values as the new baseline (deliberately: commit it with the change that explains it).")] = False,
    baseline: Annotated[Path, typer.Option(help="The stored baseline.")] = Path("reports/regression/toy-inversion.json"),  # regress.BASELINE
    limit: Annotated[int | None, typer.Option(help="Only the first N demo samples (the stored baseline covers all; a limited check needs its own baseline).")] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    work: Annotated[Path | None, typer.Option(help="Keep the runs here for inspection (an empty or new folder; default: a temporary one).")] = None,
    override: Annotated[list[str] | None, typer.Option("--set", help="CASE:KEY=VALUE: check other weights or settings for one case, e.g. icd-toy:reverse_lora=runs/train/x/cdm.safetensors (repeatable).")] = None,
) -> None:
    """Regression of inversion quality: invert the demo set with the bundled toy iCD (default
    configuration, unguided) and DDIM-50, score PSNR, MSE and the oracle's preservation, and compare
    with the stored baseline within stated tolerances. Exits 1 when a metric regresses."""
    from icd_bench.studies.regress import (
        BASELINE,
        TOLERANCES,
        compare,
        failed,
        measure,
        read_baseline,
        write_baseline,
    )

    base = None if update else read_baseline(baseline)
    if base is not None and base.get("limit") != limit:
        raise ConfigError(f"{baseline} was measured with limit {base.get('limit')}, this check with {limit}: "
                          "compare like with like (or write a baseline for this limit with --update --baseline FILE)")
    extra: dict[str, list[str]] = {}
    for item in override or []:
        case, sep, setting = item.partition(":")
        if not sep or "=" not in setting:
            raise ConfigError(f"--set expects CASE:KEY=VALUE, got {item!r}")
        extra.setdefault(case, []).append(setting)
    if update and extra and baseline == BASELINE:
        raise ConfigError("--update with --set would store a baseline of other weights than the bundled ones; "
                          "write such a baseline to another file with --baseline")
    current = measure(limit=limit, device=device, work=work, extra=extra, log=out.print)
    if update:
        write_baseline(baseline, current, dataset="demo", limit=limit)
        out.print(f"baseline written to {baseline}: " + "; ".join(
            f"{c} " + ", ".join(f"{m} {v:.4g}" for m, v in vals.items()) for c, vals in current.items()))
        return
    rows = compare(base, current)
    table = Table(title=f"inversion regression vs {baseline}", title_justify="left")
    for col in ("case", "metric", "baseline", "now", "change", "allowed worsening", "status"):
        table.add_column(col, justify="left" if col in ("case", "metric", "status") else "right")
    for r in rows:
        fmt = "{:.4g}"
        change = "" if r["baseline"] is None or r["now"] is None else f"{r['now'] - r['baseline']:+.3g}"
        style = {"REGRESSED": "bold red", "missing": "bold red", "better": "green"}.get(r["status"], "")
        table.add_row(r["case"], r["metric"] + (" ↑" if TOLERANCES[r["metric"]].higher_is_better else " ↓"),
                      "" if r["baseline"] is None else fmt.format(r["baseline"]),
                      "" if r["now"] is None else fmt.format(r["now"]), change,
                      "" if r["allowed"] is None else fmt.format(r["allowed"]),
                      f"[{style}]{r['status']}[/]" if style else r["status"])
    out.print(table)
    if failed(rows):
        console.print("[bold red]inversion quality regressed[/] (or a case is missing); if the change is "
                      "intended, update the baseline with `icd-bench regress --update` and say why in the commit")
        raise typer.Exit(1)
    if any(r["status"] == "better" for r in rows):
        out.print("better than the baseline: record it with `icd-bench regress --update`")
    out.print("no regression")


def main() -> None:
    """Entry point: user errors become one line on stderr (exit 2); ``--debug`` shows tracebacks."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    debug = "--debug" in sys.argv[1:]
    try:
        rc = app(standalone_mode=False)  # a typer.Exit(code) comes back as its code here
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except IcdBenchError as exc:
        if debug:
            raise
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except typer.Abort:
        console.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        console.print("interrupted: re-run the same command to resume")
        sys.exit(130)
    except Exception as exc:  # click usage errors come here in non-standalone mode
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
