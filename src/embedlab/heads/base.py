"""What every head shares: input validation at fit / predict and label encoding."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from embedlab.core.errors import ValidationError
from embedlab.core.validation import validate_estimator_data

__all__ = ["ClassSetChange", "EmbeddingClassifier", "check_new_classes", "check_removable"]


def check_new_classes(known: Any, added: Any) -> None:
    """Raise a ValidationError when labels to add are classes already."""
    dup = np.intersect1d(np.asarray(added).astype(str), np.asarray(known).astype(str))
    if dup.size:
        raise ValidationError(
            f"{dup.size} label(s) are classes of this model already: {dup[:10].tolist()}; "
            "add_classes adds new classes only (refit to add examples to a known class, or "
            "rename the new class)"
        )


def check_removable(known: Any, labels: Any) -> tuple[list[str], np.ndarray]:
    """The sorted labels to remove and a keep-mask over ``known``; a ValidationError for no
    label, an unknown label, or fewer than 2 classes left."""
    if isinstance(labels, str):
        labels = [labels]
    names = [str(c) for c in known]
    drop = sorted({str(v) for v in labels})
    if not drop:
        raise ValidationError("remove_classes needs at least one label")
    unknown = sorted(set(drop) - set(names))
    if unknown:
        raise ValidationError(
            f"{len(unknown)} label(s) are not classes of this model: {unknown[:10]} "
            f"(it has {len(names)}: {names[:10]}{'...' if len(names) > 10 else ''})"
        )
    keep = ~np.isin(np.asarray(names), drop)
    if keep.sum() < 2:
        raise ValidationError(
            f"removing {len(drop)} of {len(names)} classes would leave {int(keep.sum())}; "
            "a classifier needs at least 2"
        )
    return drop, keep


class ClassSetChange:
    """How a head's per-class arrays map onto a changed class set.

    After :meth:`EmbeddingClassifier._plan_add` or ``_plan_remove``: ``classes`` is the new
    sorted class list, ``take(old, new)`` builds a per-class array for it from the old
    classes' rows and the added classes' rows, and ``old_to_new`` maps an old class index
    to its new one (−1 when removed).
    """

    def __init__(self, classes: np.ndarray, order: np.ndarray, n_old: int) -> None:
        self.classes = classes
        self._order = order  # positions into concat(kept old, added), sorted by label
        inverse = np.empty(len(order), dtype=np.int64)
        inverse[order] = np.arange(len(order))
        self._inverse = inverse
        self.n_old = n_old

    def take(self, old: np.ndarray, new: np.ndarray | None = None) -> np.ndarray:
        """Per-class rows for the new class set (old rows already filtered by a removal)."""
        rows = old if new is None or len(new) == 0 else np.concatenate([old, new])
        return rows[self._order]

    def position(self, index: np.ndarray) -> np.ndarray:
        """New class index of entries of concat(kept old, added) given by ``index``."""
        return self._inverse[np.asarray(index, dtype=np.int64)]


class EmbeddingClassifier(ClassifierMixin, BaseEstimator):
    """Base of embedlab's heads: scikit-learn classifiers over float32 embedding vectors.

    Subclasses implement ``fit`` and ``class_scores`` (one score per class, higher = more
    likely); ``decision_function`` follows scikit-learn (1-D for two classes) and
    probabilities are a softmax of the class scores unless a subclass knows better.
    """

    def _validate_fit(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        X, y = validate_estimator_data(self, X, y, reset=True, ensure_min_samples=2)
        try:
            check_classification_targets(y)
        except ValueError as exc:
            raise ValidationError(f"{type(self).__name__}: {exc}") from None
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        if self.classes_.size < 2:
            raise ValidationError(
                f"a classifier needs at least 2 classes; got only class {str(self.classes_[0])!r} "
                "(to model one class of in-scope data, use a detector from embedlab.detect)"
            )
        return np.asarray(X, dtype=np.float32), y_idx

    def _validate_predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "classes_")
        X = validate_estimator_data(self, X, reset=False)
        return np.asarray(X, dtype=np.float32)

    def _plan_add(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray, ClassSetChange]:
        """Validate rows of classes to add: (X float32, class index into the added classes,
        change). Labels already known raise a ValidationError."""
        check_is_fitted(self, "classes_")
        X, y = validate_estimator_data(self, X, y, reset=False)
        y = np.asarray(y)
        added, y_idx = np.unique(y, return_inverse=True)
        check_new_classes(self.classes_, added)
        merged = np.concatenate([np.asarray(self.classes_, dtype=object), added.astype(object)])
        order = np.argsort(merged, kind="stable")
        return (
            np.asarray(X, dtype=np.float32),
            y_idx,
            ClassSetChange(merged[order], order, len(self.classes_)),
        )

    def _plan_remove(self, labels: Any) -> tuple[np.ndarray, ClassSetChange]:
        """Validate labels to remove: (keep mask over the old classes, change)."""
        check_is_fitted(self, "classes_")
        _, keep = check_removable(self.classes_, labels)
        kept = np.asarray(self.classes_, dtype=object)[keep]
        return keep, ClassSetChange(kept, np.arange(len(kept)), int(keep.sum()))

    def _teen_after_add(self, change: ClassSetChange, m: int, calibrated: np.ndarray) -> np.ndarray:
        """``teen_classes_`` after adding ``m`` classes, of which ``calibrated`` were."""
        added = change.classes[change.position(np.arange(m) + change.n_old)]
        return np.asarray(
            sorted([*map(str, getattr(self, "teen_classes_", [])), *map(str, added[calibrated])]),
            dtype=object,
        )

    def _teen_after_remove(self, change: ClassSetChange) -> np.ndarray:
        """``teen_classes_`` without the removed classes."""
        kept = set(map(str, change.classes))
        return np.asarray(
            [c for c in getattr(self, "teen_classes_", []) if c in kept], dtype=object
        )

    def class_scores(self, X: Any) -> np.ndarray:  # pragma: no cover - abstract
        """Scores (logits) of every class, (n, n_classes)."""
        raise NotImplementedError

    def decision_function(self, X: Any) -> np.ndarray:
        """Class scores (n, n_classes); for two classes the 1-D margin of ``classes_[1]``."""
        scores = self.class_scores(X)
        return scores[:, 1] - scores[:, 0] if scores.shape[1] == 2 else scores

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_``."""
        return softmax(self.class_scores(X).astype(np.float64), axis=1)

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each row."""
        scores = self.class_scores(X)
        return self.classes_[np.argmax(scores, axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        return tags
