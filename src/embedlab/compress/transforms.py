"""Vector transforms composed from one spec string, in the spirit of FAISS ``index_factory``.

``TransformChain.from_spec("layer4,center,whiten,dim128,sq8")`` parses a comma-separated
list of steps with the one spec grammar of :mod:`embedlab.compress.specs` (the tokens mean what they
mean in an index spec):

=============  ==========================================================  ============
token          what it does                                                output
=============  ==========================================================  ============
``layerK``     encode with transformer layer K (read by the encoder)        —
``center``     subtract the training mean                                   float
``whiten``     PCA-whitening fitted on data (unit variance per component)   float
``pcaK``       project onto the top K principal components                  float
``dimK``       keep the first K dimensions (Matryoshka truncation)          float
``norm``       scale rows to unit L2 length                                  float
``sq8``        per-dimension calibrated scalar quantisation to one byte     codes
``binary``     sign bits, packed 8 per byte                                 codes
``pqM``        FAISS product quantisation, M sub-vectors × 8 bits           codes
=============  ==========================================================  ============

Float steps compose freely; a code step (sq8, binary, pq) must come last; ``int8`` is the
old spelling of ``sq8`` (accepted, with a deprecation note). Every step is
fitted on data, saves as JSON + arrays, and reports its bytes per vector.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from embedlab.compress.specs import spellings, tokenize
from embedlab.core.errors import ValidationError
from embedlab.core.validation import check_vectors
from embedlab.core.vectors import principal_directions

__all__ = ["TOKENS", "Step", "TransformChain", "parse_spec"]

TOKENS = spellings("layer", "float", "code")  # what a transform spec may hold
CODE_STEPS = ("sq8", "binary", "pq")
_ARRAYS = {
    "center": ("mean",),
    "whiten": ("mean", "projection"),
    "pca": ("mean", "projection"),
    "sq8": ("low", "high"),
    "pq": ("centroids",),
}


@dataclass
class Step:
    """One fitted (or not yet fitted) step of a chain: its name, argument and arrays."""

    name: str
    arg: int | None = None
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def token(self) -> str:
        return self.name + ("" if self.arg is None else str(self.arg))

    @property
    def makes_codes(self) -> bool:
        return self.name in CODE_STEPS


def parse_spec(spec: str, *, warn: bool = True) -> tuple[int | None, list[Step]]:
    """Parse a spec string into (layer or None, steps) with the one spec grammar
    (:mod:`embedlab.compress.specs`); raises naming the bad token. ``warn``: a deprecated spelling
    (``int8`` for ``sq8``) gets a one-line note."""
    layer, steps = None, []
    for tok in tokenize(spec, what="transform", warn=warn):
        if tok.role in ("index", "option"):
            raise ValidationError(
                f"{tok.text!r} in {spec!r} is an index token, not a transform step (a "
                "transform is float steps ending in at most one code: sq8, binary, pqM); "
                "build indexes with `embedlab index --spec`"
            )
        if tok.name == "pq" and tok.args[1] != 8:
            raise ValidationError(
                f"{tok.text!r}: a transform's pq codes are 8 bits per sub-vector (pq{tok.args[0]})"
            )
        if steps and steps[-1].makes_codes:
            raise ValidationError(
                f"{steps[-1].token!r} turns vectors into codes, so {tok.text!r} cannot follow "
                "it; put sq8 / binary / pq last"
            )
        if tok.name == "layer":
            if steps or layer is not None:
                raise ValidationError(f"{tok.text!r} must come first in {spec!r}")
            layer = tok.args[0]
            continue
        steps.append(Step(tok.name, tok.args[0] if tok.args else None))
    return layer, steps


class TransformChain:
    """A parsed spec: ``fit(X)``, ``transform(X)``, ``bytes_per_vector``, save / load state."""

    def __init__(self, spec: str, *, warn: bool = True) -> None:
        self.spec = spec
        self.layer, self.steps = parse_spec(spec, warn=warn)
        self.fitted = False
        self.dim_in: int | None = None

    @classmethod
    def from_spec(cls, spec: str) -> TransformChain:
        return cls(spec)

    @property
    def makes_codes(self) -> bool:
        """True when the output is int8 / binary / PQ codes rather than float vectors."""
        return bool(self.steps) and self.steps[-1].makes_codes

    def fit(self, X: Any) -> TransformChain:
        """Fit every step on the output of the previous one."""
        Z = check_vectors(X, name="training vectors", copy=True)
        self.dim_in = Z.shape[1]
        for i, step in enumerate(self.steps):
            _fit_step(step, Z)
            if i < len(self.steps) - 1:
                Z = _apply(step, Z)
        self.fitted = True
        return self

    def transform(self, X: Any) -> np.ndarray:
        """float32 vectors, or uint8 / int8 codes when the chain ends in a code step."""
        if not self.fitted:
            raise ValidationError(f"transform chain {self.spec!r} is not fitted: call fit() first")
        Z = check_vectors(X, dim=self.dim_in)
        for step in self.steps:
            Z = _apply(step, Z)
        return Z

    def fit_transform(self, X: Any) -> np.ndarray:
        return self.fit(X).transform(X)

    def float_vectors(self, X: Any) -> np.ndarray:
        """float32 vectors of X through the chain: codes (int8 / binary / PQ) are decoded,
        so downstream heads see exactly what that storage keeps."""
        return self.decode(self.transform(X))

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Approximate float vectors from int8 or PQ codes (binary: ±1 per dimension)."""
        if not self.makes_codes:
            return np.asarray(codes, dtype=np.float32)
        return _decode(self.steps[-1], codes)

    def output_dim(self) -> int:
        """Dimension of the float vectors before any code step."""
        if self.dim_in is None:
            raise ValidationError("fit the chain first")
        d = self.dim_in
        for step in self.steps:
            if step.name in ("pca", "dim"):
                d = step.arg
        return d

    def bytes_per_vector(self) -> float:
        """Storage of one transformed vector in bytes."""
        d = self.output_dim()
        if not self.makes_codes:
            return 4.0 * d
        last = self.steps[-1]
        if last.name == "sq8":
            return float(d)
        if last.name == "binary":
            return float(-(-d // 8))
        return float(last.arg)  # pq: one byte per sub-vector

    # ---------------------------------------------------------------- persistence
    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """JSON config and named arrays (for bundles: no pickle)."""
        arrays = {
            f"step{i}.{k}": np.ascontiguousarray(v)  # safetensors writes memory order as is
            for i, s in enumerate(self.steps)
            for k, v in s.arrays.items()
        }
        return {"spec": self.spec, "dim_in": self.dim_in, "fitted": self.fitted}, arrays

    @classmethod
    def from_state(cls, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> TransformChain:
        chain = cls(config["spec"], warn=False)  # a saved spec: no deprecation note
        chain.dim_in, chain.fitted = config.get("dim_in"), bool(config.get("fitted"))
        for i, step in enumerate(chain.steps):
            prefix = f"step{i}."
            step.arrays = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            missing = [n for n in _ARRAYS.get(step.name, ()) if n not in step.arrays]
            if chain.fitted and missing:
                raise ValidationError(f"step {step.token!r} lacks its fitted arrays {missing}")
        return chain

    def __repr__(self) -> str:
        return f"TransformChain({self.spec!r})"


def _fit_step(step: Step, Z: np.ndarray) -> None:
    n, d = Z.shape
    if step.name in ("pca", "dim") and step.arg > d:
        raise ValidationError(f"{step.token!r} asks for {step.arg} dimensions; the input has {d}")
    if step.name == "center":
        step.arrays = {"mean": Z.mean(axis=0).astype(np.float32)}
    elif step.name in ("whiten", "pca"):
        if n < 2:
            raise ValidationError(f"{step.token!r} needs at least 2 training vectors")
        mean = Z.mean(axis=0)
        evals, evecs = principal_directions(Z)
        if step.name == "pca":
            proj = evecs[:, : step.arg]
        else:  # whitening keeps every direction, each scaled to unit variance
            proj = evecs / np.sqrt(evals + 1e-6 * max(evals.max(), 1e-12))[None, :]
        step.arrays = {
            "mean": mean.astype(np.float32),
            "projection": np.ascontiguousarray(proj, dtype=np.float32),
        }
    elif step.name == "sq8":
        lo, hi = np.percentile(Z, [0.1, 99.9], axis=0)
        hi = np.where(hi - lo < 1e-12, lo + 1e-12, hi)
        step.arrays = {"low": lo.astype(np.float32), "high": hi.astype(np.float32)}
    elif step.name == "pq":
        import faiss

        if d % step.arg:
            raise ValidationError(
                f"{step.token!r}: {d} dimensions do not split into {step.arg} equal sub-vectors"
            )
        if n < 256:
            raise ValidationError(f"{step.token!r} needs at least 256 training vectors, got {n}")
        pq = faiss.ProductQuantizer(d, step.arg, 8)
        pq.verbose = False
        pq.train(np.ascontiguousarray(Z, dtype=np.float32))
        centroids = faiss.vector_to_array(pq.centroids).astype(np.float32)
        step.arrays = {"centroids": centroids.reshape(step.arg, 256, d // step.arg)}


def _apply(step: Step, Z: np.ndarray) -> np.ndarray:
    a = step.arrays
    if step.name == "center":
        return Z - a["mean"]
    if step.name in ("whiten", "pca"):
        return ((Z - a["mean"]) @ a["projection"]).astype(np.float32)
    if step.name == "dim":
        return np.ascontiguousarray(Z[:, : step.arg])
    if step.name == "norm":
        return Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)
    if step.name == "sq8":
        scaled = (Z - a["low"]) / (a["high"] - a["low"]) * 255.0 - 128.0
        return np.clip(np.rint(scaled), -128, 127).astype(np.int8)
    if step.name == "binary":
        return np.packbits(Z > 0, axis=1)
    if step.name == "pq":
        return _pq(step).compute_codes(np.ascontiguousarray(Z, dtype=np.float32))
    raise ValidationError(f"unknown step {step.name!r}")  # pragma: no cover


def _pq(step: Step) -> Any:
    import faiss

    m, _, dsub = step.arrays["centroids"].shape
    pq = faiss.ProductQuantizer(m * dsub, m, 8)
    faiss.copy_array_to_vector(step.arrays["centroids"].ravel(), pq.centroids)
    return pq


def _decode(step: Step, codes: np.ndarray) -> np.ndarray:
    a = step.arrays
    if step.name == "sq8":
        return (codes.astype(np.float32) + 128.0) / 255.0 * (a["high"] - a["low"]) + a["low"]
    if step.name == "binary":
        return np.unpackbits(codes, axis=1).astype(np.float32) * 2.0 - 1.0
    return _pq(step).decode(np.ascontiguousarray(codes, dtype=np.uint8))
