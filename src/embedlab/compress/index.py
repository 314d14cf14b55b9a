"""Vector search: exact, HNSW, IVF-PQ, binary Hamming + rescoring, low-dimension shortlist +
full-dimension rerank — one ``Index`` API chosen by a spec string.

=====================  =======================================================
spec                   index
=====================  =======================================================
``flat``               exact inner product (FAISS ``IndexFlatIP``)
``sq8``                scalar quantisation, one byte per dimension (FAISS
                       ``IndexScalarQuantizer`` QT_8bit, ranges trained on the data)
``pqM[xB]``            product quantisation, M codes of B bits (default 8; FAISS
                       ``IndexPQ``), exhaustive search over the codes
``hnswM``              FAISS HNSW graph with M links per node (``efSearch`` 64)
``ivfN,pqM[xB]``       FAISS IVF with N lists, PQ with M codes of B bits (default 8;
                       ``nprobe`` 16)
``binary,rescoreR``    Hamming search on sign bits for R·k candidates, rescored
                       with the float vectors
``dimD,rerankR``       exact search on the first D dimensions (renormalised) for
                       R·k candidates, reranked with all dimensions
=====================  =======================================================

Transform steps may come first (``center,pca128,hnsw32``: the same tokens as
``--transform``, see :mod:`embedlab.compress.specs`); they are fitted on the first vectors the index
is trained on or given, saved with it, and applied to every query. Vectors are
L2-normalised on the way in (and after the transform), so scores are cosine similarities
(higher = closer). An index saves to a directory of ``index.json`` + arrays (FAISS's own binary
format for FAISS indexes, never pickle).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from embedlab.compress.specs import UnknownToken, tokenize
from embedlab.compress.transforms import TransformChain
from embedlab.core.errors import StoreError, ValidationError
from embedlab.core.validation import check_vectors
from embedlab.core.vectors import unit_rows
from embedlab.encoders.base import spec_differences
from embedlab.store.atomic import atomic_directory
from embedlab.store.containment import check_npy, refuse_links
from embedlab.store.manifest import read_versioned_json, sha256_file

__all__ = ["INDEX_SPECS", "Index"]

INDEX_SPECS = ("flat", "sq8", "pqM[xB]", "hnswM", "ivfN,pqM[xB]", "binary,rescoreR", "dimD,rerankR")
FORMAT = "embedlab.index"
FORMAT_VERSION = 1
_INDEX_FILES = ("ids.npy", "vectors.npy", "faiss.npy", "rows.parquet", "transform.npz")

#: The token sequences (after an optional transform prefix) that make each kind of index.
_SHAPES = {
    ("flat",): "flat",
    ("sq8",): "sq8",
    ("pq",): "pq",
    ("hnsw",): "hnsw",
    ("ivf", "pq"): "ivfpq",
    ("binary", "rescore"): "binary",
    ("dim", "rerank"): "shortlist",
}


def _parse(spec: str) -> tuple[str, tuple[int, ...], str | None]:
    """(kind, numbers, transform prefix or None) of an index spec, in the one spec grammar
    (:mod:`embedlab.compress.specs`): float transform steps may come before the index
    (``center,pca128,hnsw32``); ``dimD`` followed by ``rerankR`` is the shortlist index."""
    try:
        tokens = tokenize(spec, what="index spec")
    except UnknownToken:
        tokens = []  # said below, with the index specs
    i = 0
    while i < len(tokens) and tokens[i].role == "float":
        if tokens[i].name == "dim" and i + 1 < len(tokens) and tokens[i + 1].name == "rerank":
            break
        i += 1
    rest = tokens[i:]
    kind = _SHAPES.get(tuple(t.name for t in rest))
    if kind is None:
        raise ValidationError(
            f"unknown index spec {spec!r}; use one of: {', '.join(INDEX_SPECS)}, each "
            "optionally after transform steps (center, whiten, pcaK, dimK, norm)"
        )
    prefix = ",".join(t.text for t in tokens[:i]) or None
    return kind, tuple(a for t in rest for a in t.args), prefix


def _inner_dim(chain: TransformChain | None, dim: int, spec: str) -> int:
    """The dimension after the transform prefix (``pcaK`` / ``dimK`` set it)."""
    d = dim
    for step in chain.steps if chain is not None else ():
        if step.name in ("pca", "dim"):
            if step.arg > d:
                raise ValidationError(
                    f"index spec {spec!r}: {step.token} exceeds the vectors' dimension {d}"
                )
            d = step.arg
    return d


class Index:
    """Add vectors with ids, search by vector; see the module doc for the specs.

    Parameters
    ----------
    spec : str
        Which index (default "flat").
    dim : int
        Vector dimension.
    encoder : dict, optional
        Spec of the encoder that made the vectors; queries must come from the same one.
    """

    def __init__(
        self, spec: str = "flat", dim: int | None = None, encoder: dict[str, Any] | None = None
    ) -> None:
        self.kind, self.args, prefix = _parse(spec)
        self.spec = spec
        if dim is None or int(dim) < 1:
            raise ValidationError("an index needs the vector dimension (dim >= 1)")
        self.dim = int(dim)
        self.encoder = encoder
        #: the transform prefix (fitted on the first vectors trained on or added), or None
        self.chain = TransformChain(prefix) if prefix else None
        self._d = _inner_dim(self.chain, self.dim, spec)  # what the search structure holds
        if self.kind == "shortlist" and self.args[0] > self._d:
            raise ValidationError(
                f"index spec {spec!r}: dim{self.args[0]} exceeds the vectors' dimension "
                f"{self._d} (use dim1..dim{self._d})"
            )
        m_bits = {"ivfpq": self.args[1:], "pq": self.args}.get(self.kind)
        if m_bits and self._d % m_bits[0]:
            raise ValidationError(
                f"pq{m_bits[0]}: the number of sub-vectors must divide the dimension {self._d}"
            )
        self.ids = np.empty(0, dtype=object)
        self.vectors = np.empty((0, self._d), dtype=np.float32)  # kept for rescoring kinds
        self._faiss: Any = None
        self._binary: Any = None  # FAISS Hamming index over _codes, built on first search
        self._prefix: Any = None  # FAISS flat index over the normalised first D dimensions
        self.rows: Any = None  # optional pyarrow Table of id / label / text for display
        self._codes = np.empty((0, -(-self._d // 8)), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"Index({self.spec!r}, dim={self.dim}, n={len(self)})"

    # ---------------------------------------------------------------- building
    def _inputs(self, vectors: Any, *, name: str = "vectors", fit: bool = False) -> np.ndarray:
        """Checked, unit-length vectors in the space the search structure holds: through the
        transform prefix (fitted here on the first vectors when ``fit``), renormalised."""
        X = unit_rows(check_vectors(vectors, name=name, dim=self.dim))
        if self.chain is None:
            return X
        if not self.chain.fitted:
            if not fit:
                raise ValidationError("the index is empty: add vectors first")
            self.chain.fit(X)
        return unit_rows(self.chain.float_vectors(X))

    def train(self, vectors: Any) -> Index:
        """Learn the quantiser (sq8, pq, ivf-pq) from ``vectors`` without adding them; by
        default the first batch given to :meth:`add` trains it. Other kinds need no training."""
        X = self._inputs(vectors, fit=True)
        if self.kind in ("sq8", "pq", "ivfpq"):
            if self._faiss is not None and len(self):
                raise ValidationError("this index already holds vectors; train it before add()")
            self._faiss = None
            self._faiss_index(X)
        return self

    def add(self, vectors: Any, ids: Any = None) -> Index:
        """Add vectors (n, dim) with optional ids (default: running row numbers)."""
        X = self._inputs(vectors, fit=True)
        new_ids = (
            np.arange(len(self), len(self) + len(X)).astype(str)
            if ids is None
            else np.asarray([str(i) for i in ids], dtype=object)
        )
        if len(new_ids) != len(X):
            raise ValidationError(f"{len(new_ids)} ids for {len(X)} vectors")
        self.ids = np.concatenate([self.ids, new_ids.astype(object)])
        if self.kind in ("binary", "shortlist"):
            self.vectors = np.vstack([self.vectors, X])
            if self.kind == "binary":
                self._codes = np.vstack([self._codes, np.packbits(X > 0, axis=1)])
        else:
            self._faiss_index(X).add(X)
        return self

    @classmethod
    def from_set(
        cls,
        path: str | os.PathLike,
        spec: str = "flat",
        *,
        train_rows: int = 100_000,
        seed: int = 0,
    ) -> tuple[Index, Any]:
        """An index of a saved EmbeddingSet (sharded or not), built shard by shard: the
        quantiser (sq8, pq, ivf-pq) trained on ``train_rows`` rows drawn evenly from every
        shard (seeded), then each shard added in turn. Returns (index, rows table)."""
        import pyarrow as pa

        from embedlab.data.sharded import ShardedSet

        ss = ShardedSet(path)
        index = cls(spec, ss.dim, encoder=ss.provenance.encoder)
        if index.kind in ("sq8", "pq", "ivfpq"):
            rng = np.random.default_rng(seed)
            want = min(int(train_rows), ss.n)
            chosen = np.sort(rng.choice(ss.n, size=want, replace=False))
            parts, start = [], 0
            for shard in ss:  # one shard mapped at a time; only the sampled rows copied
                mine = chosen[(chosen >= start) & (chosen < start + shard.n)] - start
                parts.append(np.asarray(shard.vectors[mine]))
                start += shard.n
            index.train(np.concatenate(parts))
        tables = []
        for shard in ss:
            index.add(shard.vectors, ids=shard.ids)
            tables.append(shard.rows_table())
        return index, pa.concat_tables(tables)

    def _faiss_index(self, first: np.ndarray) -> Any:
        import faiss

        if self._faiss is None:
            ip = faiss.METRIC_INNER_PRODUCT
            if self.kind == "flat":
                self._faiss = faiss.IndexFlatIP(self._d)
            elif self.kind == "hnsw":
                self._faiss = faiss.IndexHNSWFlat(self._d, self.args[0], ip)
            else:
                if self.kind == "sq8":
                    need, factory = 2, "SQ8"
                elif self.kind == "pq":
                    need, factory = 2 ** self.args[1], f"PQ{self.args[0]}x{self.args[1]}np"
                else:
                    nlist, m, bits = self.args
                    need, factory = max(nlist, 2**bits), f"IVF{nlist},PQ{m}x{bits}np"
                if len(first) < need:
                    raise ValidationError(
                        f"{self.spec} trains on the first batch added: it needs at least "
                        f"{need} vectors, got {len(first)}"
                    )
                self._faiss = faiss.index_factory(self._d, factory, ip)
                self._faiss.train(first)
            self._tune()
        return self._faiss

    def _tune(self) -> None:
        """Search-time settings: HNSW efSearch 64, IVF nprobe 16 (at most nlist)."""
        import faiss

        if self.kind == "hnsw":
            self._faiss.hnsw.efSearch = 64
        elif self.kind == "ivfpq":
            faiss.extract_index_ivf(self._faiss).nprobe = min(16, self.args[0])

    # ---------------------------------------------------------------- searching
    def search(
        self,
        queries: Any,
        k: int = 10,
        *,
        encoder: dict[str, Any] | None = None,
        allow: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Ids (nq, k) and cosine scores (nq, k) of the k best matches, best first.

        Fewer than k stored vectors: the missing places hold id "" and score -inf.
        ``encoder``: the spec of the encoder that made the queries; refused when it differs
        from the index's (another model, layer or dimension). ``allow``: a boolean per stored
        vector (in :attr:`ids` order); only allowed vectors are returned — the index is asked
        for more candidates (doubling) until each query has k allowed ones or all were seen.
        """
        self.check_encoder(encoder)
        if len(self) == 0:
            raise ValidationError("the index is empty: add vectors first")
        Q = self._inputs(queries, name="queries")
        k = int(k)
        if k < 1:
            raise ValidationError("k must be at least 1")
        if allow is None:
            return self._pad(*self._search_rows(Q, k), k)
        allow = np.asarray(allow, dtype=bool)
        if allow.shape != (len(self),):
            raise ValidationError(f"allow must hold one boolean per stored vector ({len(self)})")
        n_allowed = int(allow.sum())
        want = min(k, n_allowed)
        wide = min(len(self), max(2 * k, 16))
        while True:
            rows, scores = self._search_rows(Q, wide)
            ok = (rows >= 0) & allow[np.maximum(rows, 0)]
            if wide >= len(self) or (ok.sum(axis=1) >= want).all():
                break
            wide = min(len(self), 2 * wide)
        # allowed candidates first, each query's order kept (a stable sort on "not allowed")
        order = np.argsort(~ok, axis=1, kind="stable")[:, :k]
        rows = np.where(np.take_along_axis(ok, order, 1), np.take_along_axis(rows, order, 1), -1)
        return self._pad(rows, np.take_along_axis(scores, order, 1), k)

    def _search_rows(self, Q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Row positions (-1: none) and scores of the k best matches of each query."""
        if self.kind == "binary":
            return self._binary_search(Q, k)
        if self.kind == "shortlist":
            return self._shortlist_search(Q, k)
        scores, rows = self._faiss.search(Q, min(k, len(self)))
        return rows, scores

    def hits(
        self, ids: np.ndarray, scores: np.ndarray, columns: tuple[str, ...] = ("label", "text")
    ) -> list[list[dict[str, Any]]]:
        """Results of :meth:`search` as rows per query — rank, id, score and the stored
        ``columns`` of each hit (from ``rows``, when the index keeps them); empty places
        (fewer stored vectors than k) are left out."""
        stored: dict[str, dict[str, Any]] = {}
        if self.rows is not None:
            import pyarrow as pa
            import pyarrow.compute as pc

            keep = [c for c in ("id", *columns) if c in self.rows.column_names]
            found = sorted({str(i) for i in np.ravel(ids) if i != ""})
            at = pc.index_in(pa.array(found, pa.string()), value_set=self.rows.column("id"))
            picked = self.rows.select(keep).take(at.drop_null())
            stored = {r["id"]: r for r in picked.to_pylist()}  # only the returned rows
        return [
            [
                {
                    "rank": r + 1,
                    "id": i,
                    "score": float(s),
                    **{c: v for c, v in stored.get(i, {}).items() if c in columns},
                }
                for r, (i, s) in enumerate(zip(q_ids, q_scores, strict=True))
                if i != ""
            ]
            for q_ids, q_scores in zip(ids, scores, strict=True)
        ]

    def check_encoder(self, spec: dict[str, Any] | None) -> None:
        """Raise when query vectors from encoder ``spec`` cannot be compared with the index."""
        if spec is None or self.encoder is None:
            return
        diff = spec_differences(spec, self.encoder)
        if diff:
            raise ValidationError(
                "the queries come from another encoder than the index "
                + ", ".join(f"{k}: query {a!r} vs index {b!r}" for k, (a, b) in diff.items())
            )

    def _rescore(self, Q: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact scores of each query's candidates, in query chunks so that the gathered
        (chunk, R·k, d) block stays small."""
        sims = np.empty(cand.shape, dtype=np.float32)
        for s in range(0, len(Q), 128):
            block = self.vectors[cand[s : s + 128]]  # (≤128, c, d)
            sims[s : s + 128] = np.einsum("qd,qcd->qc", Q[s : s + 128], block)
        order = np.argsort(-sims, axis=1)[:, :k]
        return np.take_along_axis(cand, order, 1), np.take_along_axis(sims, order, 1)

    def _binary_search(self, Q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        c = min(len(self), k * self.args[0])
        if self._binary is None or self._binary.ntotal != len(self._codes):
            self._binary = faiss.IndexBinaryFlat(self._codes.shape[1] * 8)
            self._binary.add(self._codes)
        _, cand = self._binary.search(np.packbits(Q > 0, axis=1), c)
        return self._rescore(Q, cand, k)

    def _shortlist_search(self, Q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        d, r = self.args
        if self._prefix is None or self._prefix.ntotal != len(self.vectors):
            self._prefix = faiss.IndexFlatIP(d)
            self._prefix.add(unit_rows(self.vectors[:, :d]))
        _, cand = self._prefix.search(unit_rows(Q[:, :d]), min(len(self), k * r))
        return self._rescore(Q, cand, k)

    def _pad(self, rows: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        nq = rows.shape[0]
        ids = np.full((nq, k), "", dtype=object)
        out = np.full((nq, k), -np.inf, dtype=np.float32)
        w = min(k, rows.shape[1])
        valid = rows[:, :w] >= 0
        ids[:, :w][valid] = self.ids[rows[:, :w][valid]]
        out[:, :w][valid] = scores[:, :w][valid]
        return ids, out

    def bytes_per_vector(self) -> float:
        """Bytes one stored vector costs in the search structure (rescoring copies aside)."""
        if self.kind in ("flat", "hnsw"):
            return 4.0 * self._d
        if self.kind == "sq8":
            return float(self._d)
        if self.kind == "pq":
            return self.args[0] * self.args[1] / 8.0
        if self.kind == "ivfpq":
            return self.args[1] * self.args[2] / 8.0
        if self.kind == "binary":
            return float(-(-self._d // 8))
        return 4.0 * self.args[0]

    # ---------------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike, *, overwrite: bool = False, rows: Any = None) -> Path:
        """Write the index to a directory (atomic); ``rows`` (a pyarrow Table with an ``id``
        column, e.g. ``EmbeddingSet.rows_table()``) is kept beside it for showing results."""
        import faiss
        import pyarrow.parquet as pq

        path = Path(path)
        if path.exists() and not overwrite:
            raise StoreError(f"{path} already exists (pass overwrite=True, or --force)")
        with atomic_directory(path, overwrite=overwrite) as tmp:
            arrays = {"ids.npy": np.asarray(self.ids.astype(str))}
            if self.kind in ("binary", "shortlist"):
                arrays["vectors.npy"] = self.vectors
            if self._faiss is not None:
                arrays["faiss.npy"] = faiss.serialize_index(self._faiss)
            for name, arr in arrays.items():
                np.save(tmp / name, arr, allow_pickle=False)
            files = list(arrays)
            transform = None
            if self.chain is not None and self.chain.fitted:
                transform, chain_arrays = self.chain.state()
                with open(tmp / "transform.npz", "wb") as fh:
                    np.savez(fh, **chain_arrays)
                files.append("transform.npz")
            if rows is not None:
                pq.write_table(rows, tmp / "rows.parquet")
                files.append("rows.parquet")
            doc = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "spec": self.spec,
                "dim": self.dim,
                "n": len(self),
                "encoder": self.encoder,
                "transform": transform,
                "files": {n: sha256_file(tmp / n) for n in files},
            }
            (tmp / "index.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Index:
        """Load a saved index, verifying its checksums."""

        path = Path(path)
        if not (path / "index.json").is_file():
            raise StoreError(f"no index at {path} (make one with `embedlab index`)")
        doc = read_versioned_json(path / "index.json", FORMAT, FORMAT_VERSION, "an embedlab index")
        try:
            return cls._load(path, doc)
        except (RuntimeError, ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
            if isinstance(exc, StoreError):
                raise
            raise StoreError(
                f"{path}: the index cannot be read ({type(exc).__name__}: {str(exc)[:200]}); "
                "build it again with `embedlab index`"
            ) from None

    @classmethod
    def _load(cls, path: Path, doc: dict[str, Any]) -> Index:
        import faiss

        unknown = set(doc["files"]) - set(_INDEX_FILES)
        if unknown:
            raise StoreError(
                f"{path}: index.json lists files an index does not hold: {sorted(unknown)[:3]}"
            )
        refuse_links(path, "the index")
        for name, digest in doc["files"].items():
            if sha256_file(path / name) != digest:
                raise StoreError(f"{path}: checksum mismatch for {name} (corrupted or replaced)")
            if name.endswith(".npy"):
                check_npy(path / name, str(path))  # declared shapes fit in the files
        index = cls(doc["spec"], doc["dim"], doc.get("encoder"))
        index.ids = np.load(path / "ids.npy", allow_pickle=False).astype(object)
        if "transform.npz" in doc["files"] and doc.get("transform"):
            with np.load(path / "transform.npz", allow_pickle=False) as saved:
                chain_arrays = {k: saved[k] for k in saved.files}
            index.chain = TransformChain.from_state(doc["transform"], chain_arrays)
        if "rows.parquet" in doc["files"]:
            import pyarrow.parquet as pq

            index.rows = pq.read_table(path / "rows.parquet")
        if (path / "vectors.npy").exists() and "vectors.npy" in doc["files"]:
            index.vectors = np.load(path / "vectors.npy", allow_pickle=False)
            if index.kind == "binary":
                index._codes = np.packbits(index.vectors > 0, axis=1)
        if "faiss.npy" in doc["files"]:
            index._faiss = faiss.deserialize_index(np.load(path / "faiss.npy", allow_pickle=False))
            index._tune()
        if len(index.ids) != doc["n"]:
            raise StoreError(f"{path}: {len(index.ids)} ids, index.json says {doc['n']}")
        return index
