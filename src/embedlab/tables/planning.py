"""Quality against bytes for every table kind and budget on the user's own records, the
Pareto front, and the smallest choice within a tolerance of the best."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embedlab.core.errors import ValidationError
from embedlab.tables.columns import column_values, label_strings
from embedlab.tables.layout import KINDS
from embedlab.tables.model import TableModel

__all__ = ["DEFAULT_FRACTIONS", "TablePlan", "plan_tables"]

#: Budgets tried, as shares of the full tables' bytes.
DEFAULT_FRACTIONS = (1 / 2, 1 / 4, 1 / 8, 1 / 16, 1 / 32)


@dataclass
class TablePlan:
    """One row per (kind, budget) measured: kind, fraction, bytes, log_loss, accuracy, auc
    (two classes), seconds to fit; ``pareto`` marks the rows no other beats on both bytes
    and log-loss; ``recommended`` is the smallest within ``tolerance`` of the best log-loss."""

    rows: list[dict[str, Any]]
    tolerance: float
    full_bytes: int
    recommended: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def table(self) -> Any:
        import pyarrow as pa

        keys = ["kind", "fraction", "bytes", "vocabulary_bytes", "log_loss", "accuracy", "auc"]
        keys += ["fit_s", "pareto"]
        return pa.table({k: [r.get(k) for r in self.rows] for k in keys})

    def summary(self) -> dict[str, Any]:
        return {
            "full_bytes": self.full_bytes,
            "tolerance": self.tolerance,
            "recommended": self.recommended,
            "rows": self.rows,
            "notes": self.notes,
        }

    def plot(self, path: str | Path) -> Path:
        """Log-loss against bytes, one line per kind, the Pareto front and the pick marked."""
        import io

        from matplotlib.figure import Figure  # no pyplot: the global backend is left alone

        from embedlab.store.atomic import atomic_write_bytes

        fig = Figure(figsize=(6.5, 4.2), dpi=110)
        ax = fig.subplots()
        for kind in dict.fromkeys(r["kind"] for r in self.rows):
            pts = sorted((r["bytes"], r["log_loss"]) for r in self.rows if r["kind"] == kind)
            ax.plot(*zip(*pts, strict=True), marker="o", label=kind)
        front = sorted((r["bytes"], r["log_loss"]) for r in self.rows if r["pareto"])
        ax.plot(*zip(*front, strict=True), color="black", lw=0.8, ls="--", label="Pareto front")
        if self.recommended:
            ax.scatter([self.recommended["bytes"]], [self.recommended["log_loss"]], s=160,
                       facecolors="none", edgecolors="red", label="recommended")  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel("table bytes")
        ax.set_ylabel("held-out log-loss (lower is better)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        atomic_write_bytes(path, buf.getvalue())
        return Path(path)


def plan_tables(
    data: Any,
    y: Sequence[Any],
    *,
    cat_cols: Sequence[str],
    num_cols: Sequence[str] = (),
    text_col: str | None = None,
    vectors: np.ndarray | None = None,
    kinds: Sequence[str] = KINDS,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    tolerance: float = 0.005,
    test_size: float = 0.2,
    seed: int = 0,
    progress: bool | None = None,
    **options: Any,
) -> TablePlan:
    """Fit a :class:`~embedlab.tables.model.TableModel` for ``full`` tables and for every
    kind at every fraction of their bytes, on all but a stratified ``test_size`` of the rows,
    and score each on the rest. ``tolerance``: how much more held-out log-loss than the
    best (relative) the recommendation may cost. The text (if any) is encoded once."""
    from sklearn.model_selection import train_test_split

    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValidationError(f"unknown table kinds {unknown}: use {', '.join(KINDS)}")
    if not cat_cols:
        raise ValidationError("planning tables needs categorical columns (--cat-cols)")
    bad = [f for f in fractions if not 0 < f < 1]
    if bad:
        raise ValidationError(f"budget fractions must be in (0, 1), not {bad}")
    y = label_strings(y)
    idx = np.arange(len(y))
    _, counts = np.unique(y, return_counts=True)
    strat = y if counts.min() >= 2 else None
    train, test = train_test_split(idx, test_size=test_size, random_state=seed, stratify=strat)
    train, test = np.sort(train), np.sort(test)
    if text_col and vectors is None:
        probe = TableModel(text_col=text_col, encoder=options.get("encoder"))
        full_vecs = probe.text_vectors(data, progress=progress)
    else:
        full_vecs = vectors
    part = lambda rows: _take(data, rows, [*cat_cols, *num_cols, *([text_col] if text_col else [])])  # noqa: E731
    d_train, d_test = part(train), part(test)
    v_train = None if full_vecs is None else full_vecs[train]
    v_test = None if full_vecs is None else full_vecs[test]
    common = dict(cat_cols=list(cat_cols), num_cols=list(num_cols), text_col=text_col,
                  seed=seed, **options)  # fmt: skip
    rows: list[dict[str, Any]] = []
    import time

    def measure(kind: str, fraction: float, budget: int | None) -> TableModel:
        t = time.perf_counter()
        m = TableModel(tables=kind, budget=budget, **common).fit(d_train, y[train], vectors=v_train)
        ev = m.evaluate(d_test, y[test], vectors=v_test)
        rows.append({
            "kind": kind, "fraction": fraction, "bytes": m.layout_.bytes,
            "vocabulary_bytes": m.layout_.vocabulary_bytes,
            "log_loss": round(ev["log_loss"], 5), "accuracy": round(ev["accuracy"], 5),
            "auc": None if "auc" not in ev else round(ev["auc"], 5),
            "fit_s": round(time.perf_counter() - t, 2), "layout": m.layout_.describe(),
        })  # fmt: skip
        return m

    full = measure("full", 1.0, None)
    full_bytes = full.layout_.full_bytes
    notes = []
    for fraction in fractions:
        budget = int(full_bytes * fraction)
        for kind in kinds:
            try:
                measure(kind, fraction, budget)
            except ValidationError as exc:
                notes.append(f"{kind} at {fraction:g}: {exc}")
    for r in rows:
        r["pareto"] = not any(
            (o["bytes"] <= r["bytes"] and o["log_loss"] < r["log_loss"])
            or (o["bytes"] < r["bytes"] and o["log_loss"] <= r["log_loss"])
            for o in rows
        )
    best = min(r["log_loss"] for r in rows)
    ok = [r for r in rows if r["log_loss"] <= best * (1 + tolerance)]
    pick = min(ok, key=lambda r: (r["bytes"], r["log_loss"]))
    return TablePlan(rows=rows, tolerance=tolerance, full_bytes=full_bytes, recommended=pick,
                     notes=notes)  # fmt: skip


def _take(data: Any, rows: np.ndarray, cols: Sequence[str]) -> dict[str, np.ndarray]:
    return {c: column_values(data, c)[rows] for c in cols}
