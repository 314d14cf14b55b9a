"""OpenSetClassifier: a head and a detector that together answer a class or "none of them"."""

from __future__ import annotations

import copy
import logging
import warnings
from dataclasses import asdict
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.validation import check_is_fitted

from embedlab.core.conformal import (
    benjamini_hochberg,
    check_alpha,
)
from embedlab.core.errors import ValidationError
from embedlab.core.splits import calibration_holdout
from embedlab.core.validation import check_labels, validate_estimator_data, validated
from embedlab.detect.base import calibration_rows
from embedlab.detect.registry import DETECTORS, make_detector
from embedlab.heads.base import check_new_classes, check_removable
from embedlab.heads.registry import HEADS, make_head
from embedlab.heads.teen import Teen
from embedlab.models.conformal_calibration import (
    AUTO_TARGET_FPR,
    ConformalCalibration,
    resolve_target_fpr,
)
from embedlab.models.predictions import Predictions
from embedlab.models.selection import select_head_and_detector

__all__ = ["CALIBRATIONS", "DETECTORS", "HEADS", "OpenSetClassifier", "make_detector", "make_head"]

#: How the threshold can be calibrated: one over all held-out rows, or one per class.
CALIBRATIONS = ("split", "mondrian")

log = logging.getLogger("embedlab")


class OpenSetClassifier(ConformalCalibration, ClassifierMixin, BaseEstimator):
    """Predict one of the known classes, or ``oos_label`` when the detector flags the row.

    Parameters
    ----------
    head : str or classifier, default "auto"
        A head name (see HEADS), an estimator, or "auto" to choose by cross-validation.
    detector : str or detector, default "auto"
        A detector name (see DETECTORS), an estimator, or "auto".
    target_fpr : float, None or "auto", default "auto"
        Share of in-scope rows the calibrated threshold may reject. None: a closed-set model
        that rejects nothing (p-values and sets still calibrated; :meth:`calibrate` with a
        rate turns rejection on). "auto": 0.02 when the training rows include out-of-scope
        examples, else None (docs/benchmarks.md). The rate in force is ``target_fpr_``.
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
    calibration : {"split", "mondrian"}, default "split"
        How the threshold is calibrated (split-conformal either way: see below). "split":
        one threshold over all held-out in-scope rows; "mondrian": one per class, over the
        held-out rows the calibration head assigns to that class, so the promised rate holds
        for each predicted class (a class with fewer than 1/target_fpr − 1 held-out rows
        rejects nothing; the fit warns).
    keep_rows : bool, default True
        Keep the training vectors (float32, n × d, plus the out-of-scope rows) in the fitted
        model, so that :meth:`add_classes` and :meth:`remove_classes` can refit the
        detector and recalibrate its threshold later. False saves that space; the model
        then cannot change its class set.

    Guarantees
    ----------
    The detector that is kept is fitted on the training rows *without* the held-out
    (calibration) rows, and the threshold is the ⌈(n+1)(1−target_fpr)⌉-th smallest of its
    scores of the n held-out in-scope rows: an in-scope input is rejected with probability
    at most ``target_fpr`` whatever n (split conformal). ``p_value`` is the conformal
    p-value of each input against those scores (``≤ target_fpr`` exactly when rejected).
    The head that predicts labels is fitted on every row; a copy fitted without the
    held-out rows (``calibration_head_``) gives the Mondrian groups and the prediction
    sets (:meth:`predict_details` with ``sets``), whose coverage is guaranteed the same
    way. ``calibration_scores_`` keeps the held-out scores (not the rows).

    Changing the class set
    ----------------------
    :meth:`add_classes` and :meth:`remove_classes` return a new classifier. Prototype and
    Gaussian heads are updated in closed form (equal to a fit on the new class set, to
    float tolerance); the linear head fits only the added classes' weights; other heads
    are refitted on the kept rows. Detectors scoring with such a head (max-prob, energy)
    are updated in place, and so is the calibration head, on the training rows only (the
    held-out rows stay unseen); other detectors are refitted on the kept training rows.
    Either way the held-out rows (the known classes' and a share of each added class's)
    are rescored and the threshold recalibrated at ``target_fpr``, as in :meth:`fit`. No
    head or detector is re-selected.
    """

    def __init__(
        self,
        head: Any = "auto",
        detector: Any = "auto",
        target_fpr: float | str | None = "auto",
        oos_label: str = "oos",
        cv: int = 3,
        time_budget: float | None = None,
        random_state: int = 0,
        calibration: str = "split",
        keep_rows: bool = True,
    ):
        self.head = head
        self.detector = detector
        self.target_fpr = target_fpr
        self.oos_label = oos_label
        self.cv = cv
        self.time_budget = time_budget
        self.random_state = random_state
        self.calibration = calibration
        self.keep_rows = keep_rows

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
        self._check_params()
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
        self.target_fpr_ = resolve_target_fpr(self.target_fpr, bool(is_oos.any()))
        classes, counts = np.unique(y_in, return_counts=True)
        if len(classes) < 2:
            raise ValidationError(
                f"only one in-scope class ({str(classes[0])!r}); a classifier needs at least 2. "
                "To model a single class, use a detector from embedlab.detect"
            )
        _warn_single_examples(classes, counts, "")
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
        self.classes_ = self.head_.classes_
        det = make_detector(detector) if isinstance(detector, str) else clone(detector)
        det.set_params(target_fpr=self.target_fpr_ or AUTO_TARGET_FPR)
        if calib is None or not calib.any():
            # the detector's own held-out split, made here so the model knows its rows
            calib = calibration_rows(
                y_in,
                len(y_in),
                float(det.get_params().get("calibration_split", 0.0) or 0.0),
                int(det.get_params().get("random_state", 0)),
            )
        if calib is not None:
            calib = _train_every_class(y_in, calib)
        self._fit_detector(det, X_in, y_in, calib)
        if self.keep_rows:
            held = np.zeros(len(y_in), dtype=bool) if calib is None else calib.astype(bool)
            self._keep(X_in, y_in, held, X_oos)
        else:
            self._set_oos_recall(X_oos)
        return self

    @classmethod
    def from_prototypes(
        cls,
        V: Any,
        labels: Any,
        *,
        oos_label: str = "oos",
        target_fpr: float | str | None = AUTO_TARGET_FPR,
    ) -> OpenSetClassifier:
        """A fitted classifier whose classes are the rows of ``V`` (label vectors: encoded
        names or descriptions, several rows per label averaged): prototype head, max-cosine
        detector, and no threshold yet (+inf: nothing rejected) — :meth:`calibrate` sets it
        on in-scope rows ("auto": at :data:`AUTO_TARGET_FPR`, the texts given to calibrate
        being in scope by intent). Zero-shot classification, as ``embedlab fit
        --labels-only``."""
        rate = resolve_target_fpr(target_fpr, True)
        clf = cls(
            head="prototype",
            detector="max-cosine",
            target_fpr=target_fpr,
            oos_label=oos_label,
            keep_rows=False,
        )
        V, y = validate_estimator_data(clf, V, check_labels(labels, len(V)), reset=True)
        V = np.asarray(V, dtype=np.float32)
        y = np.asarray([str(v) for v in y], dtype=object)
        if oos_label in set(y.tolist()):
            raise ValidationError(f"{oos_label!r} is the out-of-scope label, not a class")
        if len(np.unique(y)) < 2:
            raise ValidationError("a classifier needs at least 2 labels")
        clf.selection_ = None
        clf.head_name_, clf.detector_name_ = "prototype", "max-cosine"
        with warnings.catch_warnings():  # one row per class is expected here
            warnings.filterwarnings("ignore", message="The number of unique classes")
            clf.head_ = make_head("prototype").fit(V, y)
        det = make_detector("max-cosine").set_params(
            target_fpr=rate or AUTO_TARGET_FPR, calibration_split=0.0
        )
        clf.detector_ = det.fit(V, y)
        clf.classes_ = clf.head_.classes_
        clf.calibration_head_ = clf.head_  # label vectors only: no in-scope row seen
        clf.detector_.threshold_ = float("inf")
        clf.threshold_ = float("inf")
        clf.target_fpr_ = rate
        clf.calibration_scores_ = np.zeros(0, dtype=np.float32)
        clf.calibration_groups_ = np.zeros(0, dtype=np.int64)
        clf.calibration_method_ = "none (nothing rejected until calibrated)"
        clf.set_scores_ = None
        clf.group_thresholds_ = None
        clf._set_oos_recall(V[:0])
        return clf

    def _check_params(self) -> None:
        resolve_target_fpr(self.target_fpr, False)
        if self.calibration not in CALIBRATIONS:
            raise ValidationError(
                f"calibration must be one of {CALIBRATIONS}, got {self.calibration!r}"
            )

    def _fit_detector(
        self, det: Any, X_in: np.ndarray, y_in: np.ndarray, calib: np.ndarray | None
    ) -> None:
        """Fit ``det`` and the calibration head on the in-scope rows outside ``calib`` and
        calibrate on the ``calib`` rows (split conformal: those fits are the ones kept);
        without usable ``calib`` rows, fit on every row and set the threshold on the
        training scores (no guarantee)."""
        det.set_params(calibration_split=0.0)
        if calib is not None and calib.sum() > 0 and len(np.unique(y_in[~calib])) >= 2:
            self.detector_ = det.fit(X_in[~calib], y_in[~calib])
            self.calibration_head_ = _head_of(self.detector_, self.head_) or clone(self.head_).fit(
                X_in[~calib], y_in[~calib]
            )
            self._calibrate_rows(X_in[calib], y_in[calib], "split-conformal")
        else:
            self.detector_ = det.fit(X_in, y_in)
            self.calibration_head_ = self.head_
            self._calibrate_rows(X_in, y_in, "training scores (no guarantee)")

    def _set_oos_recall(self, X_oos: np.ndarray) -> None:
        self.n_oos_train_ = len(X_oos)
        if self.n_oos_train_:
            s = self.detector_.decision_function(X_oos)
            self.oos_train_recall_ = float((s > self.threshold_).mean())
        else:
            self.oos_train_recall_ = None

    # ------------------------------------------------------------ class-set changes
    def kept_rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The kept training rows: in-scope vectors, their labels, which were held out to
        calibrate, and the out-of-scope vectors. A ValidationError when the model keeps
        none (fitted with ``keep_rows=False``, or saved by an older embedlab)."""
        check_is_fitted(self, "detector_")
        if not hasattr(self, "train_X_"):
            raise ValidationError(
                "this model does not keep its training vectors (fitted with keep_rows=False, "
                "or saved by an older embedlab), so it cannot add or remove classes, nor "
                "calibrate discovery on them; refit it"
            )
        labels = np.asarray(self.classes_, dtype=object)[self.train_class_]
        return self.train_X_, labels, self.train_held_, self.train_oos_X_

    def reference_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """The kept in-scope rows and their labels: the labelled groups discovery
        calibrates its cut on."""
        X, labels, _, _ = self.kept_rows()
        return X, labels

    def add_classes(
        self,
        X: Any,
        y: Any,
        *,
        teen: bool | str | Teen = "auto",
        calibration_fraction: float | None = None,
    ) -> OpenSetClassifier:
        """A new classifier that also knows the classes of (X, y); this one is unchanged.

        Rows labelled ``oos_label`` join the out-of-scope rows (used for reporting only).
        ``teen``: "auto" calibrates each added class with at most 10 examples — its mean is
        moved toward similar known classes (TEEN; prototype and Gaussian heads), its weight
        vector scaled to the known classes' norm (linear head) — True does so for every
        added class, False for none; or a :class:`~embedlab.heads.teen.Teen`. The same
        share of each added class as of the known ones (or ``calibration_fraction``; at
        most half a class) is held out to recalibrate the threshold on. Raises ValidationError for
        labels that are classes already or no in-scope row; warns for a class of one row.
        """
        X_old, y_old, held_old, oos_old = self.kept_rows()
        X = self._X(X)
        y = check_labels(y, len(X)).astype(str).astype(object)
        is_oos = y == str(self.oos_label)
        X_new, y_new = X[~is_oos], y[~is_oos]
        if len(y_new) == 0:
            raise ValidationError(
                f"every row is labelled {self.oos_label!r}: there is no class to add"
            )
        added, counts = np.unique(y_new, return_counts=True)
        check_new_classes(self.classes_, added)
        _warn_single_examples(
            added, counts, " (moved toward similar classes: TEEN)" if teen is not False else ""
        )
        teen_cfg = _teen_config(teen)
        held_new = np.zeros(len(y_new), dtype=bool)
        if held_old.any():
            # as large a share of each added class as the model holds out of the known ones
            fraction = calibration_fraction if calibration_fraction is not None else held_old.mean()
            held_new = calibration_holdout(
                y_new, np.zeros(len(y_new), dtype=bool), fraction, self.random_state
            )
        fit_X, fit_y = X_new[~held_new], y_new[~held_new]  # never the held-out rows
        in_place = self._updates_in_place() and held_old.any()
        if in_place:
            # the detector first: the head's update on all rows then starts from its
            # weights (fewer L-BFGS steps)
            detector = self.detector_.add_classes(
                fit_X, fit_y, X_old=X_old[~held_old], teen=teen_cfg
            )
        warm = getattr(detector, "head_", None) if in_place else None
        out = copy.copy(self)  # every attribute that changes is reassigned, none mutated
        if hasattr(self.head_, "add_classes"):
            out.head_ = self.head_.add_classes(
                X_new, y_new, teen=teen_cfg, X_old=X_old, warm_start=warm
            )
            head_update = _HEAD_UPDATE.get(type(self.head_).__name__, "in place")
        else:
            out.head_ = clone(self.head_).fit(np.vstack([X_old, X_new]), np.r_[y_old, y_new])
            head_update = "refit on kept rows"
        if in_place:
            # update the detector and the calibration head instead of refitting them
            out.classes_ = out.head_.classes_
            out.detector_ = detector
            out.calibration_head_ = _head_of(detector, self.calibration_head_) or (
                self.calibration_head_.add_classes(
                    fit_X, fit_y, X_old=X_old[~held_old], teen=teen_cfg, warm_start=warm
                )
            )
            out._calibrate_rows(
                np.vstack([X_old[held_old], X_new[held_new]]),
                np.r_[y_old[held_old], y_new[held_new]],
                "split-conformal",
            )
            keep, detector_update = out._keep, "updated in place"
        else:
            keep, detector_update = out._refit, "refit on kept rows"
        keep(
            np.vstack([X_old, X_new]),
            np.r_[y_old, y_new],
            np.r_[held_old, held_new],
            np.vstack([oos_old, X[is_oos]]),
        )
        out.update_ = {
            "op": "add",
            "classes": [str(c) for c in added],
            "rows": len(y_new),
            "oos_rows": int(is_oos.sum()),
            "head_update": head_update,
            "detector_update": detector_update,
            "teen_classes": sorted(
                set(map(str, getattr(out.head_, "teen_classes_", [])))
                - set(map(str, getattr(self.head_, "teen_classes_", [])))
            ),
            "threshold_before": self.threshold_,
            "threshold": out.threshold_,
        }
        return out

    def remove_classes(self, labels: Any) -> OpenSetClassifier:
        """A new classifier without the classes ``labels`` (and their kept rows); this one is
        unchanged. Unknown labels, or leaving fewer than 2 classes, raise ValidationError."""
        X_old, y_old, held_old, oos_old = self.kept_rows()
        drop, _ = check_removable(self.classes_, labels)
        gone = np.isin(y_old.astype(str), drop)
        out = copy.copy(self)  # every attribute that changes is reassigned, none mutated
        if hasattr(self.head_, "remove_classes"):
            out.head_ = self.head_.remove_classes(drop, X_old[gone], y_old[gone])
            head_update = _HEAD_UPDATE.get(type(self.head_).__name__, "in place")
        else:
            out.head_ = clone(self.head_).fit(X_old[~gone], y_old[~gone])
            head_update = "refit on kept rows"
        if self._updates_in_place() and (held_old & ~gone).any():
            out.classes_ = out.head_.classes_
            fitted = gone & ~held_old  # the removed rows the detector was fitted on
            out.detector_ = self.detector_.remove_classes(drop, X_old[fitted], y_old[fitted])
            out.calibration_head_ = _head_of(
                out.detector_, self.calibration_head_
            ) or self.calibration_head_.remove_classes(drop, X_old[fitted], y_old[fitted])
            kept = held_old & ~gone
            out._calibrate_rows(X_old[kept], y_old[kept], "split-conformal")
            out._keep(X_old[~gone], y_old[~gone], held_old[~gone], oos_old)
            detector_update = "updated in place"
        else:
            out._refit(X_old[~gone], y_old[~gone], held_old[~gone], oos_old)
            detector_update = "refit on kept rows"
        out.update_ = {
            "op": "remove",
            "classes": drop,
            "rows": int(gone.sum()),
            "head_update": head_update,
            "detector_update": detector_update,
            "threshold_before": self.threshold_,
            "threshold": out.threshold_,
        }
        return out

    def _updates_in_place(self) -> bool:
        """Whether a class change can update the detector and the calibration head instead
        of refitting them (both have add / remove; older bundles keep no calibration head)."""
        head = getattr(self, "calibration_head_", None)
        return (
            getattr(self.detector_, "updates_in_place", False)
            and hasattr(head, "add_classes")
            and hasattr(head, "remove_classes")
        )

    def _refit(
        self, X_in: np.ndarray, y_in: np.ndarray, held: np.ndarray, X_oos: np.ndarray
    ) -> None:
        """After the head changed: refit the detector on the kept rows, recalibrate the
        threshold, and keep the new rows."""
        self.classes_ = self.head_.classes_
        self._fit_detector(clone(self.detector_), X_in, y_in, held if held.any() else None)
        self._keep(X_in, y_in, held, X_oos)

    def _keep(
        self, X_in: np.ndarray, y_in: np.ndarray, held: np.ndarray, X_oos: np.ndarray
    ) -> None:
        self._set_oos_recall(X_oos)
        self.train_X_ = np.ascontiguousarray(X_in, dtype=np.float32)
        self.train_class_ = np.searchsorted(self.classes_, y_in).astype(np.int64)
        self.train_held_ = held
        self.train_oos_X_ = np.asarray(X_oos, dtype=np.float32).reshape(-1, X_in.shape[1])

    def _X(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "detector_")
        X = validate_estimator_data(self, X, reset=False)
        return np.asarray(X, dtype=np.float32)

    def novelty_score(self, X: Any) -> np.ndarray:
        """Novelty score of each row (the detector's ``decision_function``: higher = more
        likely out of scope)."""
        X = self._X(X)
        with validated():
            return self.detector_.decision_function(X)

    def predict_proba(self, X: Any) -> np.ndarray:
        """The head's probabilities over the in-scope ``classes_`` (out-of-scope aside)."""
        X = self._X(X)
        with validated():
            return self.head_.predict_proba(X)

    def predict(self, X: Any, *, reject: bool = True) -> np.ndarray:
        """A class of ``classes_`` per row, or ``oos_label`` where the detector rejects it
        (never with ``reject=False``: then always the head's best class)."""
        return self.predict_details(X, top_k=1, reject=reject).labels

    def predict_details(
        self,
        X: Any,
        top_k: int = 3,
        *,
        reject: bool = True,
        fdr: float | None = None,
        sets: float | None = None,
    ) -> Predictions:
        """Labels, confidence, novelty, p-values, out-of-scope flags and the top-k classes
        (:class:`~embedlab.models.predictions.Predictions`).

        ``reject=False`` turns rejection off without refitting: ``labels`` are the head's
        best class, ``out_of_scope`` is all false, ``novelty`` and ``p_value`` are still
        given. ``fdr=q``: reject the rows Benjamini–Hochberg picks at level q over this
        batch (the expected share of in-scope rows among the rejected is at most q)
        instead of thresholding each row. ``sets=0.9``: add each row's prediction set
        (randomised APS from the calibration head) holding the true class with
        probability ≥ 0.9."""
        X = self._X(X)
        level = None if sets is None else check_alpha(sets, "sets (coverage)")
        if fdr is not None:
            check_alpha(fdr, "fdr")
        with validated():  # checked once, here
            proba = self.head_.predict_proba(X)
            novelty = self.detector_.decision_function(X)
            cal_proba = None
            if level is not None or self._mondrian():
                head = self._calibration_head()
                cal_proba = proba if head is self.head_ else head.predict_proba(X)
        groups = self._groups(X, cal_proba)
        p = self._p_values(novelty, groups)
        if not reject:
            oos = np.zeros(len(X), dtype=bool)
        elif fdr is not None:
            oos = benjamini_hochberg(p, fdr)
        elif groups is not None:
            oos = novelty > self.group_thresholds_[groups]
        else:
            oos = novelty > self.threshold_
        out = Predictions.from_scores(
            self.classes_,
            proba,
            novelty,
            oos,
            top_k,
            oos_label=str(self.oos_label),
            p_value=p,
            p_score=novelty,
        )
        if level is not None:
            out = out.with_sets(self._sets(X, cal_proba, level), level)
        return out


#: How each head takes a class change (reported in ``update_``).
_HEAD_UPDATE = {
    "PrototypeClassifier": "closed form",
    "GaussianClassifier": "closed form",
    "LinearClassifier": "new classes' weights fitted, known ones kept",
}


def _warn_single_examples(classes: np.ndarray, counts: np.ndarray, note: str) -> None:
    singles = classes[counts < 2]
    if singles.size:
        log.warning(
            "%d class(es) have a single example (%s); they are kept, but their prototypes "
            "are that one point%s",
            singles.size,
            ", ".join(map(str, singles[:5])),
            note,
        )


def _head_of(detector: Any, head: Any) -> Any:
    """The detector's own head when it is configured as ``head`` (same class and
    parameters — e.g. energy over the linear head — and so fitted on the same rows as a
    calibration head would be): reused instead of fitting the same head twice; else None."""
    own = getattr(detector, "head_", None)
    if own is None or type(own) is not type(head) or own.get_params() != head.get_params():
        return None
    return own


def _train_every_class(y: np.ndarray, calib: np.ndarray) -> np.ndarray:
    """``calib`` without the rows of classes it would hold out entirely (a class of one
    row): every class keeps a training row for the detector and the calibration head."""
    trained = np.unique(y[~calib])
    if len(trained) == len(np.unique(y)):
        return calib
    return calib & np.isin(y, trained)


def _teen_config(teen: bool | str | Teen | None) -> Teen | None:
    if isinstance(teen, Teen):
        return teen
    if teen == "auto":
        return Teen()
    if teen is True:
        return Teen(max_shots=None)
    if teen is False or teen is None:
        return None
    raise ValidationError(f"teen must be 'auto', True, False or a Teen, not {teen!r}")
