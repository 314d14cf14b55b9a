"""Maps from one encoder's space to another's, fitted on the same texts encoded by both.

Every map is affine on a feature of the input: ``y = f(x) @ W + b`` (then unit length when
the target encoder's vectors are), where ``f`` is the identity (Procrustes, ridge) or, for
relative representations, the cosines of ``x`` to anchor vectors of its own space.

- ``procrustes``: a scaled semi-orthogonal ``W`` (the SVD of the centred cross-covariance):
  angles between vectors are kept, so neighbourhoods move whole; needs few texts.
- ``ridge``: least squares with an L2 penalty chosen by generalised cross-validation over
  the singular values; bends the space where the two encoders disagree, needs more texts.
- ``relative``: cosines to up to 256 anchor texts (an encoder-independent description of a
  vector, Moschella et al. 2023) mapped by ridge to the target space.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from embedlab.core.errors import ValidationError
from embedlab.core.vectors import unit_rows

__all__ = ["METHODS", "AffineMap", "fit_map", "random_rotation"]

METHODS = ("procrustes", "ridge", "relative")
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
        )


def _procrustes(X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scaled semi-orthogonal least squares: W = s U V^T, b = mean(Y) - mean(X) W."""
    mx, my = X.mean(0), Y.mean(0)
    Xc, Yc = X - mx, Y - my
    U, S, Vt = np.linalg.svd(Xc.T @ Yc, full_matrices=False)
    scale = S.sum() / max(float((Xc * Xc).sum()), 1e-12)
    W = scale * (U @ Vt)
    return W, my - mx @ W


def _ridge(X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ridge regression, the penalty chosen by generalised cross-validation (closed form
    over the singular values of the centred inputs)."""
    mx, my = X.mean(0), Y.mean(0)
    Xc, Yc = X - mx, Y - my
    U, S, Vt = np.linalg.svd(Xc, full_matrices=False)
    UtY = U.T @ Yc
    n = len(X)
    top = float(S[0] ** 2) if len(S) else 1.0
    best = None
    base = float((Yc * Yc).sum()) - float((UtY * UtY).sum())  # outside the span of U
    for lam in top * np.logspace(-6, 0, 13):
        shrink = S**2 / (S**2 + lam)
        resid = base + float((((1 - shrink)[:, None] * UtY) ** 2).sum())
        dof = float(shrink.sum())
        gcv = resid / max(n - dof, 1e-6) ** 2
        if best is None or gcv < best[0]:
            best = (gcv, lam)
    lam = best[1]
    W = Vt.T @ ((S / (S**2 + lam))[:, None] * UtY)
    return W, my - mx @ W


def fit_map(
    X: np.ndarray, Y: np.ndarray, method: str, *, normalise: bool, seed: int = 0
) -> AffineMap:
    """The ``method`` map from rows ``X`` to rows ``Y`` (the same texts, two encoders)."""
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    anchors = None
    if method == "procrustes":
        W, b = _procrustes(X, Y)
    elif method == "ridge":
        W, b = _ridge(X, Y)
    elif method == "relative":
        rng = np.random.default_rng(seed)
        k = min(MAX_ANCHORS, len(X))
        anchors = unit_rows(X[np.sort(rng.choice(len(X), size=k, replace=False))])
        W, b = _ridge(unit_rows(X) @ anchors.T, Y)
    else:
        raise ValidationError(f"unknown map method {method!r}; one of {', '.join(METHODS)}")
    return AffineMap(
        method=method,
        W=W.astype(np.float32),
        b=b.astype(np.float32),
        anchors=None if anchors is None else anchors.astype(np.float32),
        normalise=normalise,
    )


def random_rotation(dim_in: int, dim_out: int, seed: int = 0) -> AffineMap:
    """A random semi-orthogonal map: the floor any fitted map must beat."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.normal(size=(max(dim_in, dim_out), max(dim_in, dim_out))))
    W = Q[:dim_in, :dim_out].astype(np.float32)
    return AffineMap("random", W, np.zeros(dim_out, np.float32), None, True)
