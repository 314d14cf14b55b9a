"""How an EmbeddingSet lies on disk: its manifest (format, shape, columns, shards and every
file's size and sha256), one folder per shard with ``rows.parquet`` (ids, labels, texts,
metadata; the vectors too in the Parquet layout) and ``vectors.npy``, and reading a shard's
files back with their sizes and checksums verified."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from embedlab.core.errors import StoreError
from embedlab.store.containment import check_npy, inside
from embedlab.store.manifest import read_versioned_json, sha256_file

__all__ = ["read_manifest", "read_shard_files", "shard_entries", "vector_column"]

FORMAT = "embedlab.embedding_set"
FORMAT_VERSION = 1
SHARDED_VERSION = 2  # the sharded layout (embedlab.data.sharded)
RESERVED_COLUMNS = ("id", "label", "text")
VECTORS_FILE = "vectors.npy"
ROWS_FILE = "rows.parquet"
VECTOR_COLUMN = "vector"  # the vectors' column in rows.parquet, for sets stored that way
VECTOR_FORMATS = ("npy", "parquet")
MANIFEST_FILE = "manifest.json"


def shard_entries(manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The shards a manifest lists (``path`` relative to the set, ``rows``, ``first_row``,
    ``files``); a one-file set is one shard at the root."""
    if manifest.get("layout") == "sharded":
        return [dict(e) for e in manifest["shards"]]
    n = int(manifest["shape"][0])
    return [{"path": ".", "rows": n, "first_row": 0, "files": manifest["files"]}]


def read_shard_files(
    root: Path, entry: Mapping[str, Any], dim: int, *, mmap: bool = True, verify: bool = True
) -> tuple[np.ndarray, pa.Table, str]:
    """A shard's (n, dim) float32 vectors (memory-mapped .npy when ``mmap``) and its rows
    table, its files checked against ``entry`` (sizes always, sha256 with ``verify``), and
    where it is (for messages); a StoreError names the shard and the file."""
    folder = inside(root, entry["path"], "a shard")
    where = f"{root}" if entry["path"] == "." else f"{root}: {entry['path']}"
    if not folder.is_dir():
        raise StoreError(f"{where} is missing")
    for name in entry["files"]:
        f = inside(folder, name, "a shard file")
        if not f.is_file():
            raise StoreError(f"{where}: {name} is missing")
        expected = entry["files"][name]
        size = f.stat().st_size
        if size != expected["bytes"]:
            raise StoreError(
                f"{where}: {name} has {size} bytes, manifest says {expected['bytes']} "
                "(truncated or replaced file)"
            )
        if verify and sha256_file(f) != expected["sha256"]:
            raise StoreError(f"{where}: checksum mismatch for {name} (file changed or corrupted)")
    shape = (int(entry["rows"]), dim)
    in_parquet = VECTORS_FILE not in entry["files"]
    try:
        schema = pq.read_schema(folder / ROWS_FILE)
        rows = pq.read_table(
            folder / ROWS_FILE, columns=[c for c in schema.names if c != VECTOR_COLUMN]
        )
        vectors, stored = (
            _column_vectors(folder / ROWS_FILE, schema, dim) if in_parquet else (None, "")
        )
    except (pa.ArrowException, OSError) as exc:
        raise StoreError(f"{where}: cannot read {ROWS_FILE}: {exc}") from None
    if not in_parquet:
        check_npy(folder / VECTORS_FILE, where)  # its header's shape fits in the file
        try:
            vectors = np.load(
                folder / VECTORS_FILE, mmap_mode="r" if mmap else None, allow_pickle=False
            )
        except (ValueError, OSError, EOFError) as exc:
            raise StoreError(f"{where}: cannot read {VECTORS_FILE}: {exc}") from None
        stored = f"{VECTORS_FILE} holds {vectors.dtype}{vectors.shape}"
    if vectors is None or vectors.shape != shape or vectors.dtype != np.float32:
        raise StoreError(f"{where}: {stored}, manifest says float32{shape}")
    if rows.num_rows != shape[0]:
        raise StoreError(f"{where}: {ROWS_FILE} has {rows.num_rows} rows, vectors have {shape[0]}")
    return vectors, rows, where


def _data_files(manifest: Mapping[str, Any]) -> tuple[str, ...]:
    """The data files each shard of the set holds, by where it keeps its vectors."""
    if manifest.get("layout") == "sharded" and manifest.get("vectors") == "parquet":
        return (ROWS_FILE,)
    return (VECTORS_FILE, ROWS_FILE)


def _column_vectors(path: Path, schema: pa.Schema, dim: int) -> tuple[np.ndarray | None, str]:
    """The (n, dim) float32 matrix kept in the vector column of the Parquet file at
    ``path``, decoded a batch at a time into one array (memory: the matrix and a batch, not
    the file's column chunk), or None and what the column holds instead."""
    if VECTOR_COLUMN not in schema.names:
        return None, f"{ROWS_FILE} has no {VECTOR_COLUMN!r} column"
    kind = schema.field(VECTOR_COLUMN).type
    if (
        not pa.types.is_fixed_size_list(kind)
        or kind.list_size != dim
        or kind.value_type != pa.float32()
    ):
        return None, f"its {VECTOR_COLUMN!r} column holds {kind}"
    source = pq.ParquetFile(path, buffer_size=1 << 22, pre_buffer=False)
    out = np.empty((source.metadata.num_rows, dim), dtype=np.float32)
    start = 0
    for batch in source.iter_batches(batch_size=8192, columns=[VECTOR_COLUMN], use_threads=False):
        column = batch.column(0)
        values = column.flatten()  # (the slice of) its float32 values, no copy
        if column.null_count or values.null_count:
            return None, f"its {VECTOR_COLUMN!r} column holds nulls"
        out[start : start + len(column)] = values.to_numpy().reshape(-1, dim)
        start += len(column)
    return out, ""


def vector_column(vectors: np.ndarray) -> pa.FixedSizeListArray:
    """An (n, d) float32 matrix as a column of fixed-size lists (the Parquet layout)."""
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, int(vectors.shape[1]))


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check an EmbeddingSet directory's manifest.json (no data files are read)."""
    path = Path(path)
    if not path.exists():
        raise StoreError(f"no EmbeddingSet at {path}: directory does not exist")
    if not path.is_dir():
        raise StoreError(
            f"{path} is a file; an EmbeddingSet is a directory (made by `embedlab encode`)"
        )
    mfile = path / MANIFEST_FILE
    if not mfile.is_file():
        raise StoreError(f"{path} is not an EmbeddingSet directory: {MANIFEST_FILE} is missing")
    manifest = read_versioned_json(mfile, FORMAT, SHARDED_VERSION, "an EmbeddingSet manifest")
    try:
        shape = manifest["shape"]
        entries = shard_entries(manifest)
        ok = (
            len(shape) == 2
            and all(isinstance(v, int) and v >= 0 for v in shape)
            and manifest.get("vectors", "npy") in VECTOR_FORMATS
            and all(set(e["files"]) == set(_data_files(manifest)) for e in entries)
            and all(
                set(e["files"][f]) >= {"sha256", "bytes"} and "/" not in f and f != ".."
                for e in entries
                for f in e["files"]
            )
            and sum(int(e["rows"]) for e in entries) == shape[0]
            and all(".." not in Path(str(e["path"])).parts for e in entries)
            and isinstance(manifest["columns"], dict)
        )
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise StoreError(
            f"{mfile} is corrupted (missing or malformed shape / files / shards / columns)"
        )
    return manifest
