"""Label sets (several labels per row): parsing label cells, the (n, L) indicator matrix,
per-label thresholds calibrated for F1 or a precision target, and multi-label metrics."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from embedlab.core.errors import ValidationError

__all__ = ["evaluate_multilabel", "label_indicator", "parse_label_sets", "per_label_thresholds"]


def parse_label_sets(
    cells: Sequence[Any], *, sep: str = ",", oos_label: str = "oos", name: str = "labels"
) -> list[tuple[str, ...]]:
    """Label cells → label sets. A cell is a string of labels joined by ``sep`` (spaces
    around each label are dropped) or already a list / tuple / set of labels; an empty cell,
    an empty list or ``oos_label`` alone is the empty set. An empty label between
    separators, or ``oos_label`` beside other labels, is a ValidationError naming the row
    (counted from 1)."""
    if not sep:
        raise ValidationError("the label separator must not be empty")
    out: list[tuple[str, ...]] = []
    bad: list[str] = []
    for i, cell in enumerate(cells):  # a loop over label cells: parsing text, once, at the edge
        if cell is None or (isinstance(cell, float) and cell != cell):
            parts: list[str] = []
        elif isinstance(cell, str):
            parts = [p.strip() for p in cell.split(sep)] if cell.strip() else []
        elif isinstance(cell, Iterable):
            parts = [str(p).strip() for p in cell]
        else:
            parts = [str(cell).strip()]
        if any(not p for p in parts):
            bad.append(f"row {i + 1}: {cell!r} has an empty label between separators {sep!r}")
            continue
        if oos_label in parts:
            if len(parts) > 1:
                bad.append(f"row {i + 1}: {cell!r} puts {oos_label!r} beside other labels")
                continue
            parts = []
        out.append(tuple(dict.fromkeys(parts)))  # de-duplicated, in order
    if bad:
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise ValidationError(f"{name}: " + "; ".join(bad[:5]) + more)
    return out


def label_indicator(label_sets: Sequence[Sequence[str]], classes: Sequence[str]) -> np.ndarray:
    """(n, L) boolean matrix: row i, column j = label ``classes[j]`` is in set i. A label
    not in ``classes`` is a ValidationError naming it and its first row."""
    index = {str(c): j for j, c in enumerate(classes)}
    Y = np.zeros((len(label_sets), len(index)), dtype=bool)
    rows, cols, unknown = [], [], {}
    for i, labels in enumerate(label_sets):  # a loop over label sets (parsing), not vectors
        for lab in labels:
            j = index.get(lab)
            if j is None:
                unknown.setdefault(lab, i + 1)
            else:
                rows.append(i)
                cols.append(j)
    if unknown:
        shown = ", ".join(f"{k!r} (row {v})" for k, v in list(unknown.items())[:10])
        raise ValidationError(
            f"{len(unknown)} label(s) are not labels of this model: {shown}; it knows "
            f"{len(index)}: {list(index)[:10]}{'...' if len(index) > 10 else ''}"
        )
    Y[rows, cols] = True
    return Y


def per_label_thresholds(
    scores: np.ndarray, Y: np.ndarray, *, target_precision: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per column of ``scores`` (n, L): the threshold (predict the label when score ≥ it)
    that maximises F1 against ``Y`` (n, L) — or, with ``target_precision``, the lowest one
    whose precision is at least the target (most recall at that precision). Returns
    (thresholds, reached): ``reached[j]`` is False where no threshold meets the target or
    the label has no positive row; that label's threshold is then +inf (never predicted).
    Thresholds fall midway between two distinct scores."""
    scores = np.asarray(scores, dtype=np.float64)
    Y = np.asarray(Y, dtype=bool)
    n, L = scores.shape
    thresholds = np.full(L, np.inf)
    reached = np.zeros(L, dtype=bool)
    for j in range(L):  # a loop over labels; each label's cuts are vectorised
        pos = int(Y[:, j].sum())
        if pos == 0:
            continue
        order = np.argsort(-scores[:, j], kind="stable")
        s = scores[order, j]
        tp = np.cumsum(Y[order, j])
        # a cut is allowed after position i only where the next score is lower (ties stay
        # together); the last position is always a cut (predict every row)
        cut = np.r_[s[1:] < s[:-1], True]
        predicted = np.arange(1, n + 1)
        if target_precision is None:
            value = np.where(cut, 2.0 * tp / (predicted + pos), -1.0)
        else:
            ok = cut & (tp / predicted >= target_precision)
            value = np.where(ok, tp.astype(np.float64), -1.0)
        best = int(np.argmax(value))  # first best: the highest threshold among equals
        if value[best] <= 0:
            continue
        thresholds[j] = (s[best] + s[best + 1]) / 2.0 if best + 1 < n else s[best] - 1e-6
        reached[j] = True
    return thresholds, reached


def evaluate_multilabel(Y_true: np.ndarray, Y_pred: np.ndarray, classes: Sequence[str]) -> dict:
    """Multi-label metrics of boolean (n, L) matrices: ``micro_f1``, ``macro_f1`` (over the
    labels with a true or predicted row), ``subset_accuracy`` (the whole set right),
    ``hamming_loss``, label cardinality true / predicted, the share of rows predicted with
    no label (true / predicted), and ``per_label`` precision / recall / F1 / support."""
    from sklearn.metrics import f1_score, hamming_loss, precision_recall_fscore_support

    Yt, Yp = np.asarray(Y_true, dtype=bool), np.asarray(Y_pred, dtype=bool)
    p, r, f, s = precision_recall_fscore_support(Yt, Yp, average=None, zero_division=0)
    seen = Yt.any(0) | Yp.any(0)
    return {
        "n": len(Yt),
        "micro_f1": float(f1_score(Yt, Yp, average="micro", zero_division=0)),
        "macro_f1": float(f[seen].mean()) if seen.any() else 0.0,
        "subset_accuracy": float((Yt == Yp).all(1).mean()),
        "hamming_loss": float(hamming_loss(Yt, Yp)),
        "label_cardinality_true": float(Yt.sum(1).mean()),
        "label_cardinality_predicted": float(Yp.sum(1).mean()),
        "no_label_true": float((~Yt.any(1)).mean()),
        "no_label_predicted": float((~Yp.any(1)).mean()),
        "per_label": {
            str(c): {
                "precision": float(p[j]),
                "recall": float(r[j]),
                "f1": float(f[j]),
                "support": int(s[j]),
            }
            for j, c in enumerate(classes)
        },
    }
