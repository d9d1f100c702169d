"""The run commands: list, run, score."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from icd_bench.cli._compare import print_demo_comparison
from icd_bench.cli.common import (
    QuietOption,
    _items,
    _pairs,
    _parse_shard,
    _print_summary,
    _run_with_progress,
    _score_and_show,
    _use_weights_dir,
    out,
)
from icd_bench.errors import ConfigError

LIST_KINDS = ("methods", "presets", "datasets", "metrics", "backbones", "suites")


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
        elif k == "metrics":
            table.add_column("name")
            table.add_column("origin")
            table.add_column("regions")
            table.add_column("flavours")
            table.add_column("description")
            for e in REGISTRIES[k].entries():
                cls = e.obj
                table.add_row(e.name, e.origin, ", ".join(cls.regions), ", ".join(cls.flavours), e.summary)
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


def run(
    ctx: typer.Context,
    method: Annotated[str, typer.Option(
        "--method", "-m",
        help="Method or preset name (see `icd-bench list methods` and `icd-bench list presets`).")],
    dataset: Annotated[str, typer.Option(
        "--dataset", "-d",
        help="Dataset name (see `icd-bench list datasets`).")],
    data_dir: Annotated[Path | None, typer.Option(help="Where the dataset's files are.")] = None,
    split: Annotated[str | None, typer.Option(
        help="Dataset split, e.g. piebench: all, realistic (the paper's 420), random "
             "(140), or the path of an id list (the published editing_pie_bench_140.csv "
             "/ _all.csv as they are, or one id per line).")] = None,
    backbone: Annotated[str | None, typer.Option(
        help="Backbone: a registered name, a hub id or a local "
             "diffusers directory. Default: the preset's.")] = None,
    task: Annotated[str, typer.Option(
        help="edit (source → target prompt), invert (invert + "
             "reconstruct) or generate (from noise).")] = "edit",
    out_dir: Annotated[Path | None, typer.Option(
        "--out", "-o",
        help="Run directory (default: runs/<method>-<dataset>-<task>-<hash>). "
             "Re-running resumes it.")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N samples of the dataset.")] = None,
    batch_size: Annotated[int, typer.Option(
        help="Samples per batch (each sample keeps its own seed: results agree across "
             "batch sizes up to float rounding, ~1e-4 dB PSNR on the demo).")] = 1,
    seed: Annotated[int, typer.Option(
        help="Run seed; each sample's seed derives from (seed, sample id).")] = 0,
    overrides: Annotated[list[str] | None, typer.Option(
        "--set",
        help="Override a method parameter: --set key=value (repeatable).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    dtype: Annotated[str, typer.Option(help="fp32, fp16 (GPU only) or bf16.")] = "fp32",
    compile_mode: Annotated[str | None, typer.Option(
        "--compile",
        help="torch.compile the UNet: default, reduce-overhead (CUDA graphs) or max-autotune. "
             "Compiled kernels round differently, so it is part of the run's configuration.")] = None,
    shard: Annotated[str | None, typer.Option(
        help="Run shard I of N (I/N); set automatically under `accelerate launch`.")] = None,
    retry_errors: Annotated[bool, typer.Option(
        "--retry-errors",
        help="Redo samples recorded as errors.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary table.")] = False,
    score_after: Annotated[bool, typer.Option(
        "--score",
        help="Then score the run with the default metrics (as `icd-bench score RUN`).")] = False,
    report_after: Annotated[bool, typer.Option(
        "--report",
        help="Then write RUN/gallery.html: sources and outputs side "
             "by side with prompts and per-sample scores.")] = False,
) -> None:
    """Run a method on a dataset into a resumable run directory (records.jsonl + images); with
    --score and --report, also score it and write a gallery page to look at."""
    from icd_bench.runner import RunConfig, Runner

    debug = ctx.ensure_object(dict).get("debug", False)  # set by the root callback from --debug
    cfg = RunConfig(method=method, dataset=dataset, data_dir=data_dir, split=split, backbone=backbone,
                    task=task, out=out_dir, limit=limit, batch_size=batch_size, seed=seed,
                    overrides=list(overrides or []), device=device, dtype=dtype, compile=compile_mode,
                    shard=_parse_shard(shard), retry_errors=retry_errors, debug=debug)
    runner = Runner(cfg)
    if quiet:
        summary = runner.run()
    else:
        summary = _run_with_progress(runner)
    if not quiet:
        _print_summary(summary)
    else:
        warned = f", {len({i for i, _ in summary.warnings})} ok with warnings" if summary.warnings else ""
        out.print(f"{summary.out}: {summary.ok} ok{warned}, {summary.failed} failed, "
                  f"{summary.skipped} already done")
    if summary.total and summary.ok == 0 and summary.failed and summary.skipped == 0:
        raise typer.Exit(1)
    if score_after:
        scores = _score_and_show(summary.out, None, device, quiet=quiet)
        if dataset == "demo" and task == "edit":
            print_demo_comparison(summary.out, runner.spec.preset or runner.spec.method, scores)
    if report_after:
        from icd_bench.reports.html_gallery import write_gallery

        page = write_gallery([summary.out], summary.out / "gallery.html")
        out.print(f"gallery: {page.resolve()} (open it in a browser)")


def score(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by `icd-bench run`.")],
    metrics: Annotated[str | None, typer.Option(
        help="Comma-separated metrics, spelled name[:region[:flavour]], e.g. "
             "psnr,ssim:background:pie,lpips,clip_t:edited:pie,toy_edit. Default: PSNR/MSE/SSIM (whole "
             "and background) + the toy oracle on toy runs. `icd-bench list metrics` shows them.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    batch_size: Annotated[int, typer.Option(
        help="Samples per batch: what each metric sees at once on "
             "the device, and how often values are saved.")] = 16,
    option: Annotated[list[str] | None, typer.Option(
        "--option",
        help="Metric setting KEY=VALUE, repeatable: lpips_net=alex|vgg|squeeze, "
             "clip_model=ViT-L-14, clip_pretrained=openai, fid_ref=FOLDER_OR_NPZ, "
             "fid_extractor=module:factory, structure_layer=11; for the icd flavour "
             "icd_images=auto|files|memory, autocast=auto|off|fp16|bf16, icd_psnr=pairs|list; "
             "for the pie flavour (PIE-Bench's protocol, its evaluate.py's behaviour first) "
             "pie_undefined=skip|zero, pie_brackets=strip|keep, pie_mask_border=on|off.")] = None,
    weights_dir: Annotated[Path | None, typer.Option(
        help="Folder of metric weights laid out as DIR/<weight key>/... (sets "
             "ICD_BENCH_WEIGHTS; a missing weight's error names its key and layout).")] = None,
    quiet: QuietOption = False,
    restart: Annotated[bool, typer.Option(
        "--restart",
        help="Discard the values saved by earlier (or killed) scorings "
             "of this run and compute everything again.")] = False,
) -> None:
    """Score a run: every finished sample × metric into RUN_DIR/metrics.parquet, with a summary table.

    Model-based metrics (lpips, dinov2, clip_t, clip_i, imagereward, fid, structure_distance) need
    the metrics extra (pip install 'icd-bench\\[metrics]') and their weights: --weights-dir, then the
    local Hugging Face / torch caches, then a download when online; missing weights stop the
    command before any sample is scored.

    Values are saved batch by batch under RUN_DIR/scoring/: a killed score resumes where it stopped.
    Under `accelerate launch -m icd_bench score ...` the processes split the samples and process 0
    writes the merged metrics.parquet.
    """
    if not run_dir.is_dir():
        raise ConfigError(f"run directory not found: {run_dir}")
    options = _pairs(option, "--option", empty_value=True)
    _use_weights_dir(weights_dir)
    names = _items(metrics, "--metrics") or None
    _score_and_show(run_dir, names, device, batch_size, options, quiet, restart=restart)
