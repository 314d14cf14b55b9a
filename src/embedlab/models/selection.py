"""Choosing a head and a detector by cross-validation on the training data alone.

Each fold hides a random ~20 % of the classes: a head is scored by its accuracy on held-out
rows of the known classes, a detector by its AUROC at telling those rows from the rows of
the hidden classes (plus any real out-of-scope rows). No test data is involved.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import train_test_split

from embedlab.core.metrics import auroc
from embedlab.core.progress import progress_bar
from embedlab.detect.registry import make_detector
from embedlab.heads.registry import make_head

__all__ = [
    "AUTO_DETECTORS",
    "AUTO_HEADS",
    "Selection",
    "default_candidates",
    "select_head_and_detector",
]

log = logging.getLogger("embedlab")


#: What ``auto`` tries, cheapest first (names from the head and detector registries).
AUTO_HEADS = ("prototype", "gaussian", "linear")
AUTO_DETECTORS = ("max-cosine", "relative-mahalanobis", "mahalanobis", "knn", "energy")


def default_candidates() -> tuple[dict[str, Any], dict[str, Any]]:
    """Fresh estimators for the heads and detectors ``auto`` considers."""

    heads = {name: make_head(name) for name in AUTO_HEADS}
    # Selection scores detectors by AUROC only: no threshold, so no calibration split.
    detectors = {
        name: make_detector(name).set_params(calibration_split=0.0) for name in AUTO_DETECTORS
    }
    return heads, detectors


@dataclass
class Selection:
    """What cross-validation chose, with every candidate's mean score."""

    head: str
    detector: str
    head_scores: dict[str, float] = field(default_factory=dict)
    detector_scores: dict[str, float] = field(default_factory=dict)
    folds: int = 0
    seconds: float = 0.0
    skipped: list[str] = field(default_factory=list)
    note: str = ""


def _folds(y: np.ndarray, n_folds: int, seed: int):
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    # hide ~20 % of the classes, keeping at least 2 known (none hidden with 2 classes)
    n_hide = max(1, min(len(classes) - 2, round(0.2 * len(classes)))) if len(classes) > 2 else 0
    for _ in range(n_folds):
        hidden = rng.choice(classes, n_hide, replace=False)
        novel = np.isin(y, hidden)
        known = np.flatnonzero(~novel)
        _, inverse, counts = np.unique(y[known], return_inverse=True, return_counts=True)
        # a class with one example is always trained on (held out, it would leave its
        # class unknown to the head, or the head with a single class)
        single = counts[inverse] == 1
        rest = known[~single]
        yk = y[rest]
        strat = yk if len(rest) else None
        test_size = max(0.2, int((counts > 1).sum()) / max(1, len(rest)))
        seed = int(rng.integers(1 << 31))
        if len(rest) < 2:
            tr, va = rest, rest[:0]
        else:
            tr, va = train_test_split(
                rest, test_size=min(test_size, 0.5), stratify=strat, random_state=seed
            )
        yield np.sort(np.concatenate([tr, known[single]])), va, np.flatnonzero(novel)


def _accuracy(head: Any, X: np.ndarray, y: np.ndarray) -> float:
    return float((head.predict(X) == y).mean())


def _separation(detector: Any, X_in: np.ndarray, X_novel: np.ndarray) -> float:
    return auroc(detector.decision_function(X_in), detector.decision_function(X_novel))


def select_head_and_detector(
    X: np.ndarray,
    y: np.ndarray,
    X_oos: np.ndarray | None = None,
    *,
    heads: dict[str, Any] | None = None,
    detectors: dict[str, Any] | None = None,
    n_folds: int = 3,
    time_budget: float | None = None,
    random_state: int = 0,
    progress: bool | None = None,
) -> Selection:
    """Cross-validate candidate heads (accuracy) and detectors (AUROC); return the best of each.

    Every candidate is evaluated on every fold, so the choice depends on the data only.
    An explicit ``time_budget`` (seconds) caps it: candidates are tried cheapest first,
    and once the budget is spent the remaining ones are skipped (listed in
    ``Selection.skipped``) and no further fold starts; the first head and detector are
    always evaluated on the first fold. ``progress`` draws a bar (default: for more than
    5,000 rows).
    """
    default_heads, default_detectors = default_candidates()
    heads = default_heads if heads is None else heads
    detectors = default_detectors if detectors is None else detectors
    start = time.perf_counter()
    h_scores: dict[str, list[float]] = {k: [] for k in heads}
    d_scores: dict[str, list[float]] = {k: [] for k in detectors}
    skipped: set[str] = set()
    folds = 0

    def run(
        kind: str,
        candidates: dict[str, Any],
        scores: dict[str, list[float]],
        train: np.ndarray,
        score: Any,
        *score_args: Any,
    ) -> None:
        for name, est in candidates.items():
            over = time_budget is not None and time.perf_counter() - start > time_budget
            if over and not scores[name] and any(scores.values()):
                skipped.add(f"{kind}:{name}")
                continue
            scores[name].append(score(clone(est).fit(X[train], y[train]), *score_args))

    show = len(X) > 5000 if progress is None else progress
    with progress_bar(n_folds, "choosing head and detector (folds)", enabled=show) as advance:
        for tr, va, nov in _folds(np.asarray(y), n_folds, random_state):
            folds += 1
            Xn = X[nov] if X_oos is None or len(X_oos) == 0 else np.vstack([X[nov], X_oos])
            run("head", heads, h_scores, tr, _accuracy, X[va], y[va])
            if len(Xn):  # no hidden class and no out-of-scope row: nothing to separate
                run("detector", detectors, d_scores, tr, _separation, X[va], Xn)
            advance(1)
            if time_budget is not None and time.perf_counter() - start > time_budget:
                break
    h_mean = {k: float(np.mean(v)) for k, v in h_scores.items() if v}
    d_mean = {k: float(np.mean(v)) for k, v in d_scores.items() if v}
    note = ""
    if not d_mean:  # two classes and no out-of-scope rows: the cheapest detector
        note = "detector not scored: no hidden class or out-of-scope row to score it on"
    sel = Selection(
        head=max(h_mean, key=h_mean.get),
        detector=max(d_mean, key=d_mean.get) if d_mean else next(iter(detectors)),
        head_scores=h_mean,
        detector_scores=d_mean,
        folds=folds,
        seconds=round(time.perf_counter() - start, 2),
        skipped=sorted(skipped),
        note=note,
    )
    log.info("selected head %s (%s) and detector %s (%s)", sel.head, h_mean, sel.detector, d_mean)
    return sel
