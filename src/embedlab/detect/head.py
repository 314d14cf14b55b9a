"""Detectors that read a classifier's confidence: max probability and energy."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from scipy.special import logsumexp
from sklearn.base import clone

from embedlab.core.errors import ValidationError
from embedlab.detect.base import NoveltyDetector

__all__ = ["EnergyDetector", "MaxProbDetector"]


class MaxProbDetector(NoveltyDetector):
    """Score = 1 − the head's highest class probability (maximum softmax probability).

    Parameters
    ----------
    head : classifier, default LinearClassifier()
    target_fpr, calibration_split, random_state : see MaxCosineDetector.
    """

    def __init__(
        self,
        head: Any = None,
        target_fpr: float = 0.05,
        calibration_split: float = 0.2,
        random_state: int = 0,
    ):
        self.head = head
        self.target_fpr = target_fpr
        self.calibration_split = calibration_split
        self.random_state = random_state

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> None:
        if y is None:
            raise ValidationError(f"{type(self).__name__} needs class labels to fit its head")
        if self.head is None:
            from embedlab.heads import LinearClassifier

            head = LinearClassifier()
        else:
            head = clone(self.head)
        self.head_ = head.fit(X, y)

    def _score(self, X: np.ndarray) -> np.ndarray:
        return 1.0 - self.head_.predict_proba(X).max(axis=1)

    def add_classes(
        self, X: Any, y: Any, *, X_old: Any, teen: Any = None, warm_start: Any = None
    ) -> MaxProbDetector:
        """A copy whose head also knows the classes of (X, y) (the head's own
        ``add_classes``, with ``teen`` and ``warm_start``; ``X_old`` = the rows it was
        fitted on). The threshold is not changed: recalibrate it (OpenSetClassifier
        .add_classes does)."""
        out = copy.deepcopy(self)
        out.head_ = self.head_.add_classes(X, y, X_old=X_old, teen=teen, warm_start=warm_start)
        return out

    def remove_classes(self, labels: Any, X: Any = None, y: Any = None) -> MaxProbDetector:
        """A copy whose head has lost the classes ``labels`` (``X``, ``y``: their rows, which
        a shared-covariance head needs). The threshold is not changed."""
        out = copy.deepcopy(self)
        out.head_ = self.head_.remove_classes(labels, X, y)
        return out

    @property
    def updates_in_place(self) -> bool:
        """Whether :meth:`add_classes` / :meth:`remove_classes` can update this detector
        (its head has them)."""
        head = getattr(self, "head_", None)
        return hasattr(head, "add_classes") and hasattr(head, "remove_classes")


class EnergyDetector(MaxProbDetector):
    """Score = −T·logsumexp(logits / T), the free energy of the head's class scores.

    Parameters
    ----------
    head : classifier exposing ``class_scores``, default LinearClassifier()
    temperature : float, default 1.0
    """

    def __init__(
        self,
        head: Any = None,
        temperature: float = 1.0,
        target_fpr: float = 0.05,
        calibration_split: float = 0.2,
        random_state: int = 0,
    ):
        super().__init__(
            head=head,
            target_fpr=target_fpr,
            calibration_split=calibration_split,
            random_state=random_state,
        )
        self.temperature = temperature

    def _score(self, X: np.ndarray) -> np.ndarray:
        T = float(self.temperature)
        return -T * logsumexp(self.head_.class_scores(X) / T, axis=1)
