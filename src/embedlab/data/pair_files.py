"""Sentence pairs with a similarity score (STS-style data): STS Benchmark's own layout or
any table with two text columns and a score column."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embedlab.core.errors import DataFormatError
from embedlab.data.readers import (
    _decode,
    _format_of,
    _is_number,
    _read_bytes,
    _string_column,
    read_table,
)

__all__ = ["PairTable", "read_pairs"]


@dataclass
class PairTable:
    """Sentence pairs with a similarity score each (STS-style data)."""

    first: list[str]
    second: list[str]
    scores: np.ndarray
    source: str = ""

    def __len__(self) -> int:
        return len(self.first)


def _is_stsb_layout(path: Path, data: bytes) -> bool:
    """STS Benchmark's own files: tab-separated, no header, score in field 5 of 7+."""
    first = data.split(b"\n", 1)[0].decode("utf-8", errors="replace").split("\t")
    if len(first) < 7:
        return False
    try:
        float(first[4])
    except ValueError:
        return False
    return True


def _read_stsb(path: Path, data: bytes) -> PairTable:
    text = _decode(path, data, 0)
    first, second, scores = [], [], []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        try:
            if len(fields) < 7:
                raise ValueError("fewer than 7 tab-separated fields")
            scores.append(float(fields[4]))
        except ValueError as exc:
            raise DataFormatError(
                f"{path}: line {line_no} is not an STS Benchmark row (genre, file, year, id, "
                f"score, sentence1, sentence2): {exc}"
            ) from None
        first.append(fields[5])
        second.append(fields[6])
    return PairTable(first, second, np.asarray(scores, dtype=np.float64), str(path))


def read_pairs(
    path: str | os.PathLike,
    *,
    first_col: str = "sentence1",
    second_col: str = "sentence2",
    score_col: str = "score",
    splits: Sequence[str] | None = None,
) -> PairTable:
    """Read scored sentence pairs from CSV / TSV / JSONL / JSON / Parquet with the named
    columns, or from an STS Benchmark file (tab-separated, no header) as it is distributed.
    """
    path = Path(path)
    if _format_of(path) in ("csv", "tsv") and not splits:
        data = _read_bytes(path)
        if _is_stsb_layout(path, data):
            pairs = _read_stsb(path, data)
            _check_pairs(path, pairs)
            return pairs
    table = read_table(path, splits=splits)
    missing = [c for c in (first_col, second_col, score_col) if c not in table.column_names]
    if missing:
        raise DataFormatError(
            f"{path}: no column(s) {missing}; columns are {table.column_names} (choose them "
            "with --first-col / --second-col / --score-col)"
        )
    first = _string_column(path, table, first_col, "text")
    second = _string_column(path, table, second_col, "text")
    raw = table.column(score_col).to_pylist()
    try:
        scores = np.asarray([float(v) for v in raw], dtype=np.float64)
    except (TypeError, ValueError):
        bad = next(i for i, v in enumerate(raw) if not _is_number(v))
        raise DataFormatError(
            f"{path}: score column {score_col!r} holds a non-number at row {bad}: {raw[bad]!r}"
        ) from None
    pairs = PairTable(list(first), list(second), scores, str(path))
    _check_pairs(path, pairs)
    return pairs


def _check_pairs(path: Path, pairs: PairTable) -> None:
    if not len(pairs):
        raise DataFormatError(f"{path}: no sentence pairs")
    empty = [
        i
        for i, (a, b) in enumerate(zip(pairs.first, pairs.second, strict=True))
        if not isinstance(a, str) or not isinstance(b, str) or not a.strip() or not b.strip()
    ]
    if empty:
        raise DataFormatError(
            f"{path}: {len(empty)} pair(s) with an empty text at rows {empty[:10]}"
        )
    if not np.isfinite(pairs.scores).all():
        bad = np.flatnonzero(~np.isfinite(pairs.scores))[:10].tolist()
        raise DataFormatError(f"{path}: scores are NaN or infinite at rows {bad}")
