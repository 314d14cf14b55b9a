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

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.special import expit
from sklearn.base import BaseEstimator
from sklearn.model_selection import KFold
from sklearn.utils.validation import check_is_fitted

from embedlab.core.conformal import benjamini_hochberg, check_alpha
from embedlab.core.errors import ValidationError
from embedlab.core.validation import check_vectors
from embedlab.core.vectors import top_k_cosine, unit_rows
from embedlab.models.label_sets import (
    evaluate_multilabel,
    label_indicator,
    parse_label_sets,
    per_label_thresholds,
)
from embedlab.models.label_thresholds import THRESHOLD_STRATEGIES, apply_strategy, choose_strategy
from embedlab.models.multilabel_calibration import MultiLabelCalibration
from embedlab.models.multilabel_changes import MultiLabelChanges, check_counts
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


class MultiLabelClassifier(MultiLabelChanges, MultiLabelCalibration, BaseEstimator):
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

    def fit(self, X: Any, Y: Any, calibration_mask: Any = None) -> MultiLabelClassifier:
        """Fit the per-label scores on (X, Y) and calibrate one threshold per label.

        ``calibration_mask`` marks rows whose vectors come from an encoder that never saw
        them (rows held out of encoder adaptation): the thresholds, the head choice and the
        p-values are then calibrated on those rows only, scored out of fold by scorers that
        also learn from every other row; the final scorers learn from all rows."""
        self._check_params()
        X = check_vectors(X, name="X")
        classes, Yb = self._targets(Y, len(X))
        held = None
        if calibration_mask is not None:
            held = np.asarray(calibration_mask, dtype=bool)
            if held.shape != (len(X),):
                raise ValidationError(
                    f"calibration_mask has shape {held.shape}, expected ({len(X)},)"
                )
            if held.sum() < int(self.cv):
                raise ValidationError(
                    f"{int(held.sum())} calibration rows are too few for {self.cv}-fold calibration"
                )
        return self._fit_rows(X, classes, Yb, held)

    def _fit_rows(
        self, X: np.ndarray, classes: np.ndarray, Yb: np.ndarray, held: np.ndarray | None = None
    ) -> MultiLabelClassifier:
        if len(classes) < 1:
            raise ValidationError("multi-label training data carries no label at all")
        counts = Yb.sum(0)
        check_counts(classes, counts)
        if len(X) < int(self.cv):
            raise ValidationError(f"{len(X)} rows are too few for {self.cv}-fold calibration")
        Z = unit_rows(X)
        allow_empty = (
            bool((~Yb.any(1)).any()) if self.allow_empty == "auto" else bool(self.allow_empty)
        )
        candidates = AUTO_HEADS if self.head == "auto" else (self.head,)
        Zc, Yc, extra = self._calibration_split(Z, Yb, held)
        tried = {}
        for head in candidates:  # a loop over candidate heads
            oof, fold_params, fold_held = self._oof_scores(head, Zc, Yc, extra)
            thresholds, reached, how = self._thresholds(oof, Yc, allow_empty)
            metrics = evaluate_multilabel(Yc, _decide(oof, thresholds, allow_empty), classes)
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
        self._set_calibration(fold_params, fold_scores, Yc[fold_held])
        if held is not None:
            self.calibration_method_ = (
                "split-conformal (rows held out of encoder adaptation, the first fold's model)"
            )
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
            self.train_held_ = None if held is None else held.copy()
        return self

    def _calibration_split(
        self, Z: np.ndarray, Y: np.ndarray, held: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
        """The rows thresholds are calibrated on (all, or those marked ``held``: never seen
        by the encoder) and the rows that only train, as (Z, Y, (Z_rest, Y_rest) or None)."""
        if held is None:
            return Z, Y, None
        return Z[held], Y[held], (Z[~held], Y[~held])

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
