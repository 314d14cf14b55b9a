"""The budget planner's plot: quality against bytes per vector, one colour per storage,
the Pareto front marked (matplotlib's object API: its global backend is left alone)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

__all__ = ["plot_plan"]


def plot_plan(p: Any, path: str | os.PathLike) -> Path:
    """Quality vs bytes per vector (log scale), one colour per storage, Pareto front marked."""
    from matplotlib.figure import Figure  # no pyplot: matplotlib's global backend is left alone

    from embedlab.store.atomic import atomic_write_bytes

    fig = Figure(figsize=(8.5, 5), dpi=110)
    ax = fig.subplots()
    markers = {"float32": "o", "int8": "s", "binary": "^", "pq": "D"}
    grid = [r for r in p.rows if not r.student]
    lo, hi = min(r.layer for r in grid), max(r.layer for r in grid)
    points = None
    for storage in dict.fromkeys(r.storage for r in grid):  # in the order measured
        rs = [r for r in grid if r.storage == storage]
        if rs:
            points = ax.scatter(
                [r.bytes_per_vector for r in rs],
                [r.quality for r in rs],
                c=[r.layer for r in rs],
                cmap="viridis",
                vmin=lo,
                vmax=max(hi, lo + 1),
                marker=markers[storage],
                s=[12 + r.dim / 8 for r in rs],
                alpha=0.8,
                edgecolors="none",
            )
            ax.scatter([], [], marker=markers[storage], c="grey", label=storage)
    _plot_students(ax, [r for r in p.rows if r.student])
    # The best quality reachable within each byte budget (the 2-D front of this view).
    envelope, top = [], -math.inf
    for r in sorted(p.rows, key=lambda r: (r.bytes_per_vector, -r.quality)):
        if r.feasible and r.quality > top:
            envelope.append(r)
            top = r.quality
    if envelope:
        ax.step(
            [r.bytes_per_vector for r in envelope],
            [r.quality for r in envelope],
            where="post",
            color="crimson",
            lw=1,
            ls="--",
            label="best within a byte budget",
        )
    rec = p.recommended
    if rec is not None:
        ax.scatter(
            [rec.bytes_per_vector], [rec.quality], s=220, facecolors="none", edgecolors="crimson"
        )
        ax.annotate(
            f"recommended: {rec.name}",
            (rec.bytes_per_vector, rec.quality),
            textcoords="offset points",
            xytext=(-12, -18),
            ha="right",
            fontsize=8,
            color="crimson",
            bbox={"boxstyle": "round,pad=0.3", "fc": "white", "ec": "crimson", "alpha": 0.85},
        )
    if points is not None:
        bar = fig.colorbar(points, ax=ax, pad=0.01)
        bar.set_label("layer")
    if p.max_bytes is not None:
        ax.axvline(p.max_bytes, color="grey", lw=0.8, ls=":")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("bytes per vector (log scale)")
    ax.set_ylabel(p.metric)
    ax.set_title(f"embedlab plan — {p.task}: {p.metric} vs storage (colour = layer, size = dim)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    import io

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def _plot_students(ax: Any, students: list[Any]) -> None:
    """Distilled students: black stars (they have no layer to colour by)."""
    if students:
        ax.scatter(
            [r.bytes_per_vector for r in students],
            [r.quality for r in students],
            marker="*",
            s=90,
            c="black",
            label="distilled student",
        )
