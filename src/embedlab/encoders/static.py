"""StaticEncoder: a distilled token-embedding student (``embedlab distill --kind static``).

A text's vector is the mean of its tokens' rows in an embedding table (int8 with a scale per
row, or float), optionally mapped into the teacher's space by a learnt affine projection,
then L2-normalised. At load the rows are multiplied out by their scales and the projection
once (a float32 vocab × output-dim table in memory), so encoding is tokenising plus one
sparse product. Tokenising is the Rust ``tokenizers`` library; the rest is numpy, so
encoding imports neither torch nor transformers. Files: ``tokenizer.json``,
``model.safetensors`` (``embeddings`` [, ``scales``, ``projection``, ``bias``]) and the
student manifest (:mod:`embedlab.encoders.student`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embedlab.core.errors import EncoderError
from embedlab.core.progress import progress_bar
from embedlab.encoders.base import DEFAULT_MAX_CHARS, check_texts

__all__ = ["StaticEncoder", "dense_table", "flat_token_ids", "mean_rows", "static_vectors"]

WEIGHTS = "model.safetensors"
TOKENIZER = "tokenizer.json"
_CHUNK = 16384  # texts per tokenizer call (progress granularity, bounded memory)


def dense_table(
    embeddings: np.ndarray, scales: np.ndarray | None, projection: np.ndarray | None
) -> np.ndarray:
    """The (vocab, output dim) float32 table a text's vector is the mean of: the stored rows
    (times their int8 scales), already mapped by the projection (a mean of mapped rows is
    the map of the mean, so texts need no matrix product of their own)."""
    table = embeddings.astype(np.float32)
    if scales is not None:
        table *= scales[:, None]
    if projection is not None:
        table = table @ projection.astype(np.float32)
    return np.ascontiguousarray(table, dtype=np.float32)


def mean_rows(
    ids: np.ndarray,
    offsets: np.ndarray,
    table: np.ndarray,
    token_weights: np.ndarray | None = None,
) -> np.ndarray:
    """Each text's mean of ``table`` rows — weighted by ``token_weights[id]`` when given —
    (zeros for a text without tokens) as one sparse (texts × vocab) product: no
    (tokens × dim) array is made."""
    from scipy.sparse import csr_matrix

    counts = np.diff(offsets)
    if token_weights is None:
        weights = np.repeat(1.0 / np.maximum(counts, 1), counts).astype(np.float32)
    else:
        weights = token_weights[ids].astype(np.float32)
        totals = np.add.reduceat(weights, offsets[:-1][counts > 0]) if len(ids) else weights
        per_text = np.ones(len(counts), dtype=np.float32)
        per_text[counts > 0] = totals
        weights /= np.repeat(per_text, counts)
    shape = (len(offsets) - 1, table.shape[0])
    return np.asarray(csr_matrix((weights, ids, offsets), shape=shape) @ table, np.float32)


def static_vectors(
    ids: np.ndarray,
    offsets: np.ndarray,
    table: np.ndarray,
    bias: np.ndarray | None = None,
    token_weights: np.ndarray | None = None,
) -> np.ndarray:
    """Each text's (weighted) mean of ``table`` rows (``offsets``: where each text starts in
    the flat ``ids``, plus the end), plus ``bias``, L2-normalised; a text without tokens
    gets zeros."""
    mean = mean_rows(ids, offsets, table, token_weights)  # each step below works in place
    if bias is not None:
        mean += bias
        mean[offsets[1:] == offsets[:-1]] = 0.0
    norms = np.sqrt(np.einsum("ij,ij->i", mean, mean))
    mean /= np.maximum(norms, 1e-12)[:, None]
    return mean


class StaticEncoder:
    """Encode texts with a static (token-embedding) student directory.

    Parameters
    ----------
    path : path
        A directory written by ``embedlab distill --kind static``.
    max_chars : int
        Texts are cut to this many characters before tokenising.

    Examples
    --------
    >>> enc = StaticEncoder("student/")                      # doctest: +SKIP
    >>> enc.encode(["book a flight"]).shape                  # doctest: +SKIP
    (1, 384)
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        max_chars: int = DEFAULT_MAX_CHARS,
        manifest: dict[str, Any] | None = None,
    ) -> None:
        from embedlab.encoders.student import read_manifest

        self.model_path = Path(path)
        self.manifest = manifest if manifest is not None else read_manifest(self.model_path)
        if self.manifest.get("kind") != "static":
            raise EncoderError(f"{path} is a {self.manifest.get('kind')!r} student, not static")
        self.config = _read_config(self.model_path)
        self.max_chars = int(max_chars)
        self.max_tokens = int(self.config["max_tokens"])
        self._arrays: dict[str, np.ndarray] | None = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()
        self.last_stats: dict[str, Any] = {}
        self.backend = self._backend = "static"  # numpy; no torch, no ONNX Runtime
        self.cache = None  # looking a vector up would cost more than computing it

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the path and manifest; the tables load again on first use."""
        state = self.__dict__.copy()
        state.update(_arrays=None, _tokenizer=None, _lock=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ identity
    @property
    def name(self) -> str:
        return self.model_path.name

    @property
    def dim(self) -> int:
        return int(self.config["dim"])

    @property
    def fingerprint(self) -> str:
        from embedlab.encoders.model_files import model_fingerprint

        return model_fingerprint(self.model_path)

    @property
    def spec(self) -> dict[str, Any]:
        return {
            "kind": "static",
            "name": self.name,
            "path": str(self.model_path.absolute()),
            "fingerprint": self.fingerprint,
            "dim": self.dim,
            "normalize": True,
            "layer": None,
            "truncate_dim": None,
            "first_last_average": False,
            "student": _student_summary(self.manifest),
        }

    @property
    def resolved_backend(self) -> str:
        return "static"

    def __repr__(self) -> str:
        return f"StaticEncoder({self.name!r}, dim={self.dim})"

    # ------------------------------------------------------------------ loading
    def _load(self) -> tuple[Any, dict[str, np.ndarray]]:
        if self._arrays is not None:
            return self._tokenizer, self._arrays
        with self._lock:
            if self._arrays is None:
                from safetensors.numpy import load_file
                from tokenizers import Tokenizer

                try:
                    tokenizer = Tokenizer.from_file(str(self.model_path / TOKENIZER))
                    arrays = load_file(str(self.model_path / WEIGHTS))
                except Exception as exc:
                    raise EncoderError(
                        f"cannot load the static student in {self.model_path}: {exc}; "
                        "distil it again with embedlab distill --kind static"
                    ) from None
                tokenizer.no_padding()
                tokenizer.enable_truncation(self.max_tokens)
                if (
                    arrays["embeddings"].shape[1]
                    != arrays.get(
                        "projection", np.empty((arrays["embeddings"].shape[1], self.dim))
                    ).shape[0]
                ):
                    raise EncoderError(f"{self.model_path}: the student's tables do not fit")
                self._tokenizer = tokenizer
                self._arrays = {
                    "table": dense_table(
                        arrays["embeddings"], arrays.get("scales"), arrays.get("projection")
                    ),
                    **{k: arrays[k] for k in ("bias", "token_weights") if k in arrays},
                }
        return self._tokenizer, self._arrays  # type: ignore[return-value]

    def token_ids(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Flat token ids of ``texts`` (unknown tokens dropped) and each text's offset."""
        tokenizer, _ = self._load()
        return flat_token_ids(tokenizer, texts, self.config.get("unk_id"))

    # ------------------------------------------------------------------ encode
    def encode(self, texts: Sequence[str], *, progress: bool | None = None) -> np.ndarray:
        """Embed ``texts``; returns a float32 array of shape (len(texts), dim)."""
        start = time.perf_counter()
        loaded_before = self._arrays is not None
        texts = check_texts(texts, max_chars=self.max_chars)
        _, arrays = self._load()
        load = 0.0 if loaded_before else time.perf_counter() - start
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        show = len(texts) > 100_000 if progress is None else progress
        with progress_bar(len(texts), "encoding (static)", enabled=show) as advance:
            for s in range(0, len(texts), _CHUNK):
                chunk = texts[s : s + _CHUNK]
                ids, offsets = self.token_ids(chunk)
                out[s : s + len(chunk)] = static_vectors(
                    ids, offsets, arrays["table"], arrays.get("bias"), arrays.get("token_weights")
                )
                advance(len(chunk))
        seconds = time.perf_counter() - start
        self.last_stats = {
            "n": len(texts),
            "cached": 0,
            "encoded": len(texts),
            "seconds": seconds,
            "load_seconds": load,
            "texts_per_second": len(texts) / max(seconds - load, 1e-9) if texts else None,
            "backend": "static",
        }
        return out


def _read_config(path: Path) -> dict[str, Any]:
    """The settings that shape a static student's vectors (``config.json``)."""
    import json

    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        int(config["dim"]), int(config["max_tokens"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EncoderError(
            f"{path}/config.json is missing or damaged ({exc}); distil the student again"
        ) from None
    return config


def flat_token_ids(
    tokenizer: Any, texts: Sequence[str], unk: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of ``texts`` (no special tokens, ``unk`` dropped) in one flat int64 array,
    and the offset where each text starts (plus the end)."""
    import itertools

    encodings = tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)
    lists = [e.ids for e in encodings]
    lengths = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
    ids = np.fromiter(
        itertools.chain.from_iterable(lists), dtype=np.int64, count=int(lengths.sum())
    )
    if unk is not None and len(ids):
        keep = ids != int(unk)
        if not keep.all():
            owner = np.repeat(np.arange(len(lists)), lengths)[keep]
            ids = ids[keep]
            lengths = np.bincount(owner, minlength=len(lists)).astype(np.int64)
    offsets = np.zeros(len(lists) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return ids, offsets


def _student_summary(manifest: dict[str, Any]) -> dict[str, Any]:
    """The part of a student manifest a model's encoder spec records."""
    keys = ("kind", "space", "teacher", "fidelity")
    return {k: manifest.get(k) for k in keys}
