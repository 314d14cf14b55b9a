"""Budget planner: quality vs bytes vs latency of every (layer, dim, storage) choice, measured
on the user's own data, with the Pareto front and a recommendation.

For each transformer layer k, the first d dimensions (renormalised) and each storage kind
it measures, on a held-out split:

- ``classify``: accuracy of a head fitted on the training split (default LDA) and, when the
  data has out-of-scope rows, OOS AUROC of a detector (default relative Mahalanobis);
- ``retrieve``: each held-out row queries the training rows; relevant = same label;
  recall@10 (share of queries with a relevant row in the top 10) and MRR@10;
- ``sts``: Spearman correlation between pair cosine and the gold score.

Storage kinds: ``float32``; ``int8`` (per-dimension calibrated ranges); ``binary`` (sign
bits; retrieval rescores a shortlist of 10·k with the float vectors); ``pq`` (FAISS product
quantisation with d/8 sub-vectors of 8 bits). Quantisers are fitted on the training split
only. Every layer comes from one forward pass (:meth:`SentenceTransformerEncoder.
encode_layers`, cached per layer), and encode time per layer is measured on a sample.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from embedlab.compress.plan_result import PQ_SUBVECTOR_DIMS, RESCORE, Plan, PlanRow
from embedlab.core.errors import ValidationError
from embedlab.core.metrics import retrieval_at_k
from embedlab.core.splits import holdout_per_label
from embedlab.core.vectors import unit_rows

__all__ = ["STORAGES", "TASKS", "Plan", "PlanRow", "plan"]

TASKS = ("classify", "retrieve", "sts")
STORAGES = ("float32", "int8", "binary", "pq")
METRICS = {
    "classify": ("accuracy", "auroc"),
    "retrieve": ("mrr@10", "recall@10"),
    "sts": ("spearman",),
}
K = 10
PQ_TRAIN_ROWS = 10_000  # PQ codebooks train on at most this many rows (FAISS k-means is slow)


def plan(
    texts: Sequence[str] | None = None,
    labels: Sequence[Any] | None = None,
    *,
    task: str = "classify",
    pairs: Any = None,
    encoder: Any = None,
    layers: Sequence[int] | None = None,
    dims: Sequence[int] | None = None,
    storages: Sequence[str] | None = None,
    metric: str | None = None,
    head: str = "auto",
    detector: str = "auto",
    oos_label: str = "oos",
    test_size: float = 0.2,
    max_bytes: float | None = None,
    max_ms: float | None = None,
    tolerance: float = 0.005,
    timing_sample: int = 256,
    seed: int = 0,
    progress: bool | None = None,
    students: Sequence[Any] = (),
) -> Plan:
    """Measure every (layer, dim, storage) on a held-out split of labelled texts (classify,
    retrieve) or scored pairs (sts, ``pairs`` = a :class:`~embedlab.data.pair_files.PairTable`).

    ``tolerance``: the recommendation is the smallest feasible configuration whose quality is
    within this fraction of the best feasible one (default 0.5 %). ``head`` / ``detector``
    "auto": LDA + relative Mahalanobis when the training split has at least twice as many
    rows as the model has dimensions (their covariance needs it), else prototype +
    max-cosine; the same pair measures every configuration.

    ``students``: encoders made by ``embedlab distill`` (or any other encoder), each
    measured whole at every storage beside the grid (layer 0 in the table: they have no
    layer to choose); the recommendation may pick one.
    """
    from embedlab.encoders import SentenceTransformerEncoder

    start = time.perf_counter()
    asked = storages
    task, metric, storages = _check_choices(
        task, metric, storages or STORAGES, test_size, tolerance
    )
    encoder = encoder if encoder is not None else SentenceTransformerEncoder()
    if getattr(encoder, "elastic", False) or not hasattr(encoder, "encode_layers"):
        raise ValidationError(
            "the planner needs a full sentence-transformers encoder (no layer / dim set): it "
            "varies the layer and dimension itself"
        )
    layers = _check_layers(encoder, layers)
    dims = _check_dims(dims, int(encoder.dim), storages)
    if task == "sts":
        data = _sts_data(pairs, test_size, seed)
    else:
        data = _labelled_data(texts, labels, task, oos_label, test_size, seed)
    if metric == "auroc" and not data.get("n_oos"):
        raise ValidationError(
            f"metric auroc needs out-of-scope rows (label {oos_label!r}) in the data; "
            "there are none"
        )
    notes: list[str] = []
    n_fit = int(data["train"].sum())
    storages = _usable_storages(storages, n_fit, bool(asked), notes)
    if task == "classify":
        head, detector = _classify_models(head, detector, n_fit, int(encoder.dim))
    if task == "retrieve" and "binary" in storages:
        notes.append(
            f"binary keeps {RESCORE}·k candidates by Hamming distance and rescores them with "
            "float32 vectors kept outside the index (on disk); bytes_per_vector counts the codes"
        )
    by_layer = encoder.encode_layers(data["texts"], layers, progress=progress)
    encode_ms = _encode_ms(encoder, data["texts"], layers, timing_sample, seed)
    measure = {"classify": _classify, "retrieve": _retrieve, "sts": _sts}[task]

    def score(V: np.ndarray, storage: str) -> Any:
        return measure(V, storage, data, head=head, detector=detector, seed=seed)

    rows = _measure_all(layers, by_layer, encode_ms, dims, storages, metric, progress, score)
    for student in students:
        rows += _student_rows(student, data, storages, metric, timing_sample, seed, score)
    for r in rows:
        r.feasible = (max_bytes is None or r.bytes_per_vector <= max_bytes) and (
            max_ms is None or r.total_ms <= max_ms
        )
    _mark_pareto(rows)
    summary = {k: v for k, v in data.items() if k.startswith("n_")}
    summary["encoder"] = encoder.spec.get("name")
    summary["notes"] = notes
    if task == "classify":
        summary["head"], summary["detector"] = head, detector
    return Plan(
        task=task,
        metric=metric,
        rows=rows,
        tolerance=tolerance,
        max_bytes=max_bytes,
        max_ms=max_ms,
        data=summary,
        seconds=time.perf_counter() - start,
    )


def _student_rows(
    student: Any,
    data: dict[str, Any],
    storages: list[str],
    metric: str,
    sample: int,
    seed: int,
    measure: Any,
) -> list[PlanRow]:
    """The rows of one student: its vectors at every storage, its encode time per text (a
    fixed sample, no cache, after a warm-up) and its size on disk."""
    from pathlib import Path

    from embedlab.encoders.loading import open_encoder

    encoder = open_encoder(student.model_path, cache=False)  # times real encoding
    V = unit_rows(encoder.encode(data["texts"], progress=False))
    rng = np.random.default_rng(seed)
    pick = [data["texts"][i] for i in rng.permutation(len(data["texts"]))[: max(1, sample)]]
    encoder.encode(pick[:8], progress=False)
    t0 = time.perf_counter()
    encoder.encode(pick, progress=False)
    encode_ms = 1000.0 * (time.perf_counter() - t0) / len(pick)
    root = Path(student.model_path)
    mb = sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) / 2**20
    rows = []
    d = V.shape[1]
    for storage in storages:
        if storage == "pq" and d % PQ_SUBVECTOR_DIMS:
            continue
        metrics, query_ms, nbytes, index_spec = measure(V, storage)
        rows.append(
            PlanRow(
                layer=0,
                dim=d,
                storage=storage,
                bytes_per_vector=nbytes,
                quality=float(metrics[metric]),
                metrics={m: float(v) for m, v in metrics.items()},
                encode_ms=encode_ms,
                query_ms=query_ms,
                transform="norm" + _storage_token(storage, d),
                index=index_spec,
                student=str(root),
                encoder_mb=round(mb, 2),
            )
        )
    return rows


def _check_layers(encoder: Any, layers: Sequence[int] | None) -> list[int]:
    """The layers to measure (default: every layer), each within the model's."""
    n_layers = int(encoder.spec.get("num_layers") or 0)
    layers = sorted({int(k) for k in layers}) if layers else list(range(1, n_layers + 1))
    bad = [k for k in layers if not 1 <= k <= n_layers]
    if bad:
        raise ValidationError(f"layers {bad} are out of range: this model has layers 1..{n_layers}")
    return layers


def _usable_storages(storages: list[str], n_fit: int, asked: bool, notes: list[str]) -> list[str]:
    """pq needs 256 training rows for its codebooks: refused when asked for, else left out
    (said in ``notes``)."""
    if "pq" in storages and n_fit < 256:
        if asked:
            raise ValidationError(
                f"pq needs at least 256 training rows to learn its codebooks; the training "
                f"split has {n_fit} (add data, or leave pq out of the storages)"
            )
        notes.append(f"pq left out: the training split has {n_fit} rows, pq needs 256")
        return [s for s in storages if s != "pq"]
    return storages


def _classify_models(head: str, detector: str, n_fit: int, dim: int) -> tuple[str, str]:
    """``auto``: LDA + relative Mahalanobis with at least twice as many rows as dimensions,
    else prototype + max-cosine; unknown names fail here, before encoding."""
    from embedlab.detect.registry import make_detector
    from embedlab.heads.registry import make_head

    enough = n_fit >= 2 * dim
    head = head if head != "auto" else ("gaussian" if enough else "prototype")
    detector = (
        detector if detector != "auto" else ("relative-mahalanobis" if enough else "max-cosine")
    )
    make_head(head), make_detector(detector)
    return head, detector


def _measure_all(
    layers: list[int],
    by_layer: dict[int, np.ndarray],
    encode_ms: dict[int, float],
    dims: list[int],
    storages: list[str],
    metric: str,
    progress: bool | None,
    measure: Any,
) -> list[PlanRow]:
    """One PlanRow per (layer, dim, storage), measured by ``measure(V, storage)``."""
    from embedlab.core.progress import progress_bar

    rows: list[PlanRow] = []
    n_configs = len(layers) * len(dims) * len(storages)
    with progress_bar(n_configs, "measuring", enabled=progress is not False) as advance:
        for k in layers:
            for d in dims:
                V = unit_rows(by_layer[k][:, :d])
                for storage in storages:
                    metrics, query_ms, nbytes, index_spec = measure(V, storage)
                    rows.append(
                        PlanRow(
                            layer=k,
                            dim=d,
                            storage=storage,
                            bytes_per_vector=nbytes,
                            quality=float(metrics[metric]),
                            metrics={m: float(v) for m, v in metrics.items()},
                            encode_ms=encode_ms[k],
                            query_ms=query_ms,
                            transform=f"layer{k},dim{d},norm" + _storage_token(storage, d),
                            index=index_spec,
                        )
                    )
                    advance(1)
    return rows


def _check_choices(
    task: str, metric: str | None, storages: Sequence[str], test_size: float, tolerance: float
) -> tuple[str, str, list[str]]:
    if task not in TASKS:
        raise ValidationError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
    metric = metric or METRICS[task][0]
    if metric not in METRICS[task]:
        raise ValidationError(
            f"metric {metric!r} does not apply to {task}; choose one of: {', '.join(METRICS[task])}"
        )
    bad = [s for s in storages if s not in STORAGES]
    if bad or not storages:
        raise ValidationError(f"unknown storage {bad}; choose from: {', '.join(STORAGES)}")
    if not 0.0 < test_size < 1.0:
        raise ValidationError(f"test_size must be between 0 and 1, not {test_size}")
    if not 0.0 <= tolerance < 1.0:
        raise ValidationError(f"tolerance must be in [0, 1), not {tolerance}")
    return task, metric, list(dict.fromkeys(storages))


def _check_dims(dims: Sequence[int] | None, full: int, storages: Sequence[str]) -> list[int]:
    if dims is None:
        dims = [full, *(2**p for p in range(12, 4, -1) if 2**p < full)]
    dims = sorted({int(d) for d in dims}, reverse=True)
    bad = [d for d in dims if not 1 <= d <= full]
    if bad:
        raise ValidationError(f"dims {bad} are out of range: this encoder has 1..{full}")
    if "pq" in storages:
        odd = [d for d in dims if d % PQ_SUBVECTOR_DIMS]
        if odd:
            raise ValidationError(
                f"pq splits vectors into {PQ_SUBVECTOR_DIMS}-dimension pieces, so dims {odd} "
                f"do not work with it; use multiples of {PQ_SUBVECTOR_DIMS} or drop pq"
            )
    return dims


def _storage_token(storage: str, d: int) -> str:
    return {"float32": "", "int8": ",sq8", "binary": ",binary"}.get(
        storage, f",pq{d // PQ_SUBVECTOR_DIMS}"
    )


def _labelled_data(
    texts: Sequence[str] | None,
    labels: Sequence[Any] | None,
    task: str,
    oos_label: str,
    test_size: float,
    seed: int,
) -> dict[str, Any]:
    from embedlab.core.validation import check_labels
    from embedlab.encoders.base import check_texts

    if texts is None or labels is None:
        raise ValidationError(f"the {task} task needs labelled texts (a label column)")
    texts = check_texts(texts)
    y = check_labels(labels, len(texts)).astype(str)
    is_oos = y == oos_label
    counts = dict(zip(*np.unique(y[~is_oos], return_counts=True), strict=True))
    if len(counts) < 2:
        raise ValidationError(
            f"the {task} task needs at least 2 labels besides {oos_label!r}; found {len(counts)}"
        )
    single = sorted(str(c) for c, n in counts.items() if n < 2)
    if single:
        raise ValidationError(
            f"{len(single)} label(s) have a single row, so none can be held out for testing: "
            f"{single[:10]}; give every label at least 2 rows or drop those"
        )
    test = np.zeros(len(y), dtype=bool)
    test[~is_oos] = holdout_per_label(y[~is_oos], test_size, seed)
    # Out-of-scope rows only ever test (heads and detectors are fitted on in-scope rows).
    test |= is_oos
    if task == "retrieve":
        keep = ~is_oos
        texts = [t for t, k in zip(texts, keep, strict=True) if k]
        y, test, is_oos = y[keep], test[keep], is_oos[keep]
    return {
        "texts": texts,
        "labels": y,
        "train": ~test,
        "test": test & ~is_oos,
        "oos": is_oos,
        "n_train": int((~test).sum()),
        "n_test": int((test & ~is_oos).sum()),
        "n_oos": int(is_oos.sum()),
        "n_classes": len(counts),
    }


def _sts_data(pairs: Any, test_size: float, seed: int) -> dict[str, Any]:
    if pairs is None or not len(pairs):
        raise ValidationError("the sts task needs scored sentence pairs")
    if len(pairs) < 10:
        raise ValidationError(f"the sts task needs at least 10 pairs, got {len(pairs)}")
    n = len(pairs)
    texts = list(dict.fromkeys([*pairs.first, *pairs.second]))
    pos = {t: i for i, t in enumerate(texts)}
    a = np.fromiter((pos[t] for t in pairs.first), dtype=np.int64, count=n)
    b = np.fromiter((pos[t] for t in pairs.second), dtype=np.int64, count=n)
    rng = np.random.default_rng(seed)
    test_pairs = np.zeros(n, dtype=bool)
    test_pairs[rng.permutation(n)[: max(1, round(test_size * n))]] = True
    train = np.zeros(len(texts), dtype=bool)  # quantisers fit on the training pairs' texts
    train[a[~test_pairs]] = True
    train[b[~test_pairs]] = True
    return {
        "texts": texts,
        "a": a[test_pairs],
        "b": b[test_pairs],
        "scores": np.asarray(pairs.scores, dtype=np.float64)[test_pairs],
        "train": train,
        "n_pairs": int(test_pairs.sum()),
        "n_train_texts": int(train.sum()),
    }


def _encode_ms(
    encoder: Any, texts: list[str], layers: Sequence[int], sample: int, seed: int
) -> dict[int, float]:
    """Milliseconds per text to encode at each layer, timed on a fixed sample."""
    rng = np.random.default_rng(seed)
    pick = [texts[i] for i in rng.permutation(len(texts))[: max(1, sample)]]
    return encoder.layer_timings(pick, layers)


def _codec(V: np.ndarray, train: np.ndarray, storage: str, seed: int) -> Any:
    """The fitted TransformChain for ``storage`` (None for float32)."""
    from embedlab.compress.transforms import TransformChain

    if storage == "float32":
        return None
    if storage == "pq":  # plan() has already left pq out when there are < 256 rows
        rows = _pq_sample(np.flatnonzero(train), seed)
        return TransformChain(f"pq{V.shape[1] // PQ_SUBVECTOR_DIMS}").fit(V[rows])
    return TransformChain({"int8": "sq8"}.get(storage, storage)).fit(V[train])


def _pq_sample(rows: np.ndarray, seed: int) -> np.ndarray:
    """The (sorted) rows PQ codebooks train on: all, or a seeded PQ_TRAIN_ROWS of them."""
    if len(rows) <= PQ_TRAIN_ROWS:
        return rows
    return np.sort(np.random.default_rng(seed).choice(rows, PQ_TRAIN_ROWS, replace=False))


def _decoded(V: np.ndarray, train: np.ndarray, storage: str, seed: int) -> tuple[np.ndarray, float]:
    chain = _codec(V, train, storage, seed)
    if chain is None:
        return V, 4.0 * V.shape[1]
    return chain.float_vectors(V), chain.bytes_per_vector()


def _classify(
    V: np.ndarray, storage: str, data: dict[str, Any], *, head: str, detector: str, seed: int
) -> tuple[dict[str, float], float, float, None]:
    from embedlab.core.metrics import auroc
    from embedlab.detect.registry import make_detector
    from embedlab.heads.registry import make_head

    Z, nbytes = _decoded(V, data["train"], storage, seed)
    y = data["labels"]
    tr, te, oo = data["train"], data["test"], data["oos"]
    h = make_head(head).fit(Z[tr], y[tr])
    metrics: dict[str, float] = {}
    t0 = time.perf_counter()
    metrics["accuracy"] = float((h.predict(Z[te]) == y[te]).mean())
    elapsed = time.perf_counter() - t0
    if oo.any():
        det = make_detector(detector)
        params = det.get_params()
        if "calibration_split" in params:
            det.set_params(calibration_split=0)  # no threshold needed: AUROC only
        if "head" in params:
            det.set_params(head=make_head(head))
        det.fit(Z[tr], y[tr])
        t0 = time.perf_counter()
        inside = det.decision_function(Z[te])
        elapsed += time.perf_counter() - t0
        metrics["auroc"] = auroc(inside, det.decision_function(Z[oo]))
    else:
        metrics["auroc"] = math.nan
    return metrics, 1000.0 * elapsed / max(1, int(te.sum())), nbytes, None


def _retrieve(
    V: np.ndarray, storage: str, data: dict[str, Any], *, head: str, detector: str, seed: int
) -> tuple[dict[str, float], float, float, str]:
    from embedlab.compress.index import Index

    d = V.shape[1]
    spec = {
        "float32": "flat",
        "int8": "sq8",
        "binary": f"binary,rescore{RESCORE}",
        "pq": f"pq{d // PQ_SUBVECTOR_DIMS}",
    }[storage]
    tr, te, y = data["train"], data["test"], data["labels"]
    corpus = V[tr]
    index = Index(spec, d)
    if storage == "pq":  # codebooks train on a sample
        index.train(corpus[_pq_sample(np.arange(len(corpus)), seed)])
    index.add(corpus)
    t0 = time.perf_counter()
    ids, _ = index.search(V[te], K)
    elapsed = time.perf_counter() - t0
    ranked = y[tr][ids.astype(np.int64)]
    found = retrieval_at_k(ranked, y[te], K)
    metrics = {m: found[m] for m in METRICS["retrieve"]}
    return metrics, 1000.0 * elapsed / max(1, int(te.sum())), index.bytes_per_vector(), spec


def _sts(
    V: np.ndarray, storage: str, data: dict[str, Any], *, head: str, detector: str, seed: int
) -> tuple[dict[str, float], float, float, None]:
    from scipy.stats import spearmanr

    Z, nbytes = _decoded(V, data["train"], storage, seed)
    t0 = time.perf_counter()
    A, B = unit_rows(Z[data["a"]]), unit_rows(Z[data["b"]])
    cos = np.einsum("ij,ij->i", A, B)
    elapsed = time.perf_counter() - t0
    rho = float(spearmanr(cos, data["scores"]).statistic)
    return {"spearman": rho}, 1000.0 * elapsed / len(cos), nbytes, None


def _mark_pareto(rows: list[PlanRow]) -> None:
    """A feasible row is on the front when no feasible row is at least as good in quality,
    bytes and time and strictly better in one."""
    ok = [r for r in rows if r.feasible]
    if not ok:
        return
    q = np.array([r.quality for r in ok])
    b = np.array([r.bytes_per_vector for r in ok])
    t = np.array([r.total_ms for r in ok])
    no_worse = (q[None, :] >= q[:, None]) & (b[None, :] <= b[:, None]) & (t[None, :] <= t[:, None])
    better = (q[None, :] > q[:, None]) | (b[None, :] < b[:, None]) | (t[None, :] < t[:, None])
    dominated = (no_worse & better).any(axis=1)
    for r, dom in zip(ok, dominated, strict=True):
        r.pareto = not dom
