"""The report of a table model (:class:`~embedlab.tables.TableModel`) on labelled records:
headline metrics, its tables and what they cost, which columns it leans on (permutation
importance), per-class recall, the ROC curve of a binary target and its training curve."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from embedlab.analysis import plots
from embedlab.analysis.html_parts import cards_html, table_html
from embedlab.core.errors import ValidationError
from embedlab.tables.columns import column_values, label_strings

__all__ = ["column_importance", "table_model_report"]


def column_importance(
    model: Any, data: Any, y: Sequence[Any], *, vectors: np.ndarray | None = None, seed: int = 0
) -> dict[str, float]:
    """How much held-out log-loss rises when one input column's values are shuffled
    between rows (permutation importance; the text column shuffles its vectors), per
    column, largest first."""
    from sklearn.metrics import log_loss

    names = model.input_columns_
    base = {c: column_values(data, c) for c in names}
    classes = list(model.classes_)
    idx = np.searchsorted(model.classes_, label_strings(y))
    if vectors is None:  # encode once, shuffle the vectors
        vectors = model.text_vectors(base)
    ref = log_loss(idx, model.predict_proba(base, vectors=vectors), labels=range(len(classes)))
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(idx))
    out = {}
    for c in names:
        shuffled = dict(base)
        vec = vectors
        if c == model.text_col:
            shuffled[c] = base[c][perm]
            vec = None if vectors is None else vectors[perm]
        else:
            shuffled[c] = base[c][perm]
        p = model.predict_proba(shuffled, vectors=vec)
        out[c] = float(log_loss(idx, p, labels=range(len(classes))) - ref)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _tables_section(layout: Any, unseen: dict[str, int]) -> str:
    """Each column's table: kind, rows, width, bytes, rare and unseen values."""
    rows = [
        [
            c.name,
            c.distinct,
            c.kind,
            c.rows or "shared",
            c.dim,
            c.params * 4,
            c.rare_values,
            unseen.get(c.name, "n/a (hashed)"),
        ]
        for c in layout.columns
    ]
    text = (
        f'<p class="note">Kind asked: {layout.kind}; budget '
        f"{'none (full tables)' if layout.budget is None else f'{layout.budget:,} bytes'}. "
        "A column whose whole table fits its share keeps a full table. Rare values share one "
        "row; values this data holds that the fit never saw read that row too.</p>"
    )
    header = ["column", "values at fit", "kind", "rows", "width", "bytes", "rare (shared)",
              "unseen here"]  # fmt: skip
    return table_html(header, rows) + text


def table_model_report(
    model: Any,
    data: Any,
    y: Sequence[Any],
    *,
    title: str = "embedlab report: table model",
    vectors: np.ndarray | None = None,
) -> str:
    """A self-contained HTML page (no scripts) on ``model`` scored on ``data`` / ``y``."""
    from sklearn.metrics import roc_curve

    from embedlab.analysis.report import _page

    y = label_strings(y)
    if len(y) < 2:
        raise ValidationError("a report needs at least 2 labelled records")
    if vectors is None:
        vectors = model.text_vectors(data)
    metrics = model.evaluate(data, y, vectors=vectors)
    layout = model.layout_
    cards = {
        "records": metrics["rows"],
        "accuracy": metrics["accuracy"],
        "macro-F1": metrics["macro_f1"],
        "log-loss": metrics["log_loss"],
    }
    if "auc" in metrics:
        cards[f"AUC ({metrics['positive_class']})"] = metrics["auc"]
    cards["table bytes"] = f"{layout.bytes:,} of {layout.full_bytes:,} (full)"
    sections = [("Headline", cards_html(cards))]
    sections.append(("The tables", _tables_section(layout, metrics["unseen_values"])))
    importance = column_importance(model, data, y, vectors=vectors)
    top = max(max(importance.values()), 1e-9)
    chart = plots.bars(
        list(importance),
        [max(v, 0) / top for v in importance.values()],
        title="log-loss rise when the column is shuffled (relative)",
        xlabel="share of the largest rise",
    )
    rises = table_html(
        ["column", "log-loss rise"], [[k, round(v, 5)] for k, v in importance.items()]
    )
    sections.append(("Which columns it leans on", chart + rises))
    pred = model.predict(data, vectors=vectors)
    recall = {c: float((pred[y == c] == c).mean()) for c in model.classes_ if (y == c).any()}
    sections.append((
        "Per class",
        plots.bars(list(recall), list(recall.values()), title="recall per class",
                   xlabel="share of the class's records labelled right"),
    ))  # fmt: skip
    if "auc" in metrics:
        p = model.predict_proba(data, vectors=vectors)[:, 1]
        fpr, tpr, _ = roc_curve(y == metrics["positive_class"], p)
        sections.append((
            "ROC curve",
            plots.lines({f"AUC {metrics['auc']:.3f}": (fpr, tpr)}, title="ROC",
                        xlabel="false positive rate", ylabel="true positive rate", diagonal=True),
        ))  # fmt: skip
    info = model.info or {}
    curve = info.get("validation_curve") or []
    sections.append((
        "Training",
        table_html(["epoch", "held-out log-loss"], [[i + 1, v] for i, v in enumerate(curve)])
        + f'<p class="note">Best epoch {info.get("best_epoch")} of {info.get("epochs_run")} '
        "kept (early stopping on a held-out tenth of the training rows).</p>",
    ))  # fmt: skip
    return _page(title, sections, "embedlab table model report")
