"""Open-set evaluation: classification quality and out-of-scope detection in one report."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import f1_score, roc_auc_score, roc_curve

__all__ = ["HEADLINE_METRICS", "auroc", "evaluate_open_set", "fpr_at_tpr", "retrieval_at_k"]

#: The metrics reports and the CLI show first, in this order.
HEADLINE_METRICS = (
    "n",
    "accuracy",
    "macro_f1",
    "oos_auroc",
    "fpr_at_95_tpr",
    "oos_recall",
    "oos_precision",
    "overall_accuracy",
)


def retrieval_at_k(
    ranked_labels: np.ndarray, query_labels: np.ndarray, k: int = 10
) -> dict[str, float]:
    """Label-match retrieval quality of ranked results (a hit = a result with the query's
    label): recall@k = share of queries with a hit in the top k, MRR@k = mean 1/rank of
    the first hit (0 when none), P@k = share of hits among the top k."""
    same = np.asarray(ranked_labels)[:, :k] == np.asarray(query_labels)[:, None]
    first = np.where(same.any(1), same.argmax(1) + 1, np.inf)
    return {
        f"recall@{k}": float(same.any(1).mean()),
        f"mrr@{k}": float(np.mean(1.0 / first)),
        f"p@{k}": float(same.mean()),
    }


def auroc(in_scope_scores: np.ndarray, oos_scores: np.ndarray) -> float | None:
    """ROC AUC of novelty scores (out-of-scope = positive); None when a side is empty."""
    a, b = np.asarray(in_scope_scores), np.asarray(oos_scores)
    if a.size == 0 or b.size == 0:
        return None
    return float(roc_auc_score(np.r_[np.zeros(a.size), np.ones(b.size)], np.r_[a, b]))


def fpr_at_tpr(
    in_scope_scores: np.ndarray, oos_scores: np.ndarray, tpr: float = 0.95
) -> float | None:
    """Share of in-scope rows flagged at the threshold that catches ``tpr`` of out-of-scope rows."""
    a, b = np.asarray(in_scope_scores), np.asarray(oos_scores)
    if a.size == 0 or b.size == 0:
        return None
    fpr, tprs, _ = roc_curve(np.r_[np.zeros(a.size), np.ones(b.size)], np.r_[a, b])
    return float(fpr[np.searchsorted(tprs, tpr, side="left")])


def evaluate_open_set(
    y_true: Any, y_pred: Any, novelty: Any, oos_label: str = "oos", y_top1: Any = None
) -> dict[str, Any]:
    """Metrics of open-set predictions.

    ``accuracy``: in-scope rows only, a rejection counts as an error. ``overall_accuracy``:
    all rows, an out-of-scope row is correct when rejected. ``macro_f1``: macro F1 over all
    classes including the out-of-scope label. ``oos_auroc`` / ``fpr_at_95_tpr``: from the
    novelty scores. ``oos_recall`` / ``oos_precision``: of the out-of-scope decisions.
    ``head_accuracy`` (when ``y_top1``, the head's best class per row, is given): in-scope
    accuracy with no rejection, comparable with closed-set classifiers.
    Metrics that need both in-scope and out-of-scope rows are None when one side is absent.
    """
    y_true = np.asarray([str(v) for v in y_true], dtype=object)
    y_pred = np.asarray([str(v) for v in y_pred], dtype=object)
    novelty = np.asarray(novelty, dtype=np.float64)
    is_oos = y_true == oos_label
    pred_oos = y_pred == oos_label
    n_in, n_oos = int((~is_oos).sum()), int(is_oos.sum())
    correct = y_true == y_pred
    labels = sorted(set(y_true.tolist()) | set(y_pred.tolist()))
    head_acc = None
    if y_top1 is not None and n_in:
        top1 = np.asarray([str(v) for v in y_top1], dtype=object)
        head_acc = float((top1 == y_true)[~is_oos].mean())
    return {
        "n": len(y_true),
        "n_in_scope": n_in,
        "n_oos": n_oos,
        "accuracy": float(correct[~is_oos].mean()) if n_in else None,
        "macro_f1": float(
            f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
        ),
        "oos_auroc": auroc(novelty[~is_oos], novelty[is_oos]),
        "fpr_at_95_tpr": fpr_at_tpr(novelty[~is_oos], novelty[is_oos]),
        "oos_recall": float(pred_oos[is_oos].mean()) if n_oos else None,
        "oos_precision": float(is_oos[pred_oos].mean()) if pred_oos.any() else None,
        "in_scope_rejected": float(pred_oos[~is_oos].mean()) if n_in else None,
        "overall_accuracy": float(correct.mean()),
        "head_accuracy": head_acc,
    }
