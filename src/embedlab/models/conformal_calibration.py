"""What makes a single-label model's promises hold: split-conformal calibration of its
out-of-scope threshold (one, or one per class), its p-values and its prediction sets.

Mixed into :class:`~embedlab.models.openset.OpenSetClassifier`, which fits the two parts
that must never see the calibration rows — the detector (``detector_``) and a copy of the
head (``calibration_head_``) — and calls :meth:`ConformalCalibration._calibrate_rows` on
the held-out rows. What is kept: the rows' novelty scores (``calibration_scores_``), their
Mondrian groups (``calibration_groups_``: the class the calibration head gives them), their
randomised APS scores under their true class (``set_scores_``), the threshold(s) and the
method (``calibration_method_``) — not the rows.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.utils.validation import check_is_fitted

from embedlab.core.conformal import (
    aps_scores,
    aps_sets,
    check_alpha,
    check_scores,
    conformal_threshold,
    group_thresholds,
    min_calibration_rows,
    p_values,
    row_uniforms,
)
from embedlab.core.errors import ValidationError
from embedlab.core.validation import check_labels, validated
from embedlab.detect.base import calibrated_threshold

__all__ = ["AUTO_TARGET_FPR", "ConformalCalibration", "resolve_target_fpr"]

#: The in-scope rejection rate of ``target_fpr="auto"`` when the training rows include
#: out-of-scope examples (without any, "auto" rejects nothing).
AUTO_TARGET_FPR = 0.02


def resolve_target_fpr(target_fpr: float | str | None, has_oos: bool) -> float | None:
    """The rate a ``target_fpr`` setting means for training data with (``has_oos``) or
    without out-of-scope rows: a number as given, None (reject nothing), or "auto"."""
    if target_fpr == "auto":
        return AUTO_TARGET_FPR if has_oos else None
    if target_fpr is None:
        return None
    if isinstance(target_fpr, str):
        raise ValidationError(
            f"target_fpr must be a rate in (0, 1), None or 'auto', not {target_fpr!r}"
        )
    return check_alpha(target_fpr, "target_fpr")


class ConformalCalibration:
    """Calibration, p-values and prediction sets of a fitted open-set classifier (a mixin:
    the class provides ``head_``, ``detector_``, ``classes_``, ``target_fpr``,
    ``calibration`` and ``_X``)."""

    def _calibrate_rows(
        self, X: np.ndarray, y: np.ndarray | None, method: str, rate: float | None = None
    ) -> None:
        """Calibrate on in-scope rows ``X`` (labels ``y``, when known, for prediction sets):
        their novelty scores, Mondrian groups and APS scores, and the threshold(s)."""
        scores = self.detector_.decision_function(X)
        check_scores(scores, "novelty scores of the calibration rows")
        proba = self.calibration_head_.predict_proba(X)
        self.calibration_scores_ = np.asarray(scores, dtype=np.float32)
        self.calibration_groups_ = np.argmax(proba, axis=1).astype(np.int64)
        self.calibration_method_ = method
        self.set_scores_ = None
        if y is not None:
            y_idx = np.searchsorted(self.classes_, np.asarray(y, dtype=object).astype(str))
            self.set_scores_ = aps_scores(proba, y_idx, row_uniforms(X)).astype(np.float32)
        what = "held-out in-scope" if method == "split-conformal" else "in-scope"
        if rate is not None:
            self.target_fpr_ = check_alpha(rate, "target_fpr")
        rate = self.rate()
        if rate is None:  # closed set: scores, p-values and sets, but nothing rejected
            self.threshold_ = float("inf")
        else:
            self.threshold_ = calibrated_threshold(scores, rate, what=what)
        self.detector_.calibration_scores_ = np.sort(self.calibration_scores_)
        self.detector_.calibration_method_ = method
        self.detector_.threshold_ = self.threshold_
        self.group_thresholds_ = None
        if self.calibration == "mondrian" and rate is None:
            self.group_thresholds_ = np.full(len(self.classes_), np.inf)
        elif self.calibration == "mondrian":
            self.group_thresholds_ = group_thresholds(
                scores, self.calibration_groups_, len(self.classes_), rate
            )
            few = int(np.isinf(self.group_thresholds_).sum())
            if few:
                warnings.warn(
                    f"{few} of {len(self.classes_)} classes have too few {what} rows for "
                    f"a per-class rate of {rate:g} (at least "
                    f"{min_calibration_rows(rate)} each): those classes reject "
                    "nothing. Use calibration='split', add rows or raise the target",
                    UserWarning,
                    stacklevel=3,
                )

    def rate(self) -> float | None:
        """The in-scope rejection rate in force (None: a closed-set model, nothing rejected)."""
        if hasattr(self, "target_fpr_"):
            return self.target_fpr_
        return self.target_fpr  # saved by an older embedlab, where it was always a rate

    def calibrate(self, X_in: Any, y_in: Any = None, *, target_fpr: float | None = None) -> Any:
        """Calibrate on in-scope rows the model never saw (e.g. a validation split): the
        threshold flags at most ``target_fpr`` (default: the model's rate; given, it becomes
        the model's rate, which turns rejection on in a closed-set model) of such rows,
        p-values are relative to them, and with their labels ``y_in`` prediction sets are
        too."""
        check_is_fitted(self, "detector_")
        X = self._X(X_in)
        y = None if y_in is None else check_labels(y_in, len(X)).astype(str).astype(object)
        if y is not None and not np.isin(y, self.classes_.astype(str)).all():
            unknown = sorted(set(y.tolist()) - set(self.classes_.astype(str).tolist()))[:5]
            raise ValidationError(f"calibration labels that are not classes: {unknown}")
        if y is not None and len(np.unique(y)) < 2 <= len(self.classes_):
            raise ValidationError(
                f"the calibration rows all carry one class ({y[0]!r}): they would not be "
                "exchangeable with the inputs the model will see; calibrate on a sample of "
                "every class (or without labels, for the threshold only)"
            )
        if not hasattr(self, "calibration_head_"):  # saved by an older embedlab
            self.calibration_head_ = self.head_
        with validated():
            self._calibrate_rows(X, y, "split-conformal", target_fpr)
        return self

    def p_reference(self) -> np.ndarray:
        """The calibration rows' novelty scores: what ``p_value`` ranks an input's novelty
        among (a drift monitor's exchangeable start)."""
        cal = getattr(self, "calibration_scores_", None)
        return self.detector_.calibration_scores_ if cal is None else cal

    def p_value(self, X: Any) -> np.ndarray:
        """The conformal p-value of each row (float64): (1 + #{calibration scores ≥ its
        novelty}) / (n + 1), against its predicted class's calibration rows with Mondrian
        calibration. Small = unusual; an in-scope row gets p ≤ t with probability ≤ t."""
        X = self._X(X)
        with validated():
            novelty = self.detector_.decision_function(X)
            groups = self._groups(X, None)
        return self._p_values(novelty, groups)

    def _mondrian(self) -> bool:
        return getattr(self, "group_thresholds_", None) is not None

    def _calibration_head(self) -> Any:
        head = getattr(self, "calibration_head_", None)
        return self.head_ if head is None else head

    def _groups(self, X: np.ndarray, cal_proba: np.ndarray | None) -> np.ndarray | None:
        """Each row's Mondrian group (the calibration head's class), or None (split)."""
        if not self._mondrian():
            return None
        if cal_proba is None:
            cal_proba = self._calibration_head().predict_proba(X)
        return np.argmax(cal_proba, axis=1)

    def _p_values(self, novelty: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
        cal = getattr(self, "calibration_scores_", None)
        if cal is None:  # saved by an older embedlab: the detector kept them
            cal = self.detector_.calibration_scores_
        if groups is None:
            return p_values(cal, novelty)
        return p_values(cal, novelty, calibration_groups=self.calibration_groups_, groups=groups)

    def _sets(self, X: np.ndarray, cal_proba: np.ndarray, level: float) -> tuple:
        scores = getattr(self, "set_scores_", None)
        if scores is None or len(scores) == 0:
            raise ValidationError(
                "this model has no labelled calibration rows, so it cannot make prediction "
                "sets (a zero-shot model, or one saved by an older embedlab): calibrate it "
                "with labelled in-scope rows (calibrate(X, y)), or refit"
            )
        alpha = 1.0 - level  # a level too small to tell from 0 needs no label at all
        qhat = -np.inf if alpha >= 1.0 else conformal_threshold(scores, alpha)
        order, size = aps_sets(cal_proba, row_uniforms(X), qhat)
        names = np.asarray(self.classes_, dtype=object)[order[:, : int(size.max())]]
        return tuple(tuple(row[:k].tolist()) for row, k in zip(names, size, strict=True))
