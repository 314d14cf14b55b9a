"""Sharded EmbeddingSets: a directory of shards under one manifest, read and written one
shard at a time, so memory is bounded by a shard, not by the data.

Layout (``format_version`` 2, ``"layout": "sharded"``)::

    manifest.json          shape, dtype, columns, provenance, and per shard: its folder,
                           row count, first input row, and the sha256 and size of its files
    shards/00000/          vectors.npy (float32, memory-mappable) + rows.parquet + shard.json
    shards/00001/ ...

A set saved by :meth:`EmbeddingSet.save` (vectors.npy + rows.parquet at the root,
``format_version`` 1) opens as a set with one shard, and a job that writes a single shard
lays it out that way, so small sets keep the simple layout every tool reads.

:class:`ShardWriter` writes a job's shards into a work folder beside the output: each shard
appears in one step (written to a temporary folder, then renamed) with its own
``shard.json``, so a job killed at any point and started again with the same input and
options finds the shards already done, writes only the missing ones, and publishes the
whole set atomically once every shard is there.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from embedlab.atomic import atomic_directory, fsync_directory, fsync_file
from embedlab.embedding_set import (
    FORMAT,
    MANIFEST_FILE,
    ROWS_FILE,
    VECTORS_FILE,
    EmbeddingSet,
    Provenance,
    _utc_now,
    _version,
)
from embedlab.errors import StoreError, ValidationError
from embedlab.manifest import read_versioned_json, sha256_file

__all__ = ["SHARDED_VERSION", "ShardWriter", "ShardedSet", "is_sharded"]

log = logging.getLogger("embedlab")

SHARDED_VERSION = 2
SHARD_FILE = "shard.json"
JOB_FILE = "job.json"


def is_sharded(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a sharded EmbeddingSet (format_version 2)."""
    try:
        doc = json.loads((Path(path) / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("layout") == "sharded"


def _files(folder: Path) -> dict[str, dict[str, Any]]:
    return {
        name: {"sha256": sha256_file(folder / name), "bytes": (folder / name).stat().st_size}
        for name in (VECTORS_FILE, ROWS_FILE)
    }


def _check_files(folder: Path, files: Mapping[str, Any], where: str, verify: bool) -> None:
    for name in (VECTORS_FILE, ROWS_FILE):
        f = folder / name
        if not f.is_file():
            raise StoreError(f"{where}: {name} is missing")
        expected = files[name]
        if f.stat().st_size != expected["bytes"]:
            raise StoreError(
                f"{where}: {name} has {f.stat().st_size} bytes, the manifest says "
                f"{expected['bytes']} (truncated or replaced)"
            )
        if verify and sha256_file(f) != expected["sha256"]:
            raise StoreError(f"{where}: checksum mismatch for {name} (changed or corrupted)")


class ShardedSet:
    """An EmbeddingSet on disk read shard by shard (a format-1 set is one shard).

    ``n``, ``dim``, ``provenance``, ``columns`` and the shards' row counts come from the
    manifest alone; :meth:`shard` loads one shard (vectors memory-mapped), :meth:`__iter__`
    goes through them in order, :meth:`label_counts` and :meth:`info` read only the label
    column, :meth:`load` concatenates everything (for sets that fit in memory).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        mfile = self.path / MANIFEST_FILE
        if not mfile.is_file():
            raise StoreError(
                f"{self.path} is not an EmbeddingSet directory: {MANIFEST_FILE} is missing"
            )
        doc = read_versioned_json(mfile, FORMAT, SHARDED_VERSION, "an EmbeddingSet manifest")
        self.manifest = doc
        try:
            self.n, self.dim = (int(v) for v in doc["shape"])
            self.columns = dict(doc["columns"])
            if doc.get("layout") == "sharded":
                self.shards = [dict(s) for s in doc["shards"]]
            else:  # format 1: the root is the one shard
                self.shards = [{"path": ".", "rows": self.n, "first_row": 0, "files": doc["files"]}]
            rows = sum(int(s["rows"]) for s in self.shards)
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"{mfile} is corrupted (shape / columns / shards: {exc})") from None
        if rows != self.n:
            raise StoreError(f"{mfile}: the shards hold {rows} rows, the shape says {self.n}")
        self.provenance = Provenance.from_dict(doc.get("provenance") or {})

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return (
            f"ShardedSet({str(self.path)!r}, n={self.n}, dim={self.dim}, shards={len(self.shards)})"
        )

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.dim)

    def _where(self, i: int) -> str:
        return f"{self.path}: shard {i} ({self.shards[i]['path']})"

    def shard(self, i: int, *, mmap: bool = True, verify: bool = True) -> EmbeddingSet:
        """Shard ``i`` as an EmbeddingSet (vectors memory-mapped); StoreError naming the
        shard when one of its files is missing, truncated or changed."""
        if not 0 <= i < len(self.shards):
            raise ValidationError(f"shard {i} does not exist ({len(self.shards)} shards)")
        entry = self.shards[i]
        folder = self.path / entry["path"]
        where = self._where(i)
        if not folder.is_dir():
            raise StoreError(f"{where} is missing")
        _check_files(folder, entry["files"], where, verify)
        try:
            vectors = np.load(folder / VECTORS_FILE, mmap_mode="r" if mmap else None)
            rows = pq.read_table(folder / ROWS_FILE)
        except (ValueError, OSError, EOFError, pa.ArrowException) as exc:
            raise StoreError(f"{where}: cannot read it ({exc})") from None
        if vectors.shape != (int(entry["rows"]), self.dim) or vectors.dtype != np.float32:
            raise StoreError(
                f"{where}: vectors are {vectors.dtype}{vectors.shape}, the manifest says "
                f"float32({entry['rows']}, {self.dim})"
            )
        if rows.num_rows != int(entry["rows"]):
            raise StoreError(f"{where}: {rows.num_rows} rows for {entry['rows']} vectors")
        return _from_parts(vectors, rows, self.columns, self.provenance)

    def __iter__(self) -> Iterator[EmbeddingSet]:
        for i in range(len(self.shards)):
            yield self.shard(i)

    def rows_tables(self, columns: Sequence[str] | None = None) -> Iterator[pa.Table]:
        """Each shard's rows.parquet (only ``columns`` when given), vectors not read."""
        for i, entry in enumerate(self.shards):
            f = self.path / entry["path"] / ROWS_FILE
            if not f.is_file():
                raise StoreError(f"{self._where(i)}: {ROWS_FILE} is missing")
            yield pq.read_table(f, columns=list(columns) if columns else None)

    def label_counts(self) -> dict[str, int]:
        """Rows per label, from the label columns only."""
        if not self.columns.get("labels"):
            return {}
        counts: dict[str, int] = {}
        for table in self.rows_tables(["label"]):
            values, n = np.unique(
                np.asarray(table.column("label").to_pylist(), dtype=object), return_counts=True
            )
            for v, c in zip(values.tolist(), n.tolist(), strict=True):
                counts[v] = counts.get(v, 0) + c
        return dict(sorted(counts.items()))

    def verify(self) -> None:
        """Check every shard's files against the manifest (sizes and checksums)."""
        for i, entry in enumerate(self.shards):
            folder = self.path / entry["path"]
            if not folder.is_dir():
                raise StoreError(f"{self._where(i)} is missing")
            _check_files(folder, entry["files"], self._where(i), True)

    def load(self) -> EmbeddingSet:
        """Every shard in one in-memory EmbeddingSet (for sets that fit in memory)."""
        if len(self.shards) == 1:
            return self.shard(0)
        return EmbeddingSet.concat(list(self), check_provenance=False)

    def info(self) -> dict[str, Any]:
        """A JSON-ready summary read from the manifest and the label columns only."""
        return {
            "path": str(self.path),
            "n": self.n,
            "dim": self.dim,
            "dtype": "float32",
            "shards": len(self.shards),
            "provenance": self.provenance.to_dict(),
            "label_counts": self.label_counts(),
            "texts": bool(self.columns.get("texts")),
            "metadata": list(self.columns.get("metadata", [])),
            "saved": self.manifest.get("saved"),
            "embedlab_version": self.manifest.get("embedlab_version"),
        }


def _from_parts(
    vectors: np.ndarray, rows: pa.Table, columns: Mapping[str, Any], provenance: Provenance
) -> EmbeddingSet:
    out = object.__new__(EmbeddingSet)
    out.vectors = vectors
    out.ids = np.asarray(rows.column("id").to_pylist(), dtype=object)
    out.labels = (
        np.asarray(rows.column("label").to_pylist(), dtype=object)
        if columns.get("labels")
        else None
    )
    out.texts = (
        np.asarray(rows.column("text").to_pylist(), dtype=object) if columns.get("texts") else None
    )
    meta = list(columns.get("metadata", []))
    out.metadata = rows.select(meta) if meta else None
    out.provenance = provenance
    return out


class ShardWriter:
    """Write a job's shards, resumably, then publish them as one EmbeddingSet at ``output``.

    ``job`` describes the input and options (e.g. the input file's path, size and mtime, the
    encoder spec, the rows per shard); a work folder ``.<output name>.partial`` beside the
    output keeps it with the shards done so far. Started again with the same ``job``, the
    writer reports those shards as done (:meth:`done`) and only the missing ones are written;
    the work of another ``job`` (other input or options) is discarded, and so is the same
    job's with ``restart``. :meth:`abandon` removes the work folder when no shard was written.
    """

    def __init__(
        self,
        output: str | os.PathLike,
        job: Mapping[str, Any],
        *,
        overwrite: bool = False,
        restart: bool = False,
    ) -> None:
        self.output = Path(output).absolute()
        if self.output.exists() and not overwrite:
            raise StoreError(f"{self.output} already exists (pass --force to replace it)")
        self.overwrite = overwrite
        self.work = self.output.with_name(f".{self.output.name}.partial")
        self.job = json.loads(json.dumps(dict(job), default=str))
        job_file = self.work / JOB_FILE
        if self.work.exists():
            try:
                old = json.loads(job_file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                old = None
            if restart or old != self.job:  # another job's shards cannot be reused
                if old is not None and old != self.job:
                    log.warning(
                        "%s: discarding an unfinished run with other input or options",
                        self.work,
                    )
                shutil.rmtree(self.work)
        (self.work / "shards").mkdir(parents=True, exist_ok=True)
        if not job_file.is_file():
            tmp = job_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.job, indent=1), encoding="utf-8")
            fsync_file(tmp)
            os.replace(tmp, job_file)
            fsync_directory(self.work)
        for stale in (self.work / "shards").glob("*.tmp*"):  # a shard cut off mid-write
            shutil.rmtree(stale, ignore_errors=True)

    def abandon(self) -> None:
        """After a failure: remove the work folder if it holds no finished shard (nothing to
        resume), keep it otherwise."""
        shards = self.work / "shards"
        if not any(p.is_dir() and ".tmp" not in p.name for p in shards.glob("*")):
            shutil.rmtree(self.work, ignore_errors=True)

    def _folder(self, i: int) -> Path:
        return self.work / "shards" / f"{i:05d}"

    def done(self, i: int) -> bool:
        """Whether shard ``i`` was completely written by an earlier run of this job."""
        entry = self._entry(i)
        if entry is None:
            return False
        if entry["rows"] == 0:
            return True
        try:
            _check_files(self._folder(i), entry["files"], f"shard {i}", verify=False)
        except StoreError:
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
        folder = self._folder(i)
        tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        entry: dict[str, Any] = {"rows": 0, "first_row": int(first_row)}
        if es is not None:
            np.save(tmp / VECTORS_FILE, np.ascontiguousarray(es.vectors, dtype=np.float32))
            pq.write_table(es.rows_table(), tmp / ROWS_FILE)
            entry |= {
                "rows": int(es.n),
                "files": _files(tmp),
                "columns": _columns(es),
                "provenance": es.provenance.to_dict(),
            }
        (tmp / SHARD_FILE).write_text(json.dumps(entry, indent=1), encoding="utf-8")
        for f in tmp.iterdir():
            fsync_file(f)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
        fsync_directory(folder.parent)

    def finish(self, n_shards: int) -> Path:
        """Publish shards 0 … n_shards-1 at the output (one shard: the format-1 layout) and
        remove the work folder. StoreError naming a missing shard; ValidationError when row
        ids repeat across shards."""
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
        dims = {int(np.load(f / VECTORS_FILE, mmap_mode="r").shape[1]) for f in folders}
        columns = [e["columns"] for e in entries]
        if len(dims) != 1 or any(c != columns[0] for c in columns):
            raise StoreError(f"the shards in {self.work} do not agree on dimension or columns")
        n = sum(e["rows"] for e in entries)
        ids = pa.chunked_array(
            [pq.read_table(f / ROWS_FILE, columns=["id"]).column("id") for f in folders]
        )
        if pc.count_distinct(ids).as_py() != n:  # the id column only, in Arrow memory
            raise ValidationError(
                "row ids repeat in the input (ids must be unique; leave out --id-col to number "
                "the rows)"
            )
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
            if len(entries) == 1:
                _place(folders[0], tmp)
                doc = {**base, "format_version": 1, "files": entries[0]["files"]}
            else:
                (tmp / "shards").mkdir()
                shards = []
                for k, (entry, folder) in enumerate(zip(entries, folders, strict=True)):
                    (tmp / "shards" / f"{k:05d}").mkdir()
                    _place(folder, tmp / "shards" / f"{k:05d}")
                    kept = {key: entry[key] for key in ("rows", "first_row", "files")}
                    shards.append({"path": f"shards/{k:05d}", **kept})
                doc = {
                    **base,
                    "format_version": SHARDED_VERSION,
                    "layout": "sharded",
                    "shards": shards,
                }
            (tmp / MANIFEST_FILE).write_text(json.dumps(doc, indent=1), encoding="utf-8")
        shutil.rmtree(self.work, ignore_errors=True)
        return self.output


def _place(src: Path, dst: Path) -> None:
    """A shard's data files into ``dst``: hard links on one file system, else copies."""
    for name in (VECTORS_FILE, ROWS_FILE):
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
