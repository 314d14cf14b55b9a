"""Few-shot encoder adaptation: fine-tune a sentence-transformers model on labelled texts.

The loss is a normalised-softmax (proxy) classification loss: each class has a learnable
prototype initialised at the class mean of the frozen embeddings, and logits are
``scale · cos(embedding, prototype)``. It pulls each class into a tight cone around its
prototype, which helps both prototype-style heads and distance-based out-of-scope detectors.
Runs on the CPU and saves a new local model directory.

With held-out rows (``validation``), the model is scored on them at evenly spaced points of
training (the frozen encoder included, as point 0); an earlier point (or the frozen
encoder) replaces the last one only when it is better by more than the noise of that
score: whether adapting helps this data at all is decided by the user's own rows.
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

from embedlab.core.errors import ValidationError
from embedlab.core.progress import progress_bar
from embedlab.core.vectors import unit_rows
from embedlab.encoders import SentenceTransformerEncoder
from embedlab.models.label_sets import label_indicator
from embedlab.store.atomic import atomic_directory
from embedlab.store.ownership import ADAPT_MARKER

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
    eval_points: int = 8  # with validation rows: checkpoints scored (besides the frozen start)
    # Top layers trained (None: all); those below are frozen and computed once. 3 of
    # MiniLM's 6, chosen on CLINC150's tune domains: head accuracy as with all six (full
    # 96.93 vs 96.84 %; 10-shot 94.27 / 94.09 vs 94.13 / 93.64 %; 5-shot 91.96 / 91.07 vs
    # 91.82 / 91.38 %) where 2 lost 0.4 pt at 5-shot (docs/benchmarks.md, issue 27).
    train_layers: int | None = 3


def auto_epochs(n_texts: int) -> float:
    """Passes over the data when none are given: 2, or enough for ~2,500 examples seen in
    small sets (at most 8 passes). Measured on CLINC150's tune domains, 10-shot: 72, 160 and
    288 steps gave the same held-out accuracy (94.3-94.5 %), so the cheapest holds; with
    held-out rows the best checkpoint is kept anyway (docs/benchmarks.md, issue 12)."""
    return float(min(8.0, max(2.0, 2500.0 / max(1, n_texts))))


def adapt_encoder(
    encoder: SentenceTransformerEncoder,
    texts: Sequence[str],
    labels: Sequence[Any],
    out_dir: str | os.PathLike,
    config: AdaptConfig | None = None,
    *,
    validation: tuple[Sequence[str], Sequence[Any]] | None = None,
    progress: bool | None = None,
    multi_label: bool = False,
) -> tuple[SentenceTransformerEncoder, dict[str, Any]]:
    """Fine-tune ``encoder``'s model on (text, label) pairs and save it to ``out_dir``.

    ``multi_label``: each label is a collection of labels (possibly empty); the loss is
    then the softmax over prototypes against the row's labels shared equally (the
    single-label loss is its one-label case), rows without a label sit out of training,
    and the held-out score is each row's share of its labels among its |labels|
    nearest prototypes (R-precision; accuracy for single labels).

    ``validation`` = (texts, labels) held out of training: the model's nearest-prototype
    accuracy on them is measured before training and at ``eval_points`` evenly spaced
    steps. The last checkpoint is kept unless an earlier one (or the frozen encoder) beats
    it by more than one standard error; when that is the frozen encoder, ``encoder`` itself
    is returned, nothing is saved, and the report says ``kept: "frozen"``. Scoring uses no
    randomness: the training itself is the same with or without it.

    Training runs ``config.epochs`` passes (default: :func:`auto_epochs`, decided by the
    data size), at least ``min_steps`` steps: the same data, settings and seed give the same
    model on an idle or a busy machine. Only an explicit ``config.time_budget`` can stop it
    earlier; the report then says so (``stopped_by_time_budget``). Returns the adapted
    encoder (sharing the original's cache settings) and a dict of what happened (steps,
    seconds, losses), also written to ``.embedlab_adapt.json`` in ``out_dir``.
    """
    cfg = config or AdaptConfig()
    if getattr(encoder, "elastic", False):
        raise ValidationError(
            "encoder adaptation trains the full model: use it without layer / dim (or --no-adapt)"
        )
    texts = list(texts)
    sets = _label_sets(labels, multi_label)
    if len(texts) != len(sets) or not texts:
        raise ValidationError("adaptation needs as many labels as texts, and at least one")
    classes = np.asarray(sorted({lab for s in sets for lab in s}), dtype=object)
    if len(classes) < 2:
        raise ValidationError("adaptation needs at least 2 classes")
    Y = _indicator(sets, classes)
    labelled = Y.any(axis=1)  # rows without a label (multi-label "none") sit out
    texts = [t for t, keep in zip(texts, labelled, strict=True) if keep]
    val_texts: list[str] = []
    val_Y = np.zeros((0, len(classes)), dtype=bool)
    if validation is not None:
        v_Y = _indicator(_label_sets(validation[1], multi_label), classes)
        known = v_Y.any(axis=1)  # rows of no known label cannot be scored
        val_texts = [t for t, k in zip(validation[0], known, strict=True) if k]
        val_Y = v_Y[known]
    run = _Run(encoder, cfg, texts, Y[labelled], progress, val_texts, multi_label)
    try:
        run.train(val_texts, val_Y)
    finally:
        run.close()
    report = run.report(encoder, len(classes), len(val_texts))
    if report["kept"] == "frozen":
        log.info(
            "adaptation did not beat the frozen encoder on %d held-out rows (%s): kept frozen",
            len(val_texts),
            run.curve,
        )
        return encoder, report
    return _save_adapted(run.model, encoder, report, Path(out_dir)), report


def _label_sets(labels: Sequence[Any], multi_label: bool) -> list[tuple[str, ...]]:
    if not multi_label:
        return [(str(v),) for v in labels]
    return [tuple(sorted({str(v) for v in row})) for row in labels]


def _indicator(sets: list[tuple[str, ...]], classes: np.ndarray) -> np.ndarray:
    """(rows, classes) bool matrix; labels that are not classes are left out."""
    known = set(classes.tolist())
    return label_indicator([[lab for lab in s if lab in known] for s in sets], classes)


class _Run:
    """One adaptation: the model in training, its prototypes, optimiser and schedule, and
    what happened (steps, losses, the held-out curve, the best checkpoint)."""

    def __init__(
        self,
        encoder: SentenceTransformerEncoder,
        cfg: AdaptConfig,
        texts: list[str],
        Y: np.ndarray,
        progress: bool | None,
        val_texts: list[str],
        multi_label: bool = False,
    ) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        self.cfg, self.texts, self.progress = cfg, texts, progress
        self.val_texts, self.n_train = val_texts, len(texts)
        self.start = time.perf_counter()
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        model = SentenceTransformer(str(encoder.model_path), device="cpu", local_files_only=True)
        model.train()
        if cfg.freeze_embeddings:
            for name, p in model.named_parameters():
                if "word_embeddings" in name:
                    p.requires_grad_(False)
        self.model = model
        self.tokenize = getattr(model, "preprocess", None) or model.tokenize
        self.lower = _lower_layers(model, self.tokenize, cfg.train_layers, texts + val_texts)
        self.layers_trained = "all" if self.lower is None else int(cfg.train_layers or 0)
        # Prototypes start at the frozen class means, so the first steps do no harm.
        if self.lower is None:
            frozen = encoder.encode(texts, progress=progress)
        else:  # the frozen model's embeddings came with the cache
            frozen = self.lower.embeddings[: len(texts)]
        init = unit_rows(Y.T.astype(np.float32) @ unit_rows(frozen))
        self.protos = torch.nn.Parameter(torch.from_numpy(init.copy()))
        params = [p for p in model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(
            [{"params": params}, {"params": [self.protos], "lr": cfg.learning_rate * 20}],
            lr=cfg.learning_rate,
            weight_decay=0.01,
        )
        n = len(texts)
        self.steps_per_epoch = max(1, math.ceil(n / cfg.batch_size))
        self.epochs = cfg.epochs if cfg.epochs is not None else auto_epochs(n)
        total = max(cfg.min_steps, round(self.epochs * self.steps_per_epoch))
        warm = max(1, int(cfg.warmup * total))
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm)))
        )
        self.total = total
        self.multi_label = multi_label
        self.y_t = torch.from_numpy(np.argmax(Y, axis=1).astype(np.int64))
        self.Y_t = torch.from_numpy(Y.astype(np.float32))
        # Enough shuffled passes for every planned step to get a full batch.
        self.order = np.concatenate(
            [rng.permutation(n) for _ in range(math.ceil(total * cfg.batch_size / n) + 1)]
        )
        self.step, self.losses, self.budget_hit = 0, [], False
        self.curve: list[tuple[int, float]] = []
        self.best: tuple[float, int, dict[str, Any] | None] = (-1.0, -1, None)
        self.kept = "last"

    def embed(self, rows: np.ndarray, *, train: bool) -> Any:
        """Sentence embeddings of cached rows (training rows first, then held-out ones)
        from the layers being trained; ``train=False``: eval mode, no gradients, as numpy."""
        import torch

        texts = [self._text(int(r)) for r in rows]
        if train:
            if self.lower is None:
                return self.model(self.tokenize(texts))["sentence_embedding"]
            return self.lower.embed(self.model, rows, texts)
        was_training = self.model.training
        self.model.eval()
        out = []
        with torch.inference_mode():
            for s in range(0, len(rows), 64):
                chunk = rows[s : s + 64]
                if self.lower is None:
                    emb = self.model(self.tokenize(texts[s : s + 64]))["sentence_embedding"]
                else:
                    emb = self.lower.embed(self.model, chunk, texts[s : s + 64])
                out.append(emb.numpy())
        self.model.train(was_training)
        return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)

    def _text(self, row: int) -> str:
        return self.texts[row] if row < self.n_train else self.val_texts[row - self.n_train]

    def close(self) -> None:
        if self.lower is not None:
            self.lower.close()

    def score(self, at: int, val_texts: list[str], val_Y: np.ndarray) -> None:
        """Held-out R-precision (single labels: accuracy) at step ``at``; keeps the best
        state (ties: the later)."""
        # Rounded once: the recorded curve, this running best and choose_checkpoint all
        # compare the same numbers.
        import torch

        emb = self.embed(self.n_train + np.arange(len(val_texts)), train=False)
        P = torch.nn.functional.normalize(self.protos.detach(), dim=1).numpy()
        acc = round(r_precision(unit_rows(emb) @ P.T, val_Y), 4)
        self.curve.append((at, acc))
        if at == 0 or acc >= self.best[0]:  # ties: the later checkpoint, as in choose_checkpoint
            state = (
                None
                if at == 0
                else {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            )
            self.best = (acc, at, state)

    def train(self, val_texts: list[str], val_Y: np.ndarray) -> None:
        """Every planned step (or until the time budget), scored at the check points; then
        the checkpoint to keep (the last, unless an earlier one beats it beyond noise)."""
        cfg, total = self.cfg, self.total
        show = (total > 20) if self.progress is None else self.progress
        checks = _eval_steps(total, cfg.eval_points) if val_texts else set()
        if val_texts:
            self.score(0, val_texts, val_Y)
        step = 0
        with progress_bar(total, "adapting encoder", enabled=show) as advance:
            for step in range(total):
                if (
                    cfg.time_budget is not None
                    and time.perf_counter() - self.start > cfg.time_budget
                ):
                    self.budget_hit = True
                    break
                batch = self.order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
                if len(batch) == 0:
                    break
                self._step(batch)
                advance(1)
                if step + 1 in checks:
                    self.score(step + 1, val_texts, val_Y)
            else:
                step = total
        self.step = step
        if val_texts and self.budget_hit and (not self.curve or self.curve[-1][0] != step):
            self.score(step, val_texts, val_Y)  # the last state a time cap left
        if val_texts:
            _, at, state = self.best
            if choose_checkpoint(self.curve, len(val_texts)) == at and at != self.curve[-1][0]:
                self.kept = "frozen" if at == 0 else f"step {at}"
                if state is not None:
                    self.model.load_state_dict(state)
        self.model.eval()

    def _step(self, batch: np.ndarray) -> None:
        """One optimiser step of the normalised-softmax loss (with the additive margin)."""
        import torch

        cfg = self.cfg
        emb = torch.nn.functional.normalize(self.embed(batch, train=True), dim=1)
        cos = emb @ torch.nn.functional.normalize(self.protos, dim=1).T
        if self.multi_label:  # the softmax against the row's labels, shared equally
            Y = self.Y_t[batch]
            logits = cfg.scale * (cos - cfg.margin * Y)
            share = Y / Y.sum(dim=1, keepdim=True)
            loss = -(share * torch.nn.functional.log_softmax(logits, dim=1)).sum(dim=1).mean()
        else:
            target = self.y_t[batch]
            if cfg.margin:  # additive cosine margin (CosFace): the true class must win by m
                cos = cos - cfg.margin * torch.nn.functional.one_hot(target, cos.shape[1])
            loss = torch.nn.functional.cross_entropy(cfg.scale * cos, target)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sched.step()
        self.losses.append(float(loss.detach()))

    def report(
        self, encoder: SentenceTransformerEncoder, n_classes: int, n_val: int
    ) -> dict[str, Any]:
        losses = self.losses
        return {
            "steps": int(self.step),
            "planned_steps": int(self.total),
            "epochs_done": round(self.step / self.steps_per_epoch, 3),
            "seconds": round(time.perf_counter() - self.start, 1),
            "stopped_by_time_budget": self.budget_hit,
            "layers_trained": self.layers_trained,
            "time_budget": self.cfg.time_budget,
            "first_loss": round(float(np.mean(losses[:10])), 4) if losses else None,
            "final_loss": round(float(np.mean(losses[-10:])), 4) if losses else None,
            "n_texts": len(self.texts),
            "n_classes": n_classes,
            "multi_label": self.multi_label,
            "validation_rows": n_val,
            "validation_curve": [{"step": a, "accuracy": c} for a, c in self.curve],
            "kept": self.kept,
            "base_model": encoder.spec.get("fingerprint"),
            "config": {**asdict(self.cfg), "epochs": self.epochs},
        }


def _save_adapted(
    model: Any, encoder: SentenceTransformerEncoder, report: dict[str, Any], out_dir: Path
) -> SentenceTransformerEncoder:
    """Write the adapted model (and what happened, for a later --force) to ``out_dir``;
    the encoder that runs it, with ``encoder``'s settings."""
    with atomic_directory(out_dir, overwrite=True) as tmp:
        model.save(str(tmp))
        written = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
        marker = {**report, "files": written}  # what a later --force may replace
        (tmp / ADAPT_MARKER).write_text(json.dumps(marker, indent=1), encoding="utf-8")
    if report["stopped_by_time_budget"]:
        log.warning(
            "adaptation cut by its time budget (%s s) after %d of %d planned steps: the model "
            "depends on this machine's speed",
            report["time_budget"],
            report["steps"],
            report["planned_steps"],
        )
    return SentenceTransformerEncoder(
        out_dir,
        batch_size=encoder.batch_size,
        normalize=encoder.normalize,
        cache=encoder.cache or False,
        backend=encoder.backend,
    )


def _eval_steps(total: int, points: int) -> set[int]:
    """``points`` steps spread evenly over ``total``, the last one included."""
    points = max(1, min(points, total))
    return {round(total * (i + 1) / points) for i in range(points)}


def choose_checkpoint(curve: Sequence[tuple[int, float]], n: int) -> int:
    """The step to keep from (step, held-out accuracy) points in training order (step 0 =
    the frozen encoder), n = held-out rows: the last, unless the best (ties: the later)
    beats it by more than :func:`_noise`."""
    best_step, best_acc = max(curve, key=lambda p: (p[1], p[0]))
    last_step, last_acc = curve[-1]
    return best_step if best_acc > last_acc + _noise(best_acc, n) else last_step


def _noise(accuracy: float, n: int) -> float:
    """How far an earlier checkpoint must beat the last one to be kept instead: one standard
    error of an accuracy measured on n rows (at least one row). On CLINC150's tune domains
    5-shot (75 held-out rows), picking the plain maximum chose step 10 of 80 on noise."""
    return max(math.sqrt(accuracy * (1 - accuracy) / max(1, n)), 1 / max(1, n))


def _lower_layers(model: Any, tokenize: Any, train_layers: int | None, texts: list[str]) -> Any:
    """The cache of the layers below the top ``train_layers`` (their parameters frozen), or
    None to train the whole model: all layers asked for, an architecture the cache does not
    know, or one where the truncated model does not reproduce the whole one."""
    from embedlab.models.layer_cache import LowerLayers, transformer_layers

    found = transformer_layers(model)
    if train_layers is None or found is None or train_layers >= len(found[1]):
        return None
    frozen = len(found[1]) - max(1, int(train_layers))
    lower = LowerLayers(model, tokenize, texts, frozen, whole=True)
    if not lower.check(model, texts):
        lower.close()
        log.info("the truncated model differs from the whole one: training every layer")
        return None
    inner, layers = found
    for module in [inner.embeddings, *list(layers)[:frozen]]:
        for p in module.parameters():
            p.requires_grad_(False)
    return lower


def r_precision(scores: np.ndarray, Y: np.ndarray) -> float:
    """Mean over rows of the share of a row's labels among its |labels| highest scores
    (for one label per row: top-1 accuracy); 0.0 without rows. Ties: the lower index."""
    if len(Y) == 0:
        return 0.0
    k = Y.sum(axis=1)
    order = np.argsort(-scores, axis=1, kind="stable")
    top = np.arange(Y.shape[1])[None, :] < k[:, None]  # the first k ranks of each row
    hits = np.take_along_axis(Y, order, axis=1) & top
    return float((hits.sum(axis=1) / np.maximum(k, 1)).mean())
