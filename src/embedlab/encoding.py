"""Data file → EmbeddingSet: read texts with their labels, encode them, keep the row order."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Literal

from embedlab.embedding_set import EmbeddingSet
from embedlab.encoders.base import Encoder
from embedlab.readers import TextTable, read_texts

__all__ = ["encode_file", "encode_table"]


def encode_table(
    table: TextTable, encoder: Encoder, *, keep_text: bool = True, progress: bool | None = None
) -> EmbeddingSet:
    """Encode a :class:`~embedlab.readers.TextTable`; row i of the result is its text i."""
    es = EmbeddingSet.from_texts(
        table.texts,
        encoder,
        ids=table.ids,
        labels=table.labels,
        metadata=table.metadata,
        keep_text=keep_text,
        source=table.source,
        progress=progress,
    )
    return es


def encode_file(
    path: str | os.PathLike,
    encoder: Encoder,
    *,
    text_col: str = "text",
    label_col: str | None = "label",
    id_col: str | None = None,
    splits: Sequence[str] | None = None,
    on_empty: Literal["error", "skip"] = "error",
    keep_text: bool = True,
    progress: bool | None = None,
) -> tuple[EmbeddingSet, TextTable]:
    """Read a CSV / JSONL / JSON / Parquet file and encode its texts.

    Returns the EmbeddingSet and the TextTable it came from (its ``skipped_rows`` lists the
    empty texts dropped with ``on_empty="skip"``).
    """
    table = read_texts(
        path,
        text_col=text_col,
        label_col=label_col,
        id_col=id_col,
        on_empty=on_empty,
        splits=splits,
    )
    return encode_table(table, encoder, keep_text=keep_text, progress=progress), table
