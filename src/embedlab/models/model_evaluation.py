"""A fitted model's metrics on labelled texts: open-set metrics (with the hierarchy's
levels) for single-label models, multi-label metrics with the out-of-scope view for
multi-label ones. Works through the model's public face (predict_details, embed)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from embedlab.core.errors import ValidationError
from embedlab.core.metrics import evaluate_open_set
from embedlab.core.validation import check_labels
from embedlab.models.hierarchy import Hierarchy, evaluate_levels
from embedlab.models.multilabel import evaluate_multilabel, label_indicator

__all__ = ["evaluate_multi_label", "evaluate_single_label"]


def evaluate_single_label(
    pipe: Any,
    texts: Sequence[str],
    labels: Sequence[Any],
    *,
    reject: bool = True,
    hierarchy: Hierarchy | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Open-set metrics on labelled texts (:func:`embedlab.core.metrics.evaluate_open_set`).

    ``head_accuracy`` (no rejection) is always reported beside ``accuracy`` (a rejected
    in-scope row counts as an error); ``reject=False`` evaluates with rejection off.
    Labels that are neither a known class nor ``oos_label`` raise a ValidationError.
    With a hierarchy (the model's, or ``hierarchy`` here), ``hierarchy`` holds the
    accuracy at every level and the wrong leaves that still have the right parent."""
    start = time.perf_counter()
    labels = check_labels(labels, len(texts)).astype(str)
    known = set(map(str, pipe.classes_)) | {pipe.oos_label}
    unknown = sorted(set(labels.tolist()) - known)
    _check_not_label_sets(unknown, known)
    if unknown:
        raise ValidationError(
            f"{len(unknown)} label(s) were not seen in training: {unknown[:10]}; relabel "
            f"them {pipe.oos_label!r} to count them as out of scope"
        )
    found = pipe.predict_details(texts, top_k=1, reject=reject, progress=progress)
    metrics = evaluate_open_set(
        labels, found.labels, found.novelty, pipe.oos_label, found.top_labels[:, 0]
    )
    metrics["rejection"] = bool(reject)
    tree = hierarchy if hierarchy is not None else pipe.hierarchy
    if tree is not None:
        tree.check_labels(labels, ignore=[pipe.oos_label])
        tree.check_labels(pipe.classes_)
        metrics["hierarchy"] = evaluate_levels(labels, found.labels, tree, oos_label=pipe.oos_label)
    metrics["seconds"] = round(time.perf_counter() - start, 3)
    return metrics


def evaluate_multi_label(
    pipe: Any, texts: Sequence[str], labels: Sequence[Any], *, progress: bool | None = None
) -> dict[str, Any]:
    """Multi-label metrics (:func:`embedlab.models.multilabel.evaluate_multilabel`) and the
    out-of-scope view: rows with no true label should get no predicted label."""
    start = time.perf_counter()
    clf = pipe.classifier_
    if len(labels) != len(texts):
        raise ValidationError(f"labels has {len(labels)} entries for {len(texts)} rows")
    sets = clf.label_sets(list(labels))
    Y = label_indicator(sets, clf.classes_)  # names an unknown label and its row
    trained_multi = (pipe.info.get("training") or {}).get("n_multi_label", 0)
    if trained_multi and len(Y) >= 20 and not (Y.sum(1) > 1).any():
        raise ValidationError(
            f"no row of this data holds more than one label, but the model is multi-label "
            f"({trained_multi} training rows had several, joined by {clf.label_sep!r}): "
            "single-label data, or labels joined by another separator? Evaluate it with "
            f"a single-label model, or join each row's labels with {clf.label_sep!r}"
        )
    P = clf.predict(pipe.embed(texts, progress=progress))
    metrics = evaluate_multilabel(Y, P, clf.classes_)
    none_true = ~Y.any(1)
    metrics["n_oos"] = int(none_true.sum())
    metrics["oos_recall"] = float((~P[none_true].any(1)).mean()) if none_true.any() else None
    for name, entry in metrics["per_label"].items():
        entry["threshold"] = pipe.info.get("thresholds", {}).get(name)
    metrics["seconds"] = round(time.perf_counter() - start, 3)
    return metrics


def _check_not_label_sets(unknown: list[str], known: set[str]) -> None:
    """A single-label model given label sets ("a,b" with a and b both its classes): say so."""
    for cell in unknown:
        for sep in (",", ";", "|"):
            parts = [p.strip() for p in cell.split(sep)]
            if len(parts) > 1 and all(p in known for p in parts):
                raise ValidationError(
                    f"label {cell!r} joins several of this model's classes with {sep!r}: "
                    "this is multi-label data, and the model is single-label (fit one with "
                    "`embedlab fit --multi-label`)"
                )
