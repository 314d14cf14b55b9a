"""TEEN: training-free calibration of few-shot class means toward similar known classes.

A class seen through a handful of examples has a noisy mean. TEEN (Wang et al., "Few-Shot
Class-Incremental Learning via Training-Free Prototype Calibration", NeurIPS 2023) moves it
part of the way toward a similarity-weighted average of the well-estimated class means:
``m' = α·m + (1 − α)·Σ_b softmax(τ·cos(m, m_b))·m_b``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import softmax

from embedlab.core.errors import ValidationError
from embedlab.core.vectors import unit_rows

__all__ = ["Teen", "teen_shift"]


@dataclass(frozen=True)
class Teen:
    """How added classes are calibrated.

    alpha : weight kept on a class's own mean (1 = no shift).
    tau : sharpness of the softmax over cosine similarities to the known means.
    max_shots : only classes with at most this many examples are shifted (None: all).

    The defaults were chosen on half of CLINC150's domains (5-shot intents added to a base
    of a third of them; `benchmarks/class_incremental.py teen-grid --domains tune`,
    docs/benchmarks.md) by accuracy on all intents, base and added.
    """

    alpha: float = 0.6
    tau: float = 8.0
    max_shots: int | None = 10

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ValidationError(f"TEEN alpha must be in [0, 1], got {self.alpha}")
        if self.tau <= 0:
            raise ValidationError(f"TEEN tau must be positive, got {self.tau}")

    def applies(self, count: int) -> bool:
        """Whether a class with ``count`` examples is shifted."""
        return self.max_shots is None or count <= self.max_shots


def teen_shift(means: np.ndarray, base: np.ndarray, teen: Teen) -> np.ndarray:
    """``means`` (m, d) moved toward the similarity-weighted average of ``base`` (b, d)."""
    means = np.asarray(means, dtype=np.float32)
    if len(means) == 0 or len(base) == 0:
        return means
    base = np.asarray(base, dtype=np.float32)
    W = softmax(teen.tau * (unit_rows(means) @ unit_rows(base).T), axis=1)
    return (teen.alpha * means + (1.0 - teen.alpha) * (W @ base)).astype(np.float32)
