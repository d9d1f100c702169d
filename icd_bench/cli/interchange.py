"""``icd-bench import`` / ``export``: outputs made elsewhere into an ordinary run directory, and a run's
outputs into the layouts the official evaluators read (`icd_bench.interchange`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from icd_bench.cli.common import QuietOption, _progress, out


def _listed(heading: str, items: list[tuple[str, str]], shown: int = 20) -> None:
    """A heading, then the first ``shown`` (sample id, reason) pairs and how many more."""
    out.print(heading)
    for sample_id, reason in items[:shown]:
        out.print(f"  - {sample_id}: {escape(reason)}")
    if len(items) > shown:
        out.print(f"  … and {len(items) - shown} more")


def import_cmd(
    layout: Annotated[str, typer.Argument(
        help="How the producer laid the images out: piebench (PnPInversion's "
             "output/<method>/annotation_images/<image_path>), icd (the iCD code's "
             "edited_images/<j>.jpg, row j of the list), folder (ID.png / ID.jpg, or --mapping).")],
    folder: Annotated[Path, typer.Argument(
        help="The producer's folder (for piebench: output/<method> or its annotation_images).")],
    dataset: Annotated[str, typer.Option(
        help="The dataset the outputs were made for (piebench, coco-edit, folder, ...).")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="The run directory to write.")],
    data_dir: Annotated[Path | None, typer.Option(
        help="The dataset's folder (sources, prompts, masks).")] = None,
    split: Annotated[str | None, typer.Option(
        help="The dataset's split or id list (for icd: the published "
             "list the outputs were made on, in its order).")] = None,
    task: Annotated[str, typer.Option(help="edit, invert or generate: what the outputs are.")] = "edit",
    name: Annotated[str | None, typer.Option(
        help="The method's name in tables (default: imported-LAYOUT).")] = None,
    mapping: Annotated[Path | None, typer.Option(
        help="folder layout: a CSV with the columns id and file.")] = None,
    crop: Annotated[str, typer.Option(
        help="piebench strips: edit (the last 512 × 512, as PIE-Bench's "
             "evaluate.py) or reconstruction (the panel before it).")] = "edit",
    size: Annotated[int | None, typer.Option(
        help="icd and folder layouts: the side every image must "
             "have (a sample of another size fails).")] = None,
    force: Annotated[bool, typer.Option(
        "--force",
        help="Replace a run directory that already exists.")] = False,
    saw_mask: Annotated[bool | None, typer.Option(
        "--saw-mask/--no-saw-mask",
        help="Whether the method was given the benchmark's edit mask "
             "(PIE-Bench's protocol; tables say so). Default: unknown.")] = None,
    quiet: QuietOption = False,
) -> None:
    """Import outputs made elsewhere as a run directory that score, report, gallery, stats and reproduce read
    like any other (NFE and seconds unknown). A missing, unreadable or wrongly sized image fails its sample,
    with the file named; files that belong to no sample are listed, never taken for one."""
    from icd_bench.interchange import import_outputs

    with _progress(quiet) as bar:
        task_bar = bar.add_task("importing", total=None)
        summary = import_outputs(layout, folder, dataset=dataset, out=out_dir, data_dir=data_dir, split=split,
                                 task=task, name=name, mapping=mapping, crop=crop, size=size, force=force,
                                 saw_mask=saw_mask,
                                 progress=lambda k, n: bar.update(task_bar, completed=k, total=n))
    out.print(f"imported {summary.ok} of {summary.total} samples into {summary.out}")
    if summary.errors:
        _listed(f"[red]{len(summary.errors)} failed[/] (error records in records.jsonl):", summary.errors)
    if summary.extra_files:
        shown = ", ".join(summary.extra_files[:10]) + (" …" if len(summary.extra_files) > 10 else "")
        out.print(f"{len(summary.extra_files)} file(s) belong to no sample and were not imported: "
                  f"{escape(shown)}")
    out.print(f"next: icd-bench score {summary.out}")


def export_cmd(
    run_dir: Annotated[Path, typer.Argument(
        help="A run directory (written by `icd-bench run` or `icd-bench import`).")],
    layout: Annotated[str, typer.Option(
        help="piebench (output/<name>/annotation_images/<image_path>, for PIE-Bench's "
             "evaluation/evaluate.py) or icd (edited_images/<j>.jpg, for the iCD code's calc_all).")],
    out_dir: Annotated[Path, typer.Option(
        "--out", "-o",
        help="The folder to write into (for piebench: the folder "
             "evaluate.py is run from; several runs can share it).")],
    name: Annotated[str | None, typer.Option(
        help="piebench: the method folder's name, output/<name> (default: the run's preset).")] = None,
    encoding: Annotated[str | None, typer.Option(
        help="png (lossless; the default for piebench: the evaluator sees the run's pixels) or jpeg "
             "(PIL's quality 75, as the producers' scripts save; the default for icd).")] = None,
    force: Annotated[bool, typer.Option(
        "--force",
        help="Replace images an earlier export left in that place.")] = False,
    quiet: QuietOption = False,
) -> None:
    """Write a run's edits in a benchmark's own layout, so its official evaluator can run on them. Samples the
    run did not finish are skipped and listed (in the icd layout their row numbers stay empty)."""
    from icd_bench.interchange import export_run

    with _progress(quiet) as bar:
        task_bar = bar.add_task("exporting", total=None)
        summary = export_run(run_dir, layout, out_dir, name=name, encoding=encoding, force=force,
                             progress=lambda k, n: bar.update(task_bar, completed=k, total=n))
    out.print(f"wrote {summary.written} image(s) under {summary.root}")
    if summary.skipped:
        _listed(f"[yellow]{len(summary.skipped)} sample(s) not exported[/]:", summary.skipped)
        if layout == "icd":
            out.print("  calc_all pairs edited_images/ by position: "
                      "every file after a gap is paired with the wrong row")
    if summary.odd_sizes:
        out.print(f"[yellow]{len(summary.odd_sizes)} image(s) are not 512 × 512[/]: "
                  "PIE-Bench's evaluate.py decodes its masks on a 512 × 512 grid")
    if layout == "piebench":
        method = summary.root.parent.name
        out.print(f"next: from {out_dir}, PIE-Bench's evaluation/evaluate.py with \"{escape(method)}\": "
                  f"\"output/{escape(method)}/annotation_images\" among its all_tgt_image_folders")
