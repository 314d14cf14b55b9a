"""Multi-label classification: every row carries a set of labels (possibly none).

Per label, a score from one of four heads — one-vs-rest logistic regression (``linear``), a
one-hidden-layer network with one sigmoid output per label (``mlp``), cosine to the label's
mean row (``prototype``), or the share of the ``k`` nearest training rows that carry the
label (``knn``) — and **a threshold per label**, calibrated on
out-of-fold scores of the training rows: the one that maximises the label's F1, or with
``target_precision`` the lowest one whose precision still meets the target. A row whose
scores pass no threshold gets the empty set: "none of the labels" — the multi-label form of
out of scope (rows labelled with the out-of-scope label, or with an empty label set, train
it as a row that carries no label).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.special import expit
from sklearn.base import BaseEstimator, clone
from sklearn.model_selection import KFold
from sklearn.utils.validation import check_is_fitted

from embedlab.core.conformal import benjamini_hochberg, check_alpha
from embedlab.core.errors import ValidationError
from embedlab.core.validation import check_vectors
from embedlab.core.vectors import top_k_cosine, unit_rows
from embedlab.heads.base import check_removable
from embedlab.models.label_sets import (
    evaluate_multilabel,
    label_indicator,
    parse_label_sets,
    per_label_thresholds,
)
from embedlab.models.label_thresholds import THRESHOLD_STRATEGIES, apply_strategy, choose_strategy
from embedlab.models.multilabel_calibration import MultiLabelCalibration
from embedlab.models.multilabel_scores import fit_mlp, fit_ovr_logistic, mlp_scores
from embedlab.models.predictions import Predictions

__all__ = [
    "MULTILABEL_HEADS",
    "MultiLabelClassifier",
    "evaluate_multilabel",
    "label_indicator",
    "parse_label_sets",
    "per_label_thresholds",
]

MULTILABEL_HEADS = ("auto", "linear", "mlp", "prototype", "knn")
#: What ``head="auto"`` chooses between, by out-of-fold macro-F1.
AUTO_HEADS = ("linear", "mlp")


def _check_counts(classes: np.ndarray, counts: np.ndarray) -> None:
    """A label needs two rows: a threshold cannot be calibrated from one example."""
    if (counts < 2).any():
        few = [str(c) for c in classes[counts < 2]][:10]
        raise ValidationError(
            f"{int((counts < 2).sum())} label(s) have fewer than 2 rows: {few}; a "
            "threshold cannot be calibrated from one example"
        )


#: Per head, which of its fitted arrays hold one entry per label, and along which axis.
_LABEL_AXIS = {"coef": 0, "intercept": 0, "means": 0, "w2": 0, "b2": 0, "labels": 1}
#: Heads whose per-label scorers are independent of each other (one-vs-rest, one mean per
#: label): a class change touches only the labels it adds or removes.
_INDEPENDENT_HEADS = ("linear", "prototype")


class MultiLabelClassifier(MultiLabelCalibration, BaseEstimator):
    """Label sets from embeddings: per-label scores, per-label calibrated thresholds.

    Parameters
    ----------
    head : {"auto", "linear", "mlp", "prototype", "knn"}, default "auto"
        auto: linear and mlp are both calibrated out of fold and the one with the higher
        out-of-fold macro-F1 is kept (``head_``; both scores in ``selection_``);
        linear: one-vs-rest logistic regression (L2, inverse strength ``C``, unit rows);
        mlp: one hidden layer of ``hidden`` GELU units shared by all labels, trained with
        binary cross-entropy for ``epochs`` passes (AdamW, seeded; predicts in numpy);
        prototype: cosine to each label's mean row; knn: share of the ``k`` most similar
        training rows that carry the label.
    target_precision : float, optional
        Per label, the lowest threshold whose out-of-fold precision meets this; labels that
        cannot reach it are never predicted (a warning names them). Default: maximise F1.
    threshold_strategy : {"auto", "shrunk", "per-label", "global"}, default "auto"
        How the thresholds are set on out-of-fold scores (see
        :mod:`embedlab.models.label_thresholds`): each label's own, shrunk toward one
        global threshold by how few positives it has, or one for all; "auto" chooses
        between shrunk and per-label by nested cross-validation (``threshold_strategy_``,
        the scores in ``threshold_selection_``).
    cv : int, default 3
        Folds for the out-of-fold scores the thresholds are calibrated on.
    C : float, default 1.0
    k : int, default 20
    hidden : int, default 512
    epochs : int, default 40
    allow_empty : bool or "auto", default "auto"
        Whether "none of the labels" is an answer. "auto": when some training row carries
        no label; otherwise a row that passes no threshold gets the label it is closest to
        passing (among labels that are ever predicted).
    random_state : int, default 0
    oos_label : str, default "oos"
        A label cell holding only this is a row with no label.
    label_sep : str, default ","
        Separator of the labels in one label cell (a string of joined labels).
    keep_rows : bool, default True
        Keep the training vectors and their label sets (``train_X_``, ``train_Y_``): what
        :meth:`add_classes`, :meth:`remove_classes` and discovery work from.

    ``fit(X, Y)`` takes Y as label sets (lists / tuples of strings, or strings of labels
    joined by ``label_sep``) or a boolean (n, L) matrix; ``predict`` returns the (n, L)
    boolean matrix over ``classes_`` (scikit-learn's multi-label convention) and
    ``predict_label_sets`` the sets.
    """

    def __init__(
        self,
        head: str = "auto",
        target_precision: float | None = None,
        threshold_strategy: str = "auto",
        cv: int = 3,
        C: float = 1.0,
        k: int = 20,
        hidden: int = 512,
        epochs: int = 40,
        allow_empty: bool | str = "auto",
        random_state: int = 0,
        oos_label: str = "oos",
        label_sep: str = ",",
        keep_rows: bool = True,
    ):
        self.head = head
        self.target_precision = target_precision
        self.threshold_strategy = threshold_strategy
        self.cv = cv
        self.C = C
        self.k = k
        self.hidden = hidden
        self.epochs = epochs
        self.allow_empty = allow_empty
        self.random_state = random_state
        self.oos_label = oos_label
        self.label_sep = label_sep
        self.keep_rows = keep_rows

    def label_sets(self, cells: Sequence[Any], *, name: str = "labels") -> list[tuple[str, ...]]:
        """Label cells → label sets, with this model's separator and out-of-scope label."""
        return parse_label_sets(cells, sep=self.label_sep, oos_label=self.oos_label, name=name)

    # ------------------------------------------------------------------ fitting
    def _check_params(self) -> None:
        if self.head not in MULTILABEL_HEADS:
            raise ValidationError(
                f"multi-label head must be one of {MULTILABEL_HEADS}, got {self.head!r}"
            )
        tp = self.target_precision
        if tp is not None and not 0.0 < tp <= 1.0:
            raise ValidationError(f"target_precision must be in (0, 1], got {tp}")
        if self.threshold_strategy not in (*THRESHOLD_STRATEGIES, "auto"):
            raise ValidationError(
                f"threshold_strategy must be one of {(*THRESHOLD_STRATEGIES, 'auto')}, got "
                f"{self.threshold_strategy!r}"
            )
        if int(self.cv) < 2:
            raise ValidationError(f"cv must be at least 2, got {self.cv}")
        if self.allow_empty not in (True, False, "auto"):
            raise ValidationError(
                f"allow_empty must be True, False or 'auto', not {self.allow_empty!r}"
            )

    def _targets(self, Y: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(Y, np.ndarray) and Y.ndim == 2:
            if Y.shape[0] != n:
                raise ValidationError(f"Y has {Y.shape[0]} rows for {n} vectors")
            if not np.isin(Y, (0, 1)).all():
                raise ValidationError("a label matrix Y must hold 0 / 1 (or booleans) only")
            return np.arange(Y.shape[1]).astype(str).astype(object), Y.astype(bool)
        sets = self.label_sets(list(Y))
        if len(sets) != n:
            raise ValidationError(f"Y has {len(sets)} label sets for {n} vectors")
        classes = np.asarray(sorted({lab for s in sets for lab in s}), dtype=object)
        return classes, label_indicator(sets, classes)

    def fit(self, X: Any, Y: Any) -> MultiLabelClassifier:
        """Fit the per-label scores on (X, Y) and calibrate one threshold per label."""
        self._check_params()
        X = check_vectors(X, name="X")
        classes, Yb = self._targets(Y, len(X))
        return self._fit_rows(X, classes, Yb)

    def _fit_rows(self, X: np.ndarray, classes: np.ndarray, Yb: np.ndarray) -> MultiLabelClassifier:
        if len(classes) < 1:
            raise ValidationError("multi-label training data carries no label at all")
        counts = Yb.sum(0)
        _check_counts(classes, counts)
        if len(X) < int(self.cv):
            raise ValidationError(f"{len(X)} rows are too few for {self.cv}-fold calibration")
        Z = unit_rows(X)
        allow_empty = (
            bool((~Yb.any(1)).any()) if self.allow_empty == "auto" else bool(self.allow_empty)
        )
        candidates = AUTO_HEADS if self.head == "auto" else (self.head,)
        tried = {}
        for head in candidates:  # a loop over candidate heads
            oof, fold_params, fold_held = self._oof_scores(head, Z, Yb)
            thresholds, reached, how = self._thresholds(oof, Yb, allow_empty)
            metrics = evaluate_multilabel(Yb, _decide(oof, thresholds, allow_empty), classes)
            metrics.pop("per_label")
            tried[head] = (
                metrics,
                thresholds,
                reached,
                fold_params,
                oof[fold_held],
                fold_held,
                how,
            )
        best = max(candidates, key=lambda h: tried[h][0]["macro_f1"])  # first among equals
        metrics, thresholds, reached, fold_params, fold_scores, fold_held, how = tried[best]
        self._set_calibration(fold_params, fold_scores, Yb[fold_held])
        self.threshold_strategy_, self.global_threshold_ = how["strategy"], how["global"]
        self.threshold_selection_ = how["tried"]
        self._warn_unreached(classes, reached)
        self.head_ = best
        self.selection_ = (
            {h: round(tried[h][0]["macro_f1"], 4) for h in candidates} if len(tried) > 1 else None
        )
        self.classes_ = classes
        self.n_features_in_ = X.shape[1]
        self.thresholds_ = thresholds.astype(np.float32)
        self.threshold_reached_ = reached
        self.label_counts_ = counts.astype(np.int64)
        self.allow_empty_ = allow_empty
        self.oof_metrics_ = metrics
        self.params_ = self._fit_scores(best, Z, Yb)
        if self.keep_rows:
            self.train_X_ = np.ascontiguousarray(X, dtype=np.float32)
            self.train_Y_ = np.asarray(Yb, dtype=bool)
        return self

    def _oof_scores(
        self,
        head: str,
        Z: np.ndarray,
        Y: np.ndarray,
        extra: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
        """Out-of-fold scores (n, L) of ``head`` over ``cv`` seeded folds of the rows;
        ``extra`` (rows, labels) join every fold's training rows and are never scored. Also
        the first fold's fitted scorers and the rows it held out: a model that never saw
        those rows, kept to calibrate p-values on them."""
        folds = KFold(int(self.cv), shuffle=True, random_state=self.random_state).split(Z)
        oof = np.empty(Y.shape, dtype=np.float32)
        first: tuple[dict[str, np.ndarray], np.ndarray] | None = None
        for train, held in folds:  # a loop over folds
            Z_t, Y_t = Z[train], Y[train]
            if extra is not None:
                Z_t, Y_t = np.vstack([Z_t, extra[0]]), np.vstack([Y_t, extra[1]])
            params = self._fit_scores(head, Z_t, Y_t)
            oof[held] = self._scores(head, Z[held], params)
            first = first or (params, np.sort(held))
        assert first is not None
        return oof, first[0], first[1]

    def with_guesses(self, X_extra: Any, Y_extra: np.ndarray) -> MultiLabelClassifier:
        """A copy whose scorers also learn from ``X_extra`` with the (m, L) label matrix
        ``Y_extra`` (the model's own guesses, for self-training); the head is kept, and the
        thresholds are calibrated out of fold on the labelled kept rows only (the guesses
        join every fold's training rows, never its held-out ones). The guesses join the
        kept rows."""
        X, Y = self.kept_rows()
        X_extra = check_vectors(X_extra, name="X_extra", dim=self.n_features_in_)
        Y_extra = np.asarray(Y_extra, dtype=bool).reshape(len(X_extra), len(self.classes_))
        Z, Z_extra = unit_rows(X), unit_rows(X_extra)
        # the calibration copy is kept: it never saw the held-out rows (nor the guesses)
        oof, _, _ = self._oof_scores(self.head_, Z, Y, extra=(Z_extra, Y_extra))
        thresholds, reached, _ = self._thresholds(oof, Y, self.allow_empty_, self._strategy())
        out = copy.copy(self)  # every attribute that changes is reassigned, none mutated
        out.params_ = self._fit_scores(self.head_, np.vstack([Z, Z_extra]), np.vstack([Y, Y_extra]))
        out.thresholds_ = thresholds.astype(np.float32)
        out.threshold_reached_ = reached
        out.train_X_ = np.vstack([X, X_extra]).astype(np.float32)
        out.train_Y_ = np.vstack([Y, Y_extra])
        return out

    def _strategy(self) -> str:
        """The threshold strategy the fit chose (``per-label`` for older bundles)."""
        return getattr(self, "threshold_strategy_", "per-label")

    def _thresholds(
        self,
        oof: np.ndarray,
        Y: np.ndarray,
        allow_empty: bool,
        strategy: str | None = None,
        global_t: float | None = None,
    ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """Thresholds on out-of-fold scores by ``strategy`` (default: the parameter; "auto"
        chooses by nested cross-validation, see :mod:`embedlab.models.label_thresholds`)."""
        strategy, tried = strategy or self.threshold_strategy, None
        if strategy == "auto":
            strategy = "per-label"  # a target precision is a per-label rule
            if self.target_precision is None:
                decide = lambda s, t: _decide(s, t, allow_empty)  # noqa: E731
                strategy, tried = choose_strategy(oof, Y, decide, int(self.random_state))
        t, reached, g = apply_strategy(
            strategy, oof, Y, target_precision=self.target_precision, global_t=global_t
        )
        return t, reached, {"strategy": strategy, "global": g, "tried": tried}

    def _warn_unreached(self, classes: np.ndarray, reached: np.ndarray) -> None:
        if self.target_precision is not None and not reached.all():
            warnings.warn(
                f"{int((~reached).sum())} label(s) cannot reach precision "
                f"{self.target_precision} on held-out rows and will never be predicted: "
                f"{[str(c) for c in classes[~reached]][:10]}",
                UserWarning,
                stacklevel=3,
            )

    def _fit_scores(self, head: str, Z: np.ndarray, Y: np.ndarray) -> dict[str, np.ndarray]:
        if head == "prototype":
            sums = Y.T.astype(np.float32) @ Z
            return {"means": unit_rows(sums)}
        if head == "knn":
            return {"rows": Z.astype(np.float32), "labels": Y.copy()}
        if head == "mlp":
            return fit_mlp(Z, Y, int(self.hidden), int(self.epochs), int(self.random_state))
        return fit_ovr_logistic(Z, Y, float(self.C))

    def _scores(self, head: str, Z: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
        if head == "prototype":
            return (Z @ params["means"].T).astype(np.float32)
        if head == "knn":
            idx, _ = top_k_cosine(Z, params["rows"], int(self.k))
            labels = params["labels"]
            out = np.empty((len(Z), labels.shape[1]), dtype=np.float32)
            for s in range(0, len(Z), 2048):  # chunked: (chunk, k, L) booleans at most
                out[s : s + 2048] = labels[idx[s : s + 2048]].mean(axis=1)
            return out
        if head == "mlp":
            return mlp_scores(Z, params)
        return expit(Z @ params["coef"].T + params["intercept"]).astype(np.float32)

    def _decide(self, scores: np.ndarray) -> np.ndarray:
        return _decide(scores, self.thresholds_, self.allow_empty_)

    # ------------------------------------------------------------ class-set changes
    def kept_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """The kept training vectors and their (n, L) label matrix over ``classes_``; a
        ValidationError when the model keeps none (``keep_rows=False``, or saved by an
        older embedlab)."""
        check_is_fitted(self, "params_")
        if not hasattr(self, "train_X_"):
            raise ValidationError(
                "this model does not keep its training vectors (fitted with keep_rows=False, "
                "or saved by an older embedlab), so it cannot add or remove labels, nor "
                "calibrate discovery on them; refit it"
            )
        return self.train_X_, self.train_Y_

    def reference_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """Kept rows that carry exactly one label, with that label: the labelled groups
        discovery calibrates its cut on."""
        X, Y = self.kept_rows()
        one = Y.sum(1) == 1
        return X[one], np.asarray(self.classes_, dtype=object)[Y[one].argmax(1)]

    def add_classes(self, X: Any, Y: Any) -> MultiLabelClassifier:
        """A new classifier that also knows the labels of (X, Y) that are new to it; this
        one is unchanged. ``Y``: label sets (or cells joined by ``label_sep``); a row may
        carry known labels beside new ones (kept with the rows for later changes). The kept
        rows count as not carrying the new labels. Linear and prototype heads fit only the
        new labels' scorers and thresholds (out of fold over every kept row) and keep the
        known ones exactly; mlp and knn heads (shared by all labels) are refit on the kept
        rows with the same head. Raises ValidationError when no label is new, or a new
        label has fewer than 2 rows."""
        X_old, Y_old = self.kept_rows()
        X = check_vectors(X, name="X", dim=self.n_features_in_)
        sets = self.label_sets(list(Y))
        if len(sets) != len(X):
            raise ValidationError(f"Y has {len(sets)} label sets for {len(X)} vectors")
        known = [str(c) for c in self.classes_]
        added = sorted({lab for row in sets for lab in row} - set(known))
        if not added:
            raise ValidationError(
                f"none of these rows' labels is new to the model (it knows {known[:10]}"
                f"{'...' if len(known) > 10 else ''}): adding classes adds labels; refit "
                "to learn from more examples of known ones"
            )
        classes = np.asarray(sorted([*known, *added]), dtype=object)
        position = {c: j for j, c in enumerate(classes)}
        old_cols = np.asarray([position[c] for c in known], dtype=np.int64)
        new_cols = np.asarray([position[c] for c in added], dtype=np.int64)
        Y_all = np.zeros((len(X_old) + len(X), len(classes)), dtype=bool)
        Y_all[: len(X_old), old_cols] = Y_old
        Y_all[len(X_old) :] = label_indicator(sets, classes)
        X_all = np.vstack([X_old, X]).astype(np.float32)
        _check_counts(classes[new_cols], Y_all[:, new_cols].sum(0))
        if self.head_ in _INDEPENDENT_HEADS:
            out = self._with_new_labels(X_all, Y_all, classes, old_cols, new_cols)
            head_update = "new labels' scorers fitted, known ones kept"
            detector_update = "new labels' thresholds calibrated out of fold, known ones kept"
        else:
            out = clone(self).set_params(head=self.head_)._fit_rows(X_all, classes, Y_all)
            out.selection_ = self.selection_
            head_update = detector_update = "refit on kept rows (same head)"
        out.update_ = {
            "op": "add",
            "classes": added,
            "rows": len(X),
            "oos_rows": int(sum(1 for row in sets if not row)),
            "head_update": head_update,
            "detector_update": detector_update,
            "thresholds": {
                str(classes[j]): (
                    float(out.thresholds_[j]) if np.isfinite(out.thresholds_[j]) else None
                )
                for j in new_cols
            },
        }
        return out

    def _with_new_labels(
        self,
        X_all: np.ndarray,
        Y_all: np.ndarray,
        classes: np.ndarray,
        old_cols: np.ndarray,
        new_cols: np.ndarray,
    ) -> MultiLabelClassifier:
        """A copy with the new labels' scorers and thresholds fitted on every kept row and
        the known labels' arrays moved to their places in the new class order."""
        Z = unit_rows(X_all)
        Y_new = Y_all[:, new_cols]
        oof, _, held = self._oof_scores(self.head_, Z, Y_new)
        g = getattr(self, "global_threshold_", None)  # the model's own, for new labels too
        thresholds, reached, _ = self._thresholds(
            oof, Y_new, self.allow_empty_, self._strategy(), g
        )
        self._warn_unreached(classes[new_cols], reached)
        fitted = self._fit_scores(self.head_, Z, Y_new)

        def placed(old: np.ndarray, new: np.ndarray) -> np.ndarray:
            out = np.empty((len(classes), *old.shape[1:]), dtype=old.dtype)
            out[old_cols], out[new_cols] = old, new.astype(old.dtype)
            return out

        out = copy.copy(self)  # every attribute that changes is reassigned, none mutated
        out.params_ = {k: placed(v, fitted[k]) for k, v in self.params_.items()}
        out.thresholds_ = placed(self.thresholds_, thresholds)
        out.threshold_reached_ = placed(self.threshold_reached_, reached)
        out.label_counts_ = Y_all.sum(0).astype(np.int64)
        out.classes_ = classes
        out.train_X_, out.train_Y_ = X_all, Y_all
        # a calibration copy of every label's scorers, fitted without the first fold's rows
        train = np.setdiff1d(np.arange(len(Z)), held)
        copy_params = self._fit_scores(self.head_, Z[train], Y_all[train])
        out._set_calibration(
            copy_params, self._scores(self.head_, Z[held], copy_params), Y_all[held]
        )
        return out

    def remove_classes(self, labels: Any) -> MultiLabelClassifier:
        """A new classifier without the labels ``labels``; this one is unchanged. Exact for
        every head: the other labels' scorers and thresholds are kept as they are (kept
        rows stay, without the removed labels). Unknown labels, or leaving fewer than 2,
        raise ValidationError."""
        _, Y_old = self.kept_rows()
        drop, keep = check_removable(self.classes_, labels)
        out = copy.copy(self)  # every attribute that changes is reassigned, none mutated
        out.params_ = {
            k: np.compress(keep, v, axis=_LABEL_AXIS[k]) if k in _LABEL_AXIS else v
            for k, v in self.params_.items()
        }
        out.classes_ = self.classes_[keep]
        out.thresholds_ = self.thresholds_[keep]
        out.threshold_reached_ = self.threshold_reached_[keep]
        out.label_counts_ = self.label_counts_[keep]
        out.train_Y_ = Y_old[:, keep]
        if getattr(self, "calibration_params_", None) is not None:  # exact: columns dropped
            out._set_calibration(
                {
                    k: np.compress(keep, v, axis=_LABEL_AXIS[k]) if k in _LABEL_AXIS else v
                    for k, v in self.calibration_params_.items()
                },
                self.calibration_scores_[:, keep],
                self.calibration_Y_[:, keep],
            )
        out.update_ = {
            "op": "remove",
            "classes": drop,
            "rows": int(Y_old[:, ~keep].any(1).sum()),
            "head_update": "the removed labels' scorers dropped, the others kept",
            "detector_update": "the other labels' thresholds kept",
        }
        return out

    # ------------------------------------------------------------------ predicting
    def _X(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "params_")
        return unit_rows(check_vectors(X, name="X", dim=self.n_features_in_))

    def decision_function(self, X: Any) -> np.ndarray:
        """Per-label scores (n, L), on the head's scale (probability, cosine or vote share)."""
        return self._scores(self.head_, self._X(X), self.params_)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Per-label scores in [0, 1] (n, L); each label independently, rows need not sum to 1."""
        return self._proba(self.decision_function(X))

    def _proba(self, scores: np.ndarray) -> np.ndarray:
        return (scores + 1.0) / 2.0 if self.head_ == "prototype" else scores

    def predict(self, X: Any) -> np.ndarray:
        """(n, L) booleans over ``classes_``: the labels whose score passes their threshold."""
        return self._decide(self.decision_function(X))

    def predict_label_sets(self, X: Any) -> list[tuple[str, ...]]:
        """The predicted label set of each row (empty: none of the labels)."""
        P = self.predict(X)
        return [tuple(self.classes_[row].tolist()) for row in P]

    def novelty_score(self, X: Any) -> np.ndarray:
        """How far each row is from passing any threshold: min over labels of (threshold −
        score); > 0 = no label passes (none of the labels, i.e. out of scope)."""
        return self._novelty(self.decision_function(X))

    def _novelty(self, scores: np.ndarray) -> np.ndarray:
        return np.min(self.thresholds_ - scores, axis=1).astype(np.float32)

    def predict_details(
        self, X: Any, top_k: int = 3, *, fdr: float | None = None, sets: float | None = None
    ) -> Predictions:
        """Per row, from one scoring pass (:class:`~embedlab.models.predictions.Predictions`):
        ``labels`` (the predicted labels joined by ``label_sep``, ``oos_label`` for none;
        the sets in ``label_sets``), ``novelty`` (as :meth:`novelty_score`), ``p_value``
        (as :meth:`p_value`), ``out_of_scope`` (no label), and the ``top_k`` labels by
        their per-label scores in [0, 1] (they need not sum to 1; ``confidence`` is the
        best one's). ``fdr=q``: the rows Benjamini–Hochberg rejects at level q over this
        batch get no label too (out of scope)."""
        if sets is not None:
            raise ValidationError(
                "prediction sets are for single-label models; a multi-label model's answer "
                "is already a set of labels"
            )
        if fdr is not None:
            check_alpha(fdr, "fdr")
        Z = self._X(X)
        scores = self._scores(self.head_, Z, self.params_)
        calibrated = getattr(self, "calibration_params_", None) is not None
        score, p = self._p_scores(Z) if calibrated or fdr is not None else (None, None)
        P = self._decide(scores)
        if fdr is not None:
            P[benjamini_hochberg(p, fdr)] = False
        names = np.asarray(self.classes_, dtype=object)
        sets = tuple(tuple(names[row].tolist()) for row in P)
        cells = [self.label_sep.join(row) or self.oos_label for row in sets]
        return Predictions.from_scores(
            names,
            self._proba(scores),
            self._novelty(scores),
            ~P.any(1),
            top_k,
            labels=np.asarray(cells, dtype=object),
            label_sets=sets,
            p_value=p,
            p_score=score,
        )


def _decide(scores: np.ndarray, thresholds: np.ndarray, allow_empty: bool) -> np.ndarray:
    """Labels whose score passes their threshold; without ``allow_empty``, a row that passes
    none gets the label it is closest to passing (among labels that are ever predicted)."""
    passed = scores >= thresholds
    usable = np.isfinite(thresholds)  # a label never predicted stays so
    if not allow_empty and usable.any():
        none = np.flatnonzero(~passed.any(1))
        if none.size:
            margin = np.where(usable, scores[none] - thresholds, -np.inf)
            passed[none, np.argmax(margin, axis=1)] = True
    return passed
