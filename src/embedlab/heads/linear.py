"""LinearClassifier: multinomial logistic regression on (normalised) embeddings."""

from __future__ import annotations

import copy
import warnings
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import logsumexp
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from embedlab.core.errors import ValidationError
from embedlab.core.validation import check_vectors
from embedlab.core.vectors import unit_rows
from embedlab.heads.base import EmbeddingClassifier

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

    def add_classes(
        self,
        X: Any,
        y: Any,
        *,
        teen: Any = None,
        X_old: Any = None,
        warm_start: LinearClassifier | None = None,
    ) -> LinearClassifier:
        """A copy that also knows the classes of (X, y): the known classes' weights stay as
        they are and only the new classes' weights and biases are fitted (same L2 strength
        ``C_``), by L-BFGS on the softmax over all classes, with the rows of the known
        classes ``X_old`` (their labels are not needed) as the negatives. Not equal to a
        refit on the union — docs/benchmarks.md measures the gap.

        With ``teen`` (a :class:`~embedlab.heads.teen.Teen`), each added class with at most
        ``teen.max_shots`` examples has its weight vector scaled to the known classes' mean
        weight norm (weight aligning, Zhao et al. 2020): fitted on a few rows against
        classes fitted on many, its logits are otherwise too small and it is rarely
        predicted.

        ``warm_start``: a linear head that already knows the added classes (e.g. the same
        update on more rows); the fit starts from its weights for them.
        """
        if X_old is None:
            raise ValidationError(
                "adding classes to a linear head needs the known classes' rows (X_old): the new "
                "classes' weights are fitted against them"
            )
        X, y_idx, change = self._plan_add(X, y)
        X_old = check_vectors(X_old, name="X_old", dim=self.coef_.shape[1])
        m = int(y_idx.max()) + 1
        Z = np.vstack([X_old, X]).astype(np.float32)
        if self.normalize:
            Z = unit_rows(Z)
        fixed = (Z @ self.coef_.T + self.intercept_).astype(np.float64)
        # The known classes' logits are fixed: only their log-sum-exp enters the softmax's
        # normaliser, and a known row's own (fixed) logit is a constant of the loss.
        lse_fixed = logsumexp(fixed, axis=1)
        del fixed
        n, d = Z.shape
        rows = np.arange(len(X_old), n)
        onehot = np.zeros((n, m))
        onehot[rows, y_idx] = 1.0
        reg = 1.0 / (2.0 * self.C_)
        # per added row, not per row: the gradient tolerance then means the same whether 5
        # or 5,000 rows are added among 15,000 known ones (same optimum either way)
        scale = float(len(rows))

        def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
            W, b = theta[: m * d].reshape(m, d), theta[m * d :]
            new = (Z @ W.T.astype(np.float32)).astype(np.float64) + b
            top = np.maximum(new.max(axis=1), lse_fixed)
            lse = top + np.log(np.exp(lse_fixed - top) + np.exp(new - top[:, None]).sum(axis=1))
            nll = float(lse.sum() - new[rows, y_idx].sum())
            G = np.exp(new - lse[:, None]) - onehot  # d loss / d new logits
            GZ = (G.T.astype(np.float32) @ Z).astype(np.float64)
            grad = np.r_[(GZ + 2.0 * reg * W).ravel(), G.sum(axis=0)] / scale
            return (nll + reg * float(np.sum(W * W))) / scale, grad

        start = np.zeros(m * d + m)
        if isinstance(warm_start, LinearClassifier):
            names = list(map(str, warm_start.classes_))
            pos = [
                names.index(str(c))
                for c in change.classes[change.position(np.arange(m) + change.n_old)]
            ]
            start = np.r_[
                warm_start.coef_[pos].astype(np.float64).ravel(),
                warm_start.intercept_[pos].astype(np.float64),
            ]
        res = minimize(
            loss,
            start,
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": int(self.max_iter), "gtol": 1e-3},
        )
        W, b = res.x[: m * d].reshape(m, d), res.x[m * d :]
        counts = np.bincount(y_idx, minlength=m)
        few = (
            np.asarray([teen.applies(int(c)) for c in counts])
            if teen is not None
            else np.zeros(m, dtype=bool)
        )
        if few.any():
            target = float(np.linalg.norm(self.coef_, axis=1).mean())
            norms = np.maximum(np.linalg.norm(W[few], axis=1, keepdims=True), 1e-12)
            W[few] *= target / norms
        out = copy.deepcopy(self)
        out.coef_ = change.take(self.coef_, W.astype(np.float32))
        out.intercept_ = change.take(self.intercept_, b.astype(np.float32))
        out.classes_ = change.classes
        out.n_iter_ = np.asarray([res.nit])
        out.teen_classes_ = self._teen_after_add(change, m, few)
        return out

    def remove_classes(self, labels: Any, X: Any = None, y: Any = None) -> LinearClassifier:
        """A copy without the classes ``labels``: their weights are dropped, so the
        probabilities are the old ones renormalised over the remaining classes."""
        keep, change = self._plan_remove(labels)
        out = copy.deepcopy(self)
        out.coef_, out.intercept_ = self.coef_[keep], self.intercept_[keep]
        out.classes_ = change.classes
        out.teen_classes_ = self._teen_after_remove(change)
        return out

    def class_scores(self, X: Any) -> np.ndarray:
        """Class logits, (n, n_classes)."""
        X = self._validate_predict(X)
        Z = unit_rows(X) if self.normalize else X
        return Z @ self.coef_.T + self.intercept_
