"""Tables as text: the aligned plain-text tables lessons print, and markdown tables for the README."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["format_table", "markdown_table"]


def format_table(rows: Sequence[Sequence[str]], align: str | None = None) -> str:
    """Plain-text table: first row is the header, ``align`` one ``l``/``r`` per column."""
    ncols = len(rows[0])
    align = align or "l" * ncols
    widths = [max(len(str(r[i])) for r in rows) for i in range(ncols)]

    def line(r: Sequence[str]) -> str:
        cells = [str(c).rjust(w) if a == "r" else str(c).ljust(w) for c, w, a in zip(r, widths, align, strict=True)]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(rows[0]), rule, *(line(r) for r in rows[1:])])


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]], align: str | None = None) -> str:
    """A markdown table: ``header``, then ``rows``; ``align`` one ``l``/``r`` per column (``|`` in cells escaped)."""
    align = align or "l" * len(header)
    cells = [[str(c).replace("|", "\\|") for c in row] for row in rows]
    rule = "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"
    return "\n".join(["| " + " | ".join(header) + " |", rule, *("| " + " | ".join(row) + " |" for row in cells)])
