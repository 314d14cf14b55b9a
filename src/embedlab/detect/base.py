"""The detector contract: ``score_samples`` (higher = more novel), a calibrated
``threshold_``, and ``predict`` → True where a row is novel / out of scope."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.model_selection import train_test_split
from sklearn.utils.validation import check_is_fitted, validate_data

from embedlab.errors import ValidationError

__all__ = ["NoveltyDetector", "threshold_at_fpr"]


def threshold_at_fpr(in_scope_scores: np.ndarray, target_fpr: float) -> float:
    """Smallest threshold flagging at most ``target_fpr`` of in-scope scores (score > threshold)."""
    s = np.sort(np.asarray(in_scope_scores, dtype=np.float64))
    if s.size == 0:
        raise ValidationError("calibration needs at least one in-scope sample")
    if not 0.0 <= target_fpr < 1.0:
        raise ValidationError(f"target_fpr must be in [0, 1), got {target_fpr}")
    allowed = int(np.floor(target_fpr * s.size))  # in-scope rows allowed above the threshold
    return float(s[s.size - 1 - allowed])


class NoveltyDetector(OutlierMixin, BaseEstimator):
    """Base of embedlab's detectors.

    ``fit(X, y=None)`` learns the in-scope data (labels help class-conditional scores) and
    sets ``threshold_`` at ``target_fpr`` on held-out in-scope rows: a ``calibration_split``
    fraction is held out, scored by a model fitted on the rest, then the model is refitted on
    everything (cross-fitting). ``calibrate(X_in, target_fpr)`` resets the threshold from
    in-scope data you provide. Subclasses implement ``_fit`` and ``_score``.
    """

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> None:  # pragma: no cover
        raise NotImplementedError

    def _score(self, X: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def _check_common(self) -> None:
        fpr = getattr(self, "target_fpr", 0.05)
        if not 0.0 <= fpr < 1.0:
            raise ValidationError(f"target_fpr must be in [0, 1), got {fpr}")

    def fit(self, X: Any, y: Any = None) -> NoveltyDetector:
        """Fit on in-scope rows (and their labels, if any) and calibrate ``threshold_``."""
        self._check_common()
        if y is None:
            X = validate_data(self, X, dtype=[np.float32, np.float64], ensure_min_samples=2)
        else:
            X, y = validate_data(self, X, y, dtype=[np.float32, np.float64], ensure_min_samples=2)
            y = np.asarray(y)
        X = np.asarray(X, dtype=np.float32)
        split = float(getattr(self, "calibration_split", 0.0) or 0.0)
        held_scores = None
        if 0.0 < split < 1.0 and X.shape[0] >= 10:
            strat = None
            if y is not None:
                _, counts = np.unique(y, return_counts=True)
                strat = y if counts.min() >= 2 and int(split * len(y)) >= len(counts) else None
            idx_a, idx_b = train_test_split(
                np.arange(X.shape[0]),
                test_size=split,
                stratify=strat,
                random_state=getattr(self, "random_state", 0),
            )
            self._fit(X[idx_a], None if y is None else y[idx_a])
            held_scores = self._score(X[idx_b])
        self._fit(X, y)
        if held_scores is None:  # too little data to hold out: calibrate on training scores
            held_scores = self._score(X)
        self.calibration_scores_ = np.asarray(held_scores, dtype=np.float32)
        self.threshold_ = threshold_at_fpr(held_scores, getattr(self, "target_fpr", 0.05))
        return self

    def score_samples(self, X: Any) -> np.ndarray:
        """Novelty score of each row: higher = more novel / out of scope."""
        check_is_fitted(self, "threshold_")
        X = validate_data(self, X, dtype=[np.float32, np.float64], reset=False)
        return np.asarray(self._score(np.asarray(X, dtype=np.float32)), dtype=np.float32)

    def calibrate(self, X_in: Any, target_fpr: float | None = None) -> NoveltyDetector:
        """Set ``threshold_`` so that ``target_fpr`` of the in-scope rows ``X_in`` are flagged."""
        fpr = getattr(self, "target_fpr", 0.05) if target_fpr is None else target_fpr
        scores = self.score_samples(X_in)
        self.calibration_scores_ = scores
        self.threshold_ = threshold_at_fpr(scores, fpr)
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """``score_samples(X) - threshold_``: positive means novel."""
        return self.score_samples(X) - self.threshold_

    def predict(self, X: Any) -> np.ndarray:
        """True where a row is novel (score above ``threshold_``)."""
        return self.score_samples(X) > self.threshold_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        return tags
