"""GaussianClassifier: LDA with a shared shrinkage covariance, or diagonal QDA."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from scipy.special import softmax

from embedlab.core.covariance import (
    ScatterStats,
    mahalanobis_to_means,
    shrunk_covariance_from_stats,
)
from embedlab.core.errors import ValidationError
from embedlab.core.validation import validate_estimator_data
from embedlab.core.vectors import class_means, unit_rows
from embedlab.heads.base import ClassSetChange, EmbeddingClassifier
from embedlab.heads.teen import Teen, teen_shift

__all__ = ["GaussianClassifier"]


class GaussianClassifier(EmbeddingClassifier):
    """Gaussian class-conditional model with equal priors.

    Parameters
    ----------
    covariance : {"shared", "diagonal"}, default "shared"
        "shared": LDA, one full covariance for all classes, shrunk toward a scaled identity.
        "diagonal": QDA with a per-class diagonal covariance shrunk toward the pooled diagonal.
    shrinkage : "ledoit-wolf", "oas" or float in [0, 1], default "ledoit-wolf"
    normalize : bool, default True
        Scale rows to unit length first.
    """

    def __init__(
        self, covariance: str = "shared", shrinkage: Any = "ledoit-wolf", normalize: bool = True
    ):
        self.covariance = covariance
        self.shrinkage = shrinkage
        self.normalize = normalize

    def fit(self, X: Any, y: Any) -> GaussianClassifier:
        self._check_covariance()
        X, y_idx = self._validate_fit(X, y)
        k = len(self.classes_)
        means, counts, stats, sq = self._class_stats(X, y_idx, k)
        self.means_ = means
        self.class_counts_ = counts
        self.teen_classes_ = np.asarray([], dtype=object)
        if self.covariance == "shared":
            self._set_shared(stats)
        else:
            self.class_sq_ = sq
            self._set_diagonal()
        return self

    def _check_covariance(self) -> None:
        if self.covariance not in ("shared", "diagonal"):  # hyperparameters before data
            raise ValidationError(
                f"GaussianClassifier: covariance must be 'shared' or 'diagonal', "
                f"got {self.covariance!r}"
            )

    def _class_stats(
        self, X: np.ndarray, y_idx: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray, ScatterStats | None, np.ndarray | None]:
        """Means, counts and within-class statistics of classes 0..k-1 of ``y_idx``: the pooled
        :class:`ScatterStats` (shared) or the per-class mean squared residuals (diagonal)."""
        Z = unit_rows(X) if self.normalize else X
        means = class_means(Z, y_idx, k)
        counts = np.bincount(y_idx, minlength=k).astype(np.int64)
        R = Z - means[y_idx]
        if self.covariance == "shared":
            return means, counts, ScatterStats.of(R), None
        return means, counts, None, class_means(R.astype(np.float64) ** 2, y_idx, k)

    def _set_shared(self, stats: ScatterStats) -> None:
        self.scatter_ = stats.scatter
        self.scatter_n_ = stats.n
        self.scatter_fourth_ = stats.fourth
        cov, self.shrinkage_ = shrunk_covariance_from_stats(stats, self.shrinkage)
        self.precision_ = np.linalg.inv(cov).astype(np.float32)

    def _stats(self) -> ScatterStats:
        if not hasattr(self, "scatter_"):
            raise ValidationError(
                "this Gaussian head was saved by an older embedlab without its scatter "
                "statistics; refit it to add or remove classes"
            )
        return ScatterStats(self.scatter_, self.scatter_n_, self.scatter_fourth_)

    def _set_diagonal(self) -> None:
        w = self.class_counts_.astype(np.float64)[:, None]
        pooled = (self.class_sq_ * w).sum(axis=0) / w.sum()
        alpha = 0.5 if isinstance(self.shrinkage, str) else float(self.shrinkage)
        var = (1 - alpha) * self.class_sq_ + alpha * pooled[None, :]
        self.variances_ = np.maximum(var, 1e-8).astype(np.float32)
        self.shrinkage_ = alpha

    def add_classes(
        self,
        X: Any,
        y: Any,
        *,
        teen: Teen | None = None,
        X_old: Any = None,
        warm_start: Any = None,
    ) -> GaussianClassifier:
        """A copy that also knows the classes of (X, y): means appended, the pooled
        covariance and its shrinkage re-estimated in closed form — equal, to float
        tolerance, to a fit on the union. With ``teen``, few-shot added classes have their
        means moved toward similar known means (:mod:`embedlab.heads.teen`). ``X_old`` and
        ``warm_start`` are not needed (accepted so that every head's ``add_classes`` takes
        the same arguments)."""
        X, y_idx, change = self._plan_add(X, y)
        m = int(y_idx.max()) + 1
        means, counts, stats, sq = self._class_stats(X, y_idx, m)
        shifted = np.zeros(m, dtype=bool)
        if teen is not None:
            shifted = np.asarray([teen.applies(int(c)) for c in counts])
            means[shifted] = teen_shift(means[shifted], self.means_, teen)
        out = copy.deepcopy(self)
        self._apply(out, change, means, counts)
        if self.covariance == "shared":
            out._set_shared(self._stats() + stats)
        else:
            out.class_sq_ = change.take(self.class_sq_, sq)
            out._set_diagonal()
        out.teen_classes_ = self._teen_after_add(change, m, shifted)
        return out

    def remove_classes(self, labels: Any, X: Any = None, y: Any = None) -> GaussianClassifier:
        """A copy without the classes ``labels``. The shared covariance needs those classes'
        training rows (``X``, ``y``) to take their scatter out exactly."""
        keep, change = self._plan_remove(labels)
        out = copy.deepcopy(self)
        self._apply(out, change, None, None, keep=keep)
        if self.covariance == "shared":
            if X is None or y is None:
                raise ValidationError(
                    "removing classes from a shared-covariance Gaussian head needs their "
                    "training rows (X, y) to take their scatter out of the pooled covariance"
                )
            X, y = validate_estimator_data(self, X, y, reset=False)
            y = np.asarray([str(v) for v in y], dtype=object)
            gone = set(map(str, np.asarray(self.classes_)[~keep]))
            if set(y.tolist()) != gone:
                raise ValidationError(
                    "X, y must hold the training rows of exactly the removed classes"
                )
            _, y_idx = np.unique(y, return_inverse=True)
            _, counts, stats, _ = self._class_stats(np.asarray(X, np.float32), y_idx, len(gone))
            if not np.array_equal(np.sort(counts), np.sort(self.class_counts_[~keep])):
                raise ValidationError(
                    "X, y do not match the removed classes' training rows (row counts differ)"
                )
            out._set_shared(self._stats() - stats)
        else:
            out.class_sq_ = self.class_sq_[keep]
            out._set_diagonal()
        out.teen_classes_ = self._teen_after_remove(change)
        return out

    def _apply(
        self,
        out: GaussianClassifier,
        change: ClassSetChange,
        means: np.ndarray | None,
        counts: np.ndarray | None,
        keep: np.ndarray | None = None,
    ) -> None:
        if not hasattr(self, "class_counts_"):
            raise ValidationError(
                "this Gaussian head was saved by an older embedlab without its class counts; "
                "refit it to add or remove classes"
            )
        if keep is not None:
            out.means_, out.class_counts_ = self.means_[keep], self.class_counts_[keep]
        else:
            out.means_ = change.take(self.means_, means)
            out.class_counts_ = change.take(self.class_counts_, counts)
        out.classes_ = change.classes

    def mahalanobis(self, X: Any) -> np.ndarray:
        """Squared Mahalanobis distance of each row to each class mean, (n, n_classes)."""
        X = self._validate_predict(X)
        Z = unit_rows(X) if self.normalize else X
        if self.covariance == "shared":
            return mahalanobis_to_means(Z, self.means_, self.precision_)
        inv = 1.0 / self.variances_  # (k, d); loop-free: sum_j (z_j - m_kj)^2 / v_kj
        return (
            (Z**2) @ inv.T - 2 * Z @ (self.means_ * inv).T + (self.means_**2 * inv).sum(1)[None, :]
        )

    def _ranking_scores(self, X: Any) -> np.ndarray:
        """Scores that rank the classes of each row as :meth:`class_scores` does and give the
        same softmax: with a shared covariance the row's own x'Px term, equal for every
        class, is left out (linear in x, LDA: n·k·d work instead of n·d²)."""
        if self.covariance != "shared":
            return self.class_scores(X)
        X = self._validate_predict(X)
        Z = unit_rows(X) if self.normalize else X
        PM = (self.means_ @ self.precision_).astype(np.float32)  # (k, d); P is symmetric
        mpm = np.einsum("kd,kd->k", PM, self.means_).astype(np.float32)
        return Z @ PM.T - 0.5 * mpm[None, :]

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_``."""
        return softmax(self._ranking_scores(X).astype(np.float64), axis=1)

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each row."""
        scores = self._ranking_scores(X)  # checks it is fitted first
        return self.classes_[np.argmax(scores, axis=1)]

    def class_scores(self, X: Any) -> np.ndarray:
        """Class log-likelihoods up to a constant: −½·distance (− ½·log|Σ_k| for diagonal)."""
        D = self.mahalanobis(X)
        if self.covariance == "diagonal":
            D = D + np.log(self.variances_).sum(axis=1)[None, :]
        return -0.5 * D
