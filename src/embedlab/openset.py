"""OpenSetClassifier: a head and a detector that together answer a class or "none of them"."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.validation import check_is_fitted

from embedlab.detect.base import threshold_at_fpr
from embedlab.detect.registry import DETECTORS, make_detector
from embedlab.errors import ValidationError
from embedlab.heads.registry import HEADS, make_head
from embedlab.selection import select_head_and_detector
from embedlab.validation import validate_estimator_data

__all__ = ["DETECTORS", "HEADS", "OpenSetClassifier", "make_detector", "make_head"]

log = logging.getLogger("embedlab")


class OpenSetClassifier(ClassifierMixin, BaseEstimator):
    """Predict one of the known classes, or ``oos_label`` when the detector flags the row.

    Parameters
    ----------
    head : str or classifier, default "auto"
        A head name (see HEADS), an estimator, or "auto" to choose by cross-validation.
    detector : str or detector, default "auto"
        A detector name (see DETECTORS), an estimator, or "auto".
    target_fpr : float, default 0.02
        Share of in-scope rows the calibrated threshold may reject (measured on held-out
        in-scope training rows).
    oos_label : str, default "oos"
        Label of out-of-scope rows. Training rows with this label are never learned as a
        class: they serve only for choosing the detector and for reporting calibration.
    cv : int, default 3
        Folds of the automatic selection.
    time_budget : float, optional
        Seconds the automatic selection may spend (default: no cap — every candidate on
        every fold, so the choice depends on the data only). A cap that skips candidates
        is recorded in ``selection_.skipped``.
    random_state : int, default 0
    """

    def __init__(
        self,
        head: Any = "auto",
        detector: Any = "auto",
        target_fpr: float = 0.02,
        oos_label: str = "oos",
        cv: int = 3,
        time_budget: float | None = None,
        random_state: int = 0,
    ):
        self.head = head
        self.detector = detector
        self.target_fpr = target_fpr
        self.oos_label = oos_label
        self.cv = cv
        self.time_budget = time_budget
        self.random_state = random_state

    def fit(
        self, X: Any, y: Any, calibration_mask: Any = None, *, progress: bool | None = None
    ) -> OpenSetClassifier:
        """Fit on in-scope rows; rows labelled ``oos_label`` only inform selection/calibration.

        ``calibration_mask`` marks in-scope rows whose vectors come from an encoder that never
        saw them (e.g. rows held out of encoder adaptation). When given, the threshold is set
        on those rows, scored by a detector fitted on the other rows; otherwise the detector
        holds out its own ``calibration_split`` of the training rows. ``progress`` draws a
        bar over the selection folds (default: for more than 5,000 rows).
        """
        X, y = validate_estimator_data(self, X, y, reset=True, ensure_min_samples=2)
        X = np.asarray(X, dtype=np.float32)
        y = np.asarray([str(v) for v in y], dtype=object)
        is_oos = y == str(self.oos_label)
        calib = None
        if calibration_mask is not None:
            calib = np.asarray(calibration_mask, dtype=bool)
            if calib.shape != y.shape:
                raise ValidationError(
                    f"calibration_mask has shape {calib.shape}, expected {y.shape}"
                )
            calib = calib[~is_oos]
        if is_oos.all():
            raise ValidationError(
                f"every training row is labelled {self.oos_label!r} (out of scope); "
                "in-scope examples of at least 2 classes are needed"
            )
        X_in, y_in, X_oos = X[~is_oos], y[~is_oos], X[is_oos]
        classes, counts = np.unique(y_in, return_counts=True)
        if len(classes) < 2:
            raise ValidationError(
                f"only one in-scope class ({str(classes[0])!r}); a classifier needs at least 2. "
                "To model a single class, use a detector from embedlab.detect"
            )
        singles = classes[counts < 2]
        if singles.size:
            log.warning(
                "%d class(es) have a single example (%s); they are kept, but their "
                "prototypes are that one point",
                singles.size,
                ", ".join(map(str, singles[:5])),
            )
        self.selection_ = None
        head, detector = self.head, self.detector
        if head == "auto" or detector == "auto":
            sel = select_head_and_detector(
                X_in,
                y_in,
                X_oos,
                n_folds=self.cv,
                time_budget=self.time_budget,
                random_state=self.random_state,
                progress=progress,
            )
            self.selection_ = asdict(sel)
            head = sel.head if head == "auto" else head
            detector = sel.detector if detector == "auto" else detector
        self.head_name_ = head if isinstance(head, str) else type(head).__name__
        self.detector_name_ = detector if isinstance(detector, str) else type(detector).__name__
        self.head_ = (make_head(head) if isinstance(head, str) else clone(head)).fit(X_in, y_in)
        det = make_detector(detector) if isinstance(detector, str) else clone(detector)
        det.set_params(target_fpr=self.target_fpr)
        if calib is not None and calib.sum() > 0 and (~calib).sum() >= 2:
            det.set_params(calibration_split=0.0)
            held = clone(det).fit(X_in[~calib], y_in[~calib]).decision_function(X_in[calib])
            self.detector_ = det.fit(X_in, y_in)
            self.detector_.calibration_scores_ = held
            self.detector_.threshold_ = threshold_at_fpr(held, self.target_fpr)
        else:
            self.detector_ = det.fit(X_in, y_in)
        self.classes_ = self.head_.classes_
        self.threshold_ = float(self.detector_.threshold_)
        self.n_oos_train_ = int(is_oos.sum())
        if self.n_oos_train_:
            s = self.detector_.decision_function(X_oos)
            self.oos_train_recall_ = float((s > self.threshold_).mean())
        else:
            self.oos_train_recall_ = None
        return self

    def calibrate(self, X_in: Any, target_fpr: float | None = None) -> OpenSetClassifier:
        """Re-set the threshold from held-out in-scope rows (e.g. a validation split)."""
        check_is_fitted(self, "detector_")
        self.detector_.calibrate(X_in, self.target_fpr if target_fpr is None else target_fpr)
        self.threshold_ = float(self.detector_.threshold_)
        return self

    def _X(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "detector_")
        X = validate_estimator_data(self, X, reset=False)
        return np.asarray(X, dtype=np.float32)

    def novelty_score(self, X: Any) -> np.ndarray:
        """Novelty score of each row (the detector's ``decision_function``: higher = more
        likely out of scope)."""
        return self.detector_.decision_function(self._X(X))

    def score_samples(self, X: Any) -> np.ndarray:
        """Deprecated alias of :meth:`novelty_score`."""
        import warnings

        warnings.warn(
            "OpenSetClassifier.score_samples is deprecated: use novelty_score",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.novelty_score(X)

    def predict_proba(self, X: Any) -> np.ndarray:
        """The head's probabilities over the in-scope ``classes_`` (out-of-scope aside)."""
        return self.head_.predict_proba(self._X(X))

    def predict(self, X: Any, *, reject: bool = True) -> np.ndarray:
        """A class of ``classes_`` per row, or ``oos_label`` where the detector rejects it
        (never with ``reject=False``: then always the head's best class)."""
        return self.predict_details(X, top_k=1, reject=reject)["label"]

    def predict_details(
        self, X: Any, top_k: int = 3, *, reject: bool = True
    ) -> dict[str, np.ndarray]:
        """Label, novelty score, out-of-scope flag, and the top-k classes with probabilities.

        ``reject=False`` turns rejection off without refitting: ``label`` is the head's best
        class, ``out_of_scope`` is all false, ``score`` is still the novelty score."""
        X = self._X(X)
        proba = self.head_.predict_proba(X)
        scores = self.detector_.decision_function(X)
        oos = scores > self.threshold_ if reject else np.zeros(len(X), dtype=bool)
        k = min(top_k, proba.shape[1])
        top = np.argsort(-proba, axis=1)[:, :k]
        label = np.asarray(self.classes_[top[:, 0]], dtype=object)
        label[oos] = str(self.oos_label)
        out = {"label": label, "score": scores, "out_of_scope": oos}
        for j in range(k):
            out[f"top{j + 1}_label"] = np.asarray(self.classes_[top[:, j]], dtype=object)
            out[f"top{j + 1}_prob"] = proba[np.arange(len(X)), top[:, j]].astype(np.float32)
        return out
