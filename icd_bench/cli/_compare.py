"""How `run --dataset demo --task edit --score` shows the run beside the stored DDIM-50 demo figures."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from icd_bench.cli.common import out


def print_demo_comparison(run_dir: Path, label: str, scores) -> None:
    """Render `studies.compare_edits.demo_comparison` (nothing when there is no stored reference)."""
    from icd_bench.studies.compare_edits import REFERENCE, demo_comparison

    found = demo_comparison(run_dir, label, dict(zip(scores["metric"], scores["mean"], strict=True)))
    if found is None:
        return
    table = Table(title="the demo edits, judged by the toy oracle", title_justify="left", show_edge=False)
    for col in ("", "edits", "edit success", "background PSNR", "UNet evals / edit", "s / edit"):
        table.add_column(col, justify="left" if not col else "right")
    for r in found["rows"]:
        table.add_row(r["method"], str(r["edits"]), f"{r['success']:.0%}", f"{r['background_psnr']:.1f} dB",
                      f"{r['nfe']:g}", f"{r['seconds_per_edit']:.2f}")
    out.print(table)
    reference = found["reference"]
    out.print(f"DDIM-50: a prompt switch at CFG {reference['guidance']:g}, stored in {REFERENCE.name} by "
              f"`{reference['command']}` ({reference['machine']}, {reference['date']}); that command measures "
              "both on this machine")
