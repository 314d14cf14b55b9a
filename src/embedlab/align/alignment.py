"""An alignment between two encoders: a map each way, fitted on calibration texts encoded
by both, with its fidelity measured on texts the map did not see.

Fidelity is cross-fitted: the calibration rows are cut into 5 folds and each fold is mapped
by a map fitted on the other four, so every row has a held-out mapped vector; the saved map
is then fitted on all rows. Measured per direction:

- ``mean_cosine`` (and ``p05_cosine``) between a row's mapped vector and its true vector;
- ``neighbour_overlap@10``: of a row's 10 nearest neighbours among the true vectors, the
  share that are also the 10 nearest of its mapped vector (itself left out of both);
- ``match@1``: the share of rows whose mapped vector is nearest to their own true vector.

With labels, the same measures per class (``per_class``) show where the map is weak.
Saved as a directory: ``map.json`` (format ``embedlab.map``: encoder specs, method, sizes,
fidelity, checksums) and ``map.safetensors`` (the arrays); loading never unpickles.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embedlab.align.maps import METHODS, AffineMap, fit_map
from embedlab.core.errors import StoreError, ValidationError
from embedlab.core.validation import check_vectors
from embedlab.core.vectors import top_k_cosine, unit_rows

__all__ = [
    "FORMAT",
    "MIN_TEXTS",
    "Alignment",
    "align",
    "fit_alignment",
    "map_fidelity",
    "min_calibration_texts",
]

FORMAT, FORMAT_VERSION = "embedlab.map", 1
MAP_FILE, ARRAYS_FILE = "map.json", "map.safetensors"
MIN_TEXTS = 50
FOLDS = 5
_NEIGHBOUR_ROWS = 4000  # neighbour measures on at most this many rows (a seeded sample)


def min_calibration_texts(dim_old: int, dim_new: int) -> int:
    """The fewest calibration texts an alignment accepts: 50, or an eighth of the smaller
    dimension when that is more (5 folds of 10 rows at least; below that the held-out
    fidelity says little and a map of d x d' numbers is barely constrained)."""
    return max(MIN_TEXTS, min(int(dim_old), int(dim_new)) // 8)


def _check_enough(n: int, dim_old: int, dim_new: int) -> None:
    """ValidationError naming the minimum when ``n`` texts are too few for the dimensions."""
    need = min_calibration_texts(dim_old, dim_new)
    if n < need:
        raise ValidationError(
            f"{n} calibration texts are too few to align {dim_old}-d with {dim_new}-d "
            f"vectors: at least {need} are needed (500 or more recommended)"
        )


def _is_unit(X: np.ndarray) -> bool:
    n = np.linalg.norm(X, axis=1)
    return bool(np.quantile(np.abs(n - 1.0), 0.99) < 1e-3)


def _neighbours(Q: np.ndarray, C: np.ndarray, k: int) -> np.ndarray:
    """Indices (n, k) of the k most cosine-similar rows of unit rows C to each unit row of
    Q, row i of C left out for row i of Q (the same text)."""
    idx, _ = top_k_cosine(Q, C, k + 1)
    other = idx != np.arange(len(Q))[:, None]
    order = np.argsort(~other, axis=1, kind="stable")  # the row itself (if found) goes last
    return np.take_along_axis(idx, order, 1)[:, :k]


def map_fidelity(
    mapped: np.ndarray, true: np.ndarray, *, k: int = 10, seed: int = 0
) -> dict[str, Any]:
    """Cosine, neighbour overlap@k and match@1 of ``mapped`` rows against their ``true``
    rows (the same texts), as in the module doc; also the per-row values."""
    M, T = unit_rows(mapped), unit_rows(true)
    cos = (M * T).sum(1)
    rows = np.arange(len(T))
    if len(rows) > _NEIGHBOUR_ROWS:
        rows = np.sort(np.random.default_rng(seed).choice(len(T), _NEIGHBOUR_ROWS, replace=False))
    Ms, Ts = M[rows], T[rows]
    kk = max(1, min(k, len(rows) - 1))
    truth = _neighbours(Ts, Ts, kk)
    got = _neighbours(Ms, Ts, kk)
    overlap = (got[:, :, None] == truth[:, None, :]).any(2).sum(1) / kk  # (n, k, k) bools
    nearest = top_k_cosine(Ms, Ts, 1)[0][:, 0]
    match = nearest == np.arange(len(rows))
    return {
        "mean_cosine": round(float(cos.mean()), 4),
        "p05_cosine": round(float(np.quantile(cos, 0.05)), 4),
        f"neighbour_overlap@{k}": round(float(overlap.mean()), 4),
        "match@1": round(float(match.mean()), 4),
        "rows": len(T),
        "_cosine": cos,
        "_overlap": (rows, overlap),
    }


def _public(fid: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fid.items() if not k.startswith("_")}


def _cross_fit(
    X: np.ndarray, Y: np.ndarray, method: str, normalise: bool, seed: int
) -> tuple[np.ndarray, AffineMap]:
    """The map fitted on every row, and every row of X mapped by a map fitted on the
    folds it is not in (with the penalty chosen on every row: one number, chosen once)."""
    full = fit_map(X, Y, method, normalise=normalise, seed=seed)
    folds = np.random.default_rng(seed).permutation(len(X)) % FOLDS
    out = np.empty((len(X), Y.shape[1]), dtype=np.float32)
    for f in range(FOLDS):
        test = folds == f
        fold = fit_map(
            X[~test], Y[~test], method, normalise=normalise, seed=seed, penalty=full.penalty
        )
        out[test] = fold(X[test])
    return out, full


class Alignment:
    """Two maps between an old and a new encoder's spaces: :meth:`forward` (old → new:
    models and indexes move) and :meth:`backward` (new → old: new queries search an old
    index). ``old`` / ``new``: the encoders' specs (None for imported vectors)."""

    def __init__(
        self,
        forward: AffineMap,
        backward: AffineMap,
        *,
        old: dict[str, Any] | None,
        new: dict[str, Any] | None,
        info: dict[str, Any],
    ) -> None:
        self.forward_map, self.backward_map = forward, backward
        self.old, self.new, self.info = old, new, info

    @property
    def method(self) -> str:
        return self.forward_map.method

    @property
    def dim_old(self) -> int:
        return self.forward_map.dim_in

    @property
    def dim_new(self) -> int:
        return self.forward_map.dim_out

    def forward(self, X: Any) -> np.ndarray:
        """Old-encoder vectors → the new encoder's space."""
        return self.forward_map(check_vectors(X, name="old-encoder vectors", dim=self.dim_old))

    def backward(self, X: Any) -> np.ndarray:
        """New-encoder vectors → the old encoder's space."""
        return self.backward_map(check_vectors(X, name="new-encoder vectors", dim=self.dim_new))

    def __repr__(self) -> str:
        fid = self.info.get("fidelity", {}).get("forward", {})
        return (
            f"Alignment({self.method}, {self.dim_old}->{self.dim_new}, "
            f"{self.info.get('calibration_texts')} texts, cosine {fid.get('mean_cosine')})"
        )

    def new_encoder(self, *, backend: str | None = None) -> Any:
        """The new encoder, rebuilt from its spec (its fingerprint checked); ValidationError
        when the new side is imported vectors."""
        from embedlab.encoders.sentence_transformer import encoder_from_spec

        if self.new is None:
            raise ValidationError(
                "this map's new side is imported vectors (no encoder): pass the new encoder"
            )
        return encoder_from_spec(self.new, backend=backend)

    # ------------------------------------------------------------------ checks
    def check_old(self, spec: dict[str, Any] | None, what: str) -> None:
        """ValidationError unless ``spec`` (the encoder of ``what``) is this map's old
        encoder; says so when it is the new one (the map is the wrong way round)."""
        self._check(spec, self.old, self.new, what, "from", "to")

    def check_new(self, spec: dict[str, Any] | None, what: str) -> None:
        """ValidationError unless ``spec`` is this map's new encoder."""
        self._check(spec, self.new, self.old, what, "to", "from")

    @staticmethod
    def _check(
        spec: dict[str, Any] | None,
        want: dict[str, Any] | None,
        other: dict[str, Any] | None,
        what: str,
        way: str,
        other_way: str,
    ) -> None:
        from embedlab.encoders.base import spec_differences

        if want is None or spec is None:
            if want is None and spec is None:
                return
            raise ValidationError(
                f"{what} and this map disagree on the encoder: one of them has imported "
                "vectors (no encoder spec); align the encoders that made them"
            )
        if not spec_differences(spec, want):
            return
        if other is not None and not spec_differences(spec, other):
            raise ValidationError(
                f"this map goes the other way: {what} uses the encoder the map goes "
                f"{other_way}, not the one it goes {way} (swap OLD and NEW in embedlab align)"
            )
        raise ValidationError(
            f"{what} uses another encoder ({_describe(spec)}) than the one this map goes "
            f"{way} ({_describe(want)}); align that encoder instead"
        )

    # -------------------------------------------------------------------- store
    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write ``map.json`` + ``map.safetensors`` into directory ``path`` (atomically)."""
        from safetensors.numpy import save_file

        from embedlab.store.atomic import atomic_directory
        from embedlab.store.manifest import sha256_file

        path = Path(path)
        with atomic_directory(path, overwrite=overwrite) as tmp:
            arrays = {**self.forward_map.arrays("forward"), **self.backward_map.arrays("backward")}
            save_file(
                {k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp / ARRAYS_FILE)
            )
            doc = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "old": self.old,
                "new": self.new,
                "forward": self.forward_map.doc(),
                "backward": self.backward_map.doc(),
                **self.info,
                "files": {ARRAYS_FILE: sha256_file(tmp / ARRAYS_FILE)},
            }
            (tmp / MAP_FILE).write_text(json.dumps(doc, indent=1), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Alignment:
        """Read a saved map, checking its checksums and shapes (StoreError otherwise)."""
        from safetensors.numpy import load_file

        from embedlab.store.containment import refuse_links
        from embedlab.store.manifest import read_versioned_json, sha256_file

        path = Path(path)
        if not (path / MAP_FILE).is_file():
            raise StoreError(f"no map at {path} (make one with `embedlab align OLD NEW`)")
        doc = read_versioned_json(path / MAP_FILE, FORMAT, FORMAT_VERSION, "an embedlab map")
        refuse_links(path, "the map")
        try:
            if sha256_file(path / ARRAYS_FILE) != doc["files"][ARRAYS_FILE]:
                raise StoreError(f"{path}: checksum mismatch for {ARRAYS_FILE} (corrupted)")
            arrays = load_file(str(path / ARRAYS_FILE))
            forward = AffineMap.from_saved(doc["forward"], arrays, "forward")
            backward = AffineMap.from_saved(doc["backward"], arrays, "backward")
        except StoreError:
            raise
        except (KeyError, TypeError, ValueError, ValidationError, OSError) as exc:
            raise StoreError(
                f"{path}: the map cannot be read ({type(exc).__name__}: {str(exc)[:200]}); "
                "make it again with `embedlab align`"
            ) from None
        if (forward.dim_in, forward.dim_out) != (backward.dim_out, backward.dim_in):
            raise StoreError(f"{path}: the two maps' dimensions do not match")
        info = {
            k: v
            for k, v in doc.items()
            if k not in ("format", "format_version", "old", "new", "forward", "backward", "files")
        }
        return cls(forward, backward, old=doc.get("old"), new=doc.get("new"), info=info)


def _describe(spec: dict[str, Any]) -> str:
    name = spec.get("model_name") or Path(str(spec.get("path", "?"))).name
    bits = [f"{spec.get('kind', '?')} {name}"]
    for key in ("layer", "dim"):
        if spec.get(key):
            bits.append(f"{key} {spec[key]}")
    fp = str(spec.get("fingerprint") or "")[:12]
    return ", ".join(bits) + (f", fingerprint {fp}" if fp else "")


def _per_class(labels: np.ndarray, fid: dict[str, Any], worst: int = 10) -> dict[str, Any]:
    """Mean cosine and neighbour overlap per class, the classes with the lowest overlap
    first (those whose neighbourhoods the map moves most)."""
    cos = fid["_cosine"]
    rows, overlap = fid["_overlap"]
    classes, inv = np.unique(labels, return_inverse=True)
    n = np.bincount(inv, minlength=len(classes))
    mean_cos = np.bincount(inv, weights=cos, minlength=len(classes)) / np.maximum(n, 1)
    ov_n = np.bincount(inv[rows], minlength=len(classes))
    ov = np.bincount(inv[rows], weights=overlap, minlength=len(classes)) / np.maximum(ov_n, 1)
    table = {
        str(c): {
            "rows": int(n[i]),
            "mean_cosine": round(float(mean_cos[i]), 4),
            "neighbour_overlap@10": round(float(ov[i]), 4) if ov_n[i] else None,
        }
        for i, c in enumerate(classes)
    }
    order = sorted(
        (c for c in table if table[c]["neighbour_overlap@10"] is not None),
        key=lambda c: (table[c]["neighbour_overlap@10"], table[c]["mean_cosine"]),
    )
    return {"classes": table, "weakest": order[:worst]}


def fit_alignment(
    X_old: Any,
    X_new: Any,
    *,
    method: str = "auto",
    labels: Sequence[Any] | None = None,
    old: dict[str, Any] | None = None,
    new: dict[str, Any] | None = None,
    seed: int = 0,
) -> Alignment:
    """The alignment between rows ``X_old`` and ``X_new`` (the same texts, in order, encoded
    by the old and the new encoder). ``method``: one of ``procrustes``, ``ridge``,
    ``relative``, ``residual`` (same dimension only), or ``auto`` (the best cross-fitted
    forward cosine among those that apply).
    ``labels``: a label per row, for per-class fidelity. Outputs are unit length in a
    direction whose target vectors are."""
    A = check_vectors(X_old, name="old-encoder vectors")
    B = check_vectors(X_new, name="new-encoder vectors")
    if len(A) != len(B):
        raise ValidationError(
            f"{len(A)} old-encoder rows but {len(B)} new-encoder rows: the same texts, in "
            "the same order, are needed from both encoders"
        )
    _check_enough(len(A), A.shape[1], B.shape[1])
    if method != "auto" and method not in METHODS:
        raise ValidationError(f"unknown method {method!r}; one of auto, {', '.join(METHODS)}")
    if labels is not None and len(labels) != len(A):
        raise ValidationError(f"{len(labels)} labels for {len(A)} calibration texts")
    A64, B64 = A.astype(np.float64), B.astype(np.float64)
    norm_new, norm_old = _is_unit(B), _is_unit(A)
    candidates = (
        tuple(m for m in METHODS if m != "residual" or A.shape[1] == B.shape[1])
        if method == "auto"
        else (method,)
    )
    tried: dict[str, dict[str, Any]] = {}
    maps: dict[str, AffineMap] = {}
    for m in candidates:
        mapped, maps[m] = _cross_fit(A64, B64, m, norm_new, seed)
        tried[m] = map_fidelity(mapped, B, seed=seed)
    chosen = max(candidates, key=lambda m: tried[m]["mean_cosine"])  # first among equals
    mapped_back, backward = _cross_fit(B64, A64, chosen, norm_old, seed)
    back = map_fidelity(mapped_back, A, seed=seed)
    forward = maps[chosen]
    info: dict[str, Any] = {
        "method": chosen,
        "method_asked": method,
        "calibration_texts": len(A),
        "seed": int(seed),
        "fidelity": {
            "how": f"{FOLDS}-fold cross-fitted: each text mapped by a map that did not see it "
            "(a ridge penalty is chosen once, on every text)",
            "forward": _public(tried[chosen]),
            "backward": _public(back),
        },
        "methods_tried": {m: _public(tried[m]) for m in candidates}
        if len(candidates) > 1
        else None,
    }
    if labels is not None:
        info["per_class"] = _per_class(np.asarray([str(v) for v in labels]), tried[chosen])
    return Alignment(forward, backward, old=old, new=new, info=info)


def align(
    old_encoder: Any,
    new_encoder: Any,
    texts: Sequence[str],
    *,
    method: str = "auto",
    labels: Sequence[Any] | None = None,
    seed: int = 0,
    progress: bool | None = None,
) -> Alignment:
    """Encode calibration ``texts`` with both encoders and fit the alignment between them
    (:func:`fit_alignment`); the encoders' specs are recorded so that models and indexes
    are checked against them."""
    from embedlab.encoders.base import check_texts

    texts = check_texts(texts)
    _check_enough(len(texts), old_encoder.dim, new_encoder.dim)  # before encoding
    X_old = old_encoder.encode(texts, progress=progress)
    X_new = new_encoder.encode(texts, progress=progress)
    return fit_alignment(
        X_old,
        X_new,
        method=method,
        labels=labels,
        old=dict(old_encoder.spec),
        new=dict(new_encoder.spec),
        seed=seed,
    )
