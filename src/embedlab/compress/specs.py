"""One grammar for every spec string: transforms (``--transform``), storage codes and search
indexes (``--spec``), in the spirit of FAISS's ``index_factory``.

A spec is comma-separated tokens from one table (below). Transforms are float steps
(``center``, ``whiten``, ``pcaK``, ``dimK``, ``norm``; ``layerK`` first, read by the
encoder) optionally ended by one code step (``sq8``, ``binary``, ``pqM[xB]``); an index is
``flat``, a code (``sq8``, ``pqM[xB]``), ``hnswM``, ``ivfN,pqM[xB]``, ``binary,rescoreR`` or
``dimD,rerankR``. The same token means the same thing everywhere. Old spellings are
accepted with a one-line deprecation note: ``int8`` is ``sq8``.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Literal

from embedlab.core.errors import ValidationError

__all__ = ["ALIASES", "TABLE", "Token", "TokenKind", "UnknownToken", "spellings", "tokenize"]

Role = Literal["layer", "float", "code", "index", "option"]


class UnknownToken(ValidationError):
    """A spec that is empty or holds a token the table does not know."""


@dataclass(frozen=True)
class TokenKind:
    """One row of the token table: its name, spelling (a regex; numbers as groups), role,
    meaning and, per number, (smallest, largest, what it is)."""

    name: str
    pattern: str
    role: Role
    meaning: str
    bounds: tuple[tuple[int, int, str], ...] = ()


#: Every token a spec may hold.
TABLE = (
    TokenKind(
        "layer", r"layer(\d+)", "layer", "encode with transformer layer K", ((1, 256, "the layer"),)
    ),
    TokenKind("center", "center", "float", "subtract the training mean"),
    TokenKind("whiten", "whiten", "float", "PCA-whitening (unit variance per component)"),
    TokenKind(
        "pca",
        r"pca(\d+)",
        "float",
        "the top K principal components",
        ((1, 1 << 16, "the components"),),
    ),
    TokenKind(
        "dim",
        r"dim(\d+)",
        "float",
        "the first K dimensions (Matryoshka)",
        ((1, 1 << 16, "the dimensions"),),
    ),
    TokenKind("norm", "norm", "float", "rows scaled to unit length"),
    TokenKind("sq8", "sq8", "code", "scalar quantisation, one byte per dimension"),
    TokenKind("binary", "binary", "code", "sign bits, 8 per byte"),
    TokenKind(
        "pq",
        r"pq(\d+)(?:x(\d+))?",
        "code",
        "product quantisation, M sub-vectors of B bits (default 8)",
        ((1, 4096, "the number of sub-vectors"), (1, 16, "the bits per code")),
    ),
    TokenKind("flat", "flat", "index", "exact search"),
    TokenKind(
        "hnsw",
        r"hnsw(\d+)",
        "index",
        "HNSW graph, M links per node",
        ((2, 512, "the links per node (HNSW's M)"),),
    ),
    TokenKind(
        "ivf",
        r"ivf(\d+)",
        "index",
        "IVF with N lists (then pqM[xB])",
        ((1, 1 << 20, "the number of IVF lists"),),
    ),
    TokenKind(
        "rescore",
        r"rescore(\d+)",
        "option",
        "R·k candidates rescored with float vectors",
        ((1, 1000, "the rescoring factor (candidates per result)"),),
    ),
    TokenKind(
        "rerank",
        r"rerank(\d+)",
        "option",
        "R·k candidates reranked with all dimensions",
        ((1, 1000, "the reranking factor (candidates per result)"),),
    ),
)
_COMPILED = [(k, re.compile(f"^{k.pattern}$")) for k in TABLE]

#: Old spellings → the token they mean (accepted, with a deprecation note).
ALIASES = {"int8": "sq8"}


@dataclass(frozen=True)
class Token:
    """A parsed token: its kind's name, role and numbers (defaults filled in)."""

    name: str
    role: Role
    args: tuple[int, ...] = ()

    @property
    def text(self) -> str:
        """The token as the grammar spells it (``pq16x8`` for ``pq16``)."""
        if self.name == "pq":
            return f"pq{self.args[0]}x{self.args[1]}"
        return self.name + "".join(str(a) for a in self.args)


def tokenize(spec: str, *, what: str = "spec", warn: bool = True) -> list[Token]:
    """The tokens of ``spec``; a ValidationError names an unknown or out-of-range token.
    ``warn``: a deprecated spelling gets a one-line FutureWarning (not for specs read back
    from saved files)."""
    if not isinstance(spec, str) or not spec.strip():
        raise UnknownToken(f"empty {what}; tokens are: {', '.join(_shown())}")
    out = []
    for raw in spec.split(","):
        text = raw.strip().lower()
        if text in ALIASES:
            if warn:
                warnings.warn(
                    f"{what} {spec!r}: {text!r} is now spelled {ALIASES[text]!r}",
                    FutureWarning,
                    stacklevel=3,
                )
            text = ALIASES[text]
        out.append(_token(text, raw.strip(), spec, what))
    return out


def _token(text: str, raw: str, spec: str, what: str) -> Token:
    for kind, pattern in _COMPILED:
        m = pattern.match(text)
        if m is None:
            continue
        args = tuple(int(g) for g in m.groups() if g is not None)
        if kind.name == "pq" and len(args) == 1:
            args = (*args, 8)
        for value, (lo, hi, meaning) in zip(args, kind.bounds, strict=False):
            if not lo <= value <= hi:
                raise ValidationError(
                    f"{what} {spec!r}: {raw} is out of range: {meaning} must be {lo}..{hi}"
                )
        return Token(kind.name, kind.role, args)
    raise UnknownToken(
        f"unknown token {raw!r} in {what} {spec!r}; tokens are: {', '.join(_shown())}"
    )


def spellings(*roles: Role) -> tuple[str, ...]:
    """The tokens as a user writes them (``pcaK``, ``pqM[xB]``), those of ``roles`` only
    when given, in table order."""
    spelled = {"layer": "layerK", "pca": "pcaK", "dim": "dimK", "pq": "pqM[xB]"}
    spelled |= {"hnsw": "hnswM", "ivf": "ivfN", "rescore": "rescoreR", "rerank": "rerankR"}
    return tuple(spelled.get(k.name, k.name) for k in TABLE if not roles or k.role in roles)


def _shown() -> tuple[str, ...]:
    return spellings()
