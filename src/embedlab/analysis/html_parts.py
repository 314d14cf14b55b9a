"""Pieces of the self-contained HTML reports: summary cards and tables (escaped)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

__all__ = ["cards_html", "table_html"]


def cards_html(items: dict[str, Any]) -> str:
    """A row of summary cards, one per (name, value)."""
    cells = []
    for k, v in items.items():
        shown = f"{v:.4f}" if isinstance(v, float) else escape(str(v))
        cells.append(f'<div class="card">{escape(k)}<b>{shown}</b></div>')
    return f'<div class="cards">{"".join(cells)}</div>'


def table_html(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """An HTML table (numbers right-aligned, text escaped)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{v:.4g}</td>'
            if isinstance(v, float)
            else f'<td class="n">{v}</td>'
            if isinstance(v, int)
            else f"<td>{escape(str(v))}</td>"
            for v in row
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"
