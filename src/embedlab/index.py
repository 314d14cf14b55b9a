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

Vectors are L2-normalised on the way in, so scores are cosine similarities (higher =
closer). An index saves to a directory of ``index.json`` + arrays (FAISS's own binary
format for FAISS indexes, never pickle).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from embedlab.atomic import atomic_directory
from embedlab.containment import check_npy, refuse_links
from embedlab.encoders.base import spec_differences
from embedlab.errors import StoreError, ValidationError
from embedlab.manifest import read_versioned_json, sha256_file
from embedlab.validation import check_vectors
from embedlab.vectors import unit_rows

__all__ = ["INDEX_SPECS", "Index"]

INDEX_SPECS = ("flat", "sq8", "pqM[xB]", "hnswM", "ivfN,pqM[xB]", "binary,rescoreR", "dimD,rerankR")
FORMAT = "embedlab.index"
FORMAT_VERSION = 1
_INDEX_FILES = ("ids.npy", "vectors.npy", "faiss.npy", "rows.parquet")

_PATTERNS = {
    "flat": re.compile(r"^flat$"),
    "sq8": re.compile(r"^sq8$"),
    "pq": re.compile(r"^pq(\d+)(?:x(\d+))?$"),
    "hnsw": re.compile(r"^hnsw(\d+)$"),
    "ivfpq": re.compile(r"^ivf(\d+),pq(\d+)(?:x(\d+))?$"),
    "binary": re.compile(r"^binary,rescore(\d+)$"),
    "shortlist": re.compile(r"^dim(\d+),rerank(\d+)$"),
}


def _parse(spec: str) -> tuple[str, tuple[int, ...]]:
    s = spec.replace(" ", "").lower()
    for kind, pattern in _PATTERNS.items():
        m = pattern.match(s)
        if m:
            args = tuple(int(g) for g in m.groups() if g is not None)
            if kind == "ivfpq" and len(args) == 2:
                args = (*args, 8)
            if kind == "pq" and len(args) == 1:
                args = (*args, 8)
            _check_bounds(spec, kind, args)
            return kind, args
    raise ValidationError(f"unknown index spec {spec!r}; use one of: {', '.join(INDEX_SPECS)}")


#: (kind, position of the number) -> (token, smallest, largest, what it is)
_BOUNDS = {
    ("pq", 0): ("pq", 1, 4096, "the number of sub-vectors"),
    ("pq", 1): ("x", 1, 16, "the bits per code"),
    ("hnsw", 0): ("hnsw", 2, 512, "the links per node (HNSW's M)"),
    ("ivfpq", 0): ("ivf", 1, 1 << 20, "the number of IVF lists"),
    ("ivfpq", 1): ("pq", 1, 4096, "the number of sub-vectors"),
    ("ivfpq", 2): ("x", 1, 16, "the bits per code"),
    ("binary", 0): ("rescore", 1, 1000, "the rescoring factor (candidates per result)"),
    ("shortlist", 0): ("dim", 1, 1 << 16, "the shortlist's dimensions"),
    ("shortlist", 1): ("rerank", 1, 1000, "the reranking factor (candidates per result)"),
}


def _check_bounds(spec: str, kind: str, args: tuple[int, ...]) -> None:
    """Every number of a spec within its range (before FAISS sees any): one line each."""
    for i, value in enumerate(args):
        token, lo, hi, what = _BOUNDS.get((kind, i), ("", 0, 0, ""))
        if token and not lo <= value <= hi:
            raise ValidationError(
                f"index spec {spec!r}: {token}{value} is out of range: {what} must be {lo}..{hi}"
            )


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
        self.kind, self.args = _parse(spec)
        self.spec = spec
        if dim is None or int(dim) < 1:
            raise ValidationError("an index needs the vector dimension (dim >= 1)")
        self.dim = int(dim)
        self.encoder = encoder
        if self.kind == "shortlist" and self.args[0] > self.dim:
            raise ValidationError(
                f"index spec {spec!r}: dim{self.args[0]} exceeds the vectors' dimension "
                f"{self.dim} (use dim1..dim{self.dim})"
            )
        m_bits = {"ivfpq": self.args[1:], "pq": self.args}.get(self.kind)
        if m_bits and self.dim % m_bits[0]:
            raise ValidationError(
                f"pq{m_bits[0]}: the number of sub-vectors must divide the dimension {self.dim}"
            )
        self.ids = np.empty(0, dtype=object)
        self.vectors = np.empty((0, self.dim), dtype=np.float32)  # kept for rescoring kinds
        self._faiss: Any = None
        self._binary: Any = None  # FAISS Hamming index over _codes, built on first search
        self._prefix: Any = None  # FAISS flat index over the normalised first D dimensions
        self.rows: Any = None  # optional pyarrow Table of id / label / text for display
        self._codes = np.empty((0, -(-self.dim // 8)), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"Index({self.spec!r}, dim={self.dim}, n={len(self)})"

    # ---------------------------------------------------------------- building
    def train(self, vectors: Any) -> Index:
        """Learn the quantiser (sq8, pq, ivf-pq) from ``vectors`` without adding them; by
        default the first batch given to :meth:`add` trains it. Other kinds need no training."""
        X = unit_rows(check_vectors(vectors, dim=self.dim))
        if self.kind in ("sq8", "pq", "ivfpq"):
            if self._faiss is not None and len(self):
                raise ValidationError("this index already holds vectors; train it before add()")
            self._faiss = None
            self._faiss_index(X)
        return self

    def add(self, vectors: Any, ids: Any = None) -> Index:
        """Add vectors (n, dim) with optional ids (default: running row numbers)."""
        X = unit_rows(check_vectors(vectors, dim=self.dim))
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

        from embedlab.sharded import ShardedSet

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
                self._faiss = faiss.IndexFlatIP(self.dim)
            elif self.kind == "hnsw":
                self._faiss = faiss.IndexHNSWFlat(self.dim, self.args[0], ip)
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
                self._faiss = faiss.index_factory(self.dim, factory, ip)
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
        Q = unit_rows(check_vectors(queries, name="queries", dim=self.dim))
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
            return 4.0 * self.dim
        if self.kind == "sq8":
            return float(self.dim)
        if self.kind == "pq":
            return self.args[0] * self.args[1] / 8.0
        if self.kind == "ivfpq":
            return self.args[1] * self.args[2] / 8.0
        if self.kind == "binary":
            return float(-(-self.dim // 8))
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
