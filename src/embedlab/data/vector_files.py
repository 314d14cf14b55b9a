"""Precomputed vectors from files: ``.npy``, or Parquet / CSV with a list column of
vectors or one numeric column per dimension (beside optional id and label columns)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from embedlab.core.errors import DataFormatError
from embedlab.data.readers import _is_number, _read_bytes, _rows_text, read_table

__all__ = ["VectorTable", "read_vectors"]


@dataclass
class VectorTable:
    """Precomputed vectors read from a file, with ids and labels when the file has them."""

    vectors: np.ndarray
    ids: list[Any] | None = None
    labels: list[Any] | None = None
    source: str = ""


def read_vectors(
    path: str | os.PathLike,
    *,
    vector_col: str | None = None,
    id_col: str | None = "id",
    label_col: str | None = "label",
) -> VectorTable:
    """Read precomputed vectors from ``.npy``, Parquet or CSV (``EmbeddingSet.from_file``
    turns them into an EmbeddingSet)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        _read_bytes(path)
        try:
            arr = np.load(path, allow_pickle=False, mmap_mode="r")
        except (ValueError, OSError, EOFError) as exc:
            raise DataFormatError(f"{path}: cannot read .npy ({exc})") from None
        return VectorTable(arr, source=str(path))
    if suffix in (".parquet", ".pq"):
        table = read_table(path)
    elif suffix == ".csv":
        _read_bytes(path)
        try:
            table = pacsv.read_csv(path)
        except pa.ArrowException as exc:
            raise DataFormatError(f"{path}: cannot read CSV ({exc})") from None
    else:
        raise DataFormatError(f"{path}: vectors must be .npy, .parquet or .csv, not {suffix!r}")
    names = table.column_names
    ids = table.column(id_col).to_pylist() if id_col and id_col in names else None
    labels = table.column(label_col).to_pylist() if label_col and label_col in names else None
    list_cols = [
        n
        for n in names
        if pa.types.is_list(table.column(n).type)
        or pa.types.is_fixed_size_list(table.column(n).type)
        or pa.types.is_large_list(table.column(n).type)
    ]
    if vector_col is None:
        vector_col = next(
            (c for c in ("vector", "embedding", "embeddings") if c in list_cols),
            list_cols[0] if len(list_cols) == 1 else None,
        )
    if vector_col is not None:
        arr = _from_list_column(path, table, vector_col)
    else:
        arr = _from_number_columns(path, table, {id_col, label_col}, suffix)
    return VectorTable(arr, ids=ids, labels=labels, source=str(path))


def _from_list_column(path: Path, table: pa.Table, vector_col: str) -> np.ndarray:
    """(n, d) float32 from a column of equally long lists of numbers (every bad cell named)."""
    names = table.column_names
    if vector_col not in names:
        raise DataFormatError(f"{path}: no vector column {vector_col!r}; columns are {names}")
    values = table.column(vector_col).to_pylist()
    empty = [i for i, v in enumerate(values) if v is None or len(v) == 0]
    if empty:
        raise DataFormatError(
            f"{path}: column {vector_col!r} has no vector at {_rows_text('parquet', empty)}"
        )
    lengths = np.fromiter((len(v) for v in values), dtype=np.int64, count=len(values))
    if (lengths != lengths[0]).any():
        odd = np.flatnonzero(lengths != lengths[0]).tolist()
        raise DataFormatError(
            f"{path}: vectors in column {vector_col!r} have different lengths: row 1 has "
            f"{lengths[0]}, {_rows_text('parquet', odd, 5)} differ "
            f"({sorted(set(lengths.tolist()))[:5]})"
        )
    flat = table.column(vector_col).combine_chunks().flatten()
    if flat.null_count:
        cells = np.flatnonzero(flat.is_null().to_numpy(zero_copy_only=False))
        rows = sorted({int(c) // int(lengths[0]) for c in cells[:50]})
        raise DataFormatError(
            f"{path}: column {vector_col!r} has empty (null) cells in "
            f"{_rows_text('parquet', rows)}, e.g. position {int(cells[0]) % int(lengths[0])}"
        )
    try:
        arr = np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        bad = next(
            i for i, v in enumerate(values) if not all(isinstance(x, (int, float)) for x in v)
        )
        raise DataFormatError(
            f"{path}: column {vector_col!r} holds a non-number at "
            f"{_rows_text('parquet', [bad])} ({exc})"
        ) from None
    return arr


def _from_number_columns(
    path: Path, table: pa.Table, skip: set[str | None], suffix: str
) -> np.ndarray:
    """(n, d) from one numeric column per dimension (every column but ``skip``)."""
    names = table.column_names
    num = [
        n
        for n in names
        if n not in skip
        and (
            pa.types.is_floating(table.column(n).type) or pa.types.is_integer(table.column(n).type)
        )
    ]
    other = [n for n in names if n not in skip and n not in num]
    if not num:
        raise DataFormatError(f"{path}: found no numeric vector columns among {names}")
    if other:
        fmt = "csv" if suffix == ".csv" else "parquet"
        for name in other:  # a mostly numeric column with one bad cell: name that cell
            values = table.column(name).to_pylist()
            bad = [i for i, v in enumerate(values) if v is not None and not _is_number(v)]
            if bad and len(bad) < len(values):
                raise DataFormatError(
                    f"{path}: vector column {name!r} holds a non-number at "
                    f"{_rows_text(fmt, bad[:1])}: {values[bad[0]]!r}"
                )
        raise DataFormatError(
            f"{path}: non-numeric column(s) {other[:5]} among the vector columns; "
            "name the id / label columns (--id-col / --label-col) or remove them"
        )
    nulls = [n for n in num if table.column(n).null_count]
    if nulls:
        col = nulls[0]
        rows = np.flatnonzero(table.column(col).is_null().to_numpy(zero_copy_only=False)).tolist()
        raise DataFormatError(
            f"{path}: empty cell(s) in vector column {col!r} at "
            f"{_rows_text('csv' if suffix == '.csv' else 'parquet', rows)}; fill or drop them"
        )
    arr = np.column_stack([table.column(n).to_numpy(zero_copy_only=False) for n in num])
    return arr
