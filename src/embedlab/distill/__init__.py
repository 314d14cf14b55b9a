"""Distillation: a cheaper encoder (a *student*) made from the teacher and the user's texts.

``static`` — a token-embedding table (model2vec's distillation of the teacher; with texts,
trained to reproduce the teacher's vectors: the teacher's space, so models fitted on the
teacher keep working). ``shallow`` — the teacher's first k layers plus a trained map to
its output (needs texts; the teacher's space). The student directory holds its weights,
tokenizer and a manifest (:mod:`embedlab.encoders.student`) with the teacher's
fingerprint, the training-text counts, fidelity to the teacher on held-out texts and the
measured texts/s. Same texts, options and seed → the same student.

>>> from embedlab.distill import distill                                   # doctest: +SKIP
>>> distill("student/", kind="static", texts=my_texts)["fidelity"]        # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embedlab.core.errors import EmbedlabError
from embedlab.distill.corpus import (
    fidelity,
    split_corpus,
    teacher_summary,
    texts_per_second,
    write_student,
)

__all__ = ["KINDS", "distill"]

log = logging.getLogger("embedlab")

KINDS = ("static", "shallow")
DTYPES = ("int8", "float16", "float32")
SPEED_TEXTS = 4000  # distinct texts the student's and the teacher's speed are measured on


def distill(
    output: str | os.PathLike,
    *,
    kind: str = "static",
    teacher: str | os.PathLike | None = None,
    texts: Sequence[str] | None = None,
    layers: int = 3,
    dim: int = 256,
    dtype: str = "int8",
    head: str = "linear",
    epochs: int | None = None,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Distil a ``kind`` student of ``teacher`` (a sentence-transformers directory; default:
    the packaged MiniLM) into directory ``output``; returns its manifest.

    ``texts``: the user's corpus (needed for ``shallow``; for ``static`` it trains the
    student into the teacher's space). ``dim``/``dtype``: the static token table's width
    (PCA) and storage. ``layers``/``head``: the shallow student's depth and map
    (``linear`` or ``mlp``). ``epochs``: training passes (default: 8 static, 3 shallow).
    """
    from embedlab.encoders.sentence_transformer import SentenceTransformerEncoder
    from embedlab.store.atomic import check_replaceable

    if kind not in KINDS:
        raise EmbedlabError(f"unknown --kind {kind!r}; choose one of: {', '.join(KINDS)}")
    if dtype not in DTYPES:
        raise EmbedlabError(f"unknown --dtype {dtype!r}; choose one of: {', '.join(DTYPES)}")
    if epochs is not None and epochs < 0:
        raise EmbedlabError(f"--epochs must be >= 0, got {epochs}")
    if kind == "shallow" and texts is None:
        raise EmbedlabError(
            "a shallow student is trained on your texts: pass --texts CORPUS (a file of texts)"
        )
    if Path(output).exists() and not overwrite:
        raise EmbedlabError(f"{output} already exists; pass --force to replace it")
    check_replaceable(output)
    start = time.perf_counter()
    teach = SentenceTransformerEncoder(teacher, cache=True)
    if teach._config.get("has_dense") and kind == "static":
        log.warning("the teacher ends in a Dense layer: the static student's plain table skips it")
    corpus = split_corpus(texts, seed)
    targets = teach.encode(corpus.all, progress=progress) if corpus.train else None
    held_targets = teach.encode(corpus.held, progress=False)
    record: dict[str, Any] = {
        "kind": kind,
        "teacher": teacher_summary(teach),
        "seed": seed,
        "training_texts": len(corpus.train),
        "held_out_texts": len(corpus.held) if corpus.train else 0,
        "texts_given": corpus.given,
    }
    if kind == "static":
        fill, extra = _static(
            teach, corpus, targets, held_targets, dim, dtype, epochs, seed, progress
        )
    else:
        fill, extra = _shallow(
            teach, corpus, targets, held_targets, layers, head, epochs, seed, progress
        )
    record.update(extra)
    speed_texts = corpus.all[:SPEED_TEXTS]
    plain = _uncached(teach)
    teacher_speed = texts_per_second(lambda t: plain.encode(t, progress=False), speed_texts)

    def measured_fill(tmp: Path) -> dict[str, Any]:
        student = fill(tmp)
        vecs = student.encode(corpus.held, progress=False)
        info: dict[str, Any] = {"dim": int(vecs.shape[1])}
        if record["space"] == "teacher":
            info["fidelity"] = fidelity(vecs, held_targets)
        info["fidelity_similarity_spearman"] = _similarity_spearman(vecs, held_targets, seed)
        info["texts_per_second"] = texts_per_second(
            lambda t: student.encode(t, progress=False), speed_texts
        )
        info["backend"] = getattr(student, "resolved_backend", "static")
        info["teacher_texts_per_second"] = teacher_speed
        return info

    manifest = write_student(Path(output), measured_fill, record, overwrite=overwrite)
    manifest["seconds"] = round(time.perf_counter() - start, 1)
    return manifest


def _uncached(encoder: Any) -> Any:
    from embedlab.encoders.sentence_transformer import SentenceTransformerEncoder

    twin = SentenceTransformerEncoder(encoder.model_path, cache=False, backend=encoder.backend)
    twin._model, twin._backend = encoder._model, encoder._backend
    return twin


def _static(teach, corpus, targets, held_targets, dim, dtype, epochs, seed, progress):
    """(fill(tmp) → StaticEncoder, manifest fields) of a static student."""
    from embedlab.distill.static import (
        StaticTraining,
        model2vec_tables,
        quantised,
        train_static,
    )

    full = int(teach.dim)
    if not 2 <= dim <= full:
        raise EmbedlabError(f"--dim must be between 2 and the teacher's {full}, got {dim}")
    max_tokens = int(teach._config.get("max_seq_length") or 512)
    tables = model2vec_tables(str(teach.model_path), dim, progress=progress)
    fields: dict[str, Any] = {"space": "own", "token_dim": dim, "dtype": dtype}
    if corpus.train:
        n = len(corpus.train)
        options = StaticTraining(seed=seed, epochs=8 if epochs is None else epochs)
        fields["training"] = train_static(
            tables,
            corpus.train,
            targets[:n],
            corpus.held,
            held_targets,
            max_tokens=max_tokens,
            options=options,
            progress=progress,
        )
        fields["space"] = "teacher"

    def fill(tmp: Path) -> Any:
        from safetensors.numpy import save_file

        from embedlab.encoders.static import StaticEncoder

        arrays = quantised(tables.embeddings, dtype)
        if tables.projection is not None:
            arrays["projection"] = tables.projection.astype(np.float32)
            arrays["bias"] = tables.bias.astype(np.float32)
        if tables.weights is not None:
            arrays["token_weights"] = tables.weights.astype(np.float32)
        save_file(arrays, str(tmp / "model.safetensors"))
        tables.tokenizer.save(str(tmp / "tokenizer.json"))
        config = {
            "dim": full if tables.projection is not None else dim,
            "token_dim": dim,
            "dtype": dtype,
            "unk_id": tables.unk_id,
            "max_tokens": max_tokens,
        }
        (tmp / "config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
        return StaticEncoder(tmp, manifest={"kind": "static", **config})

    return fill, fields


def _shallow(teach, corpus, targets, held_targets, layers, head, epochs, seed, progress):
    """(fill(tmp) → SentenceTransformerEncoder, manifest fields) of a shallow student."""
    from embedlab.distill.shallow import (
        ShallowTraining,
        build_shallow,
        save_shallow,
        train_shallow,
    )
    from embedlab.encoders.sentence_transformer import SentenceTransformerEncoder

    model = build_shallow(teach.model, int(layers), head)
    options = ShallowTraining(seed=seed, head=head, epochs=3 if epochs is None else epochs)
    n = len(corpus.train)
    training = train_shallow(
        model,
        corpus.train,
        targets[:n],
        corpus.held,
        held_targets,
        options=options,
        progress=progress,
    )
    fields = {"space": "teacher", "layers": int(layers), "head": head, "training": training}

    def fill(tmp: Path) -> Any:
        save_shallow(model, tmp)
        return SentenceTransformerEncoder(tmp, cache=False, backend=teach.backend)

    return fill, fields


def _similarity_spearman(vecs: np.ndarray, teacher: np.ndarray, seed: int) -> float:
    """Spearman between the student's and the teacher's cosine over random pairs of held-out
    texts: how well the student keeps the teacher's similarity order (any space)."""
    from scipy.stats import spearmanr

    n = len(vecs)
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, n, 4000), rng.integers(0, n, 4000)
    keep = a != b

    def cos(v: np.ndarray) -> np.ndarray:
        v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        return np.einsum("ij,ij->i", v[a[keep]], v[b[keep]])

    return round(float(spearmanr(cos(vecs), cos(teacher)).statistic), 4)
