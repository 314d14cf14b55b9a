"""Maps from one encoder's space to another's, fitted on the same texts encoded by both.

Every map is affine on a feature of the input: ``y = f(x) @ W + b`` (then unit length when
the target encoder's vectors are), where ``f`` is the identity (Procrustes, ridge) or, for
relative representations, the cosines of ``x`` to anchor vectors of its own space.

- ``procrustes``: a scaled semi-orthogonal ``W`` (the SVD of the centred cross-covariance):
  angles between vectors are kept, so neighbourhoods move whole; needs few texts.
- ``ridge``: least squares with an L2 penalty chosen by 5-fold cross-validation (held-out
  cosine) over the singular values; bends the space where the two encoders disagree,
  needs more texts.
- ``relative``: cosines to up to 256 anchor texts (an encoder-independent description of a
  vector, Moschella et al. 2023) mapped by ridge to the target space.
- ``residual`` (same dimension only): the identity plus a ridge correction fitted on
  ``Y - X``, i.e. ridge shrunk toward "nothing moved" instead of toward zero: the right
  prior when the new encoder was trained to reproduce the old one (a distilled student),
  and a strong one with few texts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from embedlab.core.errors import ValidationError
from embedlab.core.vectors import unit_rows

__all__ = ["METHODS", "AffineMap", "fit_map", "random_rotation"]

METHODS = ("procrustes", "ridge", "relative", "residual")
MAX_ANCHORS = 256
_CHUNK = 65_536  # rows mapped per step: memory bounded by a chunk


@dataclass
class AffineMap:
    """``y = f(x) @ W + b``; ``anchors`` (k, d_in) make ``f`` the cosines to them, else
    ``f`` is the identity; ``normalise``: outputs are scaled to unit length."""

    method: str
    W: np.ndarray
    b: np.ndarray
    anchors: np.ndarray | None = None
    normalise: bool = True
    #: the ridge penalty (relative to the Gram matrix's largest eigenvalue), None for others
    penalty: float | None = None

    @property
    def dim_in(self) -> int:
        return int(self.anchors.shape[1] if self.anchors is not None else self.W.shape[0])

    @property
    def dim_out(self) -> int:
        return int(self.W.shape[1])

    def __call__(self, X: Any) -> np.ndarray:
        """Map rows of ``X`` (n, dim_in), a chunk at a time."""
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.dim_in:
            raise ValidationError(
                f"this map takes {self.dim_in}-dimensional vectors, got shape {X.shape}"
            )
        out = np.empty((len(X), self.dim_out), dtype=np.float32)
        for s in range(0, len(X), _CHUNK):
            out[s : s + _CHUNK] = self._features(X[s : s + _CHUNK]) @ self.W + self.b
        if self.normalise:
            out = unit_rows(out)
        return out

    def _features(self, X: np.ndarray) -> np.ndarray:
        if self.anchors is None:
            return X
        return unit_rows(X) @ self.anchors.T

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        out = {f"{prefix}.W": self.W, f"{prefix}.b": self.b}
        if self.anchors is not None:
            out[f"{prefix}.anchors"] = self.anchors
        return out

    def doc(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "dim_in": self.dim_in,
            "dim_out": self.dim_out,
            "normalise": self.normalise,
            "anchors": None if self.anchors is None else len(self.anchors),
            "penalty": self.penalty,
        }

    @classmethod
    def from_saved(cls, doc: dict[str, Any], arrays: dict[str, np.ndarray], prefix: str):
        W, b = arrays[f"{prefix}.W"], arrays[f"{prefix}.b"]
        anchors = arrays.get(f"{prefix}.anchors")
        if (
            W.ndim != 2
            or b.shape != (W.shape[1],)
            or (anchors is not None and anchors.shape[0] != W.shape[0])
            or (doc.get("anchors") is None) != (anchors is None)
        ):
            raise ValidationError(f"the {prefix} map's arrays do not fit together")
        return cls(
            method=str(doc["method"]),
            W=np.ascontiguousarray(W, dtype=np.float32),
            b=np.ascontiguousarray(b, dtype=np.float32),
            anchors=None if anchors is None else np.ascontiguousarray(anchors, np.float32),
            normalise=bool(doc.get("normalise", True)),
            penalty=doc.get("penalty"),
        )


def _procrustes(X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scaled semi-orthogonal least squares: W = s U V^T, b = mean(Y) - mean(X) W."""
    mx, my = X.mean(0), Y.mean(0)
    Xc, Yc = X - mx, Y - my
    U, S, Vt = np.linalg.svd(Xc.T @ Yc, full_matrices=False)
    scale = S.sum() / max(float((Xc * Xc).sum()), 1e-12)
    W = scale * (U @ Vt)
    return W, my - mx @ W


_LAMBDAS = np.logspace(-5, 1, 13)  # times the Gram matrix's largest eigenvalue
_CV_FOLDS = 5


def _ridge_solution(X: np.ndarray, Y: np.ndarray):
    """Means, eigenvalues ``s2`` and eigenvectors ``V`` of the centred Gram X^T X, and
    ``Z = V^T X^T Y``: ridge weights for any penalty are ``V diag(1/(s2+lam)) Z`` (a d x d
    eigendecomposition: much cheaper than the SVD of the n x d rows)."""
    mx, my = X.mean(0), Y.mean(0)
    Xc = X - mx
    s2, V = np.linalg.eigh(Xc.T @ Xc)
    s2 = np.maximum(s2, 0.0)
    return mx, my, s2, V, V.T @ (Xc.T @ (Y - my))


def _ridge_penalty(X: np.ndarray, Y: np.ndarray, seed: int, base: np.ndarray | None) -> float:
    """The penalty (relative to the largest squared singular value) with the best mean
    cosine on held-out rows, by 5-fold cross-validation. (Generalised cross-validation
    picked penalties far too small when there are fewer texts than dimensions: measured
    held-out cosine fell from 0.85 to 0.79 as texts went from 50 to 200.) ``base``: what
    the prediction is added to (the residual map's X), so the cosine is the final one's."""
    folds = np.random.default_rng(seed).permutation(len(X)) % _CV_FOLDS
    score = np.zeros(len(_LAMBDAS))
    for f in range(_CV_FOLDS):
        test = folds == f
        mx, my, s2, V, Z = _ridge_solution(X[~test], Y[~test])
        top = float(s2.max()) if s2.max() > 0 else 1.0
        offset = 0.0 if base is None else base[test]
        Yt = Y[test] + offset
        P = (X[test] - mx) @ V  # held-out rows in the eigenbasis
        for i, lam in enumerate(_LAMBDAS * top):
            pred = (P / (s2 + lam)) @ Z + my + offset
            cos = (pred * Yt).sum(1) / np.maximum(
                np.linalg.norm(pred, axis=1) * np.linalg.norm(Yt, axis=1), 1e-12
            )
            score[i] += cos.sum()
    return float(_LAMBDAS[int(np.argmax(score))])


def _ridge(
    X: np.ndarray,
    Y: np.ndarray,
    seed: int = 0,
    base: np.ndarray | None = None,
    penalty: float | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Ridge regression: weights, bias and the penalty, chosen by 5-fold cross-validation
    (see :func:`_ridge_penalty`) unless ``penalty`` is given."""
    rel = _ridge_penalty(X, Y, seed, base) if penalty is None else float(penalty)
    mx, my, s2, V, Z = _ridge_solution(X, Y)
    top = float(s2.max()) if s2.max() > 0 else 1.0
    W = V @ (Z / (s2 + rel * top)[:, None])
    return W, my - mx @ W, rel


def fit_map(
    X: np.ndarray,
    Y: np.ndarray,
    method: str,
    *,
    normalise: bool,
    seed: int = 0,
    penalty: float | None = None,
) -> AffineMap:
    """The ``method`` map from rows ``X`` to rows ``Y`` (the same texts, two encoders);
    ``penalty``: the ridge penalty to use instead of choosing one (ridge-based methods)."""
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    anchors, lam = None, None
    if method == "procrustes":
        W, b = _procrustes(X, Y)
    elif method == "ridge":
        W, b, lam = _ridge(X, Y, seed, penalty=penalty)
    elif method == "residual":
        if X.shape[1] != Y.shape[1]:
            raise ValidationError(
                f"the residual map needs both spaces of one dimension ({X.shape[1]} vs "
                f"{Y.shape[1]}); use procrustes, ridge or relative"
            )
        W, b, lam = _ridge(X, Y - X, seed, base=X, penalty=penalty)
        W = W + np.eye(X.shape[1])
    elif method == "relative":
        rng = np.random.default_rng(seed)
        k = min(MAX_ANCHORS, len(X))
        anchors = unit_rows(X[np.sort(rng.choice(len(X), size=k, replace=False))])
        W, b, lam = _ridge(unit_rows(X) @ anchors.T, Y, seed, penalty=penalty)
    else:
        raise ValidationError(f"unknown map method {method!r}; one of {', '.join(METHODS)}")
    return AffineMap(
        method=method,
        W=W.astype(np.float32),
        b=b.astype(np.float32),
        anchors=None if anchors is None else anchors.astype(np.float32),
        normalise=normalise,
        penalty=lam,
    )


def random_rotation(dim_in: int, dim_out: int, seed: int = 0) -> AffineMap:
    """A random semi-orthogonal map: the floor any fitted map must beat."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.normal(size=(max(dim_in, dim_out), max(dim_in, dim_out))))
    W = Q[:dim_in, :dim_out].astype(np.float32)
    return AffineMap("random", W, np.zeros(dim_out, np.float32), None, True)
