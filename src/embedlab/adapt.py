"""Few-shot encoder adaptation: fine-tune a sentence-transformers model on labelled texts.

The loss is a normalised-softmax (proxy) classification loss: each class has a learnable
prototype initialised at the class mean of the frozen embeddings, and logits are
``scale · cos(embedding, prototype)``. It pulls each class into a tight cone around its
prototype, which helps both prototype-style heads and distance-based out-of-scope detectors.
Runs on the CPU within a time budget and saves a new local model directory.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embedlab.atomic import ADAPT_MARKER, atomic_directory
from embedlab.encoders import SentenceTransformerEncoder
from embedlab.errors import ValidationError
from embedlab.progress import progress_bar
from embedlab.vectors import class_means, unit_rows

__all__ = ["AdaptConfig", "adapt_encoder"]

log = logging.getLogger("embedlab")


@dataclass
class AdaptConfig:
    """Settings of :func:`adapt_encoder` (recorded in ``.embedlab_adapt.json`` in the model)."""

    epochs: float | None = None  # None: auto_epochs(n)
    batch_size: int = 32
    learning_rate: float = 1e-4
    scale: float = 30.0
    margin: float = 0.2
    warmup: float = 0.06
    freeze_embeddings: bool = True
    time_budget: float | None = None  # seconds; None: no cap (length comes from the data)
    seed: int = 0
    min_steps: int = 30


def auto_epochs(n_texts: int) -> float:
    """Passes over the data when none are given: 2, or more for small sets (~5,000 examples
    in all, at most 8 passes). Measured on CLINC150: 2 passes beat 1 (docs/benchmarks.md)."""
    return float(min(8.0, max(2.0, 5000.0 / max(1, n_texts))))


def adapt_encoder(
    encoder: SentenceTransformerEncoder,
    texts: Sequence[str],
    labels: Sequence[Any],
    out_dir: str | os.PathLike,
    config: AdaptConfig | None = None,
    *,
    progress: bool | None = None,
) -> tuple[SentenceTransformerEncoder, dict[str, Any]]:
    """Fine-tune ``encoder``'s model on (text, label) pairs and save it to ``out_dir``.

    Training runs ``config.epochs`` passes (default: :func:`auto_epochs`, decided by the
    data size), at least ``min_steps`` steps: the same data, settings and seed give the same
    model on an idle or a busy machine. Only an explicit ``config.time_budget`` can stop it
    earlier; the report then says so (``stopped_by_time_budget``). Returns the adapted
    encoder (sharing the original's cache settings) and a dict of what happened (steps,
    seconds, losses), also written to ``.embedlab_adapt.json`` in ``out_dir``.
    """
    import torch

    cfg = config or AdaptConfig()
    if getattr(encoder, "elastic", False):
        raise ValidationError(
            "encoder adaptation trains the full model: use it without layer / dim (or --no-adapt)"
        )
    texts = list(texts)
    labels_arr = np.asarray([str(v) for v in labels], dtype=object)
    if len(texts) != len(labels_arr) or not texts:
        raise ValidationError("adaptation needs as many labels as texts, and at least one")
    classes, y_idx = np.unique(labels_arr, return_inverse=True)
    if len(classes) < 2:
        raise ValidationError("adaptation needs at least 2 classes")
    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)

    # Prototypes start at the frozen class means, so the first steps do no harm.
    frozen = unit_rows(encoder.encode(texts, progress=progress))
    init = unit_rows(class_means(frozen, y_idx, len(classes)))

    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(encoder.model_path), device="cpu", local_files_only=True)
    model.train()
    if cfg.freeze_embeddings:
        for name, p in model.named_parameters():
            if "word_embeddings" in name:
                p.requires_grad_(False)
    tokenize = getattr(model, "preprocess", None) or model.tokenize
    protos = torch.nn.Parameter(torch.from_numpy(init.copy()))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(
        [{"params": params}, {"params": [protos], "lr": cfg.learning_rate * 20}],
        lr=cfg.learning_rate,
        weight_decay=0.01,
    )
    n = len(texts)
    steps_per_epoch = max(1, math.ceil(n / cfg.batch_size))
    epochs = cfg.epochs if cfg.epochs is not None else auto_epochs(n)
    total = max(cfg.min_steps, round(epochs * steps_per_epoch))
    warm = max(1, int(cfg.warmup * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm)))
    )
    y_t = torch.from_numpy(y_idx.astype(np.int64))
    # Enough shuffled passes for every planned step to get a full batch.
    order = np.concatenate(
        [rng.permutation(n) for _ in range(math.ceil(total * cfg.batch_size / n) + 1)]
    )
    step, losses, budget_hit = 0, [], False
    show = (total > 20) if progress is None else progress
    with progress_bar(total, "adapting encoder", enabled=show) as advance:
        for step in range(total):
            if cfg.time_budget is not None and time.perf_counter() - start > cfg.time_budget:
                budget_hit = True
                break
            batch = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            if len(batch) == 0:
                break
            features = tokenize([texts[i] for i in batch])
            emb = model(features)["sentence_embedding"]
            emb = torch.nn.functional.normalize(emb, dim=1)
            cos = emb @ torch.nn.functional.normalize(protos, dim=1).T
            target = y_t[batch]
            if cfg.margin:  # additive cosine margin (CosFace): the true class must win by m
                cos = cos - cfg.margin * torch.nn.functional.one_hot(target, cos.shape[1])
            loss = torch.nn.functional.cross_entropy(cfg.scale * cos, target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            advance(1)
        else:
            step = total
    model.eval()
    report = {
        "steps": int(step),
        "planned_steps": int(total),
        "epochs_done": round(step / steps_per_epoch, 3),
        "seconds": round(time.perf_counter() - start, 1),
        "stopped_by_time_budget": budget_hit,
        "time_budget": cfg.time_budget,
        "first_loss": round(float(np.mean(losses[:10])), 4) if losses else None,
        "final_loss": round(float(np.mean(losses[-10:])), 4) if losses else None,
        "n_texts": n,
        "n_classes": len(classes),
        "base_model": encoder.spec.get("fingerprint"),
        "config": {**asdict(cfg), "epochs": epochs},
    }
    out_dir = Path(out_dir)
    with atomic_directory(out_dir, overwrite=True) as tmp:
        model.save(str(tmp))
        (tmp / ADAPT_MARKER).write_text(json.dumps(report, indent=1), encoding="utf-8")
    if budget_hit:
        log.warning(
            "adaptation cut by its time budget (%s s) after %d of %d planned steps: the model "
            "depends on this machine's speed",
            cfg.time_budget,
            step,
            total,
        )
    adapted = SentenceTransformerEncoder(
        out_dir,
        batch_size=encoder.batch_size,
        normalize=encoder.normalize,
        cache=encoder.cache or False,
        backend=encoder.backend,
    )
    return adapted, report
