"""On-disk cache of embeddings keyed by model fingerprint and text hash.

One SQLite database (WAL mode) in the folder named by ``EMBEDLAB_CACHE`` (default
``~/.cache/embedlab``). SQLite's locking makes it safe for several processes to read and write
at once; a cache that cannot be opened is reported once and bypassed, never fatal.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

__all__ = ["EmbeddingCache", "default_cache_dir", "text_key"]

log = logging.getLogger("embedlab")
_CHUNK = 500  # keys per SELECT (SQLite caps bound parameters)
DB_NAME = "embeddings.sqlite3"


def default_cache_dir() -> Path:
    """``$EMBEDLAB_CACHE`` if set, else ``$XDG_CACHE_HOME/embedlab`` or ``~/.cache/embedlab``."""
    env = os.environ.get("EMBEDLAB_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "embedlab"


def text_key(text: str) -> bytes:
    """20-byte hash of a text, the per-text half of a cache key."""
    return hashlib.sha256(text.encode("utf-8")).digest()[:20]


class EmbeddingCache:
    """Embeddings stored per (model key, text hash).

    ``model`` keys must change whenever an encoder would produce other vectors (weights,
    layer, max length...): encoders build them from their fingerprint.
    """

    def __init__(self, directory: str | os.PathLike | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self.path = self.directory / DB_NAME
        self._broken: str | None = None

    def __repr__(self) -> str:
        return f"EmbeddingCache({str(self.directory)!r})"

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection | None]:
        if self._broken:
            yield None
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS vectors (model TEXT NOT NULL, key BLOB NOT NULL, "
                "dim INTEGER NOT NULL, vec BLOB NOT NULL, PRIMARY KEY (model, key)) WITHOUT ROWID"
            )
        except (sqlite3.Error, OSError) as exc:
            self._broken = str(exc)
            log.warning(
                "embedding cache at %s is unusable (%s); continuing without it", self.path, exc
            )
            yield None
            return
        try:
            yield conn
        finally:
            conn.close()

    def get_many(self, model: str, keys: Sequence[bytes], dim: int) -> dict[int, np.ndarray]:
        """Cached vectors for ``keys``, as {position in keys: vector}; misses are absent."""
        found: dict[int, np.ndarray] = {}
        if not keys:
            return found
        where: dict[bytes, list[int]] = {}
        for i, k in enumerate(keys):
            where.setdefault(k, []).append(i)
        unique = list(where)
        with self._connect() as conn:
            if conn is None:
                return found
            try:
                for start in range(0, len(unique), _CHUNK):
                    chunk = unique[start : start + _CHUNK]
                    marks = ",".join("?" * len(chunk))
                    rows = conn.execute(
                        f"SELECT key, dim, vec FROM vectors WHERE model = ? AND key IN ({marks})",
                        [model, *chunk],
                    ).fetchall()
                    for key, d, blob in rows:
                        if d != dim or len(blob) != 4 * dim:
                            continue
                        vec = np.frombuffer(blob, dtype=np.float32)
                        for i in where[key]:
                            found[i] = vec
            except sqlite3.Error as exc:
                log.warning("embedding cache read failed (%s); encoding without it", exc)
                return {}
        return found

    def put_many(self, model: str, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        """Store ``vectors[i]`` under ``keys[i]``; existing entries are kept."""
        if len(keys) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        dim = int(vectors.shape[1])
        rows = [(model, k, dim, vectors[i].tobytes()) for i, k in enumerate(keys)]
        with self._connect() as conn:
            if conn is None:
                return
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(
                    "INSERT OR IGNORE INTO vectors (model, key, dim, vec) VALUES (?, ?, ?, ?)", rows
                )
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                log.warning("embedding cache write failed (%s); vectors not cached", exc)

    def count(self, model: str | None = None) -> int:
        """Number of cached vectors (for one model key, or all)."""
        with self._connect() as conn:
            if conn is None:
                return 0
            if model is None:
                return int(conn.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])
            return int(
                conn.execute("SELECT COUNT(*) FROM vectors WHERE model = ?", (model,)).fetchone()[0]
            )

    def clear(self) -> None:
        """Delete every cached vector."""
        with self._connect() as conn:
            if conn is not None:
                conn.execute("DELETE FROM vectors")
