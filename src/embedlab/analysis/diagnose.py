"""Diagnostics of an embedding space: is it any good for this task, and where does it fail?

Every function takes float vectors (an :class:`~embedlab.data.embedding_set.EmbeddingSet` or
an array) and, where the measure needs them, labels. Measures that are quadratic in the
number of rows run on a seeded sample and say so in their result (``"sampled": m``).

======================  ===================================================================
function                what it measures
======================  ===================================================================
``rankme``              effective rank: exp(entropy of the normalised singular values)
``alignment``           mean squared distance between same-label unit vectors (lower =
                        better aligned; Wang & Isola 2020)
``uniformity``          log E exp(−t‖x−y‖²) over random pairs of unit vectors (lower = more
                        uniform on the sphere)
``isotropy``            min/max partition function over principal directions (1 = isotropic)
                        and mean cosine between random pairs
``fisher_ratio``        trace(between-class scatter) / trace(within-class scatter)
``silhouette``          mean silhouette coefficient, cosine distance
``nc1``                 within-class variability collapse Tr(Σ_W Σ_B⁺)/K (Papyan et al.)
``confusable_pairs``    class pairs whose means are closest (cosine)
``label_errors``        rows whose nearest neighbours mostly carry another label
``near_duplicates``     pairs of rows with cosine ≥ a threshold
``layer_quality``       per-layer RankMe, Fisher ratio and held-out prototype accuracy
``diagnose``            all of the above that apply, as one JSON-able dict
======================  ===================================================================
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from embedlab.core.errors import ValidationError
from embedlab.core.validation import check_labels, check_vectors
from embedlab.core.vectors import principal_directions, unit_rows

#: How each headline measure reads (title, note), for the CLI table and the HTML report.
MEASURE_NOTES: dict[str, tuple[str, str]] = {
    "rankme": ("RankMe (effective rank)", "effective rank (of the dimension)"),
    "uniformity": ("uniformity", "log E exp(-2|x-y|^2); lower = more spread on the sphere"),
    "alignment": ("alignment", "E|x - x+|^2 within labels; lower = tighter"),
    "fisher_ratio": ("Fisher ratio", "between / within class scatter; higher = separable"),
    "silhouette": ("silhouette (cosine)", "cosine; 1 = perfectly separated"),
    "nc1": ("NC1", "within-class collapse; 0 = collapsed"),
}

__all__ = [
    "MEASURE_NOTES",
    "alignment",
    "confusable_pairs",
    "diagnose",
    "fisher_ratio",
    "isotropy",
    "label_errors",
    "layer_quality",
    "nc1",
    "near_duplicates",
    "neighbours",
    "rankme",
    "silhouette",
    "uniformity",
]


def _xy(data: Any, labels: Any = None, *, need_labels: bool = False):
    """Vectors (float32) and labels (str array or None) from an EmbeddingSet or arrays."""
    if hasattr(data, "vectors"):
        X = np.asarray(data.vectors, dtype=np.float32)
        y = data.labels if labels is None else labels
    else:
        X, y = check_vectors(data), labels
    if y is not None:
        y = check_labels(y, len(X)).astype(str)
    if need_labels:
        if y is None:
            raise ValidationError("this measure needs labels")
        if len(np.unique(y)) < 2:
            raise ValidationError("this measure needs at least 2 distinct labels")
    return X, y


def _sample(n: int, m: int | None, seed: int) -> np.ndarray:
    if m is None or n <= m:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, m, replace=False))


# --------------------------------------------------------------------------- geometry
def rankme(data: Any, *, eps: float = 1e-7) -> float:
    """Effective rank (Garrido et al. 2023): exp(−Σ p log p), p = σ / Σσ over the singular
    values of the data matrix. Equals k for k equal non-zero singular values."""
    X, _ = _xy(data)
    Xd = X.astype(np.float64)
    # Singular values from the d x d Gram matrix: same values, no n x d factorisation.
    s = np.sqrt(np.maximum(np.linalg.eigvalsh(Xd.T @ Xd), 0.0))
    p = s / (s.sum() + eps) + eps
    return float(np.exp(-(p * np.log(p)).sum()))


def alignment(
    data: Any, labels: Any = None, *, alpha: float = 2.0, max_pairs: int = 200_000, seed: int = 0
) -> dict[str, Any]:
    """E‖x − x⁺‖^α over same-label pairs of unit vectors (0 = each class is one point)."""
    X, y = _xy(data, labels, need_labels=True)
    U = unit_rows(X)
    rng = np.random.default_rng(seed)
    order = np.argsort(y, kind="stable")
    _, starts, counts = np.unique(y[order], return_index=True, return_counts=True)
    ok = counts >= 2
    if not ok.any():
        raise ValidationError("alignment needs a label with at least 2 rows")
    # Draw pairs class by class in proportion to each class's number of pairs.
    weights = (counts * (counts - 1))[ok].astype(float)
    cls = rng.choice(np.flatnonzero(ok), size=max_pairs, p=weights / weights.sum())
    a = rng.integers(0, counts[cls])
    b = (a + rng.integers(1, counts[cls])) % counts[cls]  # never the same row
    i, j = order[starts[cls] + a], order[starts[cls] + b]
    d = np.linalg.norm(U[i] - U[j], axis=1) ** alpha
    return {"value": float(d.mean()), "alpha": alpha, "pairs": int(max_pairs)}


def uniformity(
    data: Any, *, t: float = 2.0, max_pairs: int = 200_000, seed: int = 0
) -> dict[str, Any]:
    """log E exp(−t‖x − y‖²) over random pairs of distinct unit vectors (Wang & Isola)."""
    X, _ = _xy(data)
    if len(X) < 2:
        raise ValidationError("uniformity needs at least 2 rows")
    U = unit_rows(X)
    rng = np.random.default_rng(seed)
    n = len(U)
    total = n * (n - 1) // 2
    if total <= max_pairs:
        i, j = np.triu_indices(n, 1)
    else:
        i = rng.integers(0, n, max_pairs)
        j = (i + rng.integers(1, n, max_pairs)) % n
    sq = np.maximum(2.0 - 2.0 * np.einsum("ij,ij->i", U[i], U[j]), 0.0)
    value = float(np.log(np.mean(np.exp(-t * sq.astype(np.float64)))))
    return {"value": value, "t": t, "pairs": len(i)}


def isotropy(data: Any, *, max_pairs: int = 200_000, seed: int = 0) -> dict[str, float]:
    """Partition-function isotropy (Mu & Viswanath 2018): min_c Z(c) / max_c Z(c) with
    Z(c) = Σ exp(c·x) over the principal directions c and their opposites (1 = isotropic;
    taking both signs makes it independent of the eigenvectors' arbitrary sign), and the
    mean cosine
    between random pairs of rows (0 for centred isotropic data)."""
    X, _ = _xy(data)
    Xd = X.astype(np.float64)
    _, directions = principal_directions(Xd)  # principal directions (columns)
    proj = np.clip(Xd @ directions, -50, 50)
    # Both signs of each direction: eigenvectors have no preferred sign.
    z = np.concatenate([np.exp(proj).sum(axis=0), np.exp(-proj).sum(axis=0)])
    U = unit_rows(X)
    rng = np.random.default_rng(seed)
    i = rng.integers(0, len(U), max_pairs)
    j = (i + rng.integers(1, max(len(U), 2), max_pairs)) % len(U)
    return {
        "partition_ratio": float(z.min() / z.max()),
        "mean_cosine": float(np.einsum("ij,ij->i", U[i], U[j]).mean()),
    }


# --------------------------------------------------------------------------- classes
def _class_stats(X: np.ndarray, y: np.ndarray):
    classes, inv, counts = np.unique(y, return_inverse=True, return_counts=True)
    Xd = X.astype(np.float64)
    sums = np.zeros((len(classes), X.shape[1]))
    np.add.at(sums, inv, Xd)
    means = sums / counts[:, None]
    return classes, inv, counts, means, Xd


def fisher_ratio(data: Any, labels: Any = None) -> float:
    """trace(S_B) / trace(S_W): between-class over within-class scatter (both sums over
    rows). Higher = classes further apart relative to their spread."""
    X, y = _xy(data, labels, need_labels=True)
    _, inv, counts, means, Xd = _class_stats(X, y)
    grand = Xd.mean(axis=0)
    between = float((counts * ((means - grand) ** 2).sum(axis=1)).sum())
    within = float(((Xd - means[inv]) ** 2).sum())
    return between / within if within > 0 else float("inf")


def silhouette(
    data: Any, labels: Any = None, *, sample: int | None = 5000, seed: int = 0
) -> dict[str, Any]:
    """Mean silhouette coefficient with cosine distance (on a seeded sample of rows)."""
    from sklearn.metrics import silhouette_score

    X, y = _xy(data, labels, need_labels=True)
    rows = _sample(len(X), sample, seed)
    if len(np.unique(y[rows])) < 2:
        raise ValidationError("the sample holds fewer than 2 labels")
    value = float(silhouette_score(X[rows], y[rows], metric="cosine"))
    return {"value": value, "sampled": len(rows), "of": len(X)}


def nc1(data: Any, labels: Any = None) -> float:
    """Within-class variability collapse Tr(Σ_W Σ_B⁺) / K (Papyan, Han & Donoho 2020);
    0 when every row sits on its class mean."""
    X, y = _xy(data, labels, need_labels=True)
    classes, inv, _, means, Xd = _class_stats(X, y)
    centred = Xd - means[inv]
    sigma_w = centred.T @ centred / len(Xd)
    mu = means - means.mean(axis=0)
    sigma_b = mu.T @ mu / len(classes)
    return float(np.trace(sigma_w @ np.linalg.pinv(sigma_b, hermitian=True)) / len(classes))


def confusable_pairs(data: Any, labels: Any = None, *, top: int = 10) -> list[dict[str, Any]]:
    """The ``top`` class pairs with the most similar class means (cosine), most similar first."""
    X, y = _xy(data, labels, need_labels=True)
    classes, _, _, means, _ = _class_stats(unit_rows(X), y)
    M = unit_rows(means.astype(np.float32))
    sims = M @ M.T
    i, j = np.triu_indices(len(classes), 1)
    order = np.argsort(-sims[i, j], kind="stable")[:top]
    return [
        {"a": str(classes[i[k]]), "b": str(classes[j[k]]), "cosine": float(sims[i[k], j[k]])}
        for k in order
    ]


def neighbours(
    data: Any, *, k: int = 10, sample: int | None = 10_000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(query rows, their k nearest other rows, cosines), exact (FAISS flat inner product)
    for a seeded sample of query rows against all rows. Shared by :func:`label_errors` and
    :func:`near_duplicates`."""
    import faiss

    X, _ = _xy(data)
    U = np.ascontiguousarray(unit_rows(X), dtype=np.float32)
    rows = _sample(len(U), sample, seed)
    k = min(k, len(U) - 1)
    index = faiss.IndexFlatIP(U.shape[1])
    index.add(U)
    sim, idx = index.search(U[rows], k + 1)
    # Drop each query itself (wherever ties put it), keep the k best others.
    keep = idx != rows[:, None]
    order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
    return rows, np.take_along_axis(idx, order, 1), np.take_along_axis(sim, order, 1)


def label_errors(
    data: Any,
    labels: Any = None,
    *,
    k: int = 10,
    min_disagreement: float = 0.7,
    sample: int | None = 10_000,
    seed: int = 0,
    knn: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Rows whose k nearest neighbours (cosine) mostly carry another label — likely label
    errors or ambiguous rows. Returns the rows (most suspicious first) with the majority
    neighbour label and the share of neighbours that disagree. ``knn``: a result of
    :func:`neighbours` to reuse."""
    X, y = _xy(data, labels, need_labels=True)
    if len(X) <= k:
        raise ValidationError(f"label_errors needs more than k={k} rows")
    # A row can only have (class size - 1) same-label neighbours: with small classes, ask
    # for fewer neighbours so that a well-placed row is not flagged for lack of company.
    _, counts = np.unique(y, return_counts=True)
    k = max(1, min(k, int(np.median(counts)) - 1))
    rows, idx, _ = knn if knn is not None else neighbours(X, k=k, sample=sample, seed=seed)
    idx = idx[:, :k]
    nb = y[idx]
    disagree = (nb != y[rows][:, None]).mean(axis=1)
    flagged = np.flatnonzero(disagree >= min_disagreement)
    flagged = flagged[np.argsort(-disagree[flagged], kind="stable")]
    out = []
    for f in flagged:  # a loop over flagged rows only, to name each majority label
        values, counts = np.unique(nb[f], return_counts=True)
        out.append(
            {
                "row": int(rows[f]),
                "label": str(y[rows[f]]),
                "neighbours_say": str(values[np.argmax(counts)]),
                "disagreement": float(disagree[f]),
            }
        )
    return {"rows": out, "k": k, "checked": len(rows), "of": len(X)}


def near_duplicates(
    data: Any,
    *,
    threshold: float = 0.98,
    sample: int | None = 10_000,
    seed: int = 0,
    knn: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Pairs of distinct rows with cosine ≥ ``threshold`` (each pair once, highest first);
    a seeded sample of query rows is checked against all rows (10 neighbours each)."""
    X, _ = _xy(data)
    if len(X) < 2:
        return {"pairs": [], "threshold": threshold, "checked": len(X), "of": len(X)}
    U = unit_rows(X)
    rows, idx, sim = knn if knn is not None else neighbours(X, sample=sample, seed=seed)
    qi, pos = np.nonzero(sim >= threshold)
    a, b = rows[qi], idx[qi, pos]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    pairs = np.unique(np.stack([lo, hi], 1), axis=0) if len(lo) else np.empty((0, 2), int)
    cos = np.einsum("ij,ij->i", U[pairs[:, 0]], U[pairs[:, 1]]) if len(pairs) else np.empty(0)
    order = np.argsort(-cos, kind="stable")
    return {
        "pairs": [
            {"a": int(pairs[o, 0]), "b": int(pairs[o, 1]), "cosine": float(cos[o])} for o in order
        ],
        "threshold": threshold,
        "checked": len(rows),
        "of": len(X),
    }


# --------------------------------------------------------------------------- layers
def layer_quality(
    texts: Sequence[str],
    labels: Sequence[Any],
    encoder: Any = None,
    *,
    layers: Sequence[int] | None = None,
    test_size: float = 0.2,
    seed: int = 0,
    progress: bool | None = None,
) -> list[dict[str, Any]]:
    """For each transformer layer: RankMe, Fisher ratio, and accuracy of a prototype head
    fitted on (1 − test_size) of each label and scored on the rest. One forward pass
    (:meth:`SentenceTransformerEncoder.encode_layers`)."""
    from embedlab.core.splits import holdout_per_label
    from embedlab.encoders import SentenceTransformerEncoder
    from embedlab.heads import PrototypeClassifier

    encoder = encoder if encoder is not None else SentenceTransformerEncoder()
    y = check_labels(labels, len(texts)).astype(str)
    _, counts = np.unique(y, return_counts=True)
    if len(counts) < 2 or counts.min() < 2:
        raise ValidationError("layer_quality needs at least 2 labels with 2 rows each")
    test = holdout_per_label(y, test_size, seed)
    n_layers = int(encoder.spec.get("num_layers") or 0)
    by_layer = encoder.encode_layers(texts, layers or range(1, n_layers + 1), progress=progress)
    out = []
    for k, V in sorted(by_layer.items()):
        head = PrototypeClassifier().fit(V[~test], y[~test])
        out.append(
            {
                "layer": int(k),
                "rankme": rankme(V),
                "fisher_ratio": fisher_ratio(V, y),
                "prototype_accuracy": float((head.predict(V[test]) == y[test]).mean()),
            }
        )
    return out


def diagnose(data: Any, labels: Any = None, *, sample: int = 5000, seed: int = 0) -> dict[str, Any]:
    """Every measure that applies (label-free ones always, class measures with labels),
    with the seconds each took. Quadratic measures run on seeded samples (reported)."""
    X, y = _xy(data, labels)
    report: dict[str, Any] = {"n": len(X), "dim": int(X.shape[1]), "timings": {}}

    def run(name: str, fn: Any) -> None:
        t0 = time.perf_counter()
        report[name] = fn()
        report["timings"][name] = round(time.perf_counter() - t0, 3)

    run("rankme", lambda: rankme(X))
    run("uniformity", lambda: uniformity(X, seed=seed))
    run("isotropy", lambda: isotropy(X, seed=seed))
    t0 = time.perf_counter()
    knn = neighbours(X, sample=2 * sample, seed=seed) if len(X) > 1 else None
    report["timings"]["neighbours (shared kNN search)"] = round(time.perf_counter() - t0, 3)
    run("near_duplicates", lambda: near_duplicates(X, knn=knn))
    if y is not None and len(np.unique(y)) >= 2:
        run("alignment", lambda: alignment(X, y, seed=seed))
        run("fisher_ratio", lambda: fisher_ratio(X, y))
        run("silhouette", lambda: silhouette(X, y, sample=sample, seed=seed))
        run("nc1", lambda: nc1(X, y))
        run("confusable_pairs", lambda: confusable_pairs(X, y))
        if len(X) > 10:  # label_errors' k: with fewer rows every row is a neighbour
            run("label_errors", lambda: label_errors(X, y, knn=knn))
    return report
