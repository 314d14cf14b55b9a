"""LinearClassifier: multinomial logistic regression on (normalised) embeddings."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from embedlab.heads.base import EmbeddingClassifier
from embedlab.vectors import unit_rows

__all__ = ["LinearClassifier"]


class LinearClassifier(EmbeddingClassifier):
    """Multinomial logistic regression (L-BFGS) with tuned or fixed regularisation.

    Parameters
    ----------
    C : float or "auto", default 10.0
        Inverse L2 strength. "auto" picks the best of ``Cs`` on a stratified 20 % holdout,
        then refits on all data.
    Cs : tuple of float, default (1, 4, 16, 64)
    normalize : bool, default True
        Scale rows to unit length first (cosine geometry).
    max_iter : int, default 300
    random_state : int, default 0
    """

    def __init__(
        self,
        C: float | str = 10.0,
        Cs: tuple[float, ...] = (1.0, 4.0, 16.0, 64.0),
        normalize: bool = True,
        max_iter: int = 300,
        random_state: int = 0,
    ):
        self.C = C
        self.Cs = Cs
        self.normalize = normalize
        self.max_iter = max_iter
        self.random_state = random_state

    def _lr(self, C: float) -> LogisticRegression:
        return LogisticRegression(C=C, max_iter=self.max_iter, tol=1e-4)

    def fit(self, X: Any, y: Any) -> LinearClassifier:
        X, y_idx = self._validate_fit(X, y)
        Z = unit_rows(X) if self.normalize else X
        C = self.C
        if C == "auto":
            C = self._tune(Z, y_idx)
        self.C_ = float(C)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            lr = self._lr(self.C_).fit(Z, y_idx)
        coef, intercept = lr.coef_, lr.intercept_
        if coef.shape[0] == 1:  # binary: sklearn stores one row; expand to two logits
            coef = np.vstack([-coef / 2, coef / 2])
            intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
        self.n_iter_ = np.asarray(lr.n_iter_)
        self.coef_ = coef.astype(np.float32)
        self.intercept_ = intercept.astype(np.float32)
        return self

    def _tune(self, Z: np.ndarray, y_idx: np.ndarray) -> float:
        counts = np.bincount(y_idx)
        strat = y_idx if counts.min() >= 2 else None
        try:
            Za, Zb, ya, yb = train_test_split(
                Z, y_idx, test_size=0.2, stratify=strat, random_state=self.random_state
            )
        except ValueError:
            return float(self.Cs[len(self.Cs) // 2])
        best, best_acc = float(self.Cs[0]), -1.0
        for C in self.Cs:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                acc = float((self._lr(C).fit(Za, ya).predict(Zb) == yb).mean())
            if acc > best_acc:
                best, best_acc = float(C), acc
        return best

    def class_scores(self, X: Any) -> np.ndarray:
        """Class logits, (n, n_classes)."""
        X = self._validate_predict(X)
        Z = unit_rows(X) if self.normalize else X
        return Z @ self.coef_.T + self.intercept_
