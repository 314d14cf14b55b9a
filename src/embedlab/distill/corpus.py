"""What every distillation shares: the training texts (read, deduplicated, split into a
training part and a held-out part), the teacher's vectors of them, fidelity (how close a
student's vectors are to the teacher's on held-out texts), the student's speed, and writing
the student directory with its manifest in one atomic step."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embedlab.core.errors import EmbedlabError
from embedlab.encoders.base import check_texts
from embedlab.encoders.student import FORMAT, MANIFEST, VERSION

__all__ = ["Corpus", "fidelity", "split_corpus", "texts_per_second", "write_student"]

#: Share of the distinct training texts held out to measure fidelity (at most HELD_MAX).
HELD_SHARE = 0.1
HELD_MAX = 2000
#: Texts a student is measured on when no corpus is given (the probe set of the backend check).
MIN_TEXTS = 20


@dataclass
class Corpus:
    """Distinct training texts and the held-out ones fidelity is measured on."""

    train: list[str]
    held: list[str]
    given: int  # texts the user passed (before removing repeats)

    @property
    def all(self) -> list[str]:
        return self.train + self.held


def split_corpus(texts: Sequence[str] | None, seed: int) -> Corpus:
    """Deduplicate ``texts`` (order kept) and hold out a seeded tenth (≤ 2,000) for fidelity;
    with no texts, the fixed probe set of the backend check is the held-out part."""
    if texts is None:
        from embedlab.encoders.backend_choice import probe_texts

        return Corpus(train=[], held=probe_texts(), given=0)
    texts = check_texts(list(texts))
    distinct = list(dict.fromkeys(texts))
    if len(distinct) < MIN_TEXTS:
        raise EmbedlabError(
            f"the corpus has {len(distinct)} distinct text(s); distillation needs at least "
            f"{MIN_TEXTS} (thousands are better): pass more with --texts"
        )
    n_held = min(HELD_MAX, max(round(HELD_SHARE * len(distinct)), 10))
    order = np.random.default_rng(seed).permutation(len(distinct))
    held = sorted(order[:n_held].tolist())
    train = sorted(order[n_held:].tolist())
    return Corpus(
        train=[distinct[i] for i in train], held=[distinct[i] for i in held], given=len(texts)
    )


def fidelity(student: np.ndarray, teacher: np.ndarray) -> dict[str, float]:
    """Cosine between a student's and the teacher's vectors of the same texts: mean, 5th
    percentile and minimum."""
    a = student / np.maximum(np.linalg.norm(student, axis=1, keepdims=True), 1e-12)
    b = teacher / np.maximum(np.linalg.norm(teacher, axis=1, keepdims=True), 1e-12)
    cos = np.einsum("ij,ij->i", a, b)
    return {
        "mean_cosine": round(float(cos.mean()), 4),
        "p05_cosine": round(float(np.quantile(cos, 0.05)), 4),
        "min_cosine": round(float(cos.min()), 4),
        "texts": len(cos),
    }


def texts_per_second(encode: Callable[[list[str]], Any], texts: list[str]) -> float:
    """Texts per second of ``encode`` on ``texts`` (distinct: encoders skip repeats), after
    a warm-up call on a few of them (the encoder as loaded, cache off)."""
    encode(texts[:16])
    t0 = time.perf_counter()
    encode(texts)
    return round(len(texts) / max(time.perf_counter() - t0, 1e-9), 1)


def write_student(
    output: Path,
    fill: Callable[[Path], dict[str, Any]],
    manifest: dict[str, Any],
    *,
    overwrite: bool,
) -> dict[str, Any]:
    """Write a student directory atomically: ``fill(tmp)`` writes its files and returns
    what it measured on them, then the manifest (``manifest`` + the measurements + the
    files and their total size) is added; returns the manifest."""
    from embedlab.store.atomic import atomic_directory

    with atomic_directory(output, overwrite=overwrite) as tmp:
        measured = fill(tmp)
        files = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
        size = sum((tmp / f).stat().st_size for f in files)
        manifest = {
            "format": FORMAT,
            "format_version": VERSION,
            **manifest,
            **measured,
            "bytes": size,
            "files": files,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return manifest


def teacher_summary(teacher: Any) -> dict[str, Any]:
    """Name, fingerprint, dimension and path of the teacher encoder."""
    spec = teacher.spec
    return {k: spec.get(k) for k in ("name", "fingerprint", "dim", "path", "max_seq_length")}
