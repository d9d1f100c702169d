"""How `run --dataset demo --task edit --score` shows the run beside DDIM-50's stored demo curve."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from icd_bench.cli.common import out


def print_demo_comparison(run_dir: Path, label: str, scores) -> None:
    """Render `studies.sweep.demo_comparison` (nothing when no curves are stored)."""
    from icd_bench.studies.sweep import CURVES, demo_comparison

    found = demo_comparison(run_dir, label, dict(zip(scores["metric"], scores["mean"], strict=True)))
    if found is None:
        return
    table = Table(title="the demo edits, judged by the toy oracle: edit success, background PSNR, UNet "
                  "evaluations and seconds per edit", title_justify="left", show_edge=False)
    for col in ("", "CFG", "edits", "edit", "bg dB", "NFE", "s/edit"):
        table.add_column(col, justify="left" if not col else "right", no_wrap=not col)
    for r in found["rows"]:
        if "success" not in r:  # a reading the curve does not reach
            table.add_row(r["method"], *("—",) * 6)
            continue
        table.add_row(r["method"], r["cfg"], str(r["edits"]), f"{r['success']:.0%}",
                      f"{r['background_psnr']:.1f}", f"{r['nfe']:g}", f"{r['seconds_per_edit']:.2f}")
    out.print(table)
    stored = found["stored"]
    out.print(f"DDIM-50: a plain prompt switch over its CFG, stored in {CURVES.name} "
              f"by `{stored['command']}` ({stored['machine']}, {stored['date']}; the row at this run's "
              "background is read from its curve, linear between neighbouring CFGs); "
              "that command measures them on this machine")
