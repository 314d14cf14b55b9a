"""Data file → EmbeddingSet: read texts with their labels, encode them, keep the row order."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from embedlab.core.progress import progress_bar
from embedlab.data.embedding_set import EmbeddingSet
from embedlab.data.readers import TextTable, read_texts
from embedlab.data.text_chunks import count_rows, iter_texts
from embedlab.encoders.base import Encoder

__all__ = ["EncodeJob", "encode_file", "encode_file_sharded", "encode_table"]

#: Input rows per shard of ``embedlab encode`` (and per chunk read): memory stays near
#: this many texts and vectors whatever the size of the input.
SHARD_ROWS = 100_000


def encode_table(
    table: TextTable, encoder: Encoder, *, keep_text: bool = True, progress: bool | None = None
) -> EmbeddingSet:
    """Encode a :class:`~embedlab.data.readers.TextTable`; row i of the result is its text i."""
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


@dataclass
class EncodeJob:
    """What :func:`encode_file_sharded` did: shards written now and found done from an
    earlier run, texts encoded and taken from the cache, rows skipped (empty texts)."""

    output: Path
    shards: int = 0
    resumed: int = 0
    rows: int = 0
    encoded: int = 0
    cached: int = 0
    load_seconds: float = 0.0
    skipped_rows: list[int] = field(default_factory=list)


def encode_file_sharded(
    path: str | os.PathLike,
    output: str | os.PathLike,
    encoder: Encoder,
    *,
    shard_rows: int = SHARD_ROWS,
    text_col: str = "text",
    label_col: str | None = "label",
    require_labels: bool = False,
    id_col: str | None = None,
    splits: Sequence[str] | None = None,
    on_empty: Literal["error", "skip"] = "error",
    delimiter: str | None = None,
    keep_text: bool = True,
    overwrite: bool = False,
    restart: bool = False,
    progress: bool | None = None,
    ray: Any = None,
    vector_format: str = "npy",
) -> EncodeJob:
    """Encode a data file into an EmbeddingSet at ``output`` one shard of ``shard_rows``
    input rows at a time (memory bounded by a shard), resumably: run again after a crash or
    a kill with the same input and options, it encodes only the shards not yet written.
    One shard gives the simple one-file layout; more, a sharded set (:mod:`embedlab.data.sharded`).
    ``ray`` (:class:`embedlab.scale.distributed.RayOptions`): the shards are encoded by a pool of
    Ray actors (same output, see :mod:`embedlab.scale.distributed`). ``vector_format``: ``"npy"``
    (memory-mappable) or ``"parquet"`` (a ``vector`` column of rows.parquet).
    """
    from embedlab.data.sharded import ShardWriter

    if ray is not None:
        from embedlab.scale.distributed import check

        check(ray)
    path = Path(path)
    st = path.stat()
    options: dict[str, Any] = {
        "text_col": text_col,
        "label_col": label_col,
        "id_col": id_col,
        "splits": list(splits or []),
        "on_empty": on_empty,
        "delimiter": delimiter,
        "keep_text": keep_text,
        "shard_rows": int(shard_rows),
    }
    job = {
        "kind": "encode",
        "input": {"path": str(path.resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns},
        "encoder": encoder.spec,
        "options": options,
    }
    writer = ShardWriter(
        output, job, overwrite=overwrite, restart=restart, vector_format=vector_format
    )
    out = EncodeJob(Path(output))
    total = count_rows(path)
    show = (total or 0) > 1000 if progress is None else progress
    chunks = iter_texts(
        path,
        shard_rows,
        text_col=text_col,
        label_col=label_col,
        id_col=id_col,
        on_empty=on_empty,
        splits=splits,
        require_labels=require_labels,
        delimiter=delimiter,
    )
    try:
        if ray is None:
            _run_encode(writer, chunks, encoder, keep_text, out, total, show)
        else:
            _run_encode_ray(writer, chunks, encoder, keep_text, out, ray, path)
    except BaseException:
        writer.abandon()  # kept only when it holds finished shards to resume from
        raise
    writer.finish(out.shards)
    return out


def _run_encode(
    writer: Any,
    chunks: Any,
    encoder: Encoder,
    keep_text: bool,
    out: EncodeJob,
    total: int | None,
    show: bool,
) -> None:
    with progress_bar(total or 0, "encoding", enabled=show and bool(total)) as advance:
        for i, (first, table) in enumerate(chunks):
            out.shards += 1
            out.skipped_rows += table.skipped_rows
            n_in = len(table) + len(table.skipped_rows)
            if writer.done(i):
                out.resumed += 1
            elif len(table) == 0:
                writer.write(i, None, first)
            else:
                es = encode_table(table, encoder, keep_text=keep_text, progress=False)
                stats = getattr(encoder, "last_stats", None) or {}
                out.encoded += int(stats.get("encoded", len(table)))
                out.cached += int(stats.get("cached", 0))
                out.load_seconds = max(out.load_seconds, float(stats.get("load_seconds") or 0))
                writer.write(i, es, first)
            out.rows += len(table)
            advance(n_in)


def _run_encode_ray(
    writer: Any,
    chunks: Any,
    encoder: Encoder,
    keep_text: bool,
    out: EncodeJob,
    ray: Any,
    source: Path,
) -> None:
    """The shards not yet written, as input pieces for a pool of Ray encoder actors."""
    import pyarrow as pa

    from embedlab.scale.distributed import run_items, write_input_piece

    items = []
    for i, (first, table) in enumerate(chunks):
        out.shards += 1
        out.skipped_rows += table.skipped_rows
        out.rows += len(table)
        if writer.done(i):
            out.resumed += 1
        elif len(table) == 0:
            writer.write(i, None, first)
        else:
            cols = {
                "id": pa.array(table.ids, pa.string()),
                "text": pa.array(table.texts, pa.string()),
            }
            if table.labels is not None:
                cols["label"] = pa.array(table.labels, pa.string())
            piece = pa.table(cols)
            if table.metadata is not None:
                for name in table.metadata.column_names:
                    piece = piece.append_column(name, table.metadata.column(name))
            path = write_input_piece(writer.work / "inputs", i, piece)
            items.append(
                {"shard": i, "first_row": first, "input": str(path), "source": str(source)}
            )
            out.encoded += len(table)
    kwargs = {
        "spec": encoder.spec,
        "backend": encoder.resolved_backend,
        "work": str(writer.work),
        "keep_text": keep_text,
    }
    run_items(items, EncodeWorker, kwargs, ray)


class EncodeWorker:
    """A Ray actor that encodes input pieces into shards (the encoder loaded once)."""

    def __init__(self, spec: dict[str, Any], backend: str | None, work: str, keep_text: bool):
        from embedlab.data.sharded import ShardWriter
        from embedlab.encoders.sentence_transformer import encoder_from_spec

        self.encoder = encoder_from_spec(spec, cache=False, backend=backend)
        self.writer = ShardWriter.attach(work)
        self.keep_text = keep_text

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        import pyarrow.parquet as pq

        from embedlab.scale.distributed import item_of

        item = item_of(batch)
        i = int(item["shard"])
        if not self.writer.done(i):  # a retried item whose shard was written: nothing to do
            table = pq.read_table(item["input"])
            meta = [c for c in table.column_names if c not in ("id", "label", "text")]
            texts = TextTable(
                texts=table.column("text").to_pylist(),
                ids=table.column("id").to_pylist(),
                labels=table.column("label").to_pylist() if "label" in table.column_names else None,
                metadata=table.select(meta) if meta else None,
                source=str(item["source"]),
            )
            es = encode_table(texts, self.encoder, keep_text=self.keep_text, progress=False)
            self.writer.write(i, es, int(item["first_row"]))
        return {"shard": [i], "pid": [os.getpid()]}
