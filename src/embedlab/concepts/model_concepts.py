"""A model's concepts stage: learnt from its kept rows or from texts, and named again
when its classes change."""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from embedlab.concepts.concept_set import ConceptSet, fit_concepts
from embedlab.core.errors import ValidationError

__all__ = ["kept_rows", "renamed_for", "with_concepts"]


def with_concepts(
    pipe: Any,
    texts: Sequence[str] | None,
    labels: Sequence[Any] | None,
    *,
    progress: bool | None = None,
    **options: Any,
) -> Any:
    """A copy of fitted ``pipe`` with concepts (see ``Pipeline.fit_concepts``); its info and
    lineage record them."""
    from embedlab.encoders.base import check_texts
    from embedlab.models.lineage import json_default, lineage

    if not pipe._fitted():
        raise ValidationError("this pipeline is not fitted yet: call fit() or Pipeline.load()")
    if texts is None:
        X, labels = kept_rows(pipe)
    else:
        texts = check_texts(texts)
        X = pipe._vectors(texts, progress)
        if labels is not None and len(labels) != len(texts):
            raise ValidationError(f"{len(labels)} labels for {len(texts)} texts")
    space = {"encoder": pipe.encoder_.spec.get("fingerprint"), "dim": int(X.shape[1])}
    found = fit_concepts(
        X,
        texts,
        None if labels is None else [str(v) for v in labels],
        ignore_labels=[pipe.oos_label],
        space=space,
        progress=progress,
        **options,
    )
    child = copy.copy(pipe)
    child.concepts_ = found
    info = json.loads(json.dumps(pipe.info, default=json_default))
    d = found.dictionary
    record = {"op": "concepts", "atoms": d.n_atoms, "k": d.k, "method": d.method}
    info["concepts"] = {**record, "rows": len(X), "named_from_texts": texts is not None}
    info["lineage"] = lineage(pipe.info, record)
    child.info = info
    return child


def kept_rows(pipe: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """The feature rows a fitted pipeline keeps, and their labels (None: multi-label)."""
    clf = pipe.classifier_
    if not hasattr(clf, "train_X_"):
        raise ValidationError(
            "this model keeps no training vectors: give the texts to learn concepts from "
            "(embedlab concepts MODEL --texts DATA)"
        )
    if pipe.multi_label:
        return np.asarray(clf.train_X_, np.float32), None
    X_in, y_in, _, X_oos = clf.kept_rows()
    X = np.vstack([X_in, X_oos]) if len(X_oos) else X_in
    y = np.concatenate([y_in.astype(str), np.full(len(X_oos), str(pipe.oos_label))])
    return X.astype(np.float32), y


def renamed_for(child: Any, concepts: ConceptSet | None) -> ConceptSet | None:
    """``concepts`` with their label mix and names taken again from ``child``'s kept rows
    (after a class change: the dictionary is the same, the space did not change); as they
    were when the model keeps no rows."""
    if concepts is None or not hasattr(child.classifier_, "train_X_"):
        return concepts
    X, labels = kept_rows(child)
    return concepts.renamed(X, None, labels, ignore_labels=[child.oos_label])
