"""Seeded per-label row selection: the held-out splits the pipeline and the planner use."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["calibration_holdout", "holdout_per_label", "take_per_label"]


def take_per_label(
    labels: np.ndarray, how_many: Callable[[np.ndarray], np.ndarray], seed: int = 0
) -> np.ndarray:
    """Boolean mask choosing, for every label, ``how_many(counts)[i]`` of its rows at random
    (seeded; the same labels and seed always give the same rows)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    rows = order[np.argsort(labels[order], kind="stable")]
    _, starts, counts = np.unique(labels[rows], return_index=True, return_counts=True)
    take = np.asarray(how_many(counts), dtype=int)
    mask = np.zeros(len(labels), dtype=bool)
    for start, k in zip(starts, take, strict=True):  # a loop over labels, not rows
        mask[rows[start : start + k]] = True
    return mask


def holdout_per_label(labels: np.ndarray, test_size: float, seed: int = 0) -> np.ndarray:
    """Boolean test mask: ``test_size`` of every label's rows (at least one, never all)."""
    return take_per_label(
        labels, lambda counts: np.clip(np.rint(test_size * counts), 1, counts - 1), seed
    )


def calibration_holdout(
    labels: np.ndarray, is_oos: np.ndarray, fraction: float, seed: int = 0
) -> np.ndarray:
    """Mask of in-scope rows to keep out of adaptation: ``fraction`` of each class (rounded,
    at most half the class), chosen with a fixed seed; a class of one row keeps it."""
    mask = np.zeros(len(labels), dtype=bool)
    mask[~is_oos] = take_per_label(
        labels[~is_oos],
        lambda counts: np.minimum(np.floor(fraction * counts + 0.5), counts // 2),
        seed,
    )
    return mask
