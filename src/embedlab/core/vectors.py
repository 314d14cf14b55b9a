"""Row-wise helpers every layer shares: unit rows, class means, exact top-k cosine search,
principal directions. Each lives here once; numpy/scipy only, float32 out."""

from __future__ import annotations

import numpy as np
from scipy import sparse

__all__ = ["class_means", "cosine_to", "principal_directions", "top_k_cosine", "unit_rows"]


def unit_rows(X: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), float32."""
    X = np.asarray(X, dtype=np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", X, X))[:, None]  # no (n, d) temporary
    return X / np.maximum(norms, 1e-12)


def cosine_to(X: np.ndarray, R: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of X to each unit row of R, (n, m), float32: the
    products divided by X's row norms afterwards (n × m divisions, not n × d)."""
    X = np.asarray(X, dtype=np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", X, X))
    return (X @ R.T) / np.maximum(norms, 1e-12)[:, None]


def class_means(X: np.ndarray, y_idx: np.ndarray, n_classes: int) -> np.ndarray:
    """Mean row of each class, (n_classes, d), from integer labels 0..n_classes-1."""
    onehot = sparse.csr_matrix(
        (np.ones(len(y_idx), dtype=np.float32), (y_idx, np.arange(len(y_idx)))),
        shape=(n_classes, len(y_idx)),
    )
    sums = np.asarray(onehot @ np.asarray(X, dtype=np.float32))
    counts = np.bincount(y_idx, minlength=n_classes)[:, None]
    return (sums / np.maximum(counts, 1)).astype(np.float32)


def top_k_cosine(
    Q: np.ndarray, R: np.ndarray, k: int, *, chunk: int = 2048
) -> tuple[np.ndarray, np.ndarray]:
    """Indices and cosine similarities of the ``k`` most similar rows of R for each row of Q.

    Both inputs must already be unit rows. Exact, chunked over Q (memory bounded by the
    chunk); sorted by similarity.
    """
    k = min(k, R.shape[0])
    idx = np.empty((Q.shape[0], k), dtype=np.int64)
    sim = np.empty((Q.shape[0], k), dtype=np.float32)
    for s in range(0, Q.shape[0], chunk):
        S = Q[s : s + chunk] @ R.T
        part = (
            np.argpartition(-S, k - 1, axis=1)[:, :k]
            if k < R.shape[0]
            else np.tile(np.arange(R.shape[0]), (S.shape[0], 1))
        )
        ps = np.take_along_axis(S, part, axis=1)
        order = np.argsort(-ps, axis=1)
        idx[s : s + chunk] = np.take_along_axis(part, order, axis=1)
        sim[s : s + chunk] = np.take_along_axis(ps, order, axis=1)
    return idx, sim


def principal_directions(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(variances, directions) of the centred rows, largest first; directions are the
    columns, C-contiguous float64 (eigendecomposition of the d×d scatter, not an n×d SVD)."""
    Z = np.asarray(X, dtype=np.float64)
    Z = Z - Z.mean(axis=0)
    evals, evecs = np.linalg.eigh(Z.T @ Z / max(len(Z) - 1, 1))
    order = np.argsort(evals)[::-1]
    return np.maximum(evals[order], 0.0), np.ascontiguousarray(evecs[:, order])
