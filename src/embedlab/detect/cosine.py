"""MaxCosineDetector: 1 − the highest cosine similarity to a class mean (or training row)."""

from __future__ import annotations

import numpy as np

from embedlab.core.vectors import class_means, cosine_to, unit_rows
from embedlab.detect.base import NoveltyDetector

__all__ = ["MaxCosineDetector"]


class MaxCosineDetector(NoveltyDetector):
    """Score = 1 − max cosine similarity to the class means (labels given) or the mean.

    Parameters
    ----------
    target_fpr : float, default 0.05
        Share of in-scope rows flagged at the calibrated threshold.
    calibration_split : float, default 0.2
    random_state : int, default 0
    """

    def __init__(
        self, target_fpr: float = 0.05, calibration_split: float = 0.2, random_state: int = 0
    ):
        self.target_fpr = target_fpr
        self.calibration_split = calibration_split
        self.random_state = random_state

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> None:
        U = unit_rows(X)
        if y is None:
            self.centroids_ = unit_rows(U.mean(axis=0, keepdims=True))
        else:
            classes, y_idx = np.unique(y, return_inverse=True)
            self.centroids_ = unit_rows(class_means(U, y_idx, len(classes)))

    def _score(self, X: np.ndarray) -> np.ndarray:
        return 1.0 - cosine_to(X, self.centroids_).max(axis=1)
