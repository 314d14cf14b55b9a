"""How a multi-label model turns per-label scores into decisions: one threshold per label,
set on out-of-fold scores by one of three strategies, the strategy itself chosen on the
user's rows by nested cross-validation.

- ``per-label``: each label's F1-maximising threshold (or, with a target precision, the
  lowest that meets it). Best with many rows per label; at a few hundred rows the rare
  labels' thresholds overfit their handful of positives.
- ``global``: one threshold for every label, the one that maximises micro-F1 over all
  labels together (rare labels borrow the common ones' evidence).
- ``shrunk``: each label's threshold pulled toward the global one in proportion to how
  little evidence it has: t = (n·t_label + κ·t_global) / (n + κ), n the label's positive
  rows, κ = ``SHRINK_ROWS``.
- ``auto``: ``shrunk`` or ``per-label``: the rows are split in two (seeded); each sets
  thresholds on one half's out-of-fold scores and is scored on the other's (mean of micro-
  and macro-F1, both directions); the better is applied to all rows, ``shrunk`` on a tie.
  (``global`` is not a candidate: choosing on half the rows favours pooling, and on data
  held out from every choice a global threshold lost 4–14 pt of macro-F1 for at most 2–5
  pt of micro-F1 — benchmarks/multilabel_small.py.)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from embedlab.core.errors import ValidationError
from embedlab.models.label_sets import per_label_thresholds

__all__ = [
    "AUTO_STRATEGIES",
    "SHRINK_ROWS",
    "THRESHOLD_STRATEGIES",
    "apply_strategy",
    "choose_strategy",
    "global_threshold",
]

#: The strategies a model can use.
THRESHOLD_STRATEGIES = ("global", "shrunk", "per-label")
#: What ``auto`` chooses between (a tie goes to the first).
AUTO_STRATEGIES = ("shrunk", "per-label")
#: κ of the ``shrunk`` strategy: a label with this many positive rows gets half its own
#: threshold and half the global one (3 against 10 and 30 on the tune halves of
#: benchmarks/multilabel_small.py: better micro- and macro-F1 on composed CLINC150
#: requests, about even on GoEmotions subsamples).
SHRINK_ROWS = 3.0


def global_threshold(scores: np.ndarray, Y: np.ndarray) -> float:
    """The one threshold (predict where score ≥ it) that maximises micro-F1 over every
    label's scores together; midway between two distinct scores (+inf: no positive)."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(Y, dtype=bool).ravel()
    pos = int(y.sum())
    if pos == 0:
        return float("inf")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    tp = np.cumsum(y)
    cut = np.r_[s[1:] < s[:-1], True]
    f1 = np.where(cut, 2.0 * tp / (np.arange(1, s.size + 1) + pos), -1.0)
    best = int(np.argmax(f1))
    return float((s[best] + s[best + 1]) / 2.0 if best + 1 < s.size else s[best] - 1e-6)


def apply_strategy(
    strategy: str,
    scores: np.ndarray,
    Y: np.ndarray,
    *,
    target_precision: float | None = None,
    global_t: float | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Thresholds (L,), which labels reached a threshold, and the global threshold used,
    by ``strategy`` on out-of-fold ``scores`` (n, L) against ``Y``. ``global_t``: use this
    global threshold instead of computing one (a model adding labels keeps its own). A
    target precision is a per-label rule: it makes every strategy ``per-label``."""
    if strategy not in THRESHOLD_STRATEGIES:
        raise ValidationError(
            f"threshold strategy must be one of {THRESHOLD_STRATEGIES} or 'auto', got {strategy!r}"
        )
    own, reached = per_label_thresholds(scores, Y, target_precision=target_precision)
    g = global_threshold(scores, Y) if global_t is None else float(global_t)
    if strategy == "per-label" or target_precision is not None:
        return own, reached, g
    has = np.asarray(Y, dtype=bool).any(axis=0)
    if strategy == "global":
        return np.where(has, g, np.inf), has, g
    n = np.asarray(Y, dtype=bool).sum(axis=0).astype(np.float64)
    shrunk = np.where(reached, (n * np.where(reached, own, 0.0) + SHRINK_ROWS * g), 0.0)
    shrunk = np.where(reached, shrunk / (n + SHRINK_ROWS), np.where(has, g, np.inf))
    return shrunk, has, g


def choose_strategy(
    scores: np.ndarray, Y: np.ndarray, decide: Any, seed: int
) -> tuple[str, dict[str, float]]:
    """The strategy with the best held-out mean of micro- and macro-F1 (nested: thresholds
    set on one half of the rows' out-of-fold scores, scored on the other, both ways), and
    every strategy's score. ``decide(scores, thresholds)`` → the (n, L) decisions."""
    from embedlab.models.label_sets import evaluate_multilabel

    Y = np.asarray(Y, dtype=bool)
    half = np.random.default_rng(seed).permutation(len(Y)) % 2 == 0
    names = np.arange(Y.shape[1]).astype(str)
    result = {}
    for strategy in AUTO_STRATEGIES:  # a loop over the two candidates
        values = []
        for fit_rows in (half, ~half):  # both directions of the split
            t, _, _ = apply_strategy(strategy, scores[fit_rows], Y[fit_rows])
            m = evaluate_multilabel(Y[~fit_rows], decide(scores[~fit_rows], t), names)
            values.append((m["micro_f1"] + m["macro_f1"]) / 2.0)
        result[strategy] = round(float(np.mean(values)), 4)
    best = max(AUTO_STRATEGIES, key=lambda s: result[s])  # first among equals
    return best, result
