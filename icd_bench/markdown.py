"""The one Markdown table writer of the reports (benchmarks, studies, the paper tables, the probe page)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def _row(cells: Sequence) -> str:
    return "|" + "|".join(f" {str(c).replace('|', chr(92) + '|')} " if str(c) else " " for c in cells) + "|"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence], *, left: int = 1) -> list[str]:
    """A GitHub Markdown table as lines: the header, the alignment row (the first ``left`` columns
    left-aligned, the others — numbers — right-aligned), one line per row; ``|`` in a cell is escaped."""
    align = "|" + "".join("---|" if k < left else "---:|" for k in range(len(header)))
    return [_row(header), align, *(_row(r) for r in rows)]
