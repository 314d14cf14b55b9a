"""Learning from unlabelled texts: self-training on a model's own confident guesses.

Each round, the current model labels the pool; per class, the rows it is most confident
about (at most a growing share of the pool's rows per class, so no class floods the
others) join the labelled rows, and the model is refitted on both. Rows the detector
rejects as out of scope never join: junk in the pool stays out. Works for any head with
``predict_proba`` (zero-shot from class names included) and for an OpenSetClassifier, whose
head is refitted as it was chosen (no new selection) while its detector and threshold stay
as they were calibrated on labelled rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import clone

from embedlab.core.errors import ValidationError
from embedlab.core.validation import check_vectors

__all__ = [
    "SelfTraining",
    "pseudo_labels",
    "self_train_head",
    "self_train_multilabel",
    "self_train_openset",
]


@dataclass(frozen=True)
class SelfTraining:
    """rounds: how many label-and-refit rounds; share: by the last round, up to this share
    of (pool rows / classes) rows per class are taken (round r takes r/rounds of it);
    min_prob: a guess needs at least this head probability.

    Defaults chosen on half of CLINC150's domains (name-only zero-shot, 1- and 5-shot;
    `benchmarks/self_training.py --domains tune`, docs/benchmarks.md): share 1.0 beat 0.5
    and 0.25 everywhere, 3 rounds did not beat 2."""

    rounds: int = 2
    share: float = 1.0
    min_prob: float = 0.0

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise ValidationError(f"self-training rounds must be at least 1, got {self.rounds}")
        if not 0.0 < self.share <= 1.0:
            raise ValidationError(f"self-training share must be in (0, 1], got {self.share}")

    def quota(self, round_: int, n_pool: int, n_classes: int) -> int:
        """Rows per class taken in round ``round_`` (1-based)."""
        return max(1, int(self.share * round_ / self.rounds * n_pool / max(n_classes, 1)))


def pseudo_labels(
    proba: np.ndarray, quota: int, *, allowed: np.ndarray | None = None, min_prob: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """(rows, class index) of the guesses to keep: per class, the ``quota`` rows with the
    highest probability among those it wins (and ``allowed``, and ≥ ``min_prob``)."""
    guess = proba.argmax(axis=1)
    conf = proba[np.arange(len(proba)), guess]
    ok = conf >= min_prob
    if allowed is not None:
        ok &= allowed
    rows = np.flatnonzero(ok)
    # sort by class, then by confidence (highest first); keep each class's first `quota`
    order = rows[np.lexsort((-conf[rows], guess[rows]))]
    cls = guess[order]
    first = np.searchsorted(cls, cls, side="left")
    rank = np.arange(len(order)) - first
    take = order[rank < quota]
    return np.sort(take), guess[np.sort(take)]


def _check(X_pool: Any, dim: int | None) -> np.ndarray:
    return check_vectors(X_pool, name="unlabelled vectors", dim=dim)


def self_train_head(
    head: Any,
    X: Any,
    y: Any,
    X_pool: Any,
    config: SelfTraining | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Fit ``head`` (an unfitted estimator with ``predict_proba``) on (X, y) — or, with X
    and y None, on nothing, as a zero-shot head can — then self-train it on ``X_pool``.
    Returns the fitted head and a report (rows taken per round)."""
    config = config or SelfTraining()
    model = clone(head).fit() if X is None else clone(head).fit(X, y)
    X_pool = _check(X_pool, getattr(model, "n_features_in_", None))
    y_lab = np.asarray([], dtype=object) if y is None else np.asarray([str(v) for v in y])
    report: dict[str, Any] = {"pool": len(X_pool), "rounds": []}
    for r in range(1, config.rounds + 1):
        classes = np.asarray(model.classes_, dtype=object)
        rows, idx = pseudo_labels(
            model.predict_proba(X_pool),
            config.quota(r, len(X_pool), len(classes)),
            min_prob=config.min_prob,
        )
        pseudo = classes[idx].astype(str)
        X_fit = X_pool[rows] if X is None else np.vstack([X, X_pool[rows]])
        model = clone(head).fit(X_fit, np.r_[y_lab, pseudo].astype(object))
        report["rounds"].append({"round": r, "pseudo_labelled": len(rows)})
    return model, report


def self_train_openset(
    clf: Any,
    X: np.ndarray,
    y: np.ndarray,
    X_pool: Any,
    config: SelfTraining | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Self-train the head of a fitted OpenSetClassifier ``clf`` (fitted on X, y) on
    ``X_pool``: each round the head is refitted (same kind and parameters) on the labelled
    in-scope rows + the guesses; rows the detector rejects are never guessed at. The
    detector and its threshold stay as they were set on labelled rows. The guesses join
    the kept rows (never as held-out calibration rows)."""
    import copy

    config = config or SelfTraining()
    X_pool = _check(X_pool, clf.n_features_in_)
    y = np.asarray([str(v) for v in y], dtype=object)
    in_scope = y != str(clf.oos_label)
    X_in, y_in = np.asarray(X, dtype=np.float32)[in_scope], y[in_scope]
    allowed = ~clf.predict_details(X_pool, top_k=1).out_of_scope
    report: dict[str, Any] = {
        "pool": len(X_pool),
        "rejected_in_pool": int((~allowed).sum()),
        "labelled_in_scope": len(y_in),
        "rounds": [],
    }
    model = copy.deepcopy(clf)
    classes = np.asarray(clf.classes_, dtype=object)
    rows = np.array([], dtype=np.int64)
    idx = np.array([], dtype=np.int64)
    for r in range(1, config.rounds + 1):
        rows, idx = pseudo_labels(
            model.predict_proba(X_pool),
            config.quota(r, len(X_pool), len(classes)),
            allowed=allowed,
            min_prob=config.min_prob,
        )
        model.head_ = clone(clf.head_).fit(
            np.vstack([X_in, X_pool[rows]]), np.r_[y_in, classes[idx].astype(str)].astype(object)
        )
        report["rounds"].append({"round": r, "pseudo_labelled": len(rows)})
    if hasattr(model, "train_X_"):
        model.train_X_ = np.vstack([model.train_X_, X_pool[rows]])
        model.train_class_ = np.r_[model.train_class_, idx].astype(np.int64)
        model.train_held_ = np.r_[model.train_held_, np.zeros(len(rows), dtype=bool)]
    return model, report


def self_train_multilabel(
    clf: Any, X_pool: Any, config: SelfTraining | None = None
) -> tuple[Any, dict[str, Any]]:
    """Self-train a fitted MultiLabelClassifier ``clf`` on ``X_pool``: each round the
    current model guesses the label sets of the pool, the rows it is surest about (every
    label's score farthest from its threshold) join the labelled rows with their guessed
    sets, and ``clf`` is refitted on both (:meth:`MultiLabelClassifier.with_guesses`: same
    head, thresholds calibrated on labelled rows only). Rows guessed to carry no label
    never join. Round r takes up to r/rounds × share of the pool."""
    config = config or SelfTraining()
    X_pool = _check(X_pool, clf.n_features_in_)
    scores = clf.decision_function(X_pool)  # one scoring pass per round, this the first
    allowed = clf._decide(scores).any(1)
    report: dict[str, Any] = {
        "pool": len(X_pool),
        "rejected_in_pool": int((~allowed).sum()),
        "labelled_rows": len(clf.kept_rows()[0]),
        "rounds": [],
    }
    model = clf
    usable = np.isfinite(clf.thresholds_)
    for r in range(1, config.rounds + 1):
        if r > 1:
            scores = model.decision_function(X_pool)
        guesses = model._decide(scores)
        gap = np.abs(scores - np.where(usable, model.thresholds_, 0.0))[:, usable]
        sureness = gap.min(axis=1) if gap.shape[1] else np.zeros(len(X_pool))
        confident = model._proba(scores).max(1) >= config.min_prob
        ok = np.flatnonzero(allowed & guesses.any(1) & confident)
        quota = config.quota(r, len(X_pool), 1)
        rows = ok[np.argsort(-sureness[ok], kind="stable")[:quota]]
        model = clf.with_guesses(X_pool[rows], guesses[rows])
        report["rounds"].append({"round": r, "pseudo_labelled": len(rows)})
    return model, report
