"""Split-conformal calibration: thresholds, p-values, Mondrian groups and FDR control.

Every guarantee here is finite-sample: with n calibration scores exchangeable with a new
in-scope score (made by the same, deployed model on rows it never saw), the threshold
:func:`conformal_threshold` rejects an in-scope row with probability at most ``alpha``
(exactly ⌊(n+1)·alpha⌋ / (n+1) in expectation over the calibration draw, for continuous
scores), and the p-value :func:`p_values` is super-uniform: P(p ≤ t) ≤ t.

Scores are novelty scores: **higher = more unusual**. A row is rejected (out of scope) at
level ``alpha`` when its score is above the threshold, which is the same as its p-value
being at most ``alpha``.
"""

from __future__ import annotations

import math

import numpy as np

from embedlab.core.errors import ValidationError

__all__ = [
    "achievable_alpha",
    "aps_scores",
    "aps_sets",
    "benjamini_hochberg",
    "check_alpha",
    "check_scores",
    "conformal_rank",
    "conformal_threshold",
    "group_thresholds",
    "min_calibration_rows",
    "p_values",
    "rank_counts",
    "row_uniforms",
    "shortfall_message",
]


def check_alpha(alpha: float, name: str = "alpha") -> float:
    """``alpha`` as a float in (0, 1); a one-line ValidationError otherwise."""
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise ValidationError(f"{name} must be a number in (0, 1), got {alpha!r}") from None
    if not 0.0 < a < 1.0:  # NaN fails this too
        raise ValidationError(f"{name} must be in (0, 1), got {alpha!r}")
    return a


def check_scores(scores: np.ndarray, name: str = "calibration scores") -> np.ndarray:
    """Scores as a 1-D float64 array without NaN (±inf allowed); a ValidationError otherwise."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if np.isnan(s).any():
        raise ValidationError(
            f"{int(np.isnan(s).sum())} of {s.size} {name} are NaN; a novelty score must be a "
            "number (check the vectors for NaN rows)"
        )
    return s


def conformal_rank(n: int, alpha: float) -> int:
    """⌈(n+1)(1−alpha)⌉: the rank (1-based) of the calibration score that is the threshold
    at level ``alpha``; above ``n`` no finite threshold is valid."""
    return math.ceil((n + 1) * (1.0 - alpha) - 1e-9)  # 1e-9: round-off of an exact integer


def min_calibration_rows(alpha: float) -> int:
    """The fewest calibration scores for which a finite threshold at ``alpha`` exists
    (n ≥ 1/alpha − 1)."""
    return max(1, math.ceil(1.0 / alpha - 1.0 - 1e-9))


def achievable_alpha(n: int) -> float:
    """The smallest level a threshold from ``n`` calibration scores can promise: 1/(n+1)."""
    return 1.0 / (n + 1)


def shortfall_message(n: int, alpha: float, what: str = "calibration") -> str | None:
    """A one-line explanation when ``n`` scores are too few for level ``alpha`` (nothing
    is then rejected), else None."""
    if conformal_rank(n, alpha) <= n:
        return None
    return (
        f"{n} {what} rows are too few for a {alpha:.3g} out-of-scope rate: a finite-sample "
        f"guarantee at that rate needs at least {min_calibration_rows(alpha)}; with {n} the "
        f"smallest achievable rate is {achievable_alpha(n):.3g} (1/(n+1)), so nothing is "
        "rejected at this rate. Add in-scope rows, or raise the target"
    )


def conformal_threshold(scores: np.ndarray, alpha: float) -> float:
    """The ⌈(n+1)(1−alpha)⌉-th smallest of ``scores`` (+inf when that exceeds n: no
    finite threshold keeps the promise). Rejecting scores above it flags an exchangeable
    in-scope row with probability at most ``alpha``."""
    alpha = check_alpha(alpha, "target rate (alpha)")
    s = check_scores(scores)
    if s.size == 0:
        raise ValidationError("calibration needs at least one in-scope score")
    k = conformal_rank(s.size, alpha)
    if k > s.size:
        return float("inf")
    return float(np.partition(s, k - 1)[k - 1])


def group_thresholds(
    scores: np.ndarray, groups: np.ndarray, n_groups: int, alpha: float
) -> np.ndarray:
    """Mondrian thresholds: :func:`conformal_threshold` of each group's scores (float64,
    one per group 0..n_groups−1; +inf for a group with too few scores or none)."""
    alpha = check_alpha(alpha, "target rate (alpha)")
    s = check_scores(scores)
    g = np.asarray(groups, dtype=np.int64).reshape(-1)
    out = np.full(n_groups, np.inf)
    order = np.lexsort((s, g))
    s, g = s[order], g[order]
    starts = np.searchsorted(g, np.arange(n_groups), side="left")
    ends = np.searchsorted(g, np.arange(n_groups), side="right")
    n = ends - starts
    k = np.ceil((n + 1) * (1.0 - alpha) - 1e-9).astype(np.int64)
    ok = (n > 0) & (k <= n)
    out[ok] = s[starts[ok] + k[ok] - 1]
    return out


def p_values(
    calibration: np.ndarray,
    scores: np.ndarray,
    *,
    calibration_groups: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    smooth: np.ndarray | None = None,
) -> np.ndarray:
    """Conformal p-values of ``scores`` against the ``calibration`` scores:
    (1 + #{calibration ≥ score}) / (n + 1) (float64). With ``calibration_groups`` and
    ``groups`` (Mondrian): each score against its own group's calibration scores (a group
    with none gives 1.0). ``smooth`` (uniform draws in [0, 1), one per score): the smoothed
    p-value (#{>} + u·(#{=} + 1)) / (n + 1), exactly uniform under exchangeability."""
    cal = check_scores(calibration)
    s = check_scores(scores, "scores")
    if calibration_groups is None:
        return _p(np.sort(cal), s, smooth)
    cg = np.asarray(calibration_groups, dtype=np.int64).reshape(-1)
    g = np.asarray(groups, dtype=np.int64).reshape(-1)
    if cg.shape != cal.shape or g.shape != s.shape:
        raise ValidationError("Mondrian p-values need one group per score")
    out = np.ones(s.size)
    for group in np.unique(g):  # a loop over groups; each group's rows vectorised
        rows = g == group
        out[rows] = _p(np.sort(cal[cg == group]), s[rows], None if smooth is None else smooth[rows])
    return out


def rank_counts(cal_sorted: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per score, how many of the sorted calibration scores are above it and how many
    equal it (what every conformal p-value is made of)."""
    right = np.searchsorted(cal_sorted, s, side="right")
    return cal_sorted.size - right, right - np.searchsorted(cal_sorted, s, side="left")


def _p(cal_sorted: np.ndarray, s: np.ndarray, smooth: np.ndarray | None) -> np.ndarray:
    above, equal = rank_counts(cal_sorted, s)
    if smooth is None:
        return (above + equal + 1.0) / (cal_sorted.size + 1.0)
    return (above + np.asarray(smooth) * (equal + 1.0)) / (cal_sorted.size + 1.0)


def benjamini_hochberg(p: np.ndarray, q: float) -> np.ndarray:
    """Benjamini–Hochberg at level ``q``: a boolean mask of the rejected p-values (the k
    smallest, k the largest rank with p_(k) ≤ q·k/m). With conformal p-values of in-scope
    rows (which are positively dependent through the shared calibration set) the expected
    share of in-scope rows among those rejected is at most q (Bates et al., 2023)."""
    q = check_alpha(q, "fdr")
    p = check_scores(p, "p-values")
    m = p.size
    if m == 0:
        return np.zeros(0, dtype=bool)
    order = np.argsort(p, kind="stable")
    passed = np.flatnonzero(p[order] <= q * np.arange(1, m + 1) / m)
    out = np.zeros(m, dtype=bool)
    if passed.size:
        out[order[: passed[-1] + 1]] = True
    return out


def row_uniforms(X: np.ndarray) -> np.ndarray:
    """One number in [0, 1) per row of ``X``, a fixed hash of the row's float32 bytes: the
    tie-breaking draw of randomised prediction sets, the same for the same row whichever
    batch it comes in (so predictions are reproducible), uncorrelated with the row's
    content."""
    A = np.ascontiguousarray(X, dtype=np.float32).view(np.uint32).astype(np.uint64)
    mult = np.random.default_rng(0x5EED).integers(1, 2**63, size=A.shape[1], dtype=np.uint64)
    h = (A * (mult | np.uint64(1))).sum(axis=1, dtype=np.uint64)  # wraps mod 2**64
    h ^= h >> np.uint64(33)  # splitmix64's finaliser
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    h ^= h >> np.uint64(33)
    return (h >> np.uint64(11)).astype(np.float64) / float(2**53)


def _ranked(proba: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.argsort(-proba, axis=1, kind="stable")
    ranked = np.take_along_axis(proba, order, axis=1).astype(np.float64)
    return order, ranked, np.cumsum(ranked, axis=1)


def aps_scores(proba: np.ndarray, y: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Randomised APS conformity scores (Romano et al., 2020) of rows whose true class
    index is ``y``: the probability mass of the classes ranked above the true one plus
    ``u`` times the true class's own (float64)."""
    order, ranked, cum = _ranked(proba)
    rank = np.argmax(order == np.asarray(y, dtype=np.int64)[:, None], axis=1)
    rows = np.arange(len(proba))
    return cum[rows, rank] - (1.0 - np.asarray(u)) * ranked[rows, rank]


def aps_sets(proba: np.ndarray, u: np.ndarray, qhat: float) -> tuple[np.ndarray, np.ndarray]:
    """Prediction sets of randomised APS at the calibrated quantile ``qhat``: per row the
    class indices ranked best first (n, C) and how many of them are in the set. The set
    holds every class whose APS score (as in :func:`aps_scores`) is at most ``qhat``; it
    covers the true class exactly when the true class's score is, which happens with
    probability ≥ 1 − alpha (and, the scores being continuous, < 1 − alpha + 1/(n+1)). A
    set may be empty: when the head's top class alone is right more often than 1 − alpha,
    an exact coverage needs some rows to carry no label (ask for a higher coverage)."""
    order, ranked, cum = _ranked(proba)
    scores = cum - (1.0 - np.asarray(u))[:, None] * ranked  # increasing along the ranking
    return order, (scores <= qhat).sum(axis=1)
