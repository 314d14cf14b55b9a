"""Predictions for inputs of any size: a model's labels for a data file of texts or for a
stored (possibly sharded) EmbeddingSet, computed chunk by chunk and written as they go, so
memory is bounded by a chunk; resumable (a job stopped at any point and started again with
the same input, model and options computes only the chunks not yet written); the output file
appears in one step when every chunk is there.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.ipc
import pyarrow.parquet as pq

from embedlab.core.conformal import benjamini_hochberg, check_alpha
from embedlab.core.errors import DataFormatError, ValidationError
from embedlab.core.progress import progress_bar
from embedlab.data.readers import TEXT_FORMATS
from embedlab.data.text_chunks import count_rows, iter_texts
from embedlab.encoders.base import check_same_encoder
from embedlab.models.predictions import Predictions
from embedlab.store.atomic import fsync_directory, fsync_file, new_file_mode
from embedlab.store.jobs import JobFolder
from embedlab.store.manifest import saved_kind, sha256_file

__all__ = ["CHUNK_ROWS", "PredictJob", "predict_file", "prediction_table"]

#: Rows per chunk of a streaming prediction (vectors of a chunk: 100 MB at 384 dimensions).
CHUNK_ROWS = 65_536


@dataclass
class PredictJob:
    """What :func:`predict_file` did."""

    output: Path
    rows: int = 0
    chunks: int = 0
    resumed: int = 0
    out_of_scope: int = 0
    skipped_rows: list[int] = field(default_factory=list)


def prediction_table(
    predictions: Predictions, base: pa.Table, leave_out: tuple[str, ...] = ()
) -> pa.Table:
    """``base`` (the input's columns, or only its ids) followed by the prediction columns
    (:meth:`Predictions.to_table`, less those named in ``leave_out``); a prediction column
    whose name the input already uses becomes ``predicted_<name>``."""
    out = base
    found = predictions.to_table().drop_columns(list(leave_out))
    for name, array in zip(found.column_names, found.columns, strict=True):
        col = f"predicted_{name}" if name in out.column_names else name
        out = out.append_column(col, array)
    return out


def _check_encoder(pipe: Any, provenance: Any, path: Path) -> None:
    """Refuse vectors that another encoder (model, layer, dimension) made."""
    check_same_encoder(pipe.encoder_.spec, provenance.encoder, path)


def _set_chunks(
    path: Path, pipe: Any, rows: int, keep_columns: bool
) -> tuple[int, Iterator[tuple[np.ndarray | None, pa.Table, list[int]]]]:
    from embedlab.data.sharded import ShardedSet

    ss = ShardedSet(path)
    _check_encoder(pipe, ss.provenance, path)

    def chunks() -> Iterator[tuple[np.ndarray | None, pa.Table, list[int]]]:
        # the next shard is read and its checksums verified in a thread while this one is
        # predicted (hashing releases the GIL); at most two shards are mapped at a time
        with ThreadPoolExecutor(1) as pool:
            ahead = pool.submit(ss.shard, 0)
            for i in range(len(ss.shards)):
                shard = ahead.result()  # memory-mapped, verified
                if i + 1 < len(ss.shards):
                    ahead = pool.submit(ss.shard, i + 1)
                table = shard.rows_table()
                if not keep_columns:
                    table = table.select(["id"])
                for s in range(0, shard.n, rows):
                    yield shard.vectors[s : s + rows], table.slice(s, rows), []
                del shard

    return ss.n, chunks()


def _text_chunks(
    path: Path, rows: int, read: dict[str, Any], keep_columns: bool
) -> Iterator[tuple[list[str], pa.Table, list[int]]]:
    """(texts, the input's columns — or only the ids —, skipped rows) per chunk."""
    id_col = read.get("id_col")
    for _first, t in iter_texts(path, rows, label_col=None, **read):
        if keep_columns and t.table is not None:
            base = t.table
        else:
            base = pa.table({id_col or "id": pa.array(t.ids, type=pa.string())})
        yield t.texts, base, t.skipped_rows


def predict_file(
    pipe: Any,
    data: str | os.PathLike,
    output: str | os.PathLike,
    *,
    chunk_rows: int = CHUNK_ROWS,
    reject: bool = True,
    keep_columns: bool = True,
    text_col: str = "text",
    id_col: str | None = None,
    splits: Sequence[str] | None = None,
    on_empty: Literal["error", "skip"] = "error",
    delimiter: str | None = None,
    model_id: str = "",
    restart: bool = False,
    progress: bool | None = None,
    ray: Any = None,
    model_dir: str | os.PathLike | None = None,
    fdr: float | None = None,
    sets: float | None = None,
    explain: bool = False,
) -> PredictJob:
    """Predict every row of ``data`` (a data file of texts, or an EmbeddingSet directory
    of vectors the model's encoder made) into ``output`` (.csv, .jsonl or .parquet), one
    chunk of ``chunk_rows`` rows at a time; resumable (see the module doc). ``ray``
    (:class:`embedlab.scale.distributed.RayOptions`, with ``model_dir``, the bundle the actors
    load): the chunks are predicted by a pool of Ray actors (same output). ``sets``: add
    each row's conformal prediction set at that coverage. ``fdr=q``: the rows rejected are
    those Benjamini–Hochberg picks at level q over the whole input (every row's p-value is
    known before the output is written), not each row against the threshold."""
    if chunk_rows < 1:
        raise ValidationError(f"chunk_rows must be at least 1, got {chunk_rows}")
    if fdr is not None:
        check_alpha(fdr, "--fdr")
        if not reject:
            raise ValidationError("--fdr decides what is rejected: it cannot go with --no-reject")
    if sets is not None:
        check_alpha(sets, "--sets (coverage)")
        if pipe.multi_label:
            raise ValidationError(
                "prediction sets are for single-label models; a multi-label model's answer "
                "is already a set of labels"
            )
    if explain:
        from embedlab.models.class_changes import check_explainable

        check_explainable(pipe)
    data, output = Path(data), Path(output)
    fmt = TEXT_FORMATS.get(output.suffix.lower())
    if fmt not in ("csv", "jsonl", "parquet"):
        raise DataFormatError(f"{output}: output must end in .csv, .jsonl or .parquet")
    if ray is not None:
        if model_dir is None:
            raise ValidationError("predicting on Ray needs model_dir (the actors load it)")
        from embedlab.scale.distributed import check

        check(ray)
    vectors = saved_kind(data) == "embedding_set"
    read = {
        "text_col": text_col,
        "id_col": id_col,
        "splits": splits,
        "on_empty": on_empty,
        "delimiter": delimiter,
    }
    stamp = (
        sha256_file(data / "manifest.json")
        if vectors
        else {"bytes": data.stat().st_size, "mtime_ns": data.stat().st_mtime_ns}
    )
    job = JobFolder(
        output,
        {
            "kind": "predict",
            "input": {"path": str(data.resolve()), "stamp": stamp},
            "model": model_id,
            "options": {
                **read,
                "splits": list(splits or []),
                "chunk_rows": chunk_rows,
                "reject": reject,
                "keep_columns": keep_columns,
                "sets": sets,
                "explain": explain,
            },
        },
        restart=restart,
    )
    done = PredictJob(output)
    try:
        run = _Run(
            pipe, data, job, done, vectors, chunk_rows, read, keep_columns, reject, sets, explain
        )
        if ray is not None:
            _predict_ray(run, ray, Path(model_dir))
        else:
            _predict_here(run, progress)
        rule = None if fdr is None else _fdr_rule(pipe, job, done, fdr)
        rejected = _publish(job, done.chunks, output, fmt, rule)
        if rule is not None:
            done.out_of_scope = rejected
    except BaseException:
        job.abandon()  # kept only when it holds finished pieces to resume from
        raise
    job.remove()
    return done


@dataclass
class _Run:
    """One prediction job: what every way of running it needs."""

    pipe: Any
    data: Path
    job: JobFolder
    done: PredictJob
    vectors: bool
    chunk_rows: int
    read: dict[str, Any]
    keep_columns: bool
    reject: bool
    sets: float | None = None
    explain: bool = False


def _predict_here(run: _Run, progress: bool | None) -> None:
    """The chunks not yet written, predicted in this process, two at a time (numpy and
    Arrow release the GIL); at most three in memory; each its own piece, so the order of
    finishing is free."""
    pipe, data, job, done, vectors = run.pipe, run.data, run.job, run.done, run.vectors
    chunk_rows, read, keep_columns, reject = run.chunk_rows, run.read, run.keep_columns, run.reject
    if vectors:
        total, chunks = _set_chunks(data, pipe, chunk_rows, keep_columns)
    else:
        total, chunks = count_rows(data), _text_chunks(data, chunk_rows, read, keep_columns)
    show = (total or 0) > 10_000 if progress is None else progress
    with (
        progress_bar(total or 0, "predicting", enabled=show and bool(total)) as advance,
        ThreadPoolExecutor(2) as pool,
    ):
        running: deque[tuple[Any, int]] = deque()
        for i, (inputs, base, skipped) in enumerate(chunks):
            done.chunks += 1
            done.skipped_rows += skipped
            n = base.num_rows
            if job.piece(i).exists():
                done.resumed += 1
                done.out_of_scope += _out_of_scope(job.piece(i))
                advance(n + len(skipped))
            elif n:
                task = pool.submit(
                    predict_piece,
                    pipe, job, i, inputs, base, vectors, reject, run.sets, run.explain,
                )  # fmt: skip
                running.append((task, n))
            else:
                advance(len(skipped))
            done.rows += n
            while len(running) > 2 or (running and running[0][0].done()):
                future, rows = running.popleft()
                done.out_of_scope += future.result()
                advance(rows)
        while running:
            future, rows = running.popleft()
            done.out_of_scope += future.result()
            advance(rows)


def _out_of_scope(piece: Path) -> int:
    """A finished piece's out-of-scope count, from its schema (no data read)."""
    with pa.memory_map(str(piece)) as source:
        meta = pa.ipc.open_file(source).schema.metadata or {}
    return int(meta.get(b"embedlab.out_of_scope", b"0"))


def predict_piece(
    pipe: Any,
    job: JobFolder,
    i: int,
    inputs: Any,
    base: pa.Table,
    vectors: bool,
    reject: bool,
    sets: float | None = None,
    explain: bool = False,
) -> int:
    """Predict one chunk (vectors or texts) and write it as piece ``i`` in one step; its
    out-of-scope count (also kept in the piece's metadata)."""
    if vectors:
        found = pipe.details_from_vectors(
            np.asarray(inputs), reject=reject, sets=sets, explain=explain
        )
    else:
        found = pipe.predict_details(
            inputs, reject=reject, sets=sets, explain=explain, progress=False
        )
    n_oos = int(found.out_of_scope.sum())
    table = prediction_table(found, base)
    table = table.replace_schema_metadata({"embedlab.out_of_scope": str(n_oos)})
    tmp = job.temp(i)
    with (
        pa.OSFile(str(tmp), "wb") as sink,
        pa.ipc.new_file(sink, table.schema) as piece,
    ):  # Arrow IPC: a temporary piece, written as it is in memory
        piece.write_table(table)
    job.commit(i, tmp)
    return n_oos


_TEXT = "__embedlab_text__"


def set_chunk(item: dict[str, Any], keep_columns: bool) -> tuple[np.ndarray, pa.Table]:
    """Rows ``start:stop`` of shard ``shard`` of the set at ``set``: vectors and columns."""
    from embedlab.data.sharded import ShardedSet

    shard = ShardedSet(item["set"]).shard(int(item["shard"]))
    a, b = int(item["start"]), int(item["stop"])
    table = shard.rows_table().slice(a, b - a)
    return np.asarray(shard.vectors[a:b]), table if keep_columns else table.select(["id"])


def text_chunk(path: str, keep_columns: bool) -> tuple[list[str], pa.Table]:
    """An input piece written by :func:`_predict_ray`: its texts and output columns."""
    table = pq.read_table(path)
    texts = table.column(_TEXT).to_pylist()
    return texts, table.drop_columns([_TEXT])


def _predict_ray(run: _Run, ray: Any, model_dir: Path) -> None:
    """The chunks not yet written, predicted by a pool of Ray actors."""
    pipe, data, job, done, vectors = run.pipe, run.data, run.job, run.done, run.vectors
    chunk_rows, read, keep_columns, reject = run.chunk_rows, run.read, run.keep_columns, run.reject
    from embedlab.scale.distributed import run_items, write_input_piece

    items: list[dict[str, Any]] = []
    if vectors:
        from embedlab.data.sharded import ShardedSet

        ss = ShardedSet(data)
        _check_encoder(pipe, ss.provenance, data)
        i = 0
        for s, entry in enumerate(ss.shards):
            for a in range(0, int(entry["rows"]), chunk_rows):
                b = min(a + chunk_rows, int(entry["rows"]))
                done.chunks += 1
                done.rows += b - a
                if job.piece(i).exists():
                    done.resumed += 1
                else:
                    items.append(
                        {"chunk": i, "set": str(data.resolve()), "shard": s, "start": a, "stop": b}
                    )
                i += 1
    else:
        for i, (texts, base, skipped) in enumerate(
            _text_chunks(data, chunk_rows, read, keep_columns)
        ):
            done.chunks += 1
            done.skipped_rows += skipped
            done.rows += base.num_rows
            if job.piece(i).exists():
                done.resumed += 1
            elif base.num_rows:
                piece = base.append_column(_TEXT, pa.array(texts, pa.string()))
                path = write_input_piece(job.path / "inputs", i, piece)
                items.append({"chunk": i, "input": str(path)})
    kwargs = {
        "model": str(model_dir),
        "backend": pipe.encoder_.resolved_backend,
        "work": str(job.path),
        "options": {
            "keep_columns": keep_columns,
            "reject": reject,
            "sets": run.sets,
            "explain": run.explain,
        },
    }
    run_items(items, PredictWorker, kwargs, ray)
    done.out_of_scope += sum(
        _out_of_scope(job.piece(i)) for i in range(done.chunks) if job.piece(i).exists()
    )


def _read_piece(path: Path) -> pa.Table:
    """A finished piece (an Arrow IPC file), memory-mapped."""
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_file(source).read_all()


def _fdr_rule(pipe: Any, job: JobFolder, done: PredictJob, q: float) -> Any:
    """Benjamini–Hochberg over every finished piece's p-values (one float per row read):
    a function that rewrites a piece's decisions — rows with p at most the cut-off are
    out of scope (label: the out-of-scope label), every other row keeps the head's best
    class (multi-label: its predicted set, out of scope when empty)."""
    pieces = [job.piece(i) for i in range(done.chunks) if job.piece(i).exists()]
    if pieces and "oos_pvalue" not in _read_piece(pieces[0]).column_names:
        raise ValidationError(
            "this model gives no p-values (saved by an older embedlab): refit it for --fdr"
        )
    p = np.concatenate([_column(_read_piece(x), "oos_pvalue") for x in pieces])
    rejected = benjamini_hochberg(p, q)
    cut = float(p[rejected].max()) if rejected.any() else -1.0
    oos_label = str(pipe.oos_label)

    def rule(table: pa.Table) -> pa.Table:
        out = _column(table, "oos_pvalue") <= cut
        if pipe.multi_label:
            labels = np.where(out, oos_label, _column(table, "label"))
            table = _set(table, "n_labels", pa.array(np.where(out, 0, _column(table, "n_labels"))))
            out = out | _column(table, "out_of_scope")
        else:
            labels = np.where(out, oos_label, _column(table, "top1_label")).astype(object)
            if pipe.hierarchy is not None:
                for j, name in enumerate(pipe.hierarchy.level_names()[:-1], start=1):
                    level = pipe.hierarchy.at_level(labels, j, keep=[oos_label])
                    table = _set(table, f"label_{name}", pa.array(level, pa.string()))
        table = _set(table, "label", pa.array(labels, pa.string()))
        return _set(table, "out_of_scope", pa.array(out))

    return rule


def _name(table: pa.Table, name: str) -> str:
    """The name prediction column ``name`` has in ``table`` (predicted_<name> when the
    input already had a column called so)."""
    return f"predicted_{name}" if f"predicted_{name}" in table.column_names else name


def _column(table: pa.Table, name: str) -> np.ndarray:
    return table.column(_name(table, name)).to_numpy(zero_copy_only=False)


def _set(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    """``table`` with its prediction column ``name`` replaced by ``values``."""
    col = _name(table, name)
    return table.set_column(table.column_names.index(col), col, values)


def _publish(job: JobFolder, n_chunks: int, output: Path, fmt: str, rule: Any = None) -> int:
    """Stream the chunks' tables into ``output`` in order, atomically (a temporary file in
    the same folder, synced, then renamed); ``rule`` rewrites each table first. The number
    of rows written out of scope."""
    pieces = [job.piece(i) for i in range(n_chunks) if job.piece(i).exists()]
    if not pieces:
        raise ValidationError("no rows to predict: every input row was skipped")
    schema = pa.unify_schemas(
        [_read_piece(p).schema.remove_metadata() for p in pieces], promote_options="permissive"
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    rejected = 0
    fd, tmp_name = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, new_file_mode(output))  # the umask's mode, as bundle.json gets
        with os.fdopen(fd, "wb") as fh:
            writer: Any = None
            if fmt == "parquet":
                writer = pq.ParquetWriter(fh, schema)
            elif fmt == "csv":
                writer = pacsv.CSVWriter(fh, schema)
            for piece in pieces:  # one chunk in memory at a time
                table = _read_piece(piece).replace_schema_metadata(None).cast(schema)
                if rule is not None:
                    table = rule(table)
                rejected += int(_column(table, "out_of_scope").sum())
                if fmt == "jsonl":
                    buf = io.StringIO()
                    for rec in table.to_pylist():  # JSON lines are written row by row
                        buf.write(json.dumps(rec, ensure_ascii=False) + "\n")
                    fh.write(buf.getvalue().encode("utf-8"))
                else:
                    writer.write_table(table)
            if writer is not None:
                writer.close()
        fsync_file(tmp)
        os.replace(tmp, output)
        fsync_directory(output.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return rejected


class PredictWorker:
    """A Ray actor that predicts chunks into pieces (the model loaded once)."""

    def __init__(self, model: str, backend: str | None, work: str, options: dict[str, Any]):
        from embedlab.models.pipeline import Pipeline
        from embedlab.store.jobs import JobFolder

        self.pipe = Pipeline.load(model, cache=False, backend=backend)
        self.job = JobFolder.attach(work)
        self.options = options

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        from embedlab.scale.distributed import item_of

        item = item_of(batch)
        i = int(item["chunk"])
        if not self.job.piece(i).exists():
            if "set" in item:
                inputs, base = set_chunk(item, self.options["keep_columns"])
                vectors = True
            else:
                inputs, base = text_chunk(item["input"], self.options["keep_columns"])
                vectors = False
            predict_piece(
                self.pipe,
                self.job,
                i,
                inputs,
                base,
                vectors,
                self.options["reject"],
                self.options.get("sets"),
                bool(self.options.get("explain")),
            )
        return {"chunk": [i], "pid": [os.getpid()]}
