"""GaussianClassifier: LDA with a shared shrinkage covariance, or diagonal QDA."""

from __future__ import annotations

from typing import Any

import numpy as np

from embedlab.covariance import mahalanobis_to_means, shrunk_covariance
from embedlab.errors import ValidationError
from embedlab.heads.base import EmbeddingClassifier
from embedlab.vectors import class_means, unit_rows

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
        if self.covariance not in ("shared", "diagonal"):  # hyperparameters before data
            raise ValidationError(
                f"GaussianClassifier: covariance must be 'shared' or 'diagonal', "
                f"got {self.covariance!r}"
            )
        X, y_idx = self._validate_fit(X, y)
        Z = unit_rows(X) if self.normalize else X
        k = len(self.classes_)
        self.means_ = class_means(Z, y_idx, k)
        R = Z - self.means_[y_idx]
        if self.covariance == "shared":
            cov, self.shrinkage_ = shrunk_covariance(R, self.shrinkage)
            self.precision_ = np.linalg.inv(cov).astype(np.float32)
        else:
            pooled = (R.astype(np.float64) ** 2).mean(axis=0)
            alpha = 0.5 if isinstance(self.shrinkage, str) else float(self.shrinkage)
            var = (1 - alpha) * class_means(R**2, y_idx, k) + alpha * pooled[None, :]
            self.variances_ = np.maximum(var, 1e-8).astype(np.float32)
            self.shrinkage_ = alpha
        return self

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

    def class_scores(self, X: Any) -> np.ndarray:
        """Class log-likelihoods up to a constant: −½·distance (− ½·log|Σ_k| for diagonal)."""
        D = self.mahalanobis(X)
        if self.covariance == "diagonal":
            D = D + np.log(self.variances_).sum(axis=1)[None, :]
        return -0.5 * D
