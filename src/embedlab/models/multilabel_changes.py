"""Changing a fitted multi-label classifier: its self-training guesses joined, labels added
or removed. Mixed into :class:`~embedlab.models.multilabel.MultiLabelClassifier`, which
provides the scorers (``_fit_scores``, ``_scores``), the out-of-fold calibration
(``_oof_scores``, ``_calibration_split``, ``_thresholds``) and ``_fit_rows``. Each change
returns a new classifier and leaves this one as it was.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.utils.validation import check_is_fitted

from embedlab.core.errors import ValidationError
from embedlab.core.validation import check_vectors
from embedlab.core.vectors import unit_rows
from embedlab.heads.base import check_removable
from embedlab.models.label_sets import label_indicator

__all__ = ["MultiLabelChanges", "check_counts"]


def check_counts(classes: np.ndarray, counts: np.ndarray) -> None:
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


class MultiLabelChanges:
    """Self-training guesses, added and removed labels of a fitted multi-label classifier
    (a mixin)."""

    def with_guesses(self, X_extra: Any, Y_extra: np.ndarray) -> Any:
        """A copy whose scorers also learn from ``X_extra`` with the (m, L) label matrix
        ``Y_extra`` (the model's own guesses, for self-training); the head is kept, and the
        thresholds are calibrated out of fold on the labelled kept rows only (those held
        out of encoder adaptation, when it was adapted; the guesses join every fold's
        training rows, never its held-out ones). The guesses join the kept rows."""
        X, Y = self.kept_rows()
        X_extra = check_vectors(X_extra, name="X_extra", dim=self.n_features_in_)
        Y_extra = np.asarray(Y_extra, dtype=bool).reshape(len(X_extra), len(self.classes_))
        Z, Z_extra = unit_rows(X), unit_rows(X_extra)
        held = getattr(self, "train_held_", None)
        Zc, Yc, rest = self._calibration_split(Z, Y, held)
        learn = (Z_extra, Y_extra)
        if rest is not None:  # rows the adapted encoder saw train, never calibrate
            learn = (np.vstack([rest[0], Z_extra]), np.vstack([rest[1], Y_extra]))
        # the calibration copy is kept: it never saw the held-out rows (nor the guesses)
        oof, _, _ = self._oof_scores(self.head_, Zc, Yc, extra=learn)
        thresholds, reached, _ = self._thresholds(oof, Yc, self.allow_empty_, self._strategy())
        out = copy.copy(self)  # every attribute that changes is reassigned, none mutated
        out.params_ = self._fit_scores(self.head_, np.vstack([Z, Z_extra]), np.vstack([Y, Y_extra]))
        out.thresholds_ = thresholds.astype(np.float32)
        out.threshold_reached_ = reached
        out.train_X_ = np.vstack([X, X_extra]).astype(np.float32)
        out.train_Y_ = np.vstack([Y, Y_extra])
        if held is not None:  # guesses never calibrate
            out.train_held_ = np.concatenate([held, np.zeros(len(X_extra), dtype=bool)])
        return out

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

    def add_classes(self, X: Any, Y: Any) -> Any:
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
        check_counts(classes[new_cols], Y_all[:, new_cols].sum(0))
        held = getattr(self, "train_held_", None)
        if held is not None:  # the adapted encoder never saw the added rows either
            held = np.concatenate([held, np.ones(len(X), dtype=bool)])
        if self.head_ in _INDEPENDENT_HEADS:
            out = self._with_new_labels(X_all, Y_all, classes, old_cols, new_cols, held)
            head_update = "new labels' scorers fitted, known ones kept"
            detector_update = "new labels' thresholds calibrated out of fold, known ones kept"
        else:
            out = clone(self).set_params(head=self.head_)._fit_rows(X_all, classes, Y_all, held)
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
        calibration_rows: np.ndarray | None = None,
    ) -> Any:
        """A copy with the new labels' scorers and thresholds fitted on every kept row
        (thresholds out of fold on the ``calibration_rows``: all by default) and the known
        labels' arrays moved to their places in the new class order."""
        Z = unit_rows(X_all)
        Y_new = Y_all[:, new_cols]
        rows = np.arange(len(Z)) if calibration_rows is None else np.flatnonzero(calibration_rows)
        rest = np.setdiff1d(np.arange(len(Z)), rows)
        oof, _, first = self._oof_scores(
            self.head_, Z[rows], Y_new[rows], (Z[rest], Y_new[rest]) if len(rest) else None
        )
        held = rows[first]  # the first fold's rows, among all kept rows
        g = getattr(self, "global_threshold_", None)  # the model's own, for new labels too
        thresholds, reached, _ = self._thresholds(
            oof, Y_new[rows], self.allow_empty_, self._strategy(), g
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
        out.train_held_ = calibration_rows
        # a calibration copy of every label's scorers, fitted without the first fold's rows
        train = np.setdiff1d(np.arange(len(Z)), held)
        copy_params = self._fit_scores(self.head_, Z[train], Y_all[train])
        out._set_calibration(
            copy_params, self._scores(self.head_, Z[held], copy_params), Y_all[held]
        )
        return out

    def remove_classes(self, labels: Any) -> Any:
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
