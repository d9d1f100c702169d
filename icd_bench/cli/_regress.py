"""How `regress` shows its result: the baseline written, or the comparison table (exit 1 on a regression)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from icd_bench.cli.common import console, out


def show_regression(baseline: Path, current: dict, rows: list[dict] | None) -> None:
    """Print what `studies.regress.check` returned; raise typer.Exit(1) when a metric regressed."""
    from icd_bench.studies.regress import TOLERANCES, failed

    if rows is None:
        out.print(f"baseline written to {baseline}: " + "; ".join(
            f"{c} " + ", ".join(f"{m} {v:.4g}" for m, v in vals.items()) for c, vals in current.items()))
        return
    table = Table(title=f"inversion regression vs {baseline}", title_justify="left")
    for col in ("case", "metric", "baseline", "now", "change", "allowed worsening", "status"):
        table.add_column(col, justify="left" if col in ("case", "metric", "status") else "right")
    for r in rows:
        fmt = "{:.4g}"
        change = "" if r["baseline"] is None or r["now"] is None else f"{r['now'] - r['baseline']:+.3g}"
        style = {"REGRESSED": "bold red", "missing": "bold red", "better": "green"}.get(r["status"], "")
        table.add_row(r["case"],
                      r["metric"] + (" ↑" if TOLERANCES[r["metric"]].higher_is_better else " ↓"),
                      "" if r["baseline"] is None else fmt.format(r["baseline"]),
                      "" if r["now"] is None else fmt.format(r["now"]), change,
                      "" if r["allowed"] is None else fmt.format(r["allowed"]),
                      f"[{style}]{r['status']}[/]" if style else r["status"])
    out.print(table)
    if failed(rows):
        console.print("[bold red]inversion quality regressed[/] (or a case is missing); if the change is "
                      "intended, update the baseline with `icd-bench regress --update` "
                      "and say why in the commit")
        raise typer.Exit(1)
    if any(r["status"] == "better" for r in rows):
        out.print("better than the baseline: record it with `icd-bench regress --update`")
    out.print("no regression")
