"""An unlabelled pool read chunk by chunk: an in-memory EmbeddingSet or array, or a
(sharded) EmbeddingSet on disk, one shard in memory at a time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from embedlab.core.errors import ValidationError
from embedlab.data.embedding_set import EmbeddingSet

__all__ = ["Pool", "has_label"]


class Pool:
    """Rows of ``source`` (EmbeddingSet, array, or the path of a saved / sharded set):
    ``n``, ``dim``, ``provenance``, :meth:`chunks` (vectors, ids, labels, texts per chunk)
    and :meth:`take` (some rows by position)."""

    def __init__(self, source: Any) -> None:
        from embedlab.data.sharded import ShardedSet

        self._set: EmbeddingSet | None = None
        self._sharded: ShardedSet | None = None
        if isinstance(source, str | Path):
            self._sharded = ShardedSet(source)
        elif isinstance(source, ShardedSet):
            self._sharded = source
        elif isinstance(source, EmbeddingSet):
            self._set = source
        else:
            self._set = EmbeddingSet(source)  # validates: 2-D, finite, non-empty
        if self._sharded is not None:
            self.n, self.dim = self._sharded.n, self._sharded.dim
            self.provenance = self._sharded.provenance
            rows = [int(e["rows"]) for e in self._sharded.shards]
            self._starts = np.concatenate([[0], np.cumsum(rows)]).astype(np.int64)
        else:
            assert self._set is not None
            self.n, self.dim = self._set.n, self._set.dim
            self.provenance = self._set.provenance
            self._starts = np.array([0, self.n], dtype=np.int64)

    @property
    def in_memory(self) -> EmbeddingSet | None:
        """The pool's EmbeddingSet when it is in memory already."""
        return self._set

    def _shard(self, i: int) -> EmbeddingSet:
        if self._set is not None:
            return self._set
        assert self._sharded is not None
        return self._sharded.shard(i)

    def chunks(self, rows: int = 65_536) -> Iterator[tuple[int, EmbeddingSet]]:
        """(first row, rows as an EmbeddingSet) for consecutive chunks of at most ``rows``;
        a sharded set is read one shard at a time (memory-mapped, checksums verified)."""
        for i in range(len(self._starts) - 1):
            shard = self._shard(i)
            first = int(self._starts[i])
            for s in range(0, shard.n, rows):
                yield first + s, shard.take(np.arange(s, min(s + rows, shard.n)))
            del shard

    def take(self, positions: np.ndarray) -> EmbeddingSet:
        """The rows at ``positions`` (any order), read shard by shard."""
        positions = np.asarray(positions, dtype=np.int64)
        if len(positions) and (positions.min() < 0 or positions.max() >= self.n):
            raise ValidationError(f"row positions out of range for a pool of {self.n} rows")
        if self._set is not None:
            return self._set.take(positions)
        shard_of = np.searchsorted(self._starts, positions, side="right") - 1
        parts, where = [], []
        for i in np.unique(shard_of):
            sel = np.flatnonzero(shard_of == i)
            parts.append(self._shard(int(i)).take(positions[sel] - self._starts[i]))
            where.append(sel)
        if not parts:
            raise ValidationError("no rows to take")
        joined = EmbeddingSet.concat(parts) if len(parts) > 1 else parts[0]
        back = np.empty(len(positions), dtype=np.int64)
        back[np.concatenate(where)] = np.arange(len(positions))
        return joined.take(back)

    def labelled_count(self) -> int:
        """Rows that carry a label already (read from the label column only)."""
        if self._set is not None:
            return 0 if self._set.labels is None else int(np.count_nonzero(has_label(self._set)))
        assert self._sharded is not None
        counts = self._sharded.label_counts()
        return int(sum(v for k, v in counts.items() if k not in ("", "None")))


def has_label(es: EmbeddingSet) -> np.ndarray:
    """Which rows of ``es`` carry a (non-empty) label."""
    if es.labels is None:
        return np.zeros(es.n, dtype=bool)
    return np.asarray(es.labels, dtype=str) != ""
