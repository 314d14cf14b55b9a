"""The detector contract (PyOD's): ``decision_function`` (higher = more novel), a
split-conformal ``threshold_`` and ``p_value``, and ``predict`` → 1 where a row is out of
scope, else 0."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.model_selection import train_test_split
from sklearn.utils.validation import check_is_fitted

from embedlab.core.conformal import (
    check_alpha,
    conformal_threshold,
    p_values,
    shortfall_message,
)
from embedlab.core.errors import ValidationError
from embedlab.core.validation import NO_Y, validate_estimator_data

__all__ = ["NoveltyDetector", "calibrated_threshold", "calibration_rows"]


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


def calibrated_threshold(scores: np.ndarray, alpha: float, *, what: str = "calibration") -> float:
    """The split-conformal threshold (:func:`embedlab.core.conformal.conformal_threshold`)
    of in-scope ``scores`` at rate ``alpha``; when they are too few for that rate, +inf
    (nothing rejected) and a warning that says the achievable rate."""
    threshold = conformal_threshold(scores, alpha)
    short = shortfall_message(int(np.size(scores)), float(alpha), what)
    if short is not None:
        warnings.warn(short, UserWarning, stacklevel=3)
    return threshold


class NoveltyDetector(BaseEstimator):
    """Base of embedlab's detectors; every detector follows one contract (PyOD's).

    - ``fit(X, y=None)`` learns the in-scope data (labels help class-conditional scores),
      validates its hyperparameters first, and calibrates ``threshold_`` split-conformally:
      a ``calibration_split`` fraction of the rows is held out, the detector is fitted on
      the rest (that fit is the one kept: its scores of new rows are exchangeable with the
      held-out ones), and the threshold is the ⌈(n+1)(1−target_fpr)⌉-th smallest held-out
      score, so an in-scope row is flagged with probability at most ``target_fpr`` at any
      n. Fewer than 10 rows, or ``calibration_split=0``: the threshold is set on the
      training scores and carries no guarantee (``calibration_method_`` says which).
      Too few held-out rows for the rate: +inf (nothing flagged) and a warning giving the
      achievable rate, 1/(n+1).
    - ``decision_function(X)``: the novelty score of each row, float32, **higher = more
      novel / out of scope**.
    - ``p_value(X)``: the conformal p-value of each row, (1 + #{calibration scores ≥
      score}) / (n + 1); ``p_value ≤ target_fpr`` exactly when ``predict`` flags the row.
    - ``predict(X)``: 1 where a row is out of scope (score above ``threshold_``), else 0.
    - ``calibrate(X_in, target_fpr)`` resets the calibration from in-scope rows you give
      (rows the detector never saw).
    - ``calibration_scores_`` keeps the held-out scores (not the rows).
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
        if isinstance(fpr, bool) or not isinstance(fpr, (int, float)):
            raise ValidationError(
                f"{type(self).__name__}: target_fpr must be in (0, 1), got {fpr!r}"
            )
        check_alpha(fpr, f"{type(self).__name__}: target_fpr")
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
        if held is not None:
            self._fit(X[~held], None if y is None else y[~held])
            self._set_calibration(self._score(X[held]), "split-conformal")
        else:  # too little data to hold out: calibrate on training scores
            self._fit(X, y)
            self._set_calibration(self._score(X), "training scores (no guarantee)")
        return self

    def _set_calibration(self, scores: np.ndarray, method: str, fpr: float | None = None) -> None:
        fpr = getattr(self, "target_fpr", 0.05) if fpr is None else fpr
        self.calibration_scores_ = np.sort(np.asarray(scores, dtype=np.float32))
        self.calibration_method_ = method
        if method == "split-conformal":
            self.threshold_ = calibrated_threshold(self.calibration_scores_, fpr)
        else:  # training scores promise nothing: no warning about their number either
            self.threshold_ = conformal_threshold(self.calibration_scores_, fpr)

    def decision_function(self, X: Any) -> np.ndarray:
        """Novelty score of each row (float32): higher = more novel / out of scope."""
        check_is_fitted(self, "threshold_")
        X = self._validate(X, reset=False)
        return np.asarray(self._score(np.asarray(X, dtype=np.float32)), dtype=np.float32)

    def calibrate(self, X_in: Any, target_fpr: float | None = None) -> NoveltyDetector:
        """Calibrate on in-scope rows ``X_in`` the detector never saw: ``threshold_`` flags
        at most ``target_fpr`` of such rows (split-conformal), ``p_value`` is relative to them."""
        fpr = getattr(self, "target_fpr", 0.05) if target_fpr is None else target_fpr
        check_alpha(fpr, "target_fpr")
        self._set_calibration(self.decision_function(X_in), "split-conformal", fpr)
        return self

    def p_value(self, X: Any) -> np.ndarray:
        """Conformal p-value of each row against the calibration scores (float64): small =
        unusual. An in-scope row's p-value is at most t with probability at most t."""
        return p_values(self.calibration_scores_, self.decision_function(X))

    def predict(self, X: Any) -> np.ndarray:
        """1 where a row is out of scope (``decision_function`` above ``threshold_``), else 0."""
        return (self.decision_function(X) > self.threshold_).astype(np.int64)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        return tags
