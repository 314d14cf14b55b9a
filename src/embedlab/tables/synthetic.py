"""Records with known structure, for tests and benchmarks: Zipf-distributed ids, per-value
effects and planted pairwise effects, and the Bayes-optimal log-loss of the target, so that
every table kind is measured against the physical limit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["SyntheticRecords", "synthetic_records"]


@dataclass(frozen=True)
class SyntheticRecords:
    """``columns``: name → int64 ids (n,); ``y``: 0/1 target; ``p``: the true probability
    of y = 1 per row; ``bayes_log_loss``: the log-loss of predicting ``p`` itself (the
    least any model can expect on these rows)."""

    columns: dict[str, np.ndarray]
    y: np.ndarray
    p: np.ndarray

    @property
    def bayes_log_loss(self) -> float:
        p = np.clip(self.p, 1e-12, 1 - 1e-12)
        return float(-(self.y * np.log(p) + (1 - self.y) * np.log(1 - p)).mean())

    @property
    def expected_bayes_log_loss(self) -> float:
        """The entropy of the target given the ids (the Bayes log-loss in expectation)."""
        p = np.clip(self.p, 1e-12, 1 - 1e-12)
        return float(-(p * np.log(p) + (1 - p) * np.log(1 - p)).mean())

    def split(self, n_first: int) -> tuple[SyntheticRecords, SyntheticRecords]:
        a = SyntheticRecords({k: v[:n_first] for k, v in self.columns.items()},
                             self.y[:n_first], self.p[:n_first])  # fmt: skip
        b = SyntheticRecords({k: v[n_first:] for k, v in self.columns.items()},
                             self.y[n_first:], self.p[n_first:])  # fmt: skip
        return a, b


def synthetic_records(
    n: int,
    cardinalities: Sequence[int] = (1_000, 10_000, 100_000, 1_000_000),
    *,
    exponent: float = 1.1,
    pairs: Sequence[tuple[int, int]] | None = None,
    main_scale: float = 1.0,
    pair_scale: float = 1.0,
    rank: int = 4,
    seed: int = 0,
) -> SyntheticRecords:
    """``n`` records with one id column per cardinality (``c0``, ``c1``, …), each id drawn
    from a Zipf law with ``exponent`` over a shuffled id space, and a binary target with

        logit = b + Σ_c a_c[id_c] + Σ_(c,c') ⟨u_c[id_c], v_c'[id_c']⟩ / √rank

    (per-value effects of sd ``main_scale``, planted rank-``rank`` pairwise effects of sd
    ``pair_scale``; ``pairs`` default: every neighbouring pair of columns). Seeded."""
    rng = np.random.default_rng(seed)
    k = len(cardinalities)
    if pairs is None:
        pairs = [(i, i + 1) for i in range(k - 1)]
    ids = []
    for card in cardinalities:
        weights = 1.0 / np.arange(1, card + 1) ** exponent
        cdf = np.cumsum(weights / weights.sum())
        rank_drawn = np.minimum(np.searchsorted(cdf, rng.random(n)), card - 1)
        ids.append(rng.permutation(card)[rank_drawn].astype(np.int64))
    logit = np.full(n, -0.5)
    for c, card in enumerate(cardinalities):
        logit += rng.normal(0.0, main_scale, card)[ids[c]]
    for a, b in pairs:
        u = rng.normal(0.0, 1.0, (cardinalities[a], rank))
        v = rng.normal(0.0, 1.0, (cardinalities[b], rank))
        inter = np.einsum("ij,ij->i", u[ids[a]], v[ids[b]]) / np.sqrt(rank)
        logit += pair_scale * inter
    p = 1.0 / (1.0 + np.exp(-logit))
    y = (rng.random(n) < p).astype(np.int64)
    return SyntheticRecords({f"c{i}": ids[i] for i in range(k)}, y, p)
