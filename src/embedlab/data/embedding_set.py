"""EmbeddingSet: an n×d float32 matrix with ids, optional labels, texts, metadata and provenance.

On disk an EmbeddingSet is a directory of three files::

    vectors.npy     the float32 matrix, memory-mappable (row i = input row i)
    rows.parquet    one row per vector: id, label (if any), text (if kept), metadata columns
    manifest.json   shape, dtype, provenance and the sha256 and size of each file

or (``format_version`` 2, ``"layout": "sharded"``) of shard folders holding the same two data
files under one manifest that lists each shard's rows and checksums — written and read one
shard at a time by :mod:`embedlab.data.sharded`; :meth:`EmbeddingSet.load` reads every shard. A
sharded set may keep its vectors in rows.parquet instead, as a ``vector`` column of
fixed-size float32 lists (``"vectors": "parquet"``; read by any Parquet tool, not
memory-mapped): a shard whose files hold no vectors.npy is read that way.
Saving is atomic (see :mod:`embedlab.store.atomic`); loading verifies sizes, checksums and shapes.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from embedlab.core.errors import StoreError, ValidationError
from embedlab.core.validation import check_ids, check_labels, check_vectors
from embedlab.data.set_files import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST_FILE,
    RESERVED_COLUMNS,
    ROWS_FILE,
    VECTORS_FILE,
    read_manifest,
    read_shard_files,
    shard_entries,
    vector_column,
)
from embedlab.store.atomic import atomic_directory
from embedlab.store.manifest import sha256_file

__all__ = [
    "EmbeddingSet",
    "Provenance",
    "describe",
    "read_manifest",
    "read_shard",
    "read_vector_file",
    "shard_entries",
    "stored_label_counts",
    "vector_column",
]


def _utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class Provenance:
    """Where vectors came from: encoder spec, layer, output dimension, dtype, creation time.

    ``encoder`` is the encoder's spec (a JSON-able dict, see ``Encoder.spec``) or ``None`` for
    vectors brought from elsewhere; ``source`` names the input file when there was one.
    """

    encoder: dict[str, Any] | None = None
    layer: int | None = None
    dim: int | None = None
    dtype: str = "float32"
    normalized: bool | None = None
    source: str | None = None
    created: str = field(default_factory=_utc_now)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Provenance:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        extra = dict(data.get("extra") or {})
        extra.update({k: data[k] for k in unknown})
        kwargs = {k: data[k] for k in known & set(data) if k != "extra"}
        return cls(**kwargs, extra=extra)

    def same_encoder(self, other: Provenance) -> bool:
        """True when both sets come from the same encoder, layer and dimension."""
        fp = lambda e: None if e is None else e.get("fingerprint", e)  # noqa: E731
        return (fp(self.encoder), self.layer, self.dim) == (
            fp(other.encoder),
            other.layer,
            other.dim,
        )


class EmbeddingSet:
    """An n×d float32 matrix of embeddings with row ids, optional labels, texts and metadata.

    Parameters
    ----------
    vectors : array-like of shape (n, d)
        Converted to float32; NaN / inf, non-2-D input and empty input are rejected.
    ids : sequence of str, optional
        Unique row ids. Default: ``"0"`` .. ``"n-1"``.
    labels : sequence, optional
        One label per row, stored as strings.
    texts : sequence of str, optional
        The text each vector encodes, if kept.
    metadata : mapping of column name to sequence, or a ``pyarrow.Table``, optional
        Extra per-row columns (not ``id``, ``label`` or ``text``).
    provenance : Provenance, optional
        Encoder spec, layer, dim... Default: unknown encoder.

    Examples
    --------
    >>> import numpy as np
    >>> es = EmbeddingSet(np.eye(3), labels=["a", "b", "a"])
    >>> es.shape, es.label_counts()
    ((3, 3), {'a': 2, 'b': 1})
    >>> es.where_label("a").ids.tolist()
    ['0', '2']
    """

    def __init__(
        self,
        vectors: Any,
        ids: Sequence[Any] | None = None,
        labels: Sequence[Any] | None = None,
        texts: Sequence[str] | None = None,
        metadata: Mapping[str, Sequence[Any]] | pa.Table | None = None,
        provenance: Provenance | None = None,
    ) -> None:
        self.vectors = check_vectors(vectors)
        n = self.vectors.shape[0]
        self.ids = check_ids(range(n) if ids is None else ids, n)
        self.labels = None if labels is None else check_labels(labels, n)
        if texts is None:
            self.texts = None
        else:
            self.texts = np.asarray(list(texts), dtype=object)
            if self.texts.shape != (n,):
                raise ValidationError(f"texts has {self.texts.shape[0]} entries for {n} rows")
        self.metadata = _as_metadata(metadata, n)
        self.provenance = provenance or Provenance(dim=self.vectors.shape[1])

    # ------------------------------------------------------------------ basics
    @property
    def n(self) -> int:
        """Number of rows."""
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return int(self.vectors.shape[1])

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.dim)

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        enc = (self.provenance.encoder or {}).get("name", "unknown encoder")
        lab = f", {len(self.classes)} classes" if self.labels is not None else ""
        return f"EmbeddingSet(n={self.n}, dim={self.dim}{lab}, encoder={enc!r})"

    @property
    def classes(self) -> list[str]:
        """Sorted distinct labels (empty when the set is unlabelled)."""
        return [] if self.labels is None else sorted(set(self.labels.tolist()))

    def label_counts(self) -> dict[str, int]:
        """Rows per label, most frequent first (empty dict when unlabelled)."""
        if self.labels is None:
            return {}
        values, counts = np.unique(self.labels.astype(str), return_counts=True)
        order = np.lexsort((values, -counts))
        return {str(values[i]): int(counts[i]) for i in order}

    # ------------------------------------------------------------- selection
    def take(self, indices: Any) -> EmbeddingSet:
        """Rows at ``indices`` (ints, a slice, or a boolean mask), as a new EmbeddingSet."""
        if isinstance(indices, slice):
            idx = np.arange(self.n)[indices]
            vectors = self.vectors[indices]  # a view: keeps memory mapping
        else:
            idx = np.asarray(indices)
            if idx.dtype == bool:
                if idx.shape != (self.n,):
                    raise ValidationError(
                        f"boolean mask has shape {idx.shape}, expected ({self.n},)"
                    )
                idx = np.flatnonzero(idx)
            elif idx.size and not np.issubdtype(idx.dtype, np.integer):
                raise ValidationError(
                    f"row indices must be integers or a boolean mask, got {idx.dtype}"
                )
            idx = idx.astype(np.int64).reshape(-1)
            if idx.size and (idx.max() >= self.n or idx.min() < -self.n):
                raise ValidationError(f"row index out of range for {self.n} rows")
            vectors = self.vectors[idx]
        if idx.size == 0:
            raise ValidationError("selection is empty: an EmbeddingSet needs at least one row")
        return self._derive(
            vectors,
            ids=self.ids[idx],
            labels=None if self.labels is None else self.labels[idx],
            texts=None if self.texts is None else self.texts[idx],
            metadata=None if self.metadata is None else self.metadata.take(pa.array(idx)),
        )

    def __getitem__(self, key: Any) -> EmbeddingSet:
        if isinstance(key, (int, np.integer)):
            key = [int(key)]
        return self.take(key)

    def where_label(self, *labels: str, exclude: bool = False) -> EmbeddingSet:
        """Rows whose label is one of ``labels`` (or is not, with ``exclude=True``).

        Raises ValidationError for an unlabelled set or a label the set does not contain.
        """
        if self.labels is None:
            raise ValidationError("this EmbeddingSet has no labels to filter on")
        known = set(self.classes)
        unknown = [lab for lab in labels if str(lab) not in known]
        if unknown:
            raise ValidationError(
                f"unknown label(s) {unknown}; known labels: {sorted(known)[:20]}"
                + (" ..." if len(known) > 20 else "")
            )
        mask = np.isin(self.labels.astype(str), [str(x) for x in labels])
        return self.take(~mask if exclude else mask)

    def filter(self, mask: Any) -> EmbeddingSet:
        """Rows where the boolean ``mask`` is true."""
        return self.take(np.asarray(mask, dtype=bool))

    def _derive(self, vectors: np.ndarray, **parts: Any) -> EmbeddingSet:
        out = object.__new__(EmbeddingSet)
        out.vectors = vectors
        out.ids = parts["ids"]
        out.labels = parts["labels"]
        out.texts = parts["texts"]
        out.metadata = parts["metadata"]
        out.provenance = self.provenance
        return out

    def transform(self, chain: Any, *, fit: bool = False) -> EmbeddingSet:
        """These rows through a :class:`~embedlab.compress.transforms.TransformChain` (or a
        spec string).

        ``fit=True`` fits the chain on these vectors first (a spec string is always fitted
        here). A chain ending in a code step gives its decoded float vectors; the
        provenance records the spec and the new dimension.
        """
        from embedlab.compress.transforms import TransformChain

        if isinstance(chain, str):
            chain, fit = TransformChain(chain), True
        if chain.layer is not None and chain.layer != self.provenance.layer:
            raise ValidationError(
                f"{chain.spec!r} names layer {chain.layer}, but these vectors come from layer "
                f"{self.provenance.layer or 'last'}; encode with --layer {chain.layer} instead"
            )
        if fit:
            chain.fit(self.vectors)
        vectors = np.ascontiguousarray(chain.float_vectors(self.vectors))
        out = self._derive(
            vectors, ids=self.ids, labels=self.labels, texts=self.texts, metadata=self.metadata
        )
        out.provenance = replace(
            self.provenance,
            dim=int(vectors.shape[1]),
            normalized=bool(chain.steps) and chain.steps[-1].name == "norm",
            extra={
                **self.provenance.extra,
                "transforms": [*self.provenance.extra.get("transforms", []), chain.spec],
            },
        )
        return out

    # ---------------------------------------------------------- combination
    @classmethod
    def concat(cls, sets: Iterable[EmbeddingSet], *, check_provenance: bool = True) -> EmbeddingSet:
        """Stack sets row-wise. Dimensions must agree; ids must stay unique.

        Labels and texts are kept only when every set has them (a mix raises). Metadata
        columns are unioned, missing values become nulls. With ``check_provenance`` the sets
        must come from the same encoder, layer and dimension.
        """
        sets = list(sets)
        if not sets:
            raise ValidationError("concat needs at least one EmbeddingSet")
        first = sets[0]
        for i, s in enumerate(sets[1:], start=1):
            if s.dim != first.dim:
                raise ValidationError(
                    f"cannot concatenate: set 0 has dimension {first.dim}, set {i} has {s.dim}"
                )
            if check_provenance and not first.provenance.same_encoder(s.provenance):
                raise ValidationError(
                    f"cannot concatenate: set {i} comes from another encoder / layer / dim than "
                    "set 0 (pass check_provenance=False to force)"
                )
        has_labels = {s.labels is not None for s in sets}
        if len(has_labels) > 1:
            raise ValidationError("cannot concatenate labelled and unlabelled sets")
        has_texts = all(s.texts is not None for s in sets)
        metadata = None
        if any(s.metadata is not None for s in sets):
            # A placeholder column keeps each set's row count through the union of columns.
            metas = [
                (s.metadata if s.metadata is not None else pa.table({})).append_column(
                    "__rows__", pa.nulls(s.n)
                )
                for s in sets
            ]
            metadata = pa.concat_tables(metas, promote_options="default").drop_columns(["__rows__"])
        return cls(
            np.concatenate([s.vectors for s in sets], axis=0),
            ids=np.concatenate([s.ids for s in sets]),
            labels=None if first.labels is None else np.concatenate([s.labels for s in sets]),
            texts=np.concatenate([s.texts for s in sets]) if has_texts else None,
            metadata=metadata,
            provenance=first.provenance,
        )

    # ------------------------------------------------------------- building
    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike,
        *,
        vector_col: str | None = None,
        id_col: str | None = "id",
        label_col: str | None = "label",
    ) -> EmbeddingSet:
        """Build from precomputed vectors: ``.npy``, Parquet or CSV.

        Parquet: one list-valued column (``vector_col``, or ``vector`` / ``embedding``) or
        every numeric column. CSV: every numeric column except id/label. Optional id and
        label columns are picked up by name.
        """
        return read_vector_file(path, vector_col=vector_col, id_col=id_col, label_col=label_col)

    @classmethod
    def from_texts(
        cls,
        texts: Sequence[str],
        encoder: Any,
        *,
        ids: Sequence[Any] | None = None,
        labels: Sequence[Any] | None = None,
        metadata: Mapping[str, Sequence[Any]] | pa.Table | None = None,
        keep_text: bool = True,
        source: str | None = None,
        progress: bool | None = None,
    ) -> EmbeddingSet:
        """Encode ``texts`` with ``encoder`` (any :class:`~embedlab.encoders.Encoder`).

        Row i of the result is the vector of ``texts[i]``; provenance records the encoder spec.
        """
        vectors = encoder.encode(texts, progress=progress)
        spec = dict(encoder.spec)
        prov = Provenance(
            encoder=spec,
            layer=spec.get("layer"),
            dim=int(vectors.shape[1]),
            normalized=spec.get("normalize"),
            source=source,
        )
        return cls(
            vectors,
            ids=ids,
            labels=labels,
            texts=list(texts) if keep_text else None,
            metadata=metadata,
            provenance=prov,
        )

    # ----------------------------------------------------------- persistence
    def rows_table(self) -> pa.Table:
        """The per-row columns (id, label, text, metadata) as a pyarrow Table."""
        cols: dict[str, pa.Array] = {"id": pa.array(self.ids.tolist(), type=pa.string())}
        if self.labels is not None:
            cols["label"] = pa.array(self.labels.tolist(), type=pa.string())
        if self.texts is not None:
            cols["text"] = pa.array(self.texts.tolist(), type=pa.string())
        table = pa.table(cols)
        if self.metadata is not None:
            for name in self.metadata.column_names:
                table = table.append_column(name, self.metadata.column(name))
        return table

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the set to directory ``path`` atomically and return the path.

        An existing directory is replaced only with ``overwrite=True``; if the save fails
        midway, the previous copy stays as it was.
        """
        path = Path(path)
        if path.exists() and not overwrite:
            raise StoreError(
                f"{path} already exists (pass overwrite=True, or --force, to replace it)"
            )
        with atomic_directory(path, overwrite=overwrite) as tmp:
            np.save(tmp / VECTORS_FILE, np.ascontiguousarray(self.vectors, dtype=np.float32))
            pq.write_table(self.rows_table(), tmp / ROWS_FILE)
            files = {
                name: {"sha256": sha256_file(tmp / name), "bytes": (tmp / name).stat().st_size}
                for name in (VECTORS_FILE, ROWS_FILE)
            }
            manifest = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "shape": [self.n, self.dim],
                "dtype": "float32",
                "columns": {
                    "labels": self.labels is not None,
                    "texts": self.texts is not None,
                    "metadata": [] if self.metadata is None else self.metadata.column_names,
                },
                "provenance": self.provenance.to_dict(),
                "files": files,
                "embedlab_version": _version(),
                "saved": _utc_now(),
            }
            (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        return path

    @classmethod
    def load(
        cls, path: str | os.PathLike, *, mmap: bool = True, verify: bool = True
    ) -> EmbeddingSet:
        """Load a saved set. ``mmap`` maps vectors.npy read-only instead of reading it.

        ``verify`` checks each file's size and sha256 against the manifest. A missing,
        truncated, edited or mismatched file raises StoreError naming it.
        """
        path = Path(path)
        manifest = read_manifest(path)
        columns = manifest["columns"]
        provenance = Provenance.from_dict(manifest.get("provenance") or {})
        dim = int(manifest["shape"][1])
        parts = [
            read_shard(path, entry, dim, columns, provenance, mmap=mmap, verify=verify)
            for entry in shard_entries(manifest)
        ]
        if len(parts) == 1:
            return parts[0]
        return cls.concat(parts, check_provenance=False)


def read_shard(
    root: Path,
    entry: Mapping[str, Any],
    dim: int,
    columns: Mapping[str, Any],
    provenance: Provenance,
    *,
    mmap: bool = True,
    verify: bool = True,
) -> EmbeddingSet:
    """One shard's folder as an EmbeddingSet, its files checked against ``entry`` (sizes
    always, sha256 with ``verify``); a StoreError names the shard and the file."""
    vectors, rows, where = read_shard_files(root, entry, dim, mmap=mmap, verify=verify)
    try:
        meta_names = list(columns.get("metadata", []))
        out = object.__new__(EmbeddingSet)
        out.vectors = vectors
        out.ids = np.asarray(rows.column("id").to_pylist(), dtype=object)
        out.labels = (
            np.asarray(rows.column("label").to_pylist(), dtype=object)
            if columns.get("labels")
            else None
        )
        out.texts = (
            np.asarray(rows.column("text").to_pylist(), dtype=object)
            if columns.get("texts")
            else None
        )
        out.metadata = rows.select(meta_names) if meta_names else None
        out.provenance = provenance
    except (KeyError, TypeError) as exc:
        raise StoreError(f"{where}: {ROWS_FILE} does not match the manifest: {exc}") from None
    return out


def _as_metadata(metadata: Any, n: int) -> pa.Table | None:
    if metadata is None:
        return None
    try:
        table = (
            metadata
            if isinstance(metadata, pa.Table)
            else pa.table({k: pa.array(list(v)) for k, v in dict(metadata).items()})
        )
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise ValidationError(f"metadata cannot be stored as columns: {exc}") from None
    if table.num_columns == 0:
        return None
    clash = [c for c in table.column_names if c in RESERVED_COLUMNS]
    if clash:
        raise ValidationError(
            f"metadata column(s) {clash} clash with reserved names {RESERVED_COLUMNS}"
        )
    if table.num_rows != n:
        raise ValidationError(f"metadata has {table.num_rows} rows for {n} vectors")
    return table


def _version() -> str:
    from embedlab import __version__

    return __version__


def read_vector_file(
    path: str | os.PathLike,
    *,
    vector_col: str | None = None,
    id_col: str | None = "id",
    label_col: str | None = "label",
) -> EmbeddingSet:
    """An EmbeddingSet of precomputed vectors in ``.npy``, Parquet or CSV (validated)."""
    from embedlab.data.vector_files import read_vectors

    t = read_vectors(path, vector_col=vector_col, id_col=id_col, label_col=label_col)
    return EmbeddingSet(
        t.vectors,
        ids=t.ids,
        labels=t.labels,
        provenance=Provenance(source=t.source, dim=t.vectors.shape[-1]),
    )


def stored_label_counts(path: str | os.PathLike) -> dict[str, int]:
    """Rows per label of the set saved at ``path``, from its label columns only (shard by
    shard; no vectors read)."""
    path = Path(path)
    manifest = read_manifest(path)
    if not manifest["columns"].get("labels"):
        return {}
    counts: dict[str, int] = {}
    for entry in shard_entries(manifest):
        f = path / entry["path"] / ROWS_FILE
        if not f.is_file():
            raise StoreError(f"{path}: {entry['path']}: {ROWS_FILE} is missing")
        column = pq.read_table(f, columns=["label"]).column("label")
        values, n = np.unique(np.asarray(column.to_pylist(), dtype=object), return_counts=True)
        for v, c in zip(values.tolist(), n.tolist(), strict=True):
            counts[v] = counts.get(v, 0) + c
    return dict(sorted(counts.items()))


def describe(path: str | os.PathLike, es: EmbeddingSet | None = None) -> dict[str, Any]:
    """A JSON-ready summary of the EmbeddingSet saved at ``path``: shape, shards, provenance,
    label counts, which columns it keeps, when and by which embedlab it was saved — from the
    manifest and the label columns (``es``, when given, supplies the label counts)."""
    manifest = read_manifest(path)
    columns = manifest["columns"]
    return {
        "path": str(path),
        "n": int(manifest["shape"][0]),
        "dim": int(manifest["shape"][1]),
        "dtype": "float32",
        "shards": len(shard_entries(manifest)),
        "vectors": manifest.get("vectors", "npy"),
        "provenance": Provenance.from_dict(manifest.get("provenance") or {}).to_dict(),
        "label_counts": es.label_counts() if es is not None else stored_label_counts(path),
        "texts": bool(columns.get("texts")),
        "metadata": list(columns.get("metadata", [])),
        "saved": manifest.get("saved"),
        "embedlab_version": manifest.get("embedlab_version"),
    }
