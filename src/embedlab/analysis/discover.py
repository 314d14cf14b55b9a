"""Finding new classes among unlabelled vectors: cluster them, estimate how many clusters
there are, set small ones aside as noise, and name each cluster.

How many clusters: the rows are merged bottom-up (Ward linkage on unit vectors) and the tree
is cut at one merge height. That height is not a constant: it is the cut that best recovers
the labelled classes the model already knows (adjusted Rand index on a sample of their
rows), so it follows the encoder's geometry and the granularity of the user's own labels.
Ward heights grow with cluster size, so the labelled sample is drawn with as many rows per
class as the clusters found have (a fixed point, reached in a few rounds).

Names: a cluster's most central texts (closest to its mean) and its most distinctive words
(class-based TF-IDF, as BERTopic does: frequent in the cluster, rare in the others).

Known or new: a cluster whose rows are nearly as close to the nearest known class's centre
as to their own centre (mean distance to the class's centre under ``KNOWN_RATIO`` times
their mean distance to the cluster's) is that known class seen again (its unusual rows),
not a new one: it keeps the known class's name in ``known``, its rows are not suggested as
a new label, and it does not count in ``k``. (A new class's rows are tight around their
own centre and far from every known one.)

Which rows (:func:`discover_in_model`): those whose conformal p-value is at most
``level`` (default :data:`DISCOVERY_LEVEL`, looser than a model's rejection rate: near
novelties that the threshold lets through as their nearest class are considered too; the
known-class rows this lets in form known clusters or noise).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from embedlab.core.conformal import check_alpha
from embedlab.core.errors import ValidationError
from embedlab.core.validation import check_vectors
from embedlab.core.vectors import class_means, unit_rows

__all__ = [
    "DISCOVERY_LEVEL",
    "Cluster",
    "Discovery",
    "calibrate_cut",
    "discover_classes",
    "discover_in_model",
    "save_discovery",
]

#: The p-value at or under which discovery considers a row (a model rejects at its
#: target_fpr, typically 0.02: discovery looks further, into what is merely unusual).
DISCOVERY_LEVEL = 0.1
#: A cluster is the known class nearest its centre when its rows' mean cosine distance to
#: that class's centre is under this many times their mean distance to their own centre
#: (chosen on the ``tune`` half of CLINC150's domains, benchmarks/discovery.py).
KNOWN_RATIO = 1.6

#: At most this many rows go into one linkage tree (its distance matrix is n²/2 floats);
#: the other rows join the nearest cluster found on a seeded sample of this size.
MAX_TREE_ROWS = 6000


@dataclass
class Cluster:
    """One discovered cluster."""

    id: int
    name: str
    size: int
    words: list[str]
    central_texts: list[str]
    spread: float  # mean cosine distance of its rows to its centre
    known: str | None = None  # the known class it is (its centre sits on that class's)


@dataclass
class Discovery:
    """What :func:`discover_classes` found, row by row and cluster by cluster."""

    labels: np.ndarray  # (n,) cluster id per row, -1 = noise
    distance: np.ndarray  # (n,) cosine distance to the row's cluster centre (nearest, for noise)
    central: np.ndarray  # (n,) the row is one of its cluster's most central texts
    clusters: list[Cluster]
    cut: float  # the Ward merge height the tree was cut at
    calibration: dict[str, Any] = field(default_factory=dict)
    texts: list[str] = field(default_factory=list)  # the clustered texts
    vectors: np.ndarray | None = None  # and their vectors
    rows: np.ndarray | None = None  # their positions in the input (set by Pipeline.discover)
    selection: str = ""  # which input rows were clustered, in words
    n_input: int = 0
    min_size: int = 0

    @property
    def k(self) -> int:
        """The estimated number of new classes (clusters that are neither noise nor a
        known class)."""
        return sum(c.known is None for c in self.clusters)

    def names(self) -> np.ndarray:
        """The suggested label of each row: its cluster's name, or None for noise and for
        the clusters of known classes."""
        by_id = {c.id: c.name for c in self.clusters if c.known is None}
        return np.asarray([by_id.get(int(i)) for i in self.labels], dtype=object)

    def known_classes(self) -> np.ndarray:
        """Per row, the known class its cluster is, or None."""
        by_id = {c.id: c.known for c in self.clusters}
        return np.asarray([by_id.get(int(i)) for i in self.labels], dtype=object)

    def table(self, *, text_col: str = "text", noise_label: str = "oos") -> Any:
        """clusters.csv as a pyarrow Table: text, label (suggested name; ``noise_label`` for
        noise and known classes), cluster, known_class, distance, central; by cluster
        (noise last), then distance."""
        import pyarrow as pa

        names = self.names()
        labels = np.where(names == None, noise_label, names)  # noqa: E711
        key = np.where(self.labels < 0, np.iinfo(np.int64).max, self.labels)
        order = np.lexsort((self.distance, key))
        return pa.table(
            {
                text_col: pa.array([self.texts[i] for i in order], type=pa.string()),
                "label": pa.array([str(labels[i]) for i in order], type=pa.string()),
                "cluster": pa.array(self.labels[order].tolist(), type=pa.int64()),
                "known_class": pa.array(self.known_classes()[order].tolist(), type=pa.string()),
                "distance": pa.array(self.distance[order].tolist(), type=pa.float32()),
                "central": pa.array(self.central[order].tolist(), type=pa.bool_()),
            }
        )

    def summary(self, *, noise_label: str = "oos", **extra: Any) -> dict[str, Any]:
        """summary.json: k estimated, sizes, names, words, central texts, how the cut was set."""
        return {
            "format": "embedlab.discovery",
            **extra,
            "selection": self.selection,
            "n_rows": self.n_input or len(self.labels),
            "n_selected": len(self.labels),
            "k_estimated": self.k,
            "known_clusters": sum(c.known is not None for c in self.clusters),
            "n_noise": int((self.labels < 0).sum()),
            "noise_label": noise_label,
            "min_size": self.min_size,
            "cut": self.cut,
            "calibration": self.calibration,
            "clusters": [c.__dict__ for c in self.clusters],
        }


def save_discovery(
    found: Discovery,
    out_dir: Any,
    *,
    overwrite: bool = False,
    noise_label: str = "oos",
    text_col: str = "text",
    **extra: Any,
) -> Any:
    """Write clusters.csv, summary.json and report.html into ``out_dir`` (atomically: all
    three or none); ``extra`` fields go into summary.json."""
    import json

    from embedlab.analysis.report import discovery_report, write_report
    from embedlab.data.readers import write_table
    from embedlab.store.atomic import atomic_directory

    summary = found.summary(noise_label=noise_label, **extra)
    shown = ["noise" if n is None else str(n) for n in found.names()]
    html = discovery_report(summary, found.vectors, shown, found.texts)
    with atomic_directory(out_dir, overwrite=overwrite) as tmp:
        write_table(found.table(text_col=text_col, noise_label=noise_label), tmp / "clusters.csv")
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        write_report(html, tmp / "report.html")
    return out_dir


def _ward(U: np.ndarray) -> np.ndarray:
    from scipy.cluster.hierarchy import linkage

    return linkage(U.astype(np.float64), method="ward", metric="euclidean")


def _cut(tree: np.ndarray, height: float) -> np.ndarray:
    from scipy.cluster.hierarchy import fcluster

    return fcluster(tree, height, criterion="distance").astype(np.int64) - 1


def calibrate_cut(
    X_known: np.ndarray,
    y_known: np.ndarray,
    *,
    per_class: int,
    max_classes: int = 30,
    seed: int = 0,
) -> tuple[float, float]:
    """The Ward merge height whose cut best recovers the labels of ``per_class`` rows from
    each of up to ``max_classes`` known classes: (height, adjusted Rand index there). When
    a run of cuts scores within 0.005 of the best, the cut is at the geometric middle
    of the heights that bound the run."""
    from sklearn.metrics import adjusted_rand_score

    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y_known, return_counts=True)
    classes = classes[counts >= 2]
    if len(classes) < 2:
        raise ValidationError("calibrating the cut needs at least 2 known classes of 2+ rows")
    chosen = rng.choice(classes, min(max_classes, len(classes)), replace=False)
    idx = np.concatenate(
        [
            rng.choice(np.flatnonzero(y_known == c), min(per_class, int((y_known == c).sum())))
            for c in chosen  # a loop over classes, not rows
        ]
    )
    tree = _ward(unit_rows(X_known[idx]))
    h = np.r_[tree[:, 2], tree[-1, 2] * 2]  # merge heights (non-decreasing for Ward)
    # every distinct partition: cut between consecutive merges, from 4 clusters per class up
    first = max(0, len(idx) - 4 * len(chosen))
    cuts = [i for i in range(first, len(h) - 1) if h[i + 1] > h[i]]
    scores = np.asarray(
        [adjusted_rand_score(y_known[idx], _cut(tree, (h[i] + h[i + 1]) / 2)) for i in cuts]
    )
    # the best run of partitions (within 0.005 of the best), cut at the geometric middle of
    # the heights that bound it: not pushed to either edge of a range of equally good cuts
    good = scores >= scores.max() - 0.005
    b = int(np.argmax(scores))
    lo = b
    while lo > 0 and good[lo - 1]:
        lo -= 1
    hi = b
    while hi + 1 < len(cuts) and good[hi + 1]:
        hi += 1
    height = float(np.sqrt(max(h[cuts[lo]], 1e-12) * h[cuts[hi] + 1]))
    return height, float(adjusted_rand_score(y_known[idx], _cut(tree, height)))


def discover_classes(
    X: Any,
    texts: Sequence[str],
    *,
    reference: tuple[np.ndarray, np.ndarray] | None = None,
    cut: float | None = None,
    min_size: int = 5,
    n_central: int = 3,
    reserved: Sequence[str] = (),
    seed: int = 0,
) -> Discovery:
    """Cluster the rows of ``X`` (with their ``texts``) into new classes.

    ``reference`` = (vectors, labels) of known classes sets the cut (see the module doc);
    or give ``cut`` (a Ward merge height on unit vectors) yourself. Clusters of fewer than
    ``min_size`` rows are noise (label −1). ``reserved`` names (the known classes) are not
    given to clusters.
    """
    X = check_vectors(X, name="vectors")
    if len(texts) != len(X):
        raise ValidationError(f"{len(texts)} texts for {len(X)} vectors")
    if min_size < 2:
        raise ValidationError(f"min_size must be at least 2, got {min_size}")
    if cut is None and reference is None:
        raise ValidationError("pass reference=(vectors, labels) of known classes, or a cut")
    U = unit_rows(X)
    n = len(U)
    rng = np.random.default_rng(seed)
    tree_rows = np.arange(n)
    if n > MAX_TREE_ROWS:
        tree_rows = np.sort(rng.choice(n, MAX_TREE_ROWS, replace=False))
    tree = _ward(U[tree_rows]) if len(tree_rows) >= 2 else None
    calibration: dict[str, Any] = {}
    if cut is None:
        ref_X = check_vectors(reference[0], name="reference vectors", dim=X.shape[1])
        ref_y = np.asarray([str(v) for v in reference[1]], dtype=object)
        per_class, rounds = 20, []
        for _ in range(4):  # fixed point: sample as many rows per class as clusters have
            cut, ari = calibrate_cut(ref_X, ref_y, per_class=per_class, seed=seed)
            sizes = _sizes(_cut(tree, cut)) if tree is not None else np.array([1])
            big = sizes[sizes >= min_size]
            typical = int(np.median(big)) if big.size else min_size
            rounds.append({"per_class": per_class, "cut": cut, "ari": ari, "typical": typical})
            if typical == per_class:
                break
            per_class = max(typical, min_size)
        calibration = {"rounds": rounds, "reference_rows": len(ref_y)}
    labels = np.full(n, -1, dtype=np.int64)
    if tree is not None:
        labels[tree_rows] = _cut(tree, float(cut))
    labels = _drop_small(labels, tree_rows, min_size)
    labels, centres, distance = _assign_rest(U, labels, tree_rows)
    ref_names = ref_c = None
    if reference is not None and (labels >= 0).any():
        # a row farther from its cluster's centre than 99 % of the known classes' rows are
        # from theirs is not a member: noise (then clusters are re-checked for min_size)
        ref_U = unit_rows(check_vectors(reference[0], name="reference vectors"))
        ref_names, ref_idx = np.unique(
            np.asarray([str(v) for v in reference[1]]), return_inverse=True
        )
        ref_c = unit_rows(class_means(ref_U, ref_idx, int(ref_idx.max()) + 1))
        ref_d = 1.0 - np.einsum("nd,nd->n", ref_U, ref_c[ref_idx])
        reach = float(np.quantile(ref_d, 0.99))
        calibration["member_distance"] = reach
        stray = (labels >= 0) & (distance > reach)
        if stray.any():
            labels = labels.copy()
            labels[stray] = -1
            labels = _drop_small(labels, tree_rows, min_size)
            labels, centres, distance = _assign_rest(U, labels, np.arange(n))
    known = _known(U, labels, centres, ref_c, ref_names)
    central, clusters = _describe(texts, labels, distance, known, reserved, n_central)
    return Discovery(
        labels,
        distance,
        central,
        clusters,
        float(cut),
        calibration,
        texts=list(texts),
        vectors=X,
        n_input=n,
        min_size=min_size,
    )


def _describe(
    texts: Sequence[str],
    labels: np.ndarray,
    distance: np.ndarray,
    known: list[str | None],
    reserved: Sequence[str],
    n_central: int,
) -> tuple[np.ndarray, list[Cluster]]:
    """Each cluster's name, words, most central texts, spread and known class; and which
    rows are among their cluster's most central."""
    central = np.zeros(len(labels), dtype=bool)
    clusters = []
    names = _names(texts, labels, len(known), set(map(str, reserved)))
    for c in range(len(known)):  # a loop over clusters, not rows
        rows = np.flatnonzero(labels == c)
        near = rows[np.argsort(distance[rows], kind="stable")[:n_central]]
        central[near] = True
        clusters.append(
            Cluster(
                id=c,
                name=names[c][0],
                size=len(rows),
                words=names[c][1],
                central_texts=[texts[i] for i in near],
                spread=float(distance[rows].mean()),
                known=known[c],
            )
        )
    return central, clusters


def _known(
    U: np.ndarray, labels: np.ndarray, centres: np.ndarray, ref_c: Any, ref_names: Any
) -> list[str | None]:
    """Per cluster, the known class it is (see the module doc: its rows' mean distance to
    the nearest known centre is under KNOWN_RATIO times their mean distance to their own
    centre), or None."""
    if ref_c is None or len(centres) == 0:
        return [None] * len(centres)
    C = unit_rows(np.asarray(centres, dtype=np.float32))
    nearest = np.argmax(C @ ref_c.T, axis=1)
    out: list[str | None] = []
    for c in range(len(C)):  # a loop over clusters, each cluster's rows vectorised
        rows = U[labels == c]
        own = float((1.0 - rows @ C[c]).mean())
        to_known = float((1.0 - rows @ ref_c[nearest[c]]).mean())
        out.append(str(ref_names[nearest[c]]) if to_known < KNOWN_RATIO * max(own, 1e-6) else None)
    return out


def _sizes(labels: np.ndarray) -> np.ndarray:
    return np.bincount(labels[labels >= 0]) if (labels >= 0).any() else np.array([], int)


def _drop_small(labels: np.ndarray, tree_rows: np.ndarray, min_size: int) -> np.ndarray:
    """Clusters under ``min_size`` become noise; the rest are renumbered 0.. by size."""
    sizes = _sizes(labels)
    keep = np.flatnonzero(sizes >= min_size)
    keep = keep[np.argsort(-sizes[keep], kind="stable")]
    mapping = np.full(len(sizes) + 1, -1, dtype=np.int64)
    mapping[keep] = np.arange(len(keep))
    out = labels.copy()
    out[labels >= 0] = mapping[labels[labels >= 0]]
    return out


def _assign_rest(
    U: np.ndarray, labels: np.ndarray, tree_rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centres of the clusters; rows left out of the tree join their nearest centre when
    they are within its reach (see :func:`_reach`; else noise); each row's cosine
    distance to its cluster's centre (to the nearest centre for noise)."""
    k = int(labels.max()) + 1 if (labels >= 0).any() else 0
    if k == 0:
        return labels, np.zeros((0, U.shape[1]), np.float32), np.ones(len(U), np.float32)
    inside = labels >= 0
    centres = unit_rows(class_means(U[inside], labels[inside], k))
    nearest = np.empty(len(U), dtype=np.int64)
    sims = np.empty(len(U), dtype=np.float32)
    for s in range(0, len(U), 4096):  # chunked: memory bounded by the chunk
        block = U[s : s + 4096] @ centres.T
        nearest[s : s + 4096] = block.argmax(axis=1)
        sims[s : s + 4096] = block.max(axis=1)
    labels = labels.copy()
    own = 1.0 - np.einsum("nd,nd->n", U[inside], centres[labels[inside]])
    outside = np.ones(len(U), dtype=bool)
    outside[tree_rows] = False
    if outside.any():
        radius = np.asarray(
            [_reach(own[labels[inside] == c]) for c in range(k)]  # a loop over clusters
        )
        joins = outside & (1.0 - sims <= radius[nearest])
        labels[joins] = nearest[joins]
    dist = 1.0 - sims
    member = labels >= 0
    dist[member] = 1.0 - np.einsum("nd,nd->n", U[member], centres[labels[member]])
    return labels, centres, dist.astype(np.float32)


def _reach(distances: np.ndarray) -> float:
    """How far from its centre a cluster reaches: its own rows' mean distance + 3 standard
    deviations, and at least its farthest row (a sample's farthest row underestimates it)."""
    return float(max(distances.max(), distances.mean() + 3.0 * distances.std()))


_WORD = re.compile(r"(?u)\b[a-zA-Z][a-zA-Z]+\b")


def _names(
    texts: Sequence[str], labels: np.ndarray, k: int, reserved: set[str]
) -> list[tuple[str, list[str]]]:
    """(name, distinctive words) per cluster, by class-based TF-IDF over the clusters."""
    if k == 0:
        return []
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

    docs = [" ".join(texts[i] for i in np.flatnonzero(labels == c)) for c in range(k)]
    vec = CountVectorizer(
        token_pattern=_WORD.pattern, stop_words=sorted(ENGLISH_STOP_WORDS), lowercase=True
    )
    try:
        counts = vec.fit_transform(docs).toarray().astype(np.float64)
    except ValueError:  # no words at all (only stop words or digits)
        counts = np.zeros((k, 0))
    vocab = np.asarray(vec.get_feature_names_out()) if counts.shape[1] else np.array([])
    tf = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    idf = np.log(1.0 + counts.sum(axis=1).mean() / np.maximum(counts.sum(axis=0), 1.0))
    score = tf * idf[None, :]
    out, used = [], set(reserved)
    for c in range(k):
        order = np.argsort(-score[c], kind="stable")[:5] if len(vocab) else []
        words = [str(vocab[j]) for j in order if score[c, j] > 0]
        base = "_".join(words[:2]) or f"cluster_{c}"
        name, i = base, 2
        while name in used:
            name, i = f"{base}_{i}", i + 1
        used.add(name)
        out.append((name, words))
    return out


def discover_in_model(
    pipe: Any,
    texts: Sequence[str],
    *,
    all_rows: bool = False,
    min_size: int = 5,
    n_central: int = 3,
    seed: int = 0,
    progress: bool | None = None,
    level: float = DISCOVERY_LEVEL,
) -> Discovery:
    """:meth:`Pipeline.discover`: new classes among the ``texts`` whose conformal p-value
    is at most ``level`` (every text with ``all_rows``), the cut calibrated on the model's
    reference rows; clusters that sit on a known class are marked so."""
    from embedlab.encoders.base import check_texts

    texts = check_texts(texts)
    X = pipe.embed(texts, progress=progress)
    clf = pipe.classifier_
    X_ref, y_ref = clf.reference_rows()
    if all_rows:
        chosen = np.ones(len(X), dtype=bool)
        selection = f"all {len(X)} rows"
    else:
        level = check_alpha(level, "level")
        d = clf.predict_details(X, top_k=1)
        if d.p_value is None:  # a model saved before p-values: its rejections
            chosen, why = d.out_of_scope, "the model rejects"
        else:
            chosen = d.p_value <= level
            why = (
                f"have a p-value at most {level:g} (the model rejects {int(d.out_of_scope.sum())})"
            )
        selection = f"the {int(chosen.sum())} of {len(X)} rows that {why}"
        if not chosen.any():
            raise ValidationError(
                f"none of the {len(X)} rows is unusual at level {level:g}: nothing to "
                "discover among them (raise level / --level, or all_rows / --all clusters "
                "every row)"
            )
    if chosen.sum() < min_size:
        raise ValidationError(
            f"{selection.removeprefix('the ')}: fewer than min_size {min_size}, too few to "
            "form a cluster"
        )
    rows = np.flatnonzero(chosen)
    found = discover_classes(
        X[rows],
        [texts[i] for i in rows],
        reference=(X_ref, y_ref),
        min_size=min_size,
        n_central=n_central,
        reserved=[*map(str, clf.classes_), pipe.oos_label],
        seed=seed,
    )
    found.rows, found.selection, found.n_input = rows, selection, len(X)
    return found
