"""MahalanobisDetector: class-conditional Mahalanobis distance with a shared shrinkage
covariance, optionally relative to a background Gaussian and / or restricted to the
low-variance principal directions."""

from __future__ import annotations

from typing import Any

import numpy as np

from embedlab.core.covariance import mahalanobis_to_means, shrunk_covariance
from embedlab.core.vectors import class_means, unit_rows
from embedlab.detect.base import NoveltyDetector

__all__ = ["MahalanobisDetector"]


class MahalanobisDetector(NoveltyDetector):
    """Score = min over classes of the squared Mahalanobis distance to the class mean.

    Parameters
    ----------
    relative : bool, default False
        Subtract the distance under one background Gaussian fitted to all in-scope rows
        (relative Mahalanobis, Ren et al. 2021); more robust to directions every class shares.
    shrinkage : "ledoit-wolf", "oas" or float, default "ledoit-wolf"
    low_variance_components : int, optional
        Measure distances only along the m directions of smallest within-class variance.
    normalize : bool, default True
        Scale rows to unit length first.
    target_fpr, calibration_split, random_state : see MaxCosineDetector.
    """

    def __init__(
        self,
        relative: bool = False,
        shrinkage: Any = "ledoit-wolf",
        low_variance_components: int | None = None,
        normalize: bool = True,
        target_fpr: float = 0.05,
        calibration_split: float = 0.2,
        random_state: int = 0,
    ):
        self.relative = relative
        self.shrinkage = shrinkage
        self.low_variance_components = low_variance_components
        self.normalize = normalize
        self.target_fpr = target_fpr
        self.calibration_split = calibration_split
        self.random_state = random_state

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> None:
        Z = unit_rows(X) if self.normalize else X
        if y is None:
            y_idx, k = np.zeros(len(Z), dtype=np.int64), 1
        else:
            classes, y_idx = np.unique(y, return_inverse=True)
            k = len(classes)
        means = class_means(Z, y_idx, k)
        cov, self.shrinkage_ = shrunk_covariance(Z - means[y_idx], self.shrinkage)
        m = self.low_variance_components
        if m:
            evals, evecs = np.linalg.eigh(cov)  # ascending
            m = min(int(m), len(evals))
            self.projection_ = evecs[:, :m].astype(np.float32)
            self.precision_ = np.diag(1.0 / evals[:m]).astype(np.float32)
        else:
            self.projection_ = None
            self.precision_ = np.linalg.inv(cov).astype(np.float32)
        self.means_ = self._project(means)
        if self.relative:
            mu0 = Z.mean(axis=0, keepdims=True)
            cov0, _ = shrunk_covariance(Z - mu0, self.shrinkage)
            self.background_mean_ = mu0.astype(np.float32)
            self.background_precision_ = np.linalg.inv(cov0).astype(np.float32)

    def _project(self, Z: np.ndarray) -> np.ndarray:
        return Z if self.projection_ is None else Z @ self.projection_

    def _score(self, X: np.ndarray) -> np.ndarray:
        Z = unit_rows(X) if self.normalize else X
        d = mahalanobis_to_means(self._project(Z), self.means_, self.precision_).min(axis=1)
        if self.relative:
            d = d - mahalanobis_to_means(Z, self.background_mean_, self.background_precision_)[:, 0]
        return d
