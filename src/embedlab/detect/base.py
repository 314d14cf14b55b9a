"""The detector contract (PyOD's): ``decision_function`` (higher = more novel), a
calibrated ``threshold_``, and ``predict`` → 1 where a row is out of scope, else 0."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.model_selection import train_test_split
from sklearn.utils.validation import check_is_fitted

from embedlab.core.errors import ValidationError
from embedlab.core.validation import NO_Y, validate_estimator_data

__all__ = ["NoveltyDetector", "calibration_rows", "threshold_at_fpr"]


def calibration_rows(
    y: np.ndarray | None, n: int, split: float, random_state: int
) -> np.ndarray | None:
    """Mask of the rows a detector holds out to set its threshold: ``split`` of them,
    stratified by label when every label has 2+ rows (None when ``split`` is 0 or there
    are fewer than 10 rows: then the threshold is set on the training scores)."""
    if not 0.0 < split < 1.0 or n < 10:
        return None
    strat = None
    if y is not None:
        _, counts = np.unique(y, return_counts=True)
        strat = y if counts.min() >= 2 and int(split * len(y)) >= len(counts) else None
    _, held = train_test_split(
        np.arange(n), test_size=split, stratify=strat, random_state=random_state
    )
    mask = np.zeros(n, dtype=bool)
    mask[held] = True
    return mask


def threshold_at_fpr(in_scope_scores: np.ndarray, target_fpr: float) -> float:
    """Smallest threshold flagging at most ``target_fpr`` of in-scope scores (score > threshold)."""
    s = np.sort(np.asarray(in_scope_scores, dtype=np.float64))
    if s.size == 0:
        raise ValidationError("calibration needs at least one in-scope sample")
    if not 0.0 <= target_fpr < 1.0:
        raise ValidationError(f"target_fpr must be in [0, 1), got {target_fpr}")
    allowed = int(np.floor(target_fpr * s.size))  # in-scope rows allowed above the threshold
    return float(s[s.size - 1 - allowed])


class NoveltyDetector(BaseEstimator):
    """Base of embedlab's detectors; every detector follows one contract (PyOD's).

    - ``fit(X, y=None)`` learns the in-scope data (labels help class-conditional scores),
      validates its hyperparameters first, and sets ``threshold_`` at ``target_fpr`` on
      held-out in-scope rows: a ``calibration_split`` fraction is held out, scored by a
      model fitted on the rest, then the model is refitted on everything (cross-fitting).
    - ``decision_function(X)``: the novelty score of each row, float32, **higher = more
      novel / out of scope**.
    - ``predict(X)``: 1 where a row is out of scope (score above ``threshold_``), else 0.
    - ``calibrate(X_in, target_fpr)`` resets ``threshold_`` from in-scope rows you give.
    - Bad input or hyperparameters raise :class:`~embedlab.core.errors.ValidationError`.

    Subclasses implement ``_fit`` and ``_score`` (and ``_check_params`` for their own
    hyperparameters). This is not scikit-learn's outlier convention (there, higher scores
    mean *more normal* and ``predict`` gives ±1), so detectors do not inherit
    ``OutlierMixin`` (and have no ``score_samples``: its sign would mislead).
    """

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> None:  # pragma: no cover
        raise NotImplementedError

    def _score(self, X: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def _check_params(self) -> None:
        """Validate hyperparameters (called first thing in ``fit``); extend in subclasses."""
        fpr = getattr(self, "target_fpr", 0.05)
        if not isinstance(fpr, (int, float)) or not 0.0 <= fpr < 1.0:
            raise ValidationError(
                f"{type(self).__name__}: target_fpr must be in [0, 1), got {fpr!r}"
            )
        split = getattr(self, "calibration_split", 0.0)
        if split is not None and (not isinstance(split, (int, float)) or not 0.0 <= split < 1.0):
            raise ValidationError(
                f"{type(self).__name__}: calibration_split must be in [0, 1), got {split!r}"
            )

    def _validate(self, X: Any, y: Any = NO_Y, *, reset: bool) -> Any:
        return validate_estimator_data(
            self, X, y, reset=reset, ensure_min_samples=2 if reset else 1
        )

    def fit(self, X: Any, y: Any = None) -> NoveltyDetector:
        """Fit on in-scope rows (and their labels, if any) and calibrate ``threshold_``."""
        self._check_params()
        if y is None:
            X = self._validate(X, reset=True)
        else:
            X, y = self._validate(X, y, reset=True)
            y = np.asarray(y)
        X = np.asarray(X, dtype=np.float32)
        split = float(getattr(self, "calibration_split", 0.0) or 0.0)
        held = calibration_rows(y, X.shape[0], split, getattr(self, "random_state", 0))
        held_scores = None
        if held is not None:
            self._fit(X[~held], None if y is None else y[~held])
            held_scores = self._score(X[held])
        self._fit(X, y)
        if held_scores is None:  # too little data to hold out: calibrate on training scores
            held_scores = self._score(X)
        self.calibration_scores_ = np.asarray(held_scores, dtype=np.float32)
        self.threshold_ = threshold_at_fpr(held_scores, getattr(self, "target_fpr", 0.05))
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """Novelty score of each row (float32): higher = more novel / out of scope."""
        check_is_fitted(self, "threshold_")
        X = self._validate(X, reset=False)
        return np.asarray(self._score(np.asarray(X, dtype=np.float32)), dtype=np.float32)

    def calibrate(self, X_in: Any, target_fpr: float | None = None) -> NoveltyDetector:
        """Set ``threshold_`` so that ``target_fpr`` of the in-scope rows ``X_in`` are flagged."""
        fpr = getattr(self, "target_fpr", 0.05) if target_fpr is None else target_fpr
        scores = self.decision_function(X_in)
        self.calibration_scores_ = scores
        self.threshold_ = threshold_at_fpr(scores, fpr)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """1 where a row is out of scope (``decision_function`` above ``threshold_``), else 0."""
        return (self.decision_function(X) > self.threshold_).astype(np.int64)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        return tags
