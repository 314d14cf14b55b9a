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
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

__all__ = ["EmbeddingCache", "default_cache_dir", "text_key"]

log = logging.getLogger("embedlab")
_CHUNK = 500  # keys per SELECT (SQLite caps bound parameters)
DB_NAME = "embeddings.sqlite3"
# v2 adds a checksum per entry (8 bytes of BLAKE2b over model key, text key and vector).
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS vectors_v2 (model TEXT NOT NULL, key BLOB NOT NULL, "
    "dim INTEGER NOT NULL, vec BLOB NOT NULL, checksum BLOB NOT NULL, "
    "PRIMARY KEY (model, key)) WITHOUT ROWID"
)


def _checksum(model: str, key: bytes, blob: bytes) -> bytes:
    h = hashlib.blake2b(digest_size=8)
    h.update(model.encode("utf-8"))
    h.update(key)
    h.update(blob)
    return h.digest()


def _is_corruption(exc: Exception) -> bool:
    text = str(exc).lower()
    return "not a database" in text or "malformed" in text or "corrupt" in text


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
        self._read_only = False

    def __repr__(self) -> str:
        return f"EmbeddingCache({str(self.directory)!r})"

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection | None]:
        """A connection, read-write where possible, else read-only (writes are skipped);
        a corrupted database file is moved aside and a new one started."""
        if self._broken:
            yield None
            return
        conn = self._open()
        if conn is None:
            yield None
            return
        try:
            yield conn
        finally:
            conn.close()

    def _open(self) -> sqlite3.Connection | None:
        if not self._read_only:
            try:
                return self._open_rw()
            except sqlite3.DatabaseError as exc:
                if _is_corruption(exc) and self._set_aside(exc):
                    with contextlib.suppress(sqlite3.Error, OSError):
                        return self._open_rw()
                reason: Exception = exc
            except OSError as exc:
                reason = exc
            # Read what can be read: a read-only folder or file still serves hits.
            conn = self._open_ro()
            if conn is not None:
                self._read_only = True
                log.warning(
                    "embedding cache at %s is read-only (%s); reading it, not adding to it",
                    self.path,
                    reason,
                )
                return conn
            self._broken = str(reason)
            log.warning(
                "embedding cache at %s is unusable (%s); continuing without it", self.path, reason
            )
            return None
        return self._open_ro()

    def _open_rw(self) -> sqlite3.Connection:
        self.directory.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(_SCHEMA)
        except BaseException:
            conn.close()
            raise
        return conn

    def _open_ro(self) -> sqlite3.Connection | None:
        if not self.path.is_file():
            return None
        uri = self.path.absolute().as_uri()
        for mode in ("ro", "ro&immutable=1"):
            try:
                conn = sqlite3.connect(f"{uri}?mode={mode}", uri=True, timeout=60.0)
            except sqlite3.Error:
                continue
            try:
                conn.execute("SELECT 1 FROM vectors_v2 LIMIT 1").fetchall()
                return conn
            except sqlite3.Error:
                conn.close()
        return None

    def _set_aside(self, exc: Exception) -> bool:
        """Move a corrupted database aside (kept for inspection); True when that worked."""
        aside = self.path.with_name(f"{DB_NAME}.corrupt-{int(time.time())}")
        try:
            os.replace(self.path, aside)
            for suffix in ("-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(str(self.path) + suffix)
        except OSError:
            return False
        log.warning(
            "embedding cache at %s was corrupted (%s); moved it to %s and started a new one",
            self.path,
            exc,
            aside.name,
        )
        return True

    def get_many(self, model: str, keys: Sequence[bytes], dim: int) -> dict[int, np.ndarray]:
        """Cached vectors for ``keys``, as {position in keys: vector}; misses are absent.

        An entry whose checksum does not match its bytes is a miss (and is dropped)."""
        found: dict[int, np.ndarray] = {}
        if not keys:
            return found
        where: dict[bytes, list[int]] = {}
        for i, k in enumerate(keys):
            where.setdefault(k, []).append(i)
        unique = list(where)
        damaged: list[bytes] = []
        with self._connect() as conn:
            if conn is None:
                return found
            try:
                for start in range(0, len(unique), _CHUNK):
                    chunk = unique[start : start + _CHUNK]
                    marks = ",".join("?" * len(chunk))
                    rows = conn.execute(
                        f"SELECT key, dim, vec, checksum FROM vectors_v2 "
                        f"WHERE model = ? AND key IN ({marks})",
                        [model, *chunk],
                    ).fetchall()
                    for key, d, blob, checksum in rows:
                        if d != dim or len(blob) != 4 * dim:
                            continue
                        if checksum != _checksum(model, key, blob):
                            damaged.append(key)
                            continue
                        vec = np.frombuffer(blob, dtype=np.float32)
                        for i in where[key]:
                            found[i] = vec
                if damaged:
                    log.warning(
                        "embedding cache: %d entr%s failed the checksum (damaged or edited); "
                        "encoding those texts again",
                        len(damaged),
                        "y" if len(damaged) == 1 else "ies",
                    )
                    if not self._read_only:
                        conn.executemany(
                            "DELETE FROM vectors_v2 WHERE model = ? AND key = ?",
                            [(model, k) for k in damaged],
                        )
            except sqlite3.Error as exc:
                corrupt = exc
                if not _is_corruption(exc):
                    log.warning("embedding cache read failed (%s); encoding without it", exc)
                    return {}
            else:
                return found
        self._recover(corrupt)
        return {}

    def _recover(self, exc: Exception) -> bool:
        """A database whose header opens but whose pages are damaged: moved aside like a
        damaged header (the next use starts a new one); True when that worked."""
        if self._read_only or not self._set_aside(exc):
            log.warning("embedding cache is damaged (%s); encoding without it", exc)
            return False
        return True

    def put_many(self, model: str, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        """Store ``vectors[i]`` under ``keys[i]``; existing entries are kept."""
        if len(keys) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        dim = int(vectors.shape[1])
        rows = []
        for i, k in enumerate(keys):
            blob = vectors[i].tobytes()
            rows.append((model, k, dim, blob, _checksum(model, k, blob)))
        for attempt in range(2):  # once more in a new database after moving a damaged one
            with self._connect() as conn:
                if conn is None or self._read_only:
                    return
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    conn.executemany(
                        "INSERT OR IGNORE INTO vectors_v2 (model, key, dim, vec, checksum) "
                        "VALUES (?, ?, ?, ?, ?)",
                        rows,
                    )
                    conn.execute("COMMIT")
                    return
                except sqlite3.Error as exc:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                    failed = exc
            if attempt or not _is_corruption(failed) or not self._recover(failed):
                log.warning("embedding cache write failed (%s); vectors not cached", failed)
                return

    def count(self, model: str | None = None) -> int:
        """Number of cached vectors (for one model key, or all)."""
        with self._connect() as conn:
            if conn is None:
                return 0
            if model is None:
                return int(conn.execute("SELECT COUNT(*) FROM vectors_v2").fetchone()[0])
            return int(
                conn.execute(
                    "SELECT COUNT(*) FROM vectors_v2 WHERE model = ?", (model,)
                ).fetchone()[0]
            )

    def clear(self) -> None:
        """Delete every cached vector."""
        with self._connect() as conn:
            if conn is not None:
                conn.execute("DELETE FROM vectors_v2")
