"""KNNClassifier: cosine k-nearest neighbours, optionally interpolated with another head."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import clone

from embedlab.core.errors import ValidationError
from embedlab.core.vectors import (
    top_k_cosine,
    unit_rows,
)
from embedlab.heads.base import EmbeddingClassifier

__all__ = ["KNNClassifier", "top_k_cosine"]


class KNNClassifier(EmbeddingClassifier):
    """Cosine k-nearest-neighbour vote; with ``head``, p = λ·p_kNN + (1−λ)·p_head.

    Parameters
    ----------
    n_neighbors : int, default 10
    weights : {"distance", "uniform"}, default "distance"
        "distance" weighs each neighbour by exp(cosine / temperature).
    temperature : float, default 0.05
    head : classifier, optional
        Another head (e.g. LinearClassifier) to interpolate with; fitted on the same data.
    lam : float, default 0.5
        Weight λ of the kNN probabilities when ``head`` is given.
    """

    def __init__(
        self,
        n_neighbors: int = 10,
        weights: str = "distance",
        temperature: float = 0.05,
        head: Any = None,
        lam: float = 0.5,
    ):
        self.n_neighbors = n_neighbors
        self.weights = weights
        self.temperature = temperature
        self.head = head
        self.lam = lam

    def fit(self, X: Any, y: Any) -> KNNClassifier:
        if self.weights not in ("distance", "uniform"):  # hyperparameters before data
            raise ValidationError(
                f"KNNClassifier: weights must be 'distance' or 'uniform', got {self.weights!r}"
            )
        if not isinstance(self.n_neighbors, (int, np.integer)) or self.n_neighbors < 1:
            raise ValidationError(
                f"KNNClassifier: n_neighbors must be a positive integer, got {self.n_neighbors!r}"
            )
        X, y_idx = self._validate_fit(X, y)
        self.X_ = unit_rows(X)
        self.y_ = y_idx.astype(np.int64)
        self.head_ = None if self.head is None else clone(self.head).fit(X, y)
        return self

    def _knn_proba(self, X: np.ndarray) -> np.ndarray:
        idx, sim = top_k_cosine(unit_rows(X), self.X_, int(self.n_neighbors))
        if self.weights == "distance":
            w = np.exp((sim - sim[:, :1]) / float(self.temperature))
        else:
            w = np.ones_like(sim)
        n, c = X.shape[0], len(self.classes_)
        flat = (np.arange(n)[:, None] * c + self.y_[idx]).ravel()
        P = np.bincount(flat, weights=w.ravel().astype(np.float64), minlength=n * c).reshape(n, c)
        P /= P.sum(axis=1, keepdims=True)
        return P

    def predict_proba(self, X: Any) -> np.ndarray:
        """kNN vote shares (interpolated with the head's probabilities when set)."""
        X = self._validate_predict(X)
        P = self._knn_proba(X)
        if self.head_ is not None:
            P = self.lam * P + (1 - self.lam) * self.head_.predict_proba(X)
        return P

    def class_scores(self, X: Any) -> np.ndarray:
        """Log probabilities (floored at 1e-12), so argmax agrees with predict_proba."""
        return np.log(np.maximum(self.predict_proba(X), 1e-12))

    def predict(self, X: Any) -> np.ndarray:
        """The class with the largest (interpolated) vote share."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]
