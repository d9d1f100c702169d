"""``icd-bench import``: outputs made elsewhere into an ordinary run directory (`icd_bench.interchange`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from icd_bench.cli.common import _progress, out


def import_cmd(
    layout: Annotated[str, typer.Argument(help="How the producer laid the images out: piebench (PnPInversion's output/<method>/annotation_images/<image_path>), icd (the iCD code's edited_images/<j>.jpg, row j of the list), folder (ID.png / ID.jpg, or --mapping).")],
    folder: Annotated[Path, typer.Argument(help="The producer's folder (for piebench: output/<method> or its annotation_images).")],
    dataset: Annotated[str, typer.Option(help="The dataset the outputs were made for (piebench, coco-edit, folder, ...).")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="The run directory to write.")],
    data_dir: Annotated[Path | None, typer.Option(help="The dataset's folder (sources, prompts, masks).")] = None,
    split: Annotated[str | None, typer.Option(help="The dataset's split or id list (for icd: the published list the outputs were made on, in its order).")] = None,
    task: Annotated[str, typer.Option(help="edit, invert or generate: what the outputs are.")] = "edit",
    name: Annotated[str | None, typer.Option(help="The method's name in tables (default: imported-LAYOUT).")] = None,
    mapping: Annotated[Path | None, typer.Option(help="folder layout: a CSV with the columns id and file.")] = None,
    crop: Annotated[str, typer.Option(help="piebench strips: edit (the last 512 × 512, as PIE-Bench's evaluate.py) or reconstruction (the panel before it).")] = "edit",
    size: Annotated[int | None, typer.Option(help="icd and folder layouts: the side every image must have (a sample of another size fails).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a run directory that already exists.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Import outputs made elsewhere as a run directory that score, report, gallery, stats and reproduce read
    like any other (NFE and seconds unknown). A missing, unreadable or wrongly sized image fails its sample,
    with the file named; files that belong to no sample are listed, never taken for one."""
    from icd_bench.interchange import import_outputs

    with _progress(quiet) as bar:
        task_bar = bar.add_task("importing", total=None)
        summary = import_outputs(layout, folder, dataset=dataset, out=out_dir, data_dir=data_dir, split=split,
                                 task=task, name=name, mapping=mapping, crop=crop, size=size, force=force,
                                 progress=lambda k, n: bar.update(task_bar, completed=k, total=n))
    out.print(f"imported {summary.ok} of {summary.total} samples into {summary.out}")
    if summary.errors:
        out.print(f"[red]{len(summary.errors)} failed[/] (error records in records.jsonl):")
        for sample_id, reason in summary.errors[:20]:
            out.print(f"  - {sample_id}: {escape(reason)}")
        if len(summary.errors) > 20:
            out.print(f"  … and {len(summary.errors) - 20} more")
    if summary.extra_files:
        shown = ", ".join(summary.extra_files[:10]) + (" …" if len(summary.extra_files) > 10 else "")
        out.print(f"{len(summary.extra_files)} file(s) belong to no sample and were not imported: {escape(shown)}")
    out.print(f"next: icd-bench score {summary.out}")
