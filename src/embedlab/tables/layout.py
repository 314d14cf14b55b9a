"""How the tables of a model are laid out under a byte budget: the kind, rows and width
of every column's table, fixed before training from the columns' statistics.

Kinds (each column's embedding is ``dim`` wide):

- ``full``: one row per value seen at least ``min_count`` times (most frequent first while
  the budget lasts), one row for missing, one shared row for rare and unseen values.
- ``hash``: the hashing trick, ``key mod rows``: values collide at random.
- ``qr``: quotient–remainder (compositional) embeddings: two tables of about √(rows)… whose
  rows are multiplied element-wise, ``Q[id // m] ⊙ R[id % m]``: every id gets a
  distinct pair, from ``q + m`` rows instead of ``q · m``.
- ``mixed``: mixed-dimension embeddings: values by frequency in blocks whose width halves
  from block to block (each block then projected to ``dim``); values past the last block
  are hashed into it.
- ``unified``: Unified Embedding: one table shared by all columns; each column reads
  ``probes`` rows of it through its own hash functions and concatenates them.

A column whose whole table fits its share of the budget gets a full table whatever the
kind (as in the papers: small features are never hashed). ``full`` under a budget keeps the
most frequent values and sends the rest to the shared row, and says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from embedlab.core.errors import ValidationError
from embedlab.tables.columns import MISSING_KEY, CategoricalStats, mix

__all__ = ["KINDS", "ColumnLayout", "TableLayout", "full_bytes", "lay_out"]

KINDS = ("full", "hash", "qr", "mixed", "unified")
FLOAT_BYTES = 4
MIN_ROWS = 16  # a budget narrows the tables before it gives a column fewer rows than this
MISSING_ROW, RARE_ROW = 0, 1


@dataclass
class ColumnLayout:
    """One column's table. ``kind``: what it became (``full`` when it fits). ``rows``: its
    table rows (``qr``: q + m; ``mixed``: summed over blocks; ``unified``: 0, it reads the
    shared table). ``kept``: values with a row of their own (vocabulary kinds)."""

    name: str
    kind: str
    dim: int
    distinct: int
    rows: int = 0
    kept: int = 0
    rare_values: int = 0  # values seen, sent to the shared row (vocabulary kinds)
    rare_rows: int = 0  # training rows whose value went to the shared row
    q: int = 0
    m: int = 0
    blocks: list[list[int]] = field(default_factory=list)  # [values, width] per block
    salts: list[int] = field(default_factory=list)

    @property
    def params(self) -> int:
        if self.kind in ("full", "hash"):
            return self.rows * self.dim
        if self.kind == "qr":
            return (self.q + self.m) * self.dim
        if self.kind == "mixed":
            extra = [(2 if i == 0 else 0) for i in range(len(self.blocks))]
            return sum(
                (n + e) * w + (0 if w == self.dim else w * self.dim)
                for (n, w), e in zip(self.blocks, extra, strict=True)
            )
        return 0

    @property
    def vocabulary(self) -> bool:
        return self.kind in ("full", "mixed")


@dataclass
class TableLayout:
    """Every column's table, the shared one (``unified``) and what they cost."""

    kind: str
    dim: int
    columns: list[ColumnLayout]
    budget: int | None
    full_bytes: int
    shared_rows: int = 0
    probes: int = 1
    min_count: int = 2

    @property
    def shared_width(self) -> int:
        return self.dim // self.probes if self.shared_rows else 0

    @property
    def bytes(self) -> int:
        params = sum(c.params for c in self.columns) + self.shared_rows * self.shared_width
        return params * FLOAT_BYTES

    @property
    def vocabulary_bytes(self) -> int:
        """Bytes of the vocabularies beside the tables (full and mixed columns: each kept
        value's 8-byte key and 4-byte row); not counted in the budget, as in the papers,
        where ids come as row numbers already. The hashed kinds keep none."""
        return sum(12 * c.kept for c in self.columns if c.vocabulary)

    @property
    def width(self) -> int:
        return sum(c.dim for c in self.columns)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        return out

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> TableLayout:
        cols = [ColumnLayout(**c) for c in doc["columns"]]
        rest = {k: v for k, v in doc.items() if k != "columns"}
        layout = cls(columns=cols, **rest)
        if layout.kind not in (*KINDS, "auto"):
            raise ValidationError(f"unknown table kind {layout.kind!r}")
        return layout

    def describe(self) -> list[str]:
        """One line per column: what it got and why, for the fit's messages."""
        lines = []
        for c in self.columns:
            what = {
                "full": f"full table, {c.rows:,} rows × {c.dim}",
                "hash": f"hashed into {c.rows:,} rows × {c.dim}",
                "qr": f"quotient–remainder {c.q:,} + {c.m:,} rows × {c.dim}",
                "mixed": "mixed widths " + " + ".join(f"{n:,}×{w}" for n, w in c.blocks),
                "unified": f"{self.probes} probes into the shared {self.shared_rows:,}-row table",
            }[c.kind]
            rare = (
                f"; {c.rare_values:,} rare value(s) ({c.rare_rows:,} training rows) share one row"
                if c.rare_values
                else ""
            )
            lines.append(f"{c.name}: {c.distinct:,} values → {what}{rare}")
        return lines


def full_bytes(stats: Sequence[CategoricalStats], dim: int) -> int:
    """Bytes of full tables for every value seen (plus the missing and shared rows)."""
    return sum((s.distinct + 2) * dim for s in stats) * FLOAT_BYTES


def _water_fill(needs: Sequence[int], total: float) -> list[int]:
    """Rows per column: each gets what it needs or an equal share t, Σ ≤ total."""
    needs = list(needs)
    if sum(needs) <= total:
        return needs
    order = sorted(range(len(needs)), key=lambda i: needs[i])
    out = [0] * len(needs)
    left, k = total, len(needs)
    for rank, i in enumerate(order):
        share = left / (k - rank)
        take = min(needs[i], int(share))
        out[i] = take
        left -= take
    return out


def lay_out(
    stats: Sequence[CategoricalStats],
    *,
    kind: str = "auto",
    budget: int | None = None,
    dim: int = 16,
    probes: int = 2,
    min_count: int = 2,
    seed: int = 0,
) -> TableLayout:
    """The layout of ``kind`` tables for columns with these ``stats`` within ``budget``
    bytes (None: full tables' size). ``auto``: full tables when they fit, else ``qr``.
    ValidationError when the budget cannot give every column a few rows."""
    if kind not in (*KINDS, "auto"):
        raise ValidationError(f"unknown table kind {kind!r}: use auto or one of {', '.join(KINDS)}")
    if dim < 1 or dim > 512:
        raise ValidationError(f"table width dim must be in 1..512, not {dim}")
    full = full_bytes(stats, dim)
    if kind == "auto":
        kind = "full" if budget is None or budget >= full else "qr"
    cap = full if budget is None else min(budget, full)
    params = cap / FLOAT_BYTES
    rng = np.random.default_rng(seed)
    salts = lambda n: [int(v) for v in rng.integers(1, 2**63, size=n)]  # noqa: E731
    needs = [s.distinct + 2 for s in stats]
    if kind == "unified":
        if dim % probes:
            raise ValidationError(f"dim {dim} must be a multiple of probes {probes}")
        while dim > probes and params / (dim // probes) < MIN_ROWS * len(stats):
            dim //= 2
        probes = min(probes, dim)
    else:
        dim = _width(needs, params, dim)
    layout = TableLayout(
        kind=kind, dim=dim, columns=[], budget=budget, full_bytes=full, min_count=min_count
    )
    if kind == "unified":
        layout.probes = probes
        width = dim // probes
        layout.shared_rows = max(int(params // width), 0)
        if layout.shared_rows < 2 * len(stats):
            raise ValidationError(_too_small(cap, len(stats)))
        for s in stats:
            layout.columns.append(
                ColumnLayout(s.name, "unified", dim, s.distinct, salts=salts(probes))
            )
        return layout
    rows = _water_fill(needs, params / dim)
    if min(rows, default=2) < 2:
        raise ValidationError(_too_small(cap, len(stats)))
    for s, r in zip(stats, rows, strict=True):
        col = ColumnLayout(s.name, kind, dim, s.distinct, salts=salts(1))
        frequent = int((s.counts >= min_count).sum())
        if r >= s.distinct + 2 and kind != "full":
            col.kind = "full"
        if col.kind == "full":
            col.kept = min(frequent, r - 2)
            col.rows = col.kept + 2
        elif kind == "hash":
            col.rows = r
        elif kind == "qr":
            col.m = math.ceil(r / 2)
            col.q = r - col.m
        elif kind == "mixed":
            col.blocks = _mixed_blocks(r * dim, dim, frequent)
            col.kept = sum(n for n, _ in col.blocks)
            col.rows = col.kept + 2
        if col.vocabulary:
            col.rare_values = s.distinct - min(col.kept, s.distinct)
            col.rare_rows = int(s.counts[col.kept :].sum())
            if col.kind == "mixed":  # the tail is hashed into the last block, not shared
                col.rare_values = col.rare_rows = 0
        layout.columns.append(col)
    return layout


def _width(needs: Sequence[int], params: float, dim: int) -> int:
    """The widest width (dim, dim/2, … 1) at which every column gets its whole table or at
    least MIN_ROWS rows: under a tight budget a narrow row per value beats collisions."""
    while dim > 1:
        rows = _water_fill(needs, params / dim)
        if all(r >= min(n, MIN_ROWS) for r, n in zip(rows, needs, strict=True)):
            break
        dim //= 2
    return dim


def _too_small(cap: float, k: int) -> str:
    return (
        f"a table budget of {int(cap):,} bytes cannot give {k} categorical column(s) even "
        "2 rows each: raise --budget or pass fewer --cat-cols"
    )


def _mixed_blocks(params: int, dim: int, values: int) -> list[list[int]]:
    """Blocks of [values, width]: widths dim, dim/2, dim/4, … (≥ 2), each block the same
    share of the parameters (its projection to dim included), so that frequent values get
    wide rows and the many rare ones narrow rows."""
    widths = [dim]
    while widths[-1] // 2 >= 2 and len(widths) < 4:
        widths.append(widths[-1] // 2)
    for nb in range(len(widths), 0, -1):
        share = params / nb
        blocks, left = [], values
        for i, w in enumerate(widths[:nb]):
            proj = 0 if i == 0 else w * dim
            extra = 2 * w if i == 0 else 0
            n = int((share - proj - extra) // w)
            if n < 1:
                break
            n = min(n, left) if i < nb - 1 else n
            blocks.append([n, w])
            left -= n
            if left <= 0 and i < nb - 1:
                break
        if len(blocks) == nb or (blocks and left <= 0):
            return blocks
    return [[max(int(params // dim) - 2, 1), dim]]


class Lookup:
    """Keys → row indices for one column (numpy, vectorised). Vocabulary kinds keep the
    sorted keys of their values (``sorted_keys``, ``sorted_rows``)."""

    def __init__(self, col: ColumnLayout, sorted_keys: np.ndarray | None = None,
                 sorted_rows: np.ndarray | None = None) -> None:  # fmt: skip
        self.col = col
        self.sorted_keys = sorted_keys
        self.sorted_rows = sorted_rows

    @classmethod
    def fitted(cls, col: ColumnLayout, stats: CategoricalStats) -> Lookup:
        if not col.vocabulary:
            return cls(col)
        keys = stats.keys[: col.kept]
        order = np.argsort(keys)
        return cls(col, keys[order], (np.arange(col.kept, dtype=np.int32) + 2)[order])

    def known(self, keys: np.ndarray) -> np.ndarray:
        """Whether each key has a row of its own (vocabulary kinds; missing counts as known)."""
        if self.sorted_keys is None or not len(self.sorted_keys):
            return keys == MISSING_KEY
        pos = np.minimum(np.searchsorted(self.sorted_keys, keys), len(self.sorted_keys) - 1)
        return (self.sorted_keys[pos] == keys) | (keys == MISSING_KEY)

    def _vocab_rows(self, keys: np.ndarray) -> np.ndarray:
        out = np.full(len(keys), RARE_ROW, dtype=np.int64)
        if self.sorted_keys is not None and len(self.sorted_keys):
            pos = np.minimum(np.searchsorted(self.sorted_keys, keys), len(self.sorted_keys) - 1)
            hit = self.sorted_keys[pos] == keys
            out[hit] = self.sorted_rows[pos[hit]]
        out[keys == MISSING_KEY] = MISSING_ROW
        return out

    def indices(self, keys: np.ndarray, shared_rows: int = 0) -> list[np.ndarray]:
        """The row indices the column's table(s) read for ``keys``."""
        c = self.col
        if c.kind == "full":
            return [self._vocab_rows(keys)]
        if c.kind == "hash":
            return [(mix(keys, c.salts[0]) % np.uint64(c.rows)).astype(np.int64)]
        if c.kind == "qr":
            ids = mix(keys, c.salts[0]) % np.uint64(c.q * c.m)
            return [
                (ids // np.uint64(c.m)).astype(np.int64),
                (ids % np.uint64(c.m)).astype(np.int64),
            ]
        if c.kind == "mixed":
            rows = self._vocab_rows(keys)  # 0 missing, 1 not kept, 2.. by rank
            starts = np.cumsum([0] + [n for n, _ in c.blocks])
            tail = rows == RARE_ROW
            last_n = c.blocks[-1][0]
            hashed = (mix(keys, c.salts[0]) % np.uint64(last_n)).astype(np.int64)
            rows[tail] = starts[-2] + 2 + hashed[tail]
            block = np.searchsorted(starts[1:], rows - 2, side="right")
            block[rows < 2] = 0
            within = rows - 2 - starts[block]
            within[rows < 2] = rows[rows < 2] - 2  # -2 / -1: missing / spare, block 0
            within[block == 0] += 2
            return [block.astype(np.int64), within.astype(np.int64)]
        # unified: one index per probe into the shared table
        return [(mix(keys, s) % np.uint64(shared_rows)).astype(np.int64) for s in c.salts]
