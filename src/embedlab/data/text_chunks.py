"""Texts of a file of any size, chunk by chunk: CSV / TSV read as a stream of rows, JSONL
line by line, Parquet by row groups, each chunk checked as :func:`embedlab.data.readers.read_texts`
checks a whole file (memory bounded by a chunk, not by the file)."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from embedlab.core.errors import DataFormatError, ValidationError
from embedlab.data.readers import (
    TextTable,
    _csv_fields_unbounded,
    _format_of,
    _read_json,
    _records_table,
    _sniff_delimiter,
    _text_encoding,
    _texts_from_table,
)

__all__ = ["count_rows", "iter_tables", "iter_texts"]


def iter_texts(
    path: str | os.PathLike,
    rows: int,
    *,
    text_col: str = "text",
    label_col: str | None = "label",
    id_col: str | None = None,
    on_empty: Literal["error", "skip"] = "error",
    splits: Sequence[str] | None = None,
    require_labels: bool = False,
    delimiter: str | None = None,
) -> Iterator[tuple[int, TextTable]]:
    """:func:`read_texts` in chunks of ``rows`` input rows: (first input row, TextTable) in
    file order, reading only one chunk at a time from Parquet, CSV / TSV and JSONL (a JSON
    document is read whole). Default ids, skipped rows and error messages count input rows
    from the start of the file, as :func:`read_texts` does."""
    path = Path(path)
    first = 0
    for part in iter_tables(path, rows, splits=splits, delimiter=delimiter):
        yield (
            first,
            _texts_from_table(
                path, _format_of(path), part, text_col, label_col, id_col, on_empty,
                require_labels, first,
            ),
        )  # fmt: skip
        first += part.num_rows


def iter_tables(
    path: str | os.PathLike,
    rows: int,
    *,
    splits: Sequence[str] | None = None,
    delimiter: str | None = None,
) -> Iterator[pa.Table]:
    """Every column of a data file in tables of at most ``rows`` rows, in file order,
    reading one chunk at a time (a JSON document is read whole, then split)."""
    if rows < 1:
        raise ValidationError(f"rows per chunk must be at least 1, got {rows}")
    path = Path(path)
    fmt = _format_of(path)
    if splits and fmt != "json":
        raise DataFormatError(f"{path}: --split applies to split-layout JSON files only")
    if fmt == "json":
        chunks: Iterator[pa.Table] = iter([_read_json(path, splits)])
    elif fmt == "parquet":
        chunks = _parquet_chunks(path, rows)
    elif fmt == "jsonl":
        chunks = _jsonl_chunks(path, rows)
    else:
        chunks = _delimited_chunks(path, delimiter, rows)
    seen = False
    for table in chunks:
        seen = True
        for start in range(0, table.num_rows, rows):
            yield table.slice(start, rows)
    if not seen:
        raise DataFormatError(f"{path} has no rows")


def count_rows(path: str | os.PathLike) -> int | None:
    """About how many rows a data file holds (lines for CSV / TSV / JSONL, Parquet's own
    count), without reading it into memory — for progress bars; None for a JSON document."""
    path = Path(path)
    fmt = _format_of(path)
    if fmt == "parquet":
        return pq.ParquetFile(path).metadata.num_rows
    if fmt == "json":
        return None
    lines = 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 24):
            lines += block.count(b"\n")
    return max(1, lines - (1 if fmt in ("csv", "tsv") else 0))


def _parquet_chunks(path: Path, rows: int) -> Iterator[pa.Table]:
    _check_file(path)
    try:
        pf = pq.ParquetFile(path)
        for batch in pf.iter_batches(batch_size=rows):
            yield pa.Table.from_batches([batch])
    except (pa.ArrowException, OSError) as exc:
        raise DataFormatError(f"{path}: cannot read Parquet ({exc})") from None


def _check_file(path: Path) -> None:
    if not path.exists():
        raise DataFormatError(f"{path}: no such file")
    if path.is_dir():
        raise DataFormatError(f"{path} is a directory, expected a data file")
    if path.stat().st_size == 0:
        raise DataFormatError(f"{path} is empty")


def _open_text(path: Path) -> Any:
    """The file as text (see :func:`_text_encoding`)."""
    _check_file(path)
    with open(path, "rb") as fh:
        head = fh.read(2)
    return open(path, encoding=_text_encoding(head), newline="")


def _decoding_error(path: Path, exc: UnicodeDecodeError) -> DataFormatError:
    return DataFormatError(
        f"{path} is not valid UTF-8 ({exc.reason}). Re-save it as UTF-8 (for example: "
        "iconv -f latin1 -t utf-8 in > out)"
    )


def _delimited_chunks(path: Path, delimiter: str | None, rows: int) -> Iterator[pa.Table]:
    """Blocks of ``rows`` rows; the csv module's process-wide cell cap is raised only while a
    block is parsed, never across a yield (a generator left suspended keeps nothing
    raised)."""
    with _open_text(path) as fh:
        try:
            header_line = fh.readline()
            if delimiter is None:
                default = "\t" if path.suffix.lower() == ".tsv" else ","
                delimiter = _sniff_delimiter(header_line, default)
            with _csv_fields_unbounded():
                header = next(csv.reader([header_line], delimiter=delimiter), [])
            if len(set(header)) != len(header):
                raise DataFormatError(f"{path}: duplicate column names in header {header}")
            reader = csv.reader(fh, delimiter=delimiter)
            while True:
                with _csv_fields_unbounded():
                    block = _block(reader, header, rows, path, delimiter)
                if not block:
                    return
                yield _string_table(header, block)
        except csv.Error as exc:
            raise DataFormatError(f"{path}: malformed CSV: {exc}") from None
        except UnicodeDecodeError as exc:
            raise _decoding_error(path, exc) from None


def _block(reader: Any, header: list[str], rows: int, path: Path, delimiter: str) -> list:
    """The next ``rows`` non-empty rows of ``reader`` (fewer at the end), each checked to
    have the header's number of fields."""
    block: list[list[str]] = []
    for row in reader:  # the csv module parses row by row (as read_table does)
        if not row:
            continue
        if len(row) != len(header):
            raise DataFormatError(
                f"{path}: line {reader.line_num + 1} has {len(row)} fields, the header "
                f"has {len(header)} ({', '.join(header)}) when split at "
                f"{delimiter!r}; if the file uses another delimiter, name it with "
                "--delimiter"
            )
        block.append(row)
        if len(block) == rows:
            break
    return block


def _string_table(header: list[str], block: list[list[str]]) -> pa.Table:
    cols = list(zip(*block, strict=True))
    return pa.table(
        {h: pa.array(list(c), type=pa.string()) for h, c in zip(header, cols, strict=True)}
    )


def _jsonl_chunks(path: Path, rows: int) -> Iterator[pa.Table]:
    with _open_text(path) as fh:
        records: list[dict[str, Any]] = []
        try:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataFormatError(
                        f"{path}: line {lineno} is not valid JSON ({exc.msg})"
                    ) from None
                if not isinstance(rec, dict):
                    raise DataFormatError(f"{path}: line {lineno} is not a JSON object")
                records.append(rec)
                if len(records) == rows:
                    yield _records_table(path, records)
                    records = []
        except UnicodeDecodeError as exc:
            raise _decoding_error(path, exc) from None
        if records:
            yield _records_table(path, records)
