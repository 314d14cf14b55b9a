"""The static student: model2vec's distillation of the teacher (each token's teacher vector,
PCA to ``dim``, SIF-weighted), then — given the user's texts — trained to reproduce the
teacher's vectors of them (the tokenlearn recipe: mean of token rows → affine map into the
teacher's space, cosine loss; the token rows and the map both learn), so that it learns the
user's domain and speaks the teacher's space."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from embedlab.core.errors import EncoderError
from embedlab.core.progress import progress_bar
from embedlab.encoders.static import dense_table, mean_rows, static_vectors

__all__ = ["StaticTables", "model2vec_tables", "train_static"]

log = logging.getLogger("embedlab")


@dataclass
class StaticTables:
    """A static student's arrays (float32 until saved) and its tokenizer."""

    tokenizer: Any  # tokenizers.Tokenizer
    unk_id: int | None
    embeddings: np.ndarray  # (vocab, dim)
    projection: np.ndarray | None = None  # (dim, teacher dim)
    bias: np.ndarray | None = None
    weights: np.ndarray | None = None  # (vocab,) learnt weight of each token in the mean

    def encode_ids(self, texts: list[str], max_tokens: int) -> tuple[np.ndarray, np.ndarray]:
        """Flat token ids (unknown dropped) and offsets, as the StaticEncoder reads them."""
        from embedlab.encoders.static import flat_token_ids

        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_tokens)
        return flat_token_ids(self.tokenizer, texts, self.unk_id)

    def vectors(self, texts: list[str], max_tokens: int) -> np.ndarray:
        ids, offsets = self.encode_ids(texts, max_tokens)
        table = dense_table(self.embeddings, None, self.projection)
        return static_vectors(ids, offsets, table, self.bias, self.weights)


def model2vec_tables(teacher_path: str, dim: int, *, progress: bool) -> StaticTables:
    """model2vec's plain distillation of the teacher directory (PCA to ``dim``, float32)."""
    try:
        from model2vec.distill import distill
        from model2vec.model import _get_unk_token_id
    except ImportError as exc:
        raise EncoderError(
            f"static distillation needs model2vec with its distill extra ({exc}); "
            "pip install 'model2vec[distill]'"
        ) from None
    import contextlib
    import io

    quiet = contextlib.nullcontext() if progress else contextlib.redirect_stderr(io.StringIO())
    try:
        with quiet:
            model = distill(teacher_path, pca_dims=dim, quantize_to="float32")
    except Exception as exc:
        raise EncoderError(f"model2vec could not distil {teacher_path}: {exc}") from None
    return StaticTables(
        tokenizer=model.tokenizer,
        unk_id=_get_unk_token_id(model.tokenizer),
        embeddings=np.ascontiguousarray(model.embedding, dtype=np.float32),
    )


def _ridge_map(
    means: np.ndarray, target: np.ndarray, alpha: float = 1e-2
) -> tuple[np.ndarray, np.ndarray]:
    """Affine least-squares map from ``means`` to ``target`` (ridge on the centred data)."""
    mu_x, mu_y = means.mean(0), target.mean(0)
    x, y = means - mu_x, target - mu_y
    gram = x.T @ x + alpha * len(x) * np.eye(x.shape[1], dtype=np.float64)
    w = np.linalg.solve(gram, x.T @ y)
    return w.astype(np.float32), (mu_y - mu_x @ w).astype(np.float32)


def _batch_ids(
    ids: np.ndarray, offsets: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The flat ids and start offsets of ``rows`` (texts) of a flat corpus."""
    starts, lengths = offsets[rows], offsets[rows + 1] - offsets[rows]
    total = int(lengths.sum())
    out_offsets = np.zeros(len(rows), dtype=np.int64)
    np.cumsum(lengths[:-1], out=out_offsets[1:])
    gather = np.repeat(starts - out_offsets, lengths) + np.arange(total)
    return ids[gather], out_offsets


@dataclass
class StaticTraining:
    """How the token rows and the map learn."""

    epochs: int = 8
    batch_size: int = 256
    lr: float = 3e-3
    seed: int = 0
    weights: bool = True  # learn a weight per token (a weighted mean)


def _torch_student(tables: StaticTables, weighted: bool) -> Any:
    """The static student as a torch module: (flat ids, starts, owner row of each id) →
    the affine map of each text's (weighted) mean of token rows."""
    import torch

    class Student(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            table = torch.from_numpy(tables.embeddings.copy())
            self.rows = torch.nn.EmbeddingBag.from_pretrained(table, freeze=False, mode="sum")
            w = np.log(tables.weights) if tables.weights is not None else np.zeros(len(table))
            self.log_w = torch.nn.Parameter(torch.from_numpy(w.astype(np.float32)))
            self.log_w.requires_grad_(weighted)
            self.proj = torch.nn.Linear(*tables.projection.shape)
            with torch.no_grad():
                self.proj.weight.copy_(torch.from_numpy(tables.projection.T.copy()))
                self.proj.bias.copy_(torch.from_numpy(tables.bias))

        def forward(self, flat: Any, starts: Any, owner: Any) -> Any:
            w = torch.exp(self.log_w)[flat]
            total = torch.zeros(len(starts)).index_add_(0, owner, w)
            mean = self.rows(flat, starts, per_sample_weights=w) / total[:, None]
            return self.proj(mean)

        def export(self) -> tuple:
            with torch.no_grad():
                weights = torch.exp(self.log_w).numpy().copy() if weighted else None
                return (
                    self.rows.weight.numpy().copy(),
                    self.proj.weight.numpy().T.copy(),
                    self.proj.bias.numpy().copy(),
                    weights,
                )

    return Student()


def train_static(
    tables: StaticTables,
    train: list[str],
    train_targets: np.ndarray,
    held: list[str],
    held_targets: np.ndarray,
    *,
    max_tokens: int,
    options: StaticTraining,
    progress: bool,
) -> dict[str, Any]:
    """Fit the map (ridge), then train token rows, map (and with ``options.weights`` a
    weight per token) on ``train`` to reproduce the teacher's vectors (cosine loss); the
    epoch with the best held-out cosine is kept in ``tables``. Returns the record."""
    import torch

    ids, offsets = tables.encode_ids(train, max_tokens)
    usable = np.flatnonzero(np.diff(offsets) > 0)
    means = mean_rows(ids, offsets, tables.embeddings)  # what the map sees, before L2
    w, b = _ridge_map(means[usable].astype(np.float64), train_targets[usable].astype(np.float64))
    tables.projection, tables.bias = w, b
    curve = [("ridge map", _held_cosine(tables, held, held_targets, max_tokens))]
    best = (curve[0][1], tables.embeddings.copy(), w.copy(), b.copy(), None)
    student = _torch_student(tables, options.weights)
    opt = torch.optim.Adam([p for p in student.parameters() if p.requires_grad], lr=options.lr)
    targets = torch.from_numpy(np.ascontiguousarray(train_targets, dtype=np.float32))
    rng = np.random.default_rng(options.seed)
    steps = -(-len(usable) // options.batch_size)
    with progress_bar(
        options.epochs * steps, "training the static student", enabled=progress
    ) as adv:
        for epoch in range(options.epochs):
            order = rng.permutation(usable)
            for s in range(0, len(order), options.batch_size):
                rows = order[s : s + options.batch_size]
                flat, starts = _batch_ids(ids, offsets, rows)
                owner = np.repeat(np.arange(len(rows)), np.diff(np.append(starts, len(flat))))
                out = student(*(torch.from_numpy(a) for a in (flat, starts, owner)))
                loss = 1 - torch.nn.functional.cosine_similarity(out, targets[rows]).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                adv(1)
            exported = student.export()
            tables.embeddings, tables.projection, tables.bias, tables.weights = exported
            score = _held_cosine(tables, held, held_targets, max_tokens)
            curve.append((f"epoch {epoch + 1}", score))
            if score > best[0]:
                best = (score, *exported)
    _, tables.embeddings, tables.projection, tables.bias, tables.weights = best
    return {
        "epochs": options.epochs,
        "batch_size": options.batch_size,
        "lr": options.lr,
        "token_weights": options.weights,
        "held_cosine": [[name, round(v, 4)] for name, v in curve],
        "kept": next(name for name, v in curve if v == best[0]),
    }


def _held_cosine(
    tables: StaticTables, held: list[str], targets: np.ndarray, max_tokens: int
) -> float:
    vecs = tables.vectors(held, max_tokens)
    t = targets / np.maximum(np.linalg.norm(targets, axis=1, keepdims=True), 1e-12)
    return float(np.einsum("ij,ij->i", vecs, t).mean())


def quantised(embeddings: np.ndarray, dtype: str) -> dict[str, np.ndarray]:
    """The embedding table as saved: int8 with a float32 scale per row, float16 or float32."""
    if dtype == "int8":
        scale = np.abs(embeddings).max(axis=1) / 127.0
        scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
        q = np.clip(np.rint(embeddings / scale[:, None]), -127, 127).astype(np.int8)
        return {"embeddings": q, "scales": scale}
    return {"embeddings": embeddings.astype(np.float16 if dtype == "float16" else np.float32)}
