"""The shallow student: the teacher's first k layers, mean-pooled, then an affine map (or a
small MLP) into the teacher's output space, trained on the user's texts to reproduce the
teacher's vectors (cosine loss; the k layers learn too, at a lower rate). It is saved as an
ordinary sentence-transformers directory (Transformer → Pooling → Dense[→ Dense] →
Normalize), so it runs on the same ONNX int8 path as the teacher and loads anywhere."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embedlab.core.errors import EncoderError
from embedlab.core.progress import progress_bar

__all__ = ["ShallowTraining", "build_shallow", "train_shallow"]


@dataclass
class ShallowTraining:
    """How the shallow student learns."""

    epochs: int = 3
    batch_size: int = 64
    lr_layers: float = 2e-4
    lr_map: float = 1e-3
    seed: int = 0
    head: str = "linear"  # or "mlp"


def build_shallow(teacher_model: Any, layers: int, head: str) -> Any:
    """A new SentenceTransformer: a copy of the teacher's first ``layers`` layers + mean
    pooling + a map to the teacher's dimension (identity-initialised) + Normalize."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Dense, Normalize, Pooling

    first = copy.deepcopy(teacher_model[0])
    inner = first.auto_model
    n = len(inner.encoder.layer)
    if not 1 <= layers < n:
        raise EncoderError(f"--layers must be between 1 and {n - 1} for this teacher ({n} layers)")
    inner.encoder.layer = torch.nn.ModuleList(list(inner.encoder.layer)[:layers])
    inner.config.num_hidden_layers = layers
    width = int(inner.config.hidden_size)
    dimension = getattr(teacher_model, "get_embedding_dimension", None)
    out = int((dimension or teacher_model.get_sentence_embedding_dimension)())
    modules: list[Any] = [first, Pooling(width, pooling_mode="mean")]
    identity = torch.nn.Identity()
    if head == "mlp":
        modules.append(Dense(width, 2 * width, activation_function=torch.nn.GELU()))
        modules.append(Dense(2 * width, out, activation_function=identity))
    elif head == "linear":
        modules.append(Dense(width, out, activation_function=identity))
    else:
        raise EncoderError(f"unknown --head {head!r}; choose linear or mlp")
    modules.append(Normalize())
    return SentenceTransformer(modules=modules, device="cpu")


def _tokenize(model: Any, texts: list[str]) -> Any:
    return (getattr(model, "preprocess", None) or model.tokenize)(texts)


def _embed(model: Any, texts: list[str]) -> Any:
    feats = _tokenize(model, texts)
    return model(dict(feats))["sentence_embedding"]


def _by_length(texts: list[str], run: Any) -> np.ndarray:
    """``run(batch)`` → rows for ``texts`` in batches of 256 of similar length (less
    padding), returned in the texts' order."""
    import torch

    order = np.argsort(np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)))
    out = []
    with torch.inference_mode():
        for s in range(0, len(texts), 256):
            out.append(run([texts[i] for i in order[s : s + 256]]).numpy())
    rows = np.empty_like(np.concatenate(out))
    rows[order] = np.concatenate(out)
    return rows


def length_batches(lengths: np.ndarray, batch_size: int, rng: Any) -> list[np.ndarray]:
    """One epoch's batches: a seeded shuffle, rows sorted by length within windows of 50
    batches (less padding), the batches then in a shuffled order."""
    order = rng.permutation(len(lengths))
    window = 50 * batch_size
    batches = []
    for s in range(0, len(order), window):
        chunk = order[s : s + window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def _held_cosine(model: Any, texts: list[str], targets: np.ndarray) -> float:
    vecs = _by_length(texts, lambda batch: _embed(model, batch))
    t = targets / np.maximum(np.linalg.norm(targets, axis=1, keepdims=True), 1e-12)
    return float(np.einsum("ij,ij->i", vecs, t).mean())


def _init_linear_map(model: Any, texts: list[str], targets: np.ndarray) -> None:
    """Set a linear head to the ridge map from pooled layer-k vectors to the targets."""
    import torch

    from embedlab.distill.static import _ridge_map

    dense = model[2]

    def pooled(batch: list[str]) -> Any:
        return model[1](model[0](dict(_tokenize(model, batch))))["sentence_embedding"]

    x = _by_length(texts, pooled).astype(np.float64)
    w, b = _ridge_map(x, targets.astype(np.float64))
    with torch.no_grad():
        dense.linear.weight.copy_(torch.from_numpy(w.T.copy()))
        dense.linear.bias.copy_(torch.from_numpy(b))


def train_shallow(
    model: Any,
    train: list[str],
    train_targets: np.ndarray,
    held: list[str],
    held_targets: np.ndarray,
    *,
    options: ShallowTraining,
    progress: bool,
) -> dict[str, Any]:
    """Train ``model`` (from :func:`build_shallow`) to reproduce the teacher's vectors of
    ``train``; the epoch with the best held-out cosine is kept. Returns the record."""
    import torch

    rng = np.random.default_rng(options.seed)
    if options.head == "mlp":  # seeded initial weights (torch's global generator is left alone)
        for m in list(model)[2:]:
            for lin in (x for x in m.modules() if isinstance(x, torch.nn.Linear)):
                bound = 1.0 / np.sqrt(lin.in_features)
                w = rng.uniform(-bound, bound, size=tuple(lin.weight.shape)).astype(np.float32)
                with torch.no_grad():
                    lin.weight.copy_(torch.from_numpy(w))
                    lin.bias.zero_()
    if options.head == "linear":
        _init_linear_map(model, train, train_targets)
    model.eval()  # no dropout: the same texts and seed give the same student
    curve = [("start", _held_cosine(model, held, held_targets))]
    best = (curve[0][1], copy.deepcopy(model.state_dict()))
    head_params = [p for m in list(model)[2:] for p in m.parameters()]
    inner = model[0].auto_model
    inner.embeddings.requires_grad_(False)  # the token table stays the teacher's
    opt = torch.optim.AdamW(
        [
            {"params": list(inner.encoder.parameters()), "lr": options.lr_layers},
            {"params": head_params, "lr": options.lr_map},
        ],
        weight_decay=0.0,
    )
    targets = torch.from_numpy(np.ascontiguousarray(train_targets, dtype=np.float32))
    steps = -(-len(train) // options.batch_size)
    lengths = np.fromiter(map(len, train), dtype=np.int64, count=len(train))
    with progress_bar(
        options.epochs * steps, "training the shallow student", enabled=progress
    ) as adv:
        for epoch in range(options.epochs):
            for rows in length_batches(lengths, options.batch_size, rng):
                out = _embed(model, [train[i] for i in rows])
                loss = 1 - torch.nn.functional.cosine_similarity(out, targets[rows]).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                adv(1)
            score = _held_cosine(model, held, held_targets)
            curve.append((f"epoch {epoch + 1}", score))
            if score > best[0]:
                best = (score, copy.deepcopy(model.state_dict()))
    model.load_state_dict(best[1])
    return {
        "epochs": options.epochs,
        "batch_size": options.batch_size,
        "lr_layers": options.lr_layers,
        "lr_map": options.lr_map,
        "head": options.head,
        "held_cosine": [[name, round(v, 4)] for name, v in curve],
        "kept": next(name for name, v in curve if v == best[0]),
    }


def save_shallow(model: Any, directory: Path) -> None:
    """Write the student as a sentence-transformers directory."""
    model.save(str(directory), safe_serialization=True)
