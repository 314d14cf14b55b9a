"""Sharded EmbeddingSets: a directory of shards under one manifest, read and written one
shard at a time, so memory is bounded by a shard, not by the data.

Layout (``format_version`` 2, ``"layout": "sharded"``)::

    manifest.json          shape, dtype, columns, provenance, and per shard: its folder,
                           row count, first input row, and the sha256 and size of its files
    shards/00000/          vectors.npy (float32, memory-mappable) + rows.parquet + shard.json
    shards/00001/ ...

With ``vector_format="parquet"`` (``"vectors": "parquet"`` in the manifest) a shard is its
rows.parquet alone, the vectors in its ``vector`` column of fixed-size float32 lists — for
sets that other Parquet tools (DuckDB, Spark, Arrow) read as they are.

A set saved by :meth:`EmbeddingSet.save` (vectors.npy + rows.parquet at the root,
``format_version`` 1) opens as a set with one shard, and a job that writes a single shard
lays it out that way, so small sets keep the simple layout every tool reads.

:class:`ShardWriter` writes a job's shards into a work folder beside the output: each shard
appears in one step (written to a temporary folder, then renamed) with its own
``shard.json``, so a job killed at any point and started again with the same input and
options finds the shards already done, writes only the missing ones, and publishes the
whole set atomically once every shard is there (:class:`embedlab.store.jobs.JobFolder`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from embedlab.core.errors import StoreError, ValidationError
from embedlab.data.embedding_set import (
    EmbeddingSet,
    Provenance,
    _utc_now,
    _version,
    describe,
    read_shard,
    stored_label_counts,
)
from embedlab.data.set_files import (
    FORMAT,
    MANIFEST_FILE,
    ROWS_FILE,
    SHARDED_VERSION,
    VECTOR_COLUMN,
    VECTOR_FORMATS,
    VECTORS_FILE,
    read_manifest,
    shard_entries,
    vector_column,
)
from embedlab.store.atomic import atomic_directory
from embedlab.store.jobs import JobFolder
from embedlab.store.manifest import sha256_file

__all__ = ["ShardWriter", "ShardedSet", "concat_sets", "filter_set", "is_sharded"]

log = logging.getLogger("embedlab")

SHARD_FILE = "shard.json"


def is_sharded(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a sharded EmbeddingSet (format_version 2)."""
    try:
        doc = json.loads((Path(path) / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("layout") == "sharded"


def _files(folder: Path, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    return {
        name: {"sha256": sha256_file(folder / name), "bytes": (folder / name).stat().st_size}
        for name in names
    }


class ShardedSet:
    """An EmbeddingSet on disk read shard by shard (a format-1 set is one shard).

    ``n``, ``dim``, ``provenance``, ``columns`` and the shards' row counts come from the
    manifest alone; :meth:`shard` loads one shard (vectors memory-mapped), :meth:`__iter__`
    goes through them in order, :meth:`label_counts` and :meth:`info` read only the label
    column, :meth:`load` concatenates everything (for sets that fit in memory).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        self.n, self.dim = (int(v) for v in self.manifest["shape"])
        self.columns = dict(self.manifest["columns"])
        self.shards = shard_entries(self.manifest)
        self.provenance = Provenance.from_dict(self.manifest.get("provenance") or {})
        #: where the vectors are kept: "npy" (memory-mapped) or "parquet" (a column)
        self.vector_format = str(self.manifest.get("vectors", "npy"))

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return (
            f"ShardedSet({str(self.path)!r}, n={self.n}, dim={self.dim}, shards={len(self.shards)})"
        )

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.dim)

    def shard(self, i: int, *, mmap: bool = True, verify: bool = True) -> EmbeddingSet:
        """Shard ``i`` as an EmbeddingSet (vectors memory-mapped); StoreError naming the
        shard when one of its files is missing, truncated or changed."""
        if not 0 <= i < len(self.shards):
            raise ValidationError(f"shard {i} does not exist ({len(self.shards)} shards)")
        return read_shard(
            self.path,
            self.shards[i],
            self.dim,
            self.columns,
            self.provenance,
            mmap=mmap,
            verify=verify,
        )

    def __iter__(self) -> Iterator[EmbeddingSet]:
        for i in range(len(self.shards)):
            yield self.shard(i)

    def label_counts(self) -> dict[str, int]:
        """Rows per label, from the label columns only."""
        return stored_label_counts(self.path)

    def verify(self) -> None:
        """Check every shard's files against the manifest (sizes and checksums), one shard
        at a time; StoreError naming the first bad one."""
        for i in range(len(self.shards)):
            self.shard(i, verify=True)

    def load(self) -> EmbeddingSet:
        """Every shard in one in-memory EmbeddingSet (for sets that fit in memory)."""
        return EmbeddingSet.load(self.path)

    def info(self) -> dict[str, Any]:
        """A JSON-ready summary read from the manifest and the label columns only."""
        return describe(self.path)


class ShardWriter:
    """Write a job's shards, resumably, then publish them as one EmbeddingSet at ``output``.

    ``job`` describes the input and options (e.g. the input file's path, size and mtime, the
    encoder spec, the rows per shard); a work folder ``.<output name>.partial`` beside the
    output keeps it with the shards done so far. Started again with the same ``job``, the
    writer reports those shards as done (:meth:`done`) and only the missing ones are written;
    the work of another ``job`` (other input or options) is discarded, and so is the same
    job's with ``restart``. :meth:`abandon` removes the work folder when no shard was written.
    ``vector_format``: ``"npy"`` (memory-mappable vectors.npy per shard) or ``"parquet"`` (the
    vectors as a column of rows.parquet; always the sharded layout).
    """

    def __init__(
        self,
        output: str | os.PathLike,
        job: Mapping[str, Any],
        *,
        overwrite: bool = False,
        restart: bool = False,
        vector_format: str = "npy",
    ) -> None:
        if vector_format not in VECTOR_FORMATS:
            raise ValidationError(
                f"vector format must be one of {', '.join(VECTOR_FORMATS)}, got {vector_format!r}"
            )
        self.output = Path(output).absolute()
        if self.output.exists() and not overwrite:
            raise StoreError(f"{self.output} already exists (pass --force to replace it)")
        self.overwrite = overwrite
        self.job_folder = JobFolder(self.output, {**job, "vectors": vector_format}, restart=restart)
        self.work = self.job_folder.path
        self.vector_format = vector_format

    @classmethod
    def attach(cls, work: str | os.PathLike) -> ShardWriter:
        """A writer of shards into the work folder ``work`` of a job started elsewhere (a
        Ray worker): :meth:`write` and :meth:`done` only."""
        writer = object.__new__(cls)
        writer.job_folder = JobFolder.attach(work)
        writer.work = writer.job_folder.path
        writer.output, writer.overwrite = writer.job_folder.output, False
        writer.vector_format = writer.job_folder.job.get("vectors", "npy")
        return writer

    def abandon(self) -> None:
        """After a failure: remove the work folder if it holds no finished shard (nothing to
        resume), keep it otherwise."""
        self.job_folder.abandon()

    def _folder(self, i: int) -> Path:
        return self.job_folder.piece(i)

    def done(self, i: int) -> bool:
        """Whether shard ``i`` was completely written by an earlier run of this job."""
        entry = self._entry(i)
        if entry is None:
            return False
        if entry["rows"] == 0:
            return True
        try:  # its files as its record says (sizes; the record was written after them)
            read_shard(
                self.job_folder.pieces,
                {**entry, "path": f"{i:05d}"},
                int(entry["dim"]),
                entry["columns"],
                Provenance(),
                verify=False,
            )
        except (StoreError, KeyError, TypeError, ValueError):
            shutil.rmtree(self._folder(i), ignore_errors=True)
            return False
        return True

    def _entry(self, i: int) -> dict[str, Any] | None:
        try:
            return json.loads((self._folder(i) / SHARD_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def write(self, i: int, es: EmbeddingSet | None, first_row: int) -> None:
        """Write shard ``i`` (rows ``first_row`` … of the input) in one step; ``None``: a
        chunk of the input that gave no rows (every text skipped), remembered as done."""
        tmp = self.job_folder.temp(i)
        tmp.mkdir(parents=True)
        entry: dict[str, Any] = {"rows": 0, "first_row": int(first_row)}
        if es is not None:
            rows = es.rows_table()
            if self.vector_format == "parquet":
                if VECTOR_COLUMN in rows.column_names:
                    raise ValidationError(
                        f"a metadata column is named {VECTOR_COLUMN!r}, which the Parquet "
                        "vector layout uses: rename it, or keep the vectors in .npy files"
                    )
                others = rows.column_names
                rows = rows.append_column(VECTOR_COLUMN, vector_column(es.vectors))
                # floats neither compress nor repeat: stored plain, decoded at memory speed
                compression = {c: "snappy" for c in others} | {VECTOR_COLUMN: "none"}
                pq.write_table(
                    rows, tmp / ROWS_FILE, use_dictionary=others, compression=compression
                )
                names = (ROWS_FILE,)
            else:
                np.save(tmp / VECTORS_FILE, np.ascontiguousarray(es.vectors, dtype=np.float32))
                pq.write_table(rows, tmp / ROWS_FILE)
                names = (VECTORS_FILE, ROWS_FILE)
            entry |= {
                "rows": int(es.n),
                "dim": int(es.dim),
                "files": _files(tmp, names),
                "columns": _columns(es),
                "provenance": es.provenance.to_dict(),
            }
        (tmp / SHARD_FILE).write_text(json.dumps(entry, indent=1), encoding="utf-8")
        self.job_folder.commit(i, tmp)

    def finish(
        self,
        n_shards: int,
        *,
        repeated: str = "in the input (ids must be unique; leave out --id-col to number the rows)",
    ) -> Path:
        """Publish shards 0 … n_shards-1 at the output (one shard: the format-1 layout) and
        remove the work folder. StoreError naming a missing shard; ValidationError when row
        ids repeat across shards (``repeated``: where, and what to do, for the message; the
        work folder is removed then, as a run on the same input would fail the same way)."""
        entries, folders = [], []
        for i in range(n_shards):
            entry = self._entry(i)
            if entry is None:
                raise StoreError(f"shard {i} of {n_shards} is missing from {self.work}")
            if entry["rows"]:
                entries.append(entry)
                folders.append(self._folder(i))
        if not entries:
            raise ValidationError("no rows to write: every input row was skipped")
        dims = {int(e["dim"]) for e in entries}
        columns = [e["columns"] for e in entries]
        if len(dims) != 1 or any(c != columns[0] for c in columns):
            raise StoreError(f"the shards in {self.work} do not agree on dimension or columns")
        n = sum(e["rows"] for e in entries)
        ids = pa.chunked_array(
            [pq.read_table(f / ROWS_FILE, columns=["id"]).column("id") for f in folders]
        )
        if pc.count_distinct(ids).as_py() != n:  # the id column only, in Arrow memory
            self.job_folder.remove()  # the same input would repeat them again: nothing to resume
            raise ValidationError(f"row ids repeat {repeated}")
        with atomic_directory(self.output, overwrite=self.overwrite) as tmp:
            base = {
                "format": FORMAT,
                "shape": [n, dims.pop()],
                "dtype": "float32",
                "columns": columns[0],
                "provenance": entries[0]["provenance"],
                "embedlab_version": _version(),
                "saved": _utc_now(),
            }
            if len(entries) == 1 and self.vector_format == "npy":
                _place(folders[0], tmp, entries[0]["files"])
                doc = {**base, "format_version": 1, "files": entries[0]["files"]}
            else:
                (tmp / "shards").mkdir()
                shards = []
                for k, (entry, folder) in enumerate(zip(entries, folders, strict=True)):
                    (tmp / "shards" / f"{k:05d}").mkdir()
                    _place(folder, tmp / "shards" / f"{k:05d}", entry["files"])
                    kept = {key: entry[key] for key in ("rows", "first_row", "files")}
                    shards.append({"path": f"shards/{k:05d}", **kept})
                doc = {
                    **base,
                    "format_version": SHARDED_VERSION,
                    "layout": "sharded",
                    "vectors": self.vector_format,
                    "shards": shards,
                }
            (tmp / MANIFEST_FILE).write_text(json.dumps(doc, indent=1), encoding="utf-8")
        self.job_folder.remove()
        return self.output


def _place(src: Path, dst: Path, names: Iterable[str]) -> None:
    """A shard's data files into ``dst``: hard links on one file system, else copies."""
    for name in names:
        try:
            os.link(src / name, dst / name)
        except OSError:
            shutil.copy2(src / name, dst / name)


def _columns(es: EmbeddingSet) -> dict[str, Any]:
    return {
        "labels": es.labels is not None,
        "texts": es.texts is not None,
        "metadata": [] if es.metadata is None else es.metadata.column_names,
    }


def filter_set(
    source: str | os.PathLike,
    output: str | os.PathLike,
    labels: Sequence[str],
    *,
    exclude: bool = False,
    overwrite: bool = False,
) -> Path:
    """A new set of the rows of ``source`` whose label is one of ``labels`` (or is not,
    with ``exclude``), written shard by shard (memory bounded by a shard)."""
    ss = ShardedSet(source)
    if not ss.columns.get("labels"):
        raise ValidationError(f"{source} has no labels to filter on")
    known = ss.label_counts()
    unknown = [lab for lab in labels if str(lab) not in known]
    if unknown:
        raise ValidationError(f"unknown label(s) {unknown}; known labels: {sorted(known)[:20]}")
    wanted = [str(x) for x in labels]
    job = {"filter": wanted, "exclude": exclude, "source": sha256_file(ss.path / MANIFEST_FILE)}
    writer = ShardWriter(output, job, overwrite=overwrite, vector_format=ss.vector_format)
    kept = 0
    for i, shard in enumerate(ss):
        if writer.done(i):
            continue
        mask = np.isin(shard.labels.astype(str), wanted) != exclude
        part = shard.take(np.flatnonzero(mask)) if mask.any() else None
        writer.write(i, part, kept)
        kept += int(mask.sum())
    return writer.finish(len(ss.shards))


def concat_sets(
    sources: Sequence[str | os.PathLike], output: str | os.PathLike, *, overwrite: bool = False
) -> Path:
    """One set of every row of ``sources`` in order (same encoder, columns and dimension),
    shard by shard, its vectors kept as the first source keeps them; row ids must stay
    unique."""
    sets = [ShardedSet(p) for p in sources]
    if not sets:
        raise ValidationError("nothing to concatenate")
    first = sets[0]
    for other in sets[1:]:
        if not first.provenance.same_encoder(other.provenance) or other.dim != first.dim:
            raise ValidationError(
                f"{other.path} comes from another encoder or dimension than {first.path}"
            )
        if other.columns != first.columns:
            raise ValidationError(f"{other.path} has other columns than {first.path}")
    job = {"concat": [sha256_file(s.path / MANIFEST_FILE) for s in sets]}
    writer = ShardWriter(output, job, overwrite=overwrite, vector_format=first.vector_format)
    k = start = 0
    for ss in sets:
        for shard in ss:
            if not writer.done(k):
                writer.write(k, shard, start)
            start += shard.n
            k += 1
    return writer.finish(k, repeated="across the sets (their ids must not overlap)")
