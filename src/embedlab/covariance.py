"""Shrinkage covariance and Mahalanobis distances to a set of means, without n×k×d tensors."""

from __future__ import annotations

from typing import Literal

import numpy as np
from sklearn.covariance import oas

from embedlab.errors import ValidationError
from embedlab.vectors import unit_rows

__all__ = ["Shrinkage", "mahalanobis_to_means", "shrunk_covariance", "unit_rows"]

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
    if isinstance(shrinkage, str):
        if shrinkage == "ledoit-wolf":
            cov, alpha = _ledoit_wolf(R)
        elif shrinkage == "oas":
            cov, alpha = oas(R, assume_centered=True)
        else:
            raise ValidationError(
                f"unknown shrinkage {shrinkage!r}; use 'ledoit-wolf', 'oas' or a number in [0, 1]"
            )
        return _ridge(cov), float(alpha)
    alpha = float(shrinkage)
    if not 0.0 <= alpha <= 1.0:
        raise ValidationError(f"shrinkage must be in [0, 1], got {alpha}")
    emp = R.T @ R / R.shape[0]
    mu = np.trace(emp) / emp.shape[0]
    return _ridge((1 - alpha) * emp + alpha * mu * np.eye(emp.shape[0])), alpha


def _ledoit_wolf(R: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit-Wolf shrinkage of centred rows in closed form (one d×d product, O(n·d) more).

    Same estimate as ``sklearn.covariance.ledoit_wolf(R, assume_centered=True)``, using
    Σ_i ||x_i x_iᵀ − S||²_F = Σ_i ||x_i||⁴ − n·||S||²_F instead of a second d×d product.
    """
    n, d = R.shape
    S = R.T @ R / n
    mu = np.trace(S) / d
    s_norm2 = float(np.sum(S * S))
    delta = (s_norm2 - 2 * mu * np.trace(S) + d * mu**2) / d  # ||S - mu I||^2 / d
    beta = (float(np.sum(np.einsum("nd,nd->n", R, R) ** 2)) / n - s_norm2) / (d * n)
    alpha = 0.0 if delta == 0 else min(beta, delta) / delta
    cov = (1 - alpha) * S
    cov.flat[:: d + 1] += alpha * mu
    return cov, float(alpha)


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
