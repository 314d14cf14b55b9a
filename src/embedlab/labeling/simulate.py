"""Replay labelling on a labelled set: what each strategy of
:func:`~embedlab.labeling.suggest.suggest` would have bought, budget by budget.

The pool's labels are hidden; each round the strategy picks the next rows (the first round
from nothing, later ones also from a head fitted on the rows picked so far), their labels
are revealed, a head is fitted on them and scored on the test set. The curve (accuracy and
macro-F1 per strategy, seed and budget) is the number behind "labelling N rows chosen this
way is worth M random ones".
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embedlab.core.errors import ValidationError
from embedlab.core.progress import progress_bar
from embedlab.core.vectors import class_means, unit_rows
from embedlab.labeling import selection
from embedlab.labeling.suggest import AUTO_MARGIN_PER_CLASS

__all__ = [
    "SIMULATED",
    "labels_to_reach",
    "parse_budgets",
    "plot_curve",
    "simulate_labeling",
    "stratified_picks",
]

#: the strategies a simulation can replay (``stratified``: one random row per class first —
#: what a user cannot do without labels, the yardstick of a cold start)
SIMULATED = ("random", "typiclust", "coreset", "margin", "auto", "stratified")


def parse_budgets(spec: str) -> list[int]:
    """``"150:3000:150"`` (start:stop:step, stop included) or ``"150,300,600"`` → budgets."""
    try:
        if ":" in spec:
            a, b, s = (int(v) for v in spec.split(":"))
            if s <= 0 or a <= 0 or b < a:
                raise ValueError
            out = list(range(a, b + 1, s))
        else:
            out = sorted({int(v) for v in spec.split(",") if v.strip()})
    except ValueError:
        raise ValidationError(
            f"budgets must be START:STOP:STEP or a comma list of positive counts, not {spec!r}"
        ) from None
    if not out or out[0] <= 0:
        raise ValidationError(f"budgets must be positive counts, not {spec!r}")
    return out


def stratified_picks(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` rows: one random row per class (classes in random order), then random rows."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(y))
    _, first = np.unique(y[perm], return_index=True)
    one = perm[first][rng.permutation(len(first))]
    rest = np.setdiff1d(perm, one, assume_unique=True)
    rest = perm[np.isin(perm, rest)]
    return np.concatenate([one, rest])[:n]


def _head(name: str) -> Any:
    from embedlab.heads.registry import make_head

    return make_head(name)


def _fit_scores(
    head: Any, U: np.ndarray, y: np.ndarray, rows: np.ndarray, fitted: bool = False
) -> dict[str, Any]:
    """Fit ``head`` on the picked rows (unless ``fitted`` on them already); margin, best
    two classes and novelty (1 − cosine to the nearest class mean: rows near no known
    class) for every pool row."""
    yl = y[rows]
    classes, idx = np.unique(yl, return_inverse=True)
    if len(classes) < 2:  # one class so far: no margin to speak of, nothing novel yet
        return {
            "margin": np.ones(len(U), np.float32),
            "first": np.full(len(U), classes[0], dtype=object),
            "second": np.full(len(U), "-", dtype=object),
            "novelty": np.zeros(len(U), np.float32),
            "oos": np.zeros(len(U), bool),
        }
    if not fitted:
        head.fit(U[rows], yl)
    proba = head.predict_proba(U)
    top = np.argsort(-proba, axis=1)[:, :2]
    p2 = np.take_along_axis(proba, top, 1)
    means = unit_rows(class_means(U[rows], idx, len(classes)))
    novelty = 1.0 - (U @ means.T).max(axis=1)
    names = np.asarray(head.classes_, dtype=object)
    return {
        "margin": (p2[:, 0] - p2[:, 1]).astype(np.float32),
        "first": names[top[:, 0]],
        "second": names[top[:, 1]],
        "novelty": novelty.astype(np.float32),
        "oos": np.zeros(len(U), bool),
    }


def _next(
    strategy: str,
    U: np.ndarray,
    y: np.ndarray,
    picked: np.ndarray,
    n: int,
    seed: int,
    head: tuple[Any, bool],
    n_classes: int,
    typical: np.ndarray,
    representative: str,
    auto_per_class: float,
) -> np.ndarray:
    """The next ``n`` rows under ``strategy`` given the rows ``picked`` so far."""
    if strategy == "auto":
        per_class = len(picked) / n_classes
        strategy = "typiclust" if per_class < auto_per_class else "margin"
    if strategy == "margin" and len(picked) == 0:
        strategy = "typiclust"  # a cold start has no model: as suggest() without -m
    if strategy == "random":
        return selection.random_picks(len(U), n, seed, exclude=picked).rows
    if strategy == "typiclust":
        return selection.typiclust(
            U, n, seed, labeled=picked, typical=typical, representative=representative
        ).rows
    if strategy == "coreset":
        return selection.coreset(U, n, seed, labeled=picked).rows
    if strategy == "margin":
        sc = _fit_scores(head[0], U, y, picked, fitted=head[1])
        return selection.margin_novelty(U, n, seed, scores=sc, labeled=picked).rows
    raise ValidationError(f"unknown strategy {strategy!r}; choose from {', '.join(SIMULATED)}")


def simulate_labeling(
    X: Any,
    y: Sequence[Any],
    X_test: Any,
    y_test: Sequence[Any],
    *,
    budgets: Sequence[int],
    strategies: Sequence[str] = ("random", "typiclust", "auto"),
    seeds: Sequence[int] = (0,),
    head: str = "linear",
    representative: str = "centre",
    auto_per_class: float = AUTO_MARGIN_PER_CLASS,
    progress: bool | None = None,
    on_point: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Replay labelling rounds: for each strategy and seed, grow the labelled set to each
    budget (the pool's labels revealed only for the picked rows), fit ``head`` on them, score
    the test set. Returns one dict per (strategy, seed, budget): ``accuracy``, ``macro_f1``,
    ``classes_seen``, ``select_s`` (time to choose) — curve.csv's rows. ``stratified`` is
    the yardstick of one random row per class first. ``on_point`` sees each row as it is
    measured (for progress files)."""
    from embedlab.core.validation import check_labels, check_vectors

    X = check_vectors(X, name="X")
    Xt = check_vectors(X_test, name="X_test", dim=X.shape[1])
    y = check_labels(y, len(X))
    yt = check_labels(y_test, len(Xt))
    budgets = sorted({int(b) for b in budgets})
    if not budgets or budgets[0] < 1:
        raise ValidationError("budgets must be positive counts of labels")
    if budgets[-1] > len(X):
        raise ValidationError(
            f"the largest budget ({budgets[-1]}) is more than the pool's {len(X)} rows"
        )
    bad = [s for s in strategies if s not in SIMULATED]
    if bad:
        raise ValidationError(f"unknown strategy {bad[0]!r}; choose from {', '.join(SIMULATED)}")
    from sklearn.metrics import f1_score

    U, Ut = unit_rows(X), unit_rows(Xt)
    n_classes = len(np.unique(y))
    # the pool's typicality is the same every round
    typical = selection.typicality(U, U) if representative == "density" else None
    out: list[dict[str, Any]] = []
    total = len(strategies) * len(seeds) * len(budgets)
    # few rows for many classes is the point here: sklearn's "more classes than half the
    # rows" warning would repeat every round (silenced in this block only)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The number of unique classes")
        with progress_bar(total, "simulate-labeling", enabled=bool(progress)) as advance:
            for strategy in strategies:
                for seed in seeds:
                    picked = np.empty(0, np.int64)
                    last = None  # the head fitted on `picked` (the next round scores with it)
                    strat_order = (
                        stratified_picks(y, budgets[-1], seed) if strategy == "stratified" else None
                    )
                    for b in budgets:
                        t0 = time.perf_counter()
                        if strat_order is not None:
                            picked = strat_order[:b]
                        else:
                            more = _next(
                                strategy,
                                U,
                                y,
                                picked,
                                b - len(picked),
                                seed + b,
                                (last, True) if last is not None else (_head(head), False),
                                n_classes,
                                typical,
                                representative,
                                auto_per_class,
                            )
                            picked = np.concatenate([picked, more])
                        sel = time.perf_counter() - t0
                        classes = np.unique(y[picked])
                        if len(classes) < 2:
                            pred, last = np.full(len(yt), classes[0], dtype=object), None
                        else:
                            last = _head(head).fit(U[picked], y[picked])
                            pred = last.predict(Ut)
                        point = {
                            "strategy": strategy,
                            "seed": int(seed),
                            "budget": int(b),
                            "accuracy": float(np.mean(pred == yt)),
                            "macro_f1": float(f1_score(yt, pred, average="macro", zero_division=0)),
                            "classes_seen": len(classes),
                            "select_s": round(sel, 3),
                        }
                        out.append(point)
                        if on_point is not None:
                            on_point(point)
                        advance(1)
    return out


def curve_means(
    points: Sequence[dict[str, Any]], metric: str = "accuracy"
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per strategy: (budgets, mean, sd over seeds) of ``metric``."""
    out = {}
    for s in dict.fromkeys(p["strategy"] for p in points):
        ps = [p for p in points if p["strategy"] == s]
        b = np.array(sorted({p["budget"] for p in ps}))
        v = [[p[metric] for p in ps if p["budget"] == x] for x in b]
        out[s] = (b, np.array([np.mean(a) for a in v]), np.array([np.std(a) for a in v]))
    return out


def labels_to_reach(budgets: np.ndarray, values: np.ndarray, target: float) -> float | None:
    """The budget at which the (mean) curve first reaches ``target``, interpolated linearly
    between measured budgets; None when it never does."""
    hit = np.flatnonzero(values >= target)
    if not len(hit):
        return None
    i = int(hit[0])
    if i == 0:
        return float(budgets[0])
    x0, x1, v0, v1 = budgets[i - 1], budgets[i], values[i - 1], values[i]
    return float(x0 + (target - v0) / max(v1 - v0, 1e-12) * (x1 - x0))


def plot_curve(
    points: Sequence[dict[str, Any]],
    path: str | os.PathLike,
    *,
    metric: str = "accuracy",
    title: str = "What each labelling strategy buys",
) -> Path:
    """curve.png: ``metric`` against labels, one line per strategy (mean over seeds, a band
    of ± one sd)."""
    import io

    from matplotlib.figure import Figure  # no pyplot: the global backend is left alone

    from embedlab.store.atomic import atomic_write_bytes

    fig = Figure(figsize=(8, 5), dpi=110)
    ax = fig.subplots()
    for name, (b, m, sd) in curve_means(points, metric).items():
        (line,) = ax.plot(b, m, marker="o", ms=3, label=name)
        ax.fill_between(b, m - sd, m + sd, color=line.get_color(), alpha=0.15)
    ax.set_xlabel("labels")
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)
