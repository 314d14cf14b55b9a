"""Read texts (and labels) from CSV, TSV, JSONL, JSON and Parquet; write tables back out.

Every reader checks its input once and raises :class:`~embedlab.core.errors.DataFormatError` with
the file, the row and what is wrong: a missing column, an empty file, bytes that are not UTF-8,
a malformed line, empty texts. Row numbers in messages count data rows from 1 (the first
row under a CSV header is row 1), as a spreadsheet does; for CSV / TSV / JSONL the file's
line number follows. (Default ids are 0-based row positions.)
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from embedlab.core.errors import DataFormatError
from embedlab.store.atomic import atomic_write_bytes

__all__ = [
    "TextTable",
    "read_label_names",
    "read_table",
    "read_texts",
    "write_table",
]

TEXT_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
}


@dataclass
class TextTable:
    """Texts read from a file, in file order, with their ids, labels and other columns."""

    texts: list[str]
    ids: list[str]
    labels: list[str] | None = None
    metadata: pa.Table | None = None
    source: str = ""
    skipped_rows: list[int] = field(default_factory=list)
    table: pa.Table | None = None

    def __len__(self) -> int:
        return len(self.texts)


def _format_of(path: Path) -> str:
    if path.is_dir():
        raise DataFormatError(f"{path} is a directory, expected a data file")
    fmt = TEXT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataFormatError(
            f"{path}: unknown file type {path.suffix!r}; use one of "
            + ", ".join(sorted(TEXT_FORMATS))
        )
    return fmt


def _text_encoding(head: bytes) -> str:
    """How a text file starting with ``head`` is decoded: UTF-16 after its byte-order mark,
    else UTF-8 (a UTF-8 byte-order mark dropped)."""
    return "utf-16" if head.startswith((b"\xff\xfe", b"\xfe\xff")) else "utf-8-sig"


def _decode(path: Path, data: bytes, header_lines: int) -> str:
    if _text_encoding(data[:2]) == "utf-16":
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise DataFormatError(
                f"{path} starts with a UTF-16 byte-order mark but is not valid UTF-16; "
                "re-save it as UTF-8"
            ) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        row = line - header_lines
        where = f"line {line}" + (f" (data row {row})" if row >= 1 else "")
        raise DataFormatError(
            f"{path} is not valid UTF-8: byte 0x{data[exc.start]:02x} at {where}. "
            "Re-save it as UTF-8 (for example: iconv -f latin1 -t utf-8 in > out)"
        ) from None


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise DataFormatError(f"{path}: no such file")
    if path.is_dir():
        raise DataFormatError(f"{path} is a directory, expected a data file")
    data = path.read_bytes()
    if not data.strip():
        raise DataFormatError(f"{path} is empty")
    return data


def _columns_table(columns: dict[str, list[Any]]) -> pa.Table:
    """One Arrow column per key; a column mixing types is stored as text, and values of
    different types that become the same text (``1`` and ``"1"``) are recorded in the
    schema metadata under ``embedlab.merged.<column>`` so that readers can say so."""
    out = {}
    merged: dict[bytes, bytes] = {}
    for name, values in columns.items():
        try:
            out[name] = pa.array(values)
        except (pa.ArrowException, TypeError, ValueError):
            shown = [
                None if v is None else json.dumps(v) if not isinstance(v, str) else v
                for v in values
            ]
            strings = {v for v in values if isinstance(v, str)}
            clash = sorted(
                {t for v, t in zip(values, shown, strict=True) if not isinstance(v, str)} & strings
            )
            if clash:
                merged[f"embedlab.merged.{name}".encode()] = json.dumps(clash[:5]).encode()
            out[name] = pa.array(shown, type=pa.string())
    table = pa.table(out)
    return table.replace_schema_metadata(merged) if merged else table


def _sniff_delimiter(header_line: str, default: str) -> str:
    """The default delimiter, unless the header holds none of it but another common one."""
    if default in header_line:
        return default
    counts = {d: header_line.count(d) for d in (";", "\t", "|", ",") if d != default}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else default


_CSV_FIELD_LIMIT = 2**31 - 1  # a cell as long as a JSONL value may be


@contextlib.contextmanager
def _csv_fields_unbounded() -> Iterator[None]:
    """The csv module caps a cell at 131,072 characters (a process-wide setting): raised
    while embedlab parses, and put back afterwards."""
    before = csv.field_size_limit()
    if before >= _CSV_FIELD_LIMIT:
        yield
        return
    csv.field_size_limit(_CSV_FIELD_LIMIT)
    try:
        yield
    finally:
        csv.field_size_limit(before)


def _read_delimited(path: Path, delimiter: str | None) -> pa.Table:
    with _csv_fields_unbounded():
        return _parse_delimited(path, delimiter)


def _parse_delimited(path: Path, delimiter: str | None) -> pa.Table:
    text = _decode(path, _read_bytes(path), header_lines=1)
    if delimiter is None:
        default = "\t" if path.suffix.lower() == ".tsv" else ","
        delimiter = _sniff_delimiter(text.split("\n", 1)[0], default)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
        rows = []
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise DataFormatError(
                    f"{path}: line {reader.line_num} has {len(row)} fields, the header has "
                    f"{len(header)} ({', '.join(header)}) when split at {delimiter!r}; if the "
                    "file uses another delimiter, name it with --delimiter"
                )
            rows.append(row)
    except csv.Error as exc:
        raise DataFormatError(f"{path}: malformed CSV at line {reader.line_num}: {exc}") from None
    if len(set(header)) != len(header):
        raise DataFormatError(f"{path}: duplicate column names in header {header}")
    if not rows:
        raise DataFormatError(f"{path} has a header but no data rows")
    cols = list(zip(*rows, strict=True))
    return pa.table(
        {h: pa.array(list(c), type=pa.string()) for h, c in zip(header, cols, strict=True)}
    )


def _read_jsonl(path: Path) -> pa.Table:
    text = _decode(path, _read_bytes(path), header_lines=0)
    records = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"{path}: line {lineno} is not valid JSON ({exc.msg})") from None
        if not isinstance(rec, dict):
            raise DataFormatError(f"{path}: line {lineno} is not a JSON object")
        records.append(rec)
    return _records_table(path, records)


def _records_table(path: Path, records: list[dict[str, Any]]) -> pa.Table:
    if not records:
        raise DataFormatError(f"{path} has no records")
    names: dict[str, None] = {}
    for rec in records:
        names.update(dict.fromkeys(rec))
    return _columns_table({n: [rec.get(n) for rec in records] for n in names})


def _read_json(path: Path, splits: Sequence[str] | None) -> pa.Table:
    """A list of objects, or a split layout {split: [[text, label], ...]} (e.g. CLINC150)."""
    text = _decode(path, _read_bytes(path), header_lines=0)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"{path} is not valid JSON: {exc}") from None
    if isinstance(doc, list):
        if not all(isinstance(r, dict) for r in doc):
            raise DataFormatError(f"{path}: a top-level JSON list must hold objects")
        return _records_table(path, doc)
    if isinstance(doc, dict) and doc and all(isinstance(v, list) for v in doc.values()):
        chosen = list(doc) if not splits else list(splits)
        unknown = [s for s in chosen if s not in doc]
        if unknown:
            raise DataFormatError(f"{path}: unknown split(s) {unknown}; available: {sorted(doc)}")
        texts, split_col, raw_labels = [], [], []
        for split in chosen:
            for i, item in enumerate(doc[split]):
                if not (isinstance(item, list) and len(item) == 2):
                    raise DataFormatError(
                        f"{path}: split {split!r} item {i} is not a [text, label] pair"
                    )
                texts.append(item[0])
                raw_labels.append(item[1])
                split_col.append(split)
        if not texts:
            raise DataFormatError(f"{path}: the selected split(s) {chosen} are empty")
        # Labels keep their JSON types: read_texts reads them, and says when 1 and "1" clash.
        return _columns_table({"text": texts, "label": raw_labels, "split": split_col})
    raise DataFormatError(f"{path}: expected a list of objects or {{split: [[text, label], ...]}}")


def read_table(
    path: str | os.PathLike,
    *,
    splits: Sequence[str] | None = None,
    delimiter: str | None = None,
) -> pa.Table:
    """Read a CSV / TSV / JSONL / JSON / Parquet file into a pyarrow Table.

    CSV and TSV columns are read as strings; their delimiter is ``delimiter``, else comma
    (tab for .tsv) unless the header line holds none but a semicolon, tab or bar.
    ``splits`` picks splits of a split-layout JSON.
    """
    path = Path(path)
    fmt = _format_of(path)
    if splits and fmt != "json":
        raise DataFormatError(f"{path}: --split applies to split-layout JSON files only")
    if fmt in ("csv", "tsv"):
        return _read_delimited(path, delimiter)
    if fmt == "jsonl":
        return _read_jsonl(path)
    if fmt == "json":
        return _read_json(path, splits)
    _read_bytes(path)
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataFormatError(f"{path}: cannot read Parquet ({exc})") from None
    if table.num_rows == 0:
        raise DataFormatError(f"{path} has no rows")
    return table


def read_label_names(
    path: str | os.PathLike, *, delimiter: str | None = None
) -> tuple[list[str], list[str | None]]:
    """Label names and optional descriptions for a zero-shot model: a table (CSV, TSV,
    JSONL, JSON, Parquet) with a ``label`` column and optionally ``description`` (a label
    may repeat, once per description; an empty description means "use the name"), or a
    .txt file with one label per line."""
    path = Path(path)
    if path.suffix.lower() == ".txt":
        text = _decode(path, _read_bytes(path), 0)
        labels = [line.strip() for line in text.splitlines() if line.strip()]
        if not labels:
            raise DataFormatError(f"{path} lists no labels")
        return labels, [None] * len(labels)
    table = read_table(path, delimiter=delimiter)
    if "label" not in table.column_names:
        raise DataFormatError(
            f"{path}: a label file needs a 'label' column (and optionally 'description'); "
            f"columns are {table.column_names}"
        )
    raw = _string_column(path, table, "label", "label")
    missing = [i for i, v in enumerate(raw) if is_missing_value(v)]
    if missing:
        fmt = _format_of(path)
        raise DataFormatError(f"{path}: empty label at {_rows_text(fmt, missing)}")
    labels = [_label_text(v).strip() for v in raw]
    if "description" in table.column_names:
        desc = _string_column(path, table, "description", "description")
        descriptions = [None if is_missing_value(d) else str(d) for d in desc]
    else:
        descriptions = [None] * len(labels)
    return labels, descriptions


def _string_column(path: Path, table: pa.Table, name: str, what: str) -> list[Any]:
    col = table.column(name)
    if pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type):
        values = []
        for i, v in enumerate(col.to_pylist()):
            try:
                values.append(None if v is None else v.decode("utf-8"))
            except UnicodeDecodeError:
                raise DataFormatError(
                    f"{path}: {what} column {name!r} is not valid UTF-8 at data row {i}"
                ) from None
        return values
    return col.to_pylist()


_MISSING_STRINGS = frozenset(
    {"nan", "NaN", "NAN", "NA", "N/A", "n/a", "null", "NULL", "<NA>", "#N/A"}
)
#: a regular expression matching exactly the cells that read as a missing label
MISSING_LABEL_PATTERN = (
    r"^\s*(" + "|".join(sorted(re.escape(m) for m in _MISSING_STRINGS)) + r")?\s*$"
)


def is_missing_value(v: Any) -> bool:
    """None, a float NaN, an empty string or a common spelling of 'missing' (NaN, NA, null)."""
    if v is None:
        return True
    if isinstance(v, float):
        return v != v
    if isinstance(v, str):
        return not v.strip() or v.strip() in _MISSING_STRINGS
    return False


def _label_text(v: Any) -> str:
    """A label as text: 3.0 from a float column is "3", like the integer it stands for."""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _rows_text(fmt: str, rows: Sequence[int], limit: int = 10) -> str:
    """'rows 2, 4 (lines 3, 5)' for 0-based data positions: 1-based rows, and the file's
    lines where the format has them (a header line for CSV / TSV)."""
    shown = list(rows[:limit])
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    text = "row" + ("s" if len(rows) > 1 else "") + " " + ", ".join(str(r + 1) for r in shown)
    if fmt in ("csv", "tsv"):
        text += " (line" + ("s" if len(shown) > 1 else "") + " "
        text += ", ".join(str(r + 2) for r in shown) + ")"
    return text + more


def read_texts(
    path: str | os.PathLike,
    *,
    text_col: str = "text",
    label_col: str | None = "label",
    id_col: str | None = None,
    on_empty: Literal["error", "skip"] = "error",
    splits: Sequence[str] | None = None,
    require_labels: bool = False,
    delimiter: str | None = None,
) -> TextTable:
    """Read texts, labels and ids from a data file; other columns become metadata.

    ``label_col`` is optional unless ``require_labels`` (pass it whenever the user named
    the column, so that a misspelt name is an error rather than an unlabelled table).
    Missing labels — null, NaN, or text such as "NaN" / "NA" / "null" — are an error, and
    so are labels of different types that would read as the same text (``1`` and ``"1"``).
    ``on_empty="skip"`` drops empty texts and records their 0-based positions in
    ``skipped_rows``; the default raises. Ids come from ``id_col`` or are the 0-based row
    positions of the file. ``table`` keeps every column of the rows kept, in file order.
    """
    path = Path(path)
    fmt = _format_of(path)
    table = read_table(path, splits=splits, delimiter=delimiter)
    return _texts_from_table(
        path, fmt, table, text_col, label_col, id_col, on_empty, require_labels, 0
    )


def _texts_from_table(
    path: Path,
    fmt: str,
    table: pa.Table,
    text_col: str,
    label_col: str | None,
    id_col: str | None,
    on_empty: str,
    require_labels: bool,
    first_row: int,
) -> TextTable:
    """The TextTable of ``table`` (rows ``first_row`` … of the file): columns checked,
    empty texts and missing labels found, with their places in the file."""
    names = table.column_names
    if text_col not in names:
        hint = "choose one with --text-col"
        if fmt in ("csv", "tsv") and len(names) == 1:
            hint += ", or name the file's delimiter with --delimiter"
        raise DataFormatError(f"{path}: no text column {text_col!r}; columns are {names} ({hint})")
    if label_col is not None and label_col not in names and require_labels:
        raise DataFormatError(
            f"{path}: no label column {label_col!r}; columns are {names} "
            "(choose one with --label-col)"
        )
    if id_col is not None and id_col not in names:
        raise DataFormatError(
            f"{path}: no id column {id_col!r}; columns are {names} (choose one with --id-col)"
        )
    raw = _string_column(path, table, text_col, "text")
    bad = [i for i, t in enumerate(raw) if t is not None and not isinstance(t, str)]
    if bad:
        raise DataFormatError(
            f"{path}: text column {text_col!r} holds non-text values at "
            f"{_rows_text(fmt, [first_row + i for i in bad])}"
        )
    empty = [i for i, t in enumerate(raw) if t is None or not t.strip()]
    if empty and on_empty != "skip":
        raise DataFormatError(
            f"{path}: {len(empty)} empty text(s) in column {text_col!r} at "
            f"{_rows_text(fmt, [first_row + i for i in empty])}; fix them or pass --skip-empty "
            "to drop them"
        )
    keep = np.setdiff1d(np.arange(len(raw)), np.asarray(empty, dtype=np.int64))
    ids = (
        [str(v) for v in _string_column(path, table, id_col, "id")]
        if id_col is not None
        else [str(first_row + i) for i in range(len(raw))]
    )
    if id_col is not None:
        _check_unique_ids(path, fmt, [ids[i] for i in keep.tolist()], keep, first_row, id_col)
    labels = None
    if label_col is not None and label_col in names:
        merged = (table.schema.metadata or {}).get(f"embedlab.merged.{label_col}".encode())
        if merged:
            raise DataFormatError(
                f"{path}: label column {label_col!r} holds both numbers and texts that read "
                f"the same ({', '.join(json.loads(merged))}), which would merge into one "
                "label; write every label the same way (all quoted, or all numbers)"
            )
        values = _string_column(path, table, label_col, "label")
        missing = [i for i in keep.tolist() if is_missing_value(values[i])]
        if missing:
            spelled = sorted({repr(values[i]) for i in missing if values[i] not in (None, "")})[:3]
            raise DataFormatError(
                f"{path}: {len(missing)} row(s) have no label in column {label_col!r} at "
                f"{_rows_text(fmt, [first_row + i for i in missing])}"
                + (f" (missing values spelled {', '.join(spelled)})" if spelled else "")
                + "; label them or remove them"
            )
        labels = [_label_text(values[i]) for i in keep.tolist()]
    used = {text_col, label_col, id_col}
    meta_names = [n for n in names if n not in used and n not in ("id", "label", "text")]
    kept = table.take(pa.array(keep)) if len(keep) != table.num_rows else table
    metadata = kept.select(meta_names) if meta_names else None
    return TextTable(
        texts=[raw[i] for i in keep.tolist()],
        ids=[ids[i] for i in keep.tolist()],
        labels=labels,
        metadata=metadata,
        source=str(path),
        skipped_rows=[first_row + i for i in empty],
        table=kept.replace_schema_metadata(None),
    )


def _check_unique_ids(
    path: Path, fmt: str, ids: list[str], keep: np.ndarray, first_row: int, id_col: str
) -> None:
    """DataFormatError naming the file and the rows of the first id that repeats."""
    uniq, inverse, counts = np.unique(
        np.asarray(ids, dtype=str), return_inverse=True, return_counts=True
    )
    if len(uniq) == len(ids):
        return
    dup = int(np.flatnonzero(counts > 1)[0])
    where = [first_row + int(keep[i]) for i in np.flatnonzero(inverse == dup)]
    more = int((counts > 1).sum()) - 1
    raise DataFormatError(
        f"{path}: id {uniq[dup]!r} in column {id_col!r} repeats at {_rows_text(fmt, where)}"
        + (f" (and {more} other id(s) repeat)" if more else "")
        + "; every row needs its own id"
    )


def write_table(table: pa.Table, path: str | os.PathLike) -> Path:
    """Write a table as CSV, JSONL or Parquet (by extension), atomically."""
    path = Path(path)
    fmt = TEXT_FORMATS.get(path.suffix.lower())
    buf = io.BytesIO()
    if fmt == "csv":
        pacsv.write_csv(table, buf)
    elif fmt == "jsonl":
        for rec in table.to_pylist():
            buf.write(json.dumps(rec, ensure_ascii=False).encode("utf-8") + b"\n")
    elif fmt == "parquet":
        pq.write_table(table, buf)
    else:
        raise DataFormatError(f"{path}: output must end in .csv, .jsonl or .parquet")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _is_number(v: Any) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True
