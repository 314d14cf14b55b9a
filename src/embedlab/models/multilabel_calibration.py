"""What makes a multi-label model's p-values hold: a copy of its scorers that never saw some
labelled rows (the first cross-validation fold's), those rows' per-label scores and labels,
and the p-values ranked among them — that a row carries some label (``p_value``) and, per
label, that it carries that one (``label_p_values``).

Mixed into :class:`~embedlab.models.multilabel.MultiLabelClassifier`, which provides
``head_``, ``_scores`` and ``_X``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from embedlab.core.conformal import p_values
from embedlab.core.errors import ValidationError

__all__ = ["MultiLabelCalibration"]


class MultiLabelCalibration:
    """The calibration copy and p-values of a fitted multi-label classifier (a mixin)."""

    def _set_calibration(
        self, params: dict[str, np.ndarray], scores: np.ndarray, Y: np.ndarray
    ) -> None:
        """Keep a copy of the scorers that never saw some labelled rows (``params``), and
        those rows' per-label scores and labels: what the p-values are calibrated on."""
        self.calibration_params_ = params
        self.calibration_scores_ = np.asarray(scores, dtype=np.float32)
        self.calibration_Y_ = np.asarray(Y, dtype=bool)
        self.calibration_method_ = "split-conformal (the first cross-validation fold's model)"

    def p_value(self, X: Any) -> np.ndarray:
        """The conformal p-value of each row carrying some label (float64): its best
        label's score under the calibration copy of the scorers, ranked among the held-out
        labelled rows' (small = unlike any labelled row; a row that carries a label gets
        p ≤ t with probability ≤ t)."""
        return self._p_values(self._X(X))

    def p_reference(self) -> np.ndarray:
        """The held-out labelled rows' conformity scores (minus their best label's score
        under the calibration copy): what ``p_value`` ranks an input's among."""
        if getattr(self, "calibration_params_", None) is None:
            raise ValidationError(
                "this multi-label model keeps no calibration copy (saved by an older "
                "embedlab): refit it for p-values"
            )
        return -self.calibration_scores_[self.calibration_Y_.any(1)].max(axis=1)

    def label_p_values(self, X: Any) -> np.ndarray:
        """Per row and label (n, L), the conformal p-value that the row carries the label:
        its score for the label under the calibration copy, ranked among the held-out rows
        that carry it (1 + #{their scores ≤ it}) / (n_label + 1). Labels whose p-value is
        above α form a set that misses a label a row carries with probability ≤ α, for
        each label on its own (a label with no held-out row gets 1: never excluded)."""
        self.p_reference()  # raises without a calibration copy
        scores = self._scores(self.head_, self._X(X), self.calibration_params_)
        out = np.ones(scores.shape)
        for j in range(scores.shape[1]):  # a loop over labels, each label's rows vectorised
            carry = self.calibration_scores_[self.calibration_Y_[:, j], j]
            out[:, j] = p_values(-carry, -scores[:, j])  # low scores are the unusual ones
        return out

    def _p_scores(self, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The rows' conformity scores (as :meth:`p_reference`) and their p-values."""
        cal = self.p_reference()
        score = -self._scores(self.head_, Z, self.calibration_params_).max(axis=1)
        return score, p_values(cal, score)

    def _p_values(self, Z: np.ndarray) -> np.ndarray:
        return self._p_scores(Z)[1]
