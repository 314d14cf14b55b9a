"""Which texts of an unlabelled pool to label next, and why each.

``suggest(pool, n)`` with no model is a cold start: TypiClust-style typicality over k-means
clusters (or k-centre coverage, or random). With a fitted
:class:`~embedlab.models.pipeline.Pipeline` it adds what the model is unsure of: rows
ambiguous between two classes (smallest margin) and rows unlike any class (the novelty
score), spread over clusters. ``strategy="auto"`` picks by how many labels exist.

Pools larger than ``sample`` rows (a sharded set of millions of rows, say) are streamed one
chunk at a time: clusters and typicality come from a seeded sample of ``sample`` rows, every
row of the pool is assigned and scored, and only the best candidates are kept — memory is
bounded by a shard plus the sample, never by the pool.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from embedlab.core.errors import ValidationError
from embedlab.core.progress import progress_bar
from embedlab.core.vectors import unit_rows
from embedlab.data.embedding_set import EmbeddingSet
from embedlab.labeling import selection
from embedlab.labeling.pool import Pool, has_label

__all__ = ["AUTO_MARGIN_PER_CLASS", "STRATEGIES", "Suggestions", "suggest", "suggest_for"]

STRATEGIES = ("auto", "typiclust", "margin", "coreset", "random")
#: ``auto`` turns from typicality to the model's uncertainty once the labels reach this many
#: per class (decided on the tuning half of CLINC150's classes; docs/benchmarks.md)
AUTO_MARGIN_PER_CLASS = 4.0


@dataclass
class Suggestions:
    """The rows to label next, best first: ``positions`` in the pool, ``ids``, ``texts``
    (when the pool keeps them), ``scores``, ``reasons``, the model's ``predicted`` label
    (with a model), the ``strategy`` that chose them and ``notes`` on what was done."""

    positions: np.ndarray
    ids: np.ndarray
    reasons: list[str]
    scores: np.ndarray
    strategy: str
    texts: np.ndarray | None = None
    predicted: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.positions)

    def to_table(self) -> pa.Table:
        """rank, id, text (when known), reason, score, strategy, predicted (with a model),
        pool_row (position in the pool) — the columns of ``to_label.csv``."""
        cols: dict[str, Any] = {
            "rank": pa.array(np.arange(1, len(self) + 1), type=pa.int64()),
            "id": pa.array([str(i) for i in self.ids], type=pa.string()),
        }
        if self.texts is not None:
            cols["text"] = pa.array([str(t) for t in self.texts], type=pa.string())
        cols["reason"] = pa.array(self.reasons, type=pa.string())
        cols["score"] = pa.array(np.asarray(self.scores, dtype=np.float64))
        cols["strategy"] = pa.array([self.strategy] * len(self), type=pa.string())
        if self.predicted is not None:
            cols["predicted"] = pa.array([str(p) for p in self.predicted], type=pa.string())
        cols["pool_row"] = pa.array(self.positions, type=pa.int64())
        return pa.table(cols)

    def to_rows(self) -> list[dict[str, Any]]:
        """One JSON-able dict per suggested row."""
        return self.to_table().to_pylist()


def suggest(
    pool: Any,
    n: int,
    *,
    model: Any = None,
    strategy: str = "auto",
    labeled: Any = None,
    labeled_vectors: np.ndarray | None = None,
    seed: int = 0,
    sample: int = 20_000,
    novelty_share: float = 0.2,
    progress: bool | None = None,
) -> Suggestions:
    """``n`` rows of ``pool`` to label next (:class:`Suggestions`, best first, each with
    why).

    ``pool``: an EmbeddingSet, an (n, d) array, or the path of a saved (sharded) set; its
    vectors must come from ``model``'s encoder. ``model``: a fitted Pipeline (its training
    rows count as labelled; with it ``margin`` is possible). ``labeled``: ids of pool rows
    already labelled; rows of the pool that carry labels count as labelled too — neither is
    suggested, and both cover their regions. ``labeled_vectors``: vectors of labelled texts
    outside the pool (same encoder). ``strategy``: ``auto`` (typiclust below
    :data:`AUTO_MARGIN_PER_CLASS` labels per class or without a model, else margin),
    ``typiclust``, ``margin`` (needs a model), ``coreset`` or ``random``. Pools above
    ``sample`` rows are streamed (clusters, typicality and coreset from a seeded sample of
    that many rows). Same pool, options and seed → same suggestions."""
    if strategy not in STRATEGIES:
        raise ValidationError(f"strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    if isinstance(sample, bool) or not isinstance(sample, int) or sample < 100:
        raise ValidationError(f"sample must be a number of rows ≥ 100, not {sample!r}")
    if not 0.0 <= novelty_share <= 1.0:
        raise ValidationError(f"novelty_share must be within [0, 1], not {novelty_share!r}")
    src = pool if isinstance(pool, Pool) else Pool(pool)
    notes: list[str] = []
    features = _model_features(model, src)
    ids_done = _labelled_ids(labeled)
    pool_labelled = src.labelled_count()
    if pool_labelled == src.n:
        raise ValidationError(
            f"every one of the pool's {src.n} rows carries a label already: there is nothing "
            "to suggest (to replay labelling on a labelled set, use `embedlab "
            "simulate-labeling`)"
        )
    if pool_labelled:
        notes.append(
            f"{pool_labelled} rows of the pool carry labels already: they count as labelled "
            "(not suggested; their regions are covered)"
        )
    if ids_done:
        notes.append(
            f"{len(ids_done)} rows given as labelled: not suggested, their regions covered"
        )
    extra = _extra_labelled(model, labeled_vectors, features, src.dim)
    n_lab_outside = 0 if extra is None else len(extra)
    per_class = _labels_per_class(model, pool_labelled + len(ids_done) + n_lab_outside)
    chosen = _resolve(strategy, model, per_class)
    if strategy == "auto":
        notes.append(_auto_note(chosen, model, per_class))
    if chosen == "margin" and model is None:
        raise ValidationError("strategy 'margin' needs a fitted model (-m MODEL)")
    job = _Job(src, n, chosen, model, features, ids_done, extra, int(seed), novelty_share)
    if src.n <= sample:
        picks, free_n = _in_memory(job)
    else:
        notes.append(
            f"a pool of {src.n} rows is streamed: clusters and typicality from a seeded "
            f"sample of {sample} rows"
        )
        picks, free_n = _streamed(job, sample, progress)
    if len(picks) < n:
        selection.check_budget(n, free_n)
    rows = src.take(picks.rows)
    predicted = None
    if model is not None:
        predicted = model.details_from_vectors(rows.vectors, top_k=1).labels
    return Suggestions(
        positions=picks.rows,
        ids=rows.ids,
        reasons=picks.reasons,
        scores=picks.scores,
        strategy=chosen,
        texts=rows.texts,
        predicted=predicted,
        notes=notes,
    )


def suggest_for(model: Any, pool: Any, n: int = 10, **options: Any) -> Suggestions:
    """:func:`suggest` for a fitted Pipeline, whose ``pool`` may also be a list of texts
    (encoded with the model's encoder; the texts come back with the suggestions)."""
    if isinstance(pool, list | tuple) and pool and isinstance(pool[0], str):
        X = model.encoder_.encode(list(pool), progress=options.get("progress"))
        pool = EmbeddingSet(X, texts=list(pool))
    return suggest(pool, n, model=model, **options)


# ----------------------------------------------------------------------------- parts
def _model_features(model: Any, src: Pool) -> Any:
    """``vectors → what the model's classifier sees`` (identity without a model); the
    pool's encoder is checked against the model's."""
    if model is None:
        return None
    from embedlab.encoders.base import check_same_encoder

    if not model._fitted():
        raise ValidationError("the model is not fitted: fit it first")
    if src.dim != model.encoder_.dim:
        raise ValidationError(
            f"the pool's vectors have {src.dim} dimensions, the model's encoder gives "
            f"{model.encoder_.dim}: encode the pool with the model's encoder"
        )
    if src.provenance.encoder is not None:
        check_same_encoder(model.encoder_.spec, src.provenance.encoder, "the pool")
    return model._features


def _labelled_ids(labeled: Any) -> set[str]:
    if labeled is None:
        return set()
    if isinstance(labeled, str):
        raise ValidationError("labeled must be a collection of row ids, not one string")
    return {str(v) for v in labeled}


def _extra_labelled(
    model: Any, labeled_vectors: np.ndarray | None, features: Any, dim: int
) -> np.ndarray | None:
    """Labelled unit vectors from outside the pool, in the space selection works in: the
    model's kept training rows, and ``labeled_vectors``."""
    parts = []
    if labeled_vectors is not None:
        from embedlab.core.validation import check_vectors

        V = check_vectors(labeled_vectors, dim=dim)
        parts.append(features(V) if features is not None else V)
    if model is not None:
        rows = _kept_rows(model)
        if rows is not None:
            parts.append(rows)
    if not parts:
        return None
    return unit_rows(np.concatenate(parts))


def _kept_rows(model: Any) -> np.ndarray | None:
    clf = model.classifier_
    if getattr(clf, "train_X_", None) is not None:
        return np.asarray(clf.train_X_, dtype=np.float32)
    return None


def _labels_per_class(model: Any, labelled: int) -> float:
    if model is None:
        return 0.0
    return labelled / max(1, len(model.classes_))


def _auto_note(chosen: str, model: Any, per_class: float) -> str:
    if model is None:
        return f"auto chose {chosen}: no model, a cold start"
    sign = "≥" if chosen == "margin" else "<"
    return f"auto chose {chosen}: {per_class:.1f} labels per class {sign} {AUTO_MARGIN_PER_CLASS:g}"


def _resolve(strategy: str, model: Any, per_class: float) -> str:
    if strategy != "auto":
        return strategy
    if model is None or per_class < AUTO_MARGIN_PER_CLASS:
        return "typiclust"
    return "margin"


def _ids_mask(es: EmbeddingSet, ids_done: set[str]) -> np.ndarray:
    """Which rows of ``es`` are labelled: listed in ``ids_done`` or carrying a label."""
    done = has_label(es)
    if ids_done:
        done |= np.isin(np.asarray(es.ids, dtype=str), np.asarray(sorted(ids_done), dtype=str))
    return done


def _scores(model: Any, F: np.ndarray) -> dict[str, np.ndarray]:
    """Margin between the two best classes (or, multi-label, the distance of the closest
    label to its threshold), novelty and out-of-scope flags, from the classifier's space."""
    clf = model.classifier_
    if model.multi_label:
        s = clf.decision_function(F)
        gap = np.abs(s - clf.thresholds_[None, :])
        closest = np.argmin(gap, axis=1)
        names = np.asarray(clf.classes_, dtype=object)
        novelty = clf.novelty_score(F)
        return {
            "margin": gap[np.arange(len(F)), closest].astype(np.float32),
            "first": names[closest],
            "second": np.full(len(F), selection.THRESHOLD, dtype=object),
            "novelty": novelty,
            "oos": novelty > 0,
        }
    d = clf.predict_details(F, top_k=2)
    two = d.top_confidences.shape[1] > 1
    margin = d.top_confidences[:, 0] - (d.top_confidences[:, 1] if two else 0.0)
    second = d.top_labels[:, 1] if two else np.full(len(F), "-", dtype=object)
    return {
        "margin": margin.astype(np.float32),
        "first": d.top_labels[:, 0],
        "second": second,
        "novelty": np.asarray(d.novelty, dtype=np.float32),
        "oos": np.asarray(d.out_of_scope, dtype=bool),
    }


@dataclass(frozen=True)
class _Job:
    """What one suggestion run chooses from and by (shared by its in-memory and streamed
    paths). ``features``: vectors → the model's space (None: the vectors themselves)."""

    src: Pool
    n: int
    strategy: str
    model: Any
    features: Any
    ids_done: set[str]
    extra: np.ndarray | None
    seed: int
    novelty_share: float

    def feat(self, V: np.ndarray) -> np.ndarray:
        return V if self.features is None else self.features(V)


def _in_memory(job: _Job) -> tuple[selection.Picks, int]:
    src, seed, extra = job.src, job.seed, job.extra
    es = src.in_memory if src.in_memory is not None else src.take(np.arange(src.n))
    done = np.flatnonzero(_ids_mask(es, job.ids_done))
    free_n = es.n - len(done)
    n = selection.check_budget(job.n, free_n)
    if job.strategy == "random":
        return selection.random_picks(es.n, n, seed, exclude=done), free_n
    F = job.feat(es.vectors)
    U = unit_rows(F)
    if job.strategy == "typiclust":
        return selection.typiclust(U, n, seed, labeled=done, labeled_vectors=extra), free_n
    if job.strategy == "coreset":
        return selection.coreset(U, n, seed, labeled=done, labeled_vectors=extra), free_n
    picks = selection.margin_novelty(
        U, n, seed, scores=_scores(job.model, F), labeled=done, novelty_share=job.novelty_share
    )
    return picks, free_n


def _streamed(job: _Job, sample: int, progress: bool | None) -> tuple[selection.Picks, int]:
    src, n, seed = job.src, job.n, job.seed
    rng = np.random.default_rng(seed)
    if job.strategy in ("random", "coreset"):
        # a seeded draw large enough to leave n free rows after the labelled are dropped
        m = min(src.n, max(sample, 2 * n))
        pos = np.sort(rng.choice(src.n, size=m, replace=False))
        es = src.take(pos)
        done = np.flatnonzero(_ids_mask(es, job.ids_done))
        free_n = len(pos) - len(done)
        n = selection.check_budget(n, free_n)
        if job.strategy == "random":
            p = selection.random_picks(len(pos), n, seed, exclude=done)
        else:
            U = unit_rows(job.feat(es.vectors))
            p = selection.coreset(U, n, seed, labeled=done, labeled_vectors=job.extra)
        return selection.Picks(pos[p.rows], p.scores, p.reasons), free_n
    pos = np.sort(rng.choice(src.n, size=sample, replace=False))
    show = progress if progress is not None else src.n >= 200_000
    if job.strategy == "typiclust":
        return _stream_typiclust(job, unit_rows(job.feat(src.take(pos).vectors)), show)
    return _stream_margin(job, show)


class _TopPerGroup:
    """The ``m`` best-scored rows of each group seen so far — their positions, groups,
    scores, vectors and any ``extra`` per-row arrays — merged chunk by chunk."""

    def __init__(self, m: int) -> None:
        self.m = m
        self.cols: dict[str, np.ndarray] = {}

    def __getattr__(self, name: str) -> np.ndarray:
        cols = self.__dict__.get("cols", {})
        if name in cols:
            return cols[name]
        raise AttributeError(name)

    def add(self, **cols: np.ndarray) -> None:
        """``rows``, ``group``, ``score`` and any other per-row arrays of one chunk."""
        if self.cols:
            cols = {k: np.concatenate([self.cols[k], v]) for k, v in cols.items()}
        r, g, s = cols["rows"], cols["group"], cols["score"]
        by = np.lexsort((r, -s, g))
        gs = g[by]
        keep = by[(np.arange(len(by)) - np.searchsorted(gs, gs, side="left")) < self.m]
        self.cols = {k: v[keep] for k, v in cols.items()}


def _stream_typiclust(job: _Job, US: np.ndarray, show: bool) -> tuple[selection.Picks, int]:
    src, n, seed, ids_done, extra = job.src, job.n, job.seed, job.ids_done, job.extra
    n_lab = len(ids_done) + src.labelled_count() + (0 if extra is None else len(extra))
    k = min(n_lab + n, selection.MAX_CLUSTERS, len(US))
    centres, _ = selection.kmeans(US, k, seed)
    k = len(centres)
    size = np.zeros(k, np.int64)
    labelled_assign = []
    # candidates per cluster: enough for the picks a cluster may take, and a choice
    per = int(np.ceil(n / k))
    top = _TopPerGroup(2 * per + 16)
    free_n = 0
    with progress_bar(src.n, "suggest: clustering the pool", enabled=show) as advance:
        for first, es in src.chunks():
            U = unit_rows(job.feat(es.vectors))
            sim = U @ centres.T
            a = np.argmax(sim, axis=1)
            size += np.bincount(a, minlength=k)
            done = _ids_mask(es, ids_done)
            labelled_assign.append(a[done])
            free = ~done
            free_n += int(free.sum())
            s = sim[np.arange(len(a)), a]
            top.add(rows=np.flatnonzero(free) + first, group=a[free], score=s[free])
            advance(es.n)
    n = selection.check_budget(n, free_n)
    covered = selection.covered_clusters(centres, np.concatenate(labelled_assign), extra)
    # the representative of a cluster is the row nearest its centre: known exactly here
    return selection.typiclust_picks(top.rows, top.group, top.score, size, covered, n), free_n


def _stream_margin(job: _Job, show: bool) -> tuple[selection.Picks, int]:
    src, n, ids_done, novelty_share = job.src, job.n, job.ids_done, job.novelty_share
    n_new = round(n * novelty_share)
    amb = _TopPerGroup(10 * max(1, n - n_new))
    new = _TopPerGroup(10 * max(1, n_new))
    free_n = 0
    with progress_bar(src.n, "suggest: scoring the pool", enabled=show) as advance:
        for first, es in src.chunks():
            F = job.feat(es.vectors)
            free = ~_ids_mask(es, ids_done)
            free_n += int(free.sum())
            sc = {k: v[free] for k, v in _scores(job.model, F).items()}
            rows = np.flatnonzero(free) + first
            zero = np.zeros(len(rows), np.int64)
            U = unit_rows(F[free])
            amb.add(rows=rows, group=zero, score=-sc["margin"], vec=U, **sc)
            if n_new:
                new.add(rows=rows, group=zero, score=sc["novelty"], vec=U, **sc)
            advance(es.n)
    n = selection.check_budget(n, free_n)
    parts = [t.cols for t in (amb, new) if t.cols]
    c = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    _, once = np.unique(c["rows"], return_index=True)
    c = {k: v[once] for k, v in c.items()}
    p = selection.margin_novelty(c["vec"], n, job.seed, scores=c, novelty_share=novelty_share)
    return selection.Picks(c["rows"][p.rows], p.scores, p.reasons), free_n
