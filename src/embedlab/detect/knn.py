"""KNNDistanceDetector: cosine distance to the k-th nearest in-scope training row."""

from __future__ import annotations

import numpy as np

from embedlab.core.errors import ValidationError
from embedlab.core.vectors import top_k_cosine, unit_rows
from embedlab.detect.base import NoveltyDetector

__all__ = ["KNNDistanceDetector"]


class KNNDistanceDetector(NoveltyDetector):
    """Score = 1 − cosine similarity to the k-th nearest training row (exact search).

    Parameters
    ----------
    n_neighbors : int, default 1
    target_fpr, calibration_split, random_state : see MaxCosineDetector.
    """

    def __init__(
        self,
        n_neighbors: int = 1,
        target_fpr: float = 0.05,
        calibration_split: float = 0.2,
        random_state: int = 0,
    ):
        self.n_neighbors = n_neighbors
        self.target_fpr = target_fpr
        self.calibration_split = calibration_split
        self.random_state = random_state

    def _check_params(self) -> None:
        super()._check_params()
        if not isinstance(self.n_neighbors, (int, np.integer)) or self.n_neighbors < 1:
            raise ValidationError(
                f"KNNDistanceDetector: n_neighbors must be a positive integer, "
                f"got {self.n_neighbors!r}"
            )

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> None:
        self.X_ = unit_rows(X)

    def _score(self, X: np.ndarray) -> np.ndarray:
        _, sim = top_k_cosine(unit_rows(X), self.X_, int(self.n_neighbors))
        return 1.0 - sim[:, -1]
