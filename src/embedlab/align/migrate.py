"""Moving a model or an index to a new encoder through an :class:`Alignment`, without
re-encoding what it was built from.

A model's kept training rows are mapped into the new space; its head and detector (the
same kinds, no re-selection) are refitted on them — closed form for prototype, Gaussian
and kNN heads and their detectors — and the out-of-scope threshold is recalibrated on the
mapped rows that were held out for it (the same rows as before). Its lineage records the
move. An index's stored vectors are mapped a chunk at a time into a new index of the same
kind; new-encoder queries can also search an old index through the backward map.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from embedlab.align.alignment import Alignment
from embedlab.core.errors import ValidationError

__all__ = ["migrate_classifier", "migrate_index", "migrate_model"]

_CHUNK = 65_536


def _map_summary(alignment: Alignment) -> dict[str, Any]:
    fid = alignment.info.get("fidelity", {}).get("forward", {})
    return {
        "method": alignment.method,
        "calibration_texts": alignment.info.get("calibration_texts"),
        "old_encoder": (alignment.old or {}).get("fingerprint"),
        "new_encoder": (alignment.new or {}).get("fingerprint"),
        "fidelity_mean_cosine": fid.get("mean_cosine"),
    }


def migrate_model(pipe: Any, alignment: Alignment, encoder: Any = None) -> Any:
    """A new :class:`~embedlab.models.pipeline.Pipeline` that runs on the alignment's new
    encoder (``encoder``, else rebuilt from the map's spec); ``pipe`` is unchanged.

    Refused (ValidationError, saying what to do) for a model whose encoder is not the map's
    old one, a model with a transform chain (its rows are not encoder vectors), and a model
    that keeps no training rows (zero-shot: fit it again from its labels)."""

    from embedlab.models.lineage import json_default, lineage
    from embedlab.models.multilabel import MultiLabelClassifier

    clf = pipe.classifier_
    alignment.check_old(pipe.encoder_.spec, "this model")
    if pipe.chain_ is not None:
        raise ValidationError(
            "this model has a transform chain (fit --transform): its kept rows are not the "
            "encoder's vectors, so they cannot be mapped; fit it again on the new encoder"
        )
    if encoder is None:
        encoder = alignment.new_encoder()
    alignment.check_new(encoder.spec, "the new encoder")
    new = migrate_classifier(clf, alignment)
    child = type(pipe)(
        encoder=encoder,
        classifier=new,
        adapt=False,
        adapt_config=pipe.adapt_config,
        calibration_fraction=pipe.calibration_fraction,
        transform=None,
        hierarchy=pipe.hierarchy,
    )
    child._classifier = new
    info = json.loads(json.dumps(pipe.info, default=json_default))
    if isinstance(new, MultiLabelClassifier):
        info["thresholds"] = {
            str(n): (float(t) if np.isfinite(t) else None)
            for n, t in zip(new.classes_, new.thresholds_, strict=True)
        }
    else:
        info["threshold"] = new.threshold_
        info["calibrated_on"] = (
            "the kept held-out rows mapped into the new encoder's space (migrated)"
        )
    info["encoder"] = {k: encoder.spec.get(k) for k in ("kind", "fingerprint", "dim")}
    info["migrated"] = _map_summary(alignment)
    info["lineage"] = lineage(pipe.info, {"op": "migrate", **_map_summary(alignment)})
    if pipe.concepts_ is not None:  # a dictionary of the old space says nothing of the new
        info.pop("concepts", None)
        info["migrated"]["concepts_dropped"] = True
    child.info = info
    return child


def migrate_classifier(clf: Any, alignment: Alignment) -> Any:
    """A fitted classifier (OpenSetClassifier or MultiLabelClassifier) like ``clf`` — the
    same head and detector kinds, no re-selection — fitted on ``clf``'s kept rows mapped by
    ``alignment`` (its threshold(s) recalibrated on the mapped held-out rows); ``clf`` is
    unchanged. ValidationError for a classifier that keeps no rows."""
    from sklearn.base import clone

    from embedlab.models.multilabel import MultiLabelClassifier
    from embedlab.models.openset import OpenSetClassifier

    if isinstance(clf, MultiLabelClassifier):
        if not hasattr(clf, "train_X_"):
            raise ValidationError(_NO_ROWS)
        new = clone(clf).set_params(head=clf.head_)
        new._check_params()
        new._fit_rows(
            alignment.forward(clf.train_X_),
            np.asarray(clf.classes_),
            np.asarray(clf.train_Y_, dtype=bool),
            None if clf.train_held_ is None else np.asarray(clf.train_held_, bool),
        )
    elif isinstance(clf, OpenSetClassifier):
        if not hasattr(clf, "train_X_"):
            raise ValidationError(_NO_ROWS)
        X_in, y_in, held, X_oos = clf.kept_rows()
        X = alignment.forward(np.vstack([X_in, X_oos]) if len(X_oos) else X_in)
        y = np.concatenate([y_in.astype(str), np.full(len(X_oos), str(clf.oos_label))])
        mask = np.concatenate([held, np.zeros(len(X_oos), bool)])
        new = OpenSetClassifier(
            head=_settled(clf.head_),
            detector=clone(clf.detector_),
            target_fpr=clf.target_fpr,
            oos_label=clf.oos_label,
            cv=clf.cv,
            random_state=clf.random_state,
            calibration=clf.calibration,
            keep_rows=True,
        )
        new.fit(X, y, calibration_mask=mask if mask.any() else None)
        new.head_name_, new.detector_name_ = clf.head_name_, clf.detector_name_
        new.selection_ = clf.selection_
    else:  # pragma: no cover - Pipeline holds one of the two
        raise ValidationError(f"cannot migrate a {type(clf).__name__}")
    return new


def _settled(head: Any) -> Any:
    """An unfitted copy of ``head`` with the hyperparameters it settled on (a linear head's
    tuned C): the moved model keeps its choices instead of re-tuning them."""
    from sklearn.base import clone

    new = clone(head)
    if getattr(head, "C", None) == "auto" and hasattr(head, "C_"):
        new.set_params(C=head.C_)
    return new


_NO_ROWS = (
    "this model keeps no training vectors (zero-shot, keep_rows=False, or an older "
    "bundle), so there is nothing to map: fit it again on the new encoder (a zero-shot "
    "model needs only its labels: fit --labels-only --encoder NEW)"
)


def _stored_vectors(index: Any) -> np.ndarray:
    """The vectors an index holds, exactly (flat, binary, shortlist), else ValidationError."""
    if index.chain is not None:
        raise ValidationError(
            f"index {index.spec!r} stores vectors after a transform; migrate it from its "
            "EmbeddingSet (--set) instead"
        )
    if index.kind in ("binary", "shortlist"):
        return np.asarray(index.vectors, dtype=np.float32)
    if index.kind == "flat" and index._faiss is not None:
        return index._faiss.reconstruct_n(0, index._faiss.ntotal)
    raise ValidationError(
        f"index {index.spec!r} keeps compressed vectors only (mapping them would carry the "
        "compression error twice); migrate it from the EmbeddingSet it was built from (--set)"
    )


def migrate_index(
    index: Any, alignment: Alignment, *, vectors: Any = None, progress: bool | None = None
) -> Any:
    """A new index of the same kind over the same ids, its vectors mapped into the new
    encoder's space a chunk (or a shard) at a time. ``vectors``: the old-encoder vectors in
    the index's id order — an array or memory map, or a ShardedSet / its path (read shard
    by shard, ids checked) — needed for kinds that keep compressed codes only; by default
    the index's own stored vectors. Quantisers (sq8, pq, ivf-pq) are trained on up to
    100,000 mapped rows spread over the whole source."""
    from embedlab.compress.index import Index
    from embedlab.core.progress import progress_bar

    alignment.check_old(index.encoder, "this index")
    src = _stored_vectors(index) if vectors is None else _source(vectors)
    chunks = _chunks(index, alignment, src)
    out = Index(index.spec, alignment.dim_new, alignment.new)
    if out.kind in ("sq8", "pq", "ivfpq"):
        out.train(_training_sample(index, alignment, src))
    show = bool(progress) if progress is not None else len(index) > 100_000
    done = 0
    with progress_bar(len(index), "mapping vectors", enabled=show) as advance:
        for X in chunks:
            out.add(alignment.forward(X), ids=index.ids[done : done + len(X)])
            done += len(X)
            advance(len(X))
    if done != len(index):
        raise ValidationError(f"{done} vectors for an index of {len(index)}")
    out.rows = index.rows
    return out


def _source(vectors: Any) -> Any:
    """``vectors`` as a ShardedSet when it is one (or its path), else an array."""
    from pathlib import Path

    from embedlab.data.sharded import ShardedSet

    if isinstance(vectors, (str, Path)):
        return ShardedSet(vectors)
    return vectors


def _chunks(index: Any, alignment: Alignment, src: Any):
    """The old-encoder vectors ``src`` (an array or a ShardedSet) in the index's order, a
    chunk or shard at a time."""
    from embedlab.data.sharded import ShardedSet

    if isinstance(src, ShardedSet):
        alignment.check_old(src.provenance.encoder, "the EmbeddingSet")
        if src.n != len(index):
            raise ValidationError(f"the EmbeddingSet has {src.n} rows; the index {len(index)}")

        def shards():
            start = 0
            for shard in src:
                ids = np.asarray([str(i) for i in shard.ids], dtype=object)
                if not np.array_equal(ids, index.ids[start : start + shard.n]):
                    raise ValidationError(
                        "the EmbeddingSet's ids are not the index's, in order: pass the set "
                        "the index was built from"
                    )
                start += shard.n
                for s in range(0, shard.n, _CHUNK):
                    yield np.asarray(shard.vectors[s : s + _CHUNK], dtype=np.float32)

        return shards()
    if len(src) != len(index):
        raise ValidationError(f"{len(src)} vectors for an index of {len(index)}")
    return (np.asarray(src[s : s + _CHUNK], dtype=np.float32) for s in range(0, len(src), _CHUNK))


def _training_sample(index: Any, alignment: Alignment, src: Any) -> np.ndarray:
    """Up to 100,000 rows of ``src`` (seeded, spread over all of it), mapped."""
    from embedlab.data.sharded import ShardedSet

    n = len(index)
    rows = np.sort(np.random.default_rng(0).choice(n, size=min(n, 100_000), replace=False))
    if isinstance(src, ShardedSet):
        parts, start = [], 0
        for shard in src:
            mine = rows[(rows >= start) & (rows < start + shard.n)] - start
            parts.append(np.asarray(shard.vectors[mine], dtype=np.float32))
            start += shard.n
        return alignment.forward(np.concatenate(parts))
    return alignment.forward(np.asarray(src[rows], dtype=np.float32))
