"""The performance commands: bench (timing) and regress (inversion-quality regression)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from icd_bench.cli._regress import show_regression
from icd_bench.cli.common import _items, out
from icd_bench.errors import ConfigError


def bench(
    methods: Annotated[str, typer.Option(
        help="Comma-separated presets, or all: every toy method; with an sd15 "
             "backbone the SD1.5 presets of Table 6 and the baselines; with an sdxl "
             "backbone icd-sdxl and renoise-lcm-sd15 (Table 6's SDXL rows).")] = "all",
    backbone: Annotated[str | None, typer.Option(
        help="Backbone for every method (default: each preset's), e.g. toy, sd15-random, sdxl-random "
             "(the real architectures with random weights: timing needs no trained weights).")] = None,
    batch_sizes: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1",
    repeats: Annotated[int, typer.Option(
        help="Timed batches per method and batch size (after one warm-up).")] = 3,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    dtype: Annotated[str, typer.Option(help="fp32, fp16 (GPU) or bf16.")] = "fp32",
    resolution: Annotated[int | None, typer.Option(
        help="Image side in pixels (default: the backbone's; smaller "
             "sides make SD-size checks feasible on a CPU).")] = None,
    compile_mode: Annotated[str | None, typer.Option(
        "--compile",
        help="torch.compile the UNet: default, reduce-overhead (CUDA graphs) "
             "or max-autotune; the warm-up batch pays the compilation.")] = None,
    demo: Annotated[bool, typer.Option(
        "--demo",
        help="Instead: time the demo job (run + score + report of 64 demo samples, "
             "batch 16) phase by phase; --methods picks the method (default icd-toy).")] = False,
    out_dir: Annotated[Path, typer.Option(
        "--out", "-o",
        help="Where bench-*.json and bench-*.md go.")] = Path("reports/perf"),
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
        path = run_demo_bench(presets if methods != "all" else None, device=device, out=out_dir,
                              command=command, log=out.print)
    else:
        path = run_bench(presets, backbone=backbone, batch_sizes=sizes, repeats=repeats, device=device,
                         dtype=dtype, out=out_dir, command=command, resolution=resolution,
                         compile_mode=compile_mode, log=out.print)
    typer.echo(path.read_text(encoding="utf-8"))
    out.print(f"written to {path} and {path.with_suffix('.json')}")


def regress(
    update: Annotated[bool, typer.Option(
        "--update",
        help="Write the current values as the new baseline (deliberately: "
             "commit it with the change that explains it).")] = False,
    baseline: Annotated[Path, typer.Option(
        help="The stored baseline.")] = Path("reports/regression/toy-inversion.json"),  # regress.BASELINE
    limit: Annotated[int | None, typer.Option(
        help="Only the first N demo samples (the stored baseline covers "
             "all; a limited check needs its own baseline).")] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    work: Annotated[Path | None, typer.Option(
        help="Keep the runs here for inspection (an empty or new folder; default: a temporary one).")] = None,
    override: Annotated[list[str] | None, typer.Option(
        "--set",
        help="CASE:KEY=VALUE: check other weights or settings for one case, e.g. "
             "icd-toy:reverse_lora=runs/train/x/cdm.safetensors (repeatable).")] = None,
) -> None:
    """Regression of inversion quality: invert the demo set with the bundled toy iCD (default
    configuration, unguided) and DDIM-50, score PSNR, MSE and the oracle's preservation, and compare
    with the stored baseline within stated tolerances. Exits 1 when a metric regresses."""
    from icd_bench.studies.regress import case_settings, check

    current, rows = check(update=update, baseline=baseline, limit=limit, device=device, work=work,
                          extra=case_settings(override), log=out.print)
    show_regression(baseline, current, rows)
