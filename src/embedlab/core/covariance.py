"""Shrinkage covariance and Mahalanobis distances to a set of means, without n×k×d tensors."""

from __future__ import annotations

from typing import Literal

import numpy as np

from embedlab.core.errors import ValidationError
from embedlab.core.vectors import unit_rows

__all__ = [
    "ScatterStats",
    "Shrinkage",
    "mahalanobis_to_means",
    "shrunk_covariance",
    "shrunk_covariance_from_stats",
    "unit_rows",
]

Shrinkage = Literal["ledoit-wolf", "oas"] | float


def shrunk_covariance(
    residuals: np.ndarray, shrinkage: Shrinkage = "ledoit-wolf"
) -> tuple[np.ndarray, float]:
    """Covariance of centred ``residuals`` shrunk toward a scaled identity; returns (cov, α).

    ``shrinkage`` is "ledoit-wolf", "oas" (both choose α from the data) or a fixed α in [0, 1].
    Computed in float64; the result is positive definite whenever α > 0.
    """
    R = np.asarray(residuals, dtype=np.float64)
    if R.shape[0] < 2:
        raise ValidationError("a covariance needs at least 2 samples")
    return shrunk_covariance_from_stats(ScatterStats.of(R), shrinkage)


class ScatterStats:
    """Sufficient statistics of centred rows for a shrunk covariance: the scatter Σ rrᵀ,
    the row count and Σ‖r‖⁴ (what Ledoit-Wolf needs). They add and subtract, so a pooled
    covariance can gain or lose a class's rows exactly."""

    __slots__ = ("fourth", "n", "scatter")

    def __init__(self, scatter: np.ndarray, n: int, fourth: float) -> None:
        self.scatter = np.asarray(scatter, dtype=np.float64)
        self.n = int(n)
        self.fourth = float(fourth)

    @classmethod
    def of(cls, residuals: np.ndarray) -> ScatterStats:
        """The statistics of a block of centred rows (float64)."""
        R = np.asarray(residuals, dtype=np.float64)
        sq = np.einsum("nd,nd->n", R, R)
        return cls(R.T @ R, R.shape[0], float(np.sum(sq * sq)))

    def __add__(self, other: ScatterStats) -> ScatterStats:
        return ScatterStats(
            self.scatter + other.scatter, self.n + other.n, self.fourth + other.fourth
        )

    def __sub__(self, other: ScatterStats) -> ScatterStats:
        return ScatterStats(
            self.scatter - other.scatter, self.n - other.n, self.fourth - other.fourth
        )


def shrunk_covariance_from_stats(
    stats: ScatterStats, shrinkage: Shrinkage = "ledoit-wolf"
) -> tuple[np.ndarray, float]:
    """:func:`shrunk_covariance` from :class:`ScatterStats` instead of the rows themselves."""
    if stats.n < 2:
        raise ValidationError("a covariance needs at least 2 samples")
    S = stats.scatter / stats.n
    d = S.shape[0]
    mu = np.trace(S) / d
    if isinstance(shrinkage, str):
        if shrinkage == "ledoit-wolf":
            alpha = _ledoit_wolf_alpha(S, stats.n, stats.fourth)
        elif shrinkage == "oas":
            alpha = _oas_alpha(S, stats.n)
        else:
            raise ValidationError(
                f"unknown shrinkage {shrinkage!r}; use 'ledoit-wolf', 'oas' or a number in [0, 1]"
            )
    else:
        alpha = float(shrinkage)
        if not 0.0 <= alpha <= 1.0:
            raise ValidationError(f"shrinkage must be in [0, 1], got {alpha}")
    cov = (1 - alpha) * S
    cov.flat[:: d + 1] += alpha * mu
    return _ridge(cov), float(alpha)


def _ledoit_wolf_alpha(S: np.ndarray, n: int, fourth: float) -> float:
    """Ledoit-Wolf's α in closed form (as ``sklearn.covariance.ledoit_wolf`` with
    assume_centered), using Σ_i ||x_i x_iᵀ − S||²_F = Σ_i ||x_i||⁴ − n·||S||²_F."""
    d = S.shape[0]
    mu = np.trace(S) / d
    s_norm2 = float(np.sum(S * S))
    delta = (s_norm2 - 2 * mu * np.trace(S) + d * mu**2) / d  # ||S - mu I||^2 / d
    beta = (fourth / n - s_norm2) / (d * n)
    return 0.0 if delta == 0 else float(min(beta, delta) / delta)


def _oas_alpha(S: np.ndarray, n: int) -> float:
    """Oracle Approximating Shrinkage's α (as ``sklearn.covariance.oas``, assume_centered)."""
    d = S.shape[0]
    mu = np.trace(S) / d
    alpha = float(np.mean(S * S))
    num = alpha + mu**2
    den = (n + 1.0) * (alpha - mu**2 / d)
    return 1.0 if den == 0 else float(min(num / den, 1.0))


def _ridge(cov: np.ndarray) -> np.ndarray:
    """Add a tiny multiple of the identity so a degenerate covariance stays invertible."""
    scale = np.trace(cov) / cov.shape[0]
    return cov + (1e-6 * scale + 1e-12) * np.eye(cov.shape[0])


def mahalanobis_to_means(
    X: np.ndarray, means: np.ndarray, precision: np.ndarray, *, chunk: int = 4096
) -> np.ndarray:
    """Squared Mahalanobis distance of every row of X to every mean: an (n, k) array.

    Uses d(x, μ) = x'Px − 2x'Pμ + μ'Pμ, so memory is O(n·k + n·d), never O(n·k·d).
    """
    X = np.asarray(X, dtype=np.float32)
    P = np.asarray(precision, dtype=np.float32)
    M = np.asarray(means, dtype=np.float32)
    PM = M @ P  # (k, d); P is symmetric
    mpm = np.einsum("kd,kd->k", PM, M)
    out = np.empty((X.shape[0], M.shape[0]), dtype=np.float32)
    for s in range(0, X.shape[0], chunk):
        Xc = X[s : s + chunk]
        xpx = np.einsum("nd,nd->n", Xc @ P, Xc)
        out[s : s + chunk] = xpx[:, None] - 2.0 * (Xc @ PM.T) + mpm[None, :]
    np.maximum(out, 0.0, out=out)
    return out
