"""What every head shares: input validation at fit / predict and label encoding."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from embedlab.errors import ValidationError
from embedlab.validation import validate_estimator_data

__all__ = ["EmbeddingClassifier"]


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
