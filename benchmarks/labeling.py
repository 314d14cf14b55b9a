"""Labels where they count (issue 31): which rows to label, and which labels are wrong.

Parts (``--part``), each printing JSON lines and adding to WORK/results.json:

* ``tune``    — the decisions, on the TUNING half of CLINC150 (the intents of the first five
  domains in alphabetical order; pool = their train rows, test = their test rows): the
  cold-start representative (nearest the centre vs TypiClust's densest row) and the labels
  per class at which ``auto`` turns from typicality to the model's margin.
* ``curve``   — CLINC150 (pool = train, test = test, in scope), then the REPORT half alone:
  the cold start (one label per class on average; 5 seeds) for random, stratified (one
  per class), typiclust, coreset and scikit-activeml's TypiClust (the anchor); then the
  curve (one to twenty labels per class, 3 seeds) for random and auto; a linear head
  (C = 10) fitted at every budget. Prints the labels each needs to reach 95 % of the
  full-data accuracy; every point goes to WORK/<name>_points.jsonl as it is measured.
* ``issues``  — label issues: 5 % of the train labels flipped at random, and 5 % flipped to
  the most similar class; precision at the recall of ``label_errors`` (the kNN heuristic),
  embedlab's ``label_issues`` vs cleanlab's own defaults (CleanLearning + LogisticRegression).
* ``stream``  — ``suggest`` on a 1,000,000-row sharded pool (CLINC vectors plus seeded
  noise), no model and with a model: seconds and peak memory.

Run: ``python benchmarks/labeling.py --work /tmp/lab --part tune|curve|issues|stream``
(vectors cached in WORK; the packaged MiniLM encoder; 2 cores).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_io import RESULTS, emit, encoded

from embedlab.core.vectors import unit_rows
from embedlab.data.datasets import clinc150_path, load_clinc150
from embedlab.labeling.simulate import (
    curve_means,
    labels_to_reach,
    plot_curve,
    simulate_labeling,
)


def clinc(work: Path):
    from embedlab.encoders.sentence_transformer import SentenceTransformerEncoder

    # the same files as benchmarks/concepts.py caches (in scope and out of scope): one
    # encoding serves both; the out-of-scope rows are dropped here
    train, test = load_clinc150("train", "oos_train"), load_clinc150("test", "oos_test")
    enc = SentenceTransformerEncoder()
    X = encoded(enc, train.texts, work, "clinc-train")
    Xt = encoded(enc, test.texts, work, "clinc-test")
    y, yt = np.asarray(train.labels), np.asarray(test.labels)
    m, mt = y != "oos", yt != "oos"
    return X[m], y[m], Xt[mt], yt[mt], [t for t, k in zip(train.texts, m, strict=True) if k]


def halves(y: np.ndarray) -> tuple[set[str], set[str]]:
    domains = json.loads((clinc150_path().parent / "domains.json").read_text())
    names = sorted(domains)
    tune = {i for d in names[:5] for i in domains[d]}
    report = {i for d in names[5:] for i in domains[d]}
    return tune, report


def part(X, y, Xt, yt, keep: set[str]):
    m, mt = np.isin(y, list(keep)), np.isin(yt, list(keep))
    return X[m], y[m], Xt[mt], yt[mt]


def full_accuracy(X, y, Xt, yt) -> float:
    from embedlab.heads.linear import LinearClassifier

    return float(np.mean(LinearClassifier(C=10.0).fit(X, y).predict(Xt) == yt))


def run_tune(work: Path) -> None:
    X, y, Xt, yt, _ = clinc(work)
    tune, _ = halves(y)
    X, y, Xt, yt = part(X, y, Xt, yt, tune)
    k = len(np.unique(y))
    seeds = range(5)
    pts = simulate_labeling(X, y, Xt, yt, budgets=[k], strategies=["typiclust"], seeds=seeds)
    pts_d = simulate_labeling(
        X, y, Xt, yt, budgets=[k], strategies=["typiclust"], seeds=seeds,
        representative="density",
    )  # fmt: skip
    emit(
        "tune_cold_start",
        labels=k,
        centre=round(float(np.mean([p["accuracy"] for p in pts])), 4),
        density=round(float(np.mean([p["accuracy"] for p in pts_d])), 4),
    )
    budgets = list(range(k, 20 * k + 1, k))
    seeds = range(3)
    curves = simulate_labeling(
        X, y, Xt, yt, budgets=budgets, strategies=["random", "typiclust", "margin"], seeds=seeds,
        progress=True,
    )  # fmt: skip
    for per_class in (2.0, 4.0, 8.0):
        for p in simulate_labeling(
            X, y, Xt, yt, budgets=budgets, strategies=["auto"], seeds=seeds,
            auto_per_class=per_class, progress=True,
        ):  # fmt: skip
            p["strategy"] = f"auto@{per_class:g}"
            curves.append(p)
    full = full_accuracy(X, y, Xt, yt)
    for name, (b, mean, _) in curve_means(curves).items():
        emit(
            "tune_curve",
            strategy=name,
            area=round(float(np.mean(mean)), 4),
            labels_to_95pct=labels_to_reach(b, mean, 0.95 * full),
            at=dict(zip(b.tolist(), np.round(mean, 4).tolist(), strict=True)),
        )
    plot_curve(curves, work / "tune_curve.png", title="CLINC150 tuning half")
    (work / "tune_curve.json").write_text(json.dumps(curves))


def skactiveml_curve(X, y, Xt, yt, budgets, seed: int) -> list[dict]:
    """scikit-activeml on the same vectors: its TypiClust for the first budget, then its
    margin uncertainty sampling with a logistic regression (C = 10) refitted each round."""
    from skactiveml.classifier import SklearnClassifier
    from skactiveml.pool import TypiClust, UncertaintySampling
    from skactiveml.utils import MISSING_LABEL
    from sklearn.linear_model import LogisticRegression

    from embedlab.heads.linear import LinearClassifier

    U, Ut = unit_rows(X), unit_rows(Xt)
    classes = np.unique(y)
    yi = np.searchsorted(classes, y).astype(float)
    y_l = np.full(len(y), MISSING_LABEL)
    out = []
    for i, b in enumerate(budgets):
        n = b - (0 if i == 0 else budgets[i - 1])
        t0 = time.perf_counter()
        if i == 0:
            qs = TypiClust(random_state=seed)
            q = qs.query(U, y_l, batch_size=n)
        else:
            clf = SklearnClassifier(
                LogisticRegression(C=10.0, max_iter=300), classes=np.arange(len(classes)),
                random_state=seed,
            )  # fmt: skip
            qs = UncertaintySampling(method="margin_sampling", random_state=seed)
            q = qs.query(U, y_l, clf=clf, batch_size=n)
        sel = time.perf_counter() - t0
        y_l[q] = yi[q]
        rows = np.flatnonzero(~np.isnan(y_l))
        pred = LinearClassifier(C=10.0).fit(U[rows], y[rows]).predict(Ut)
        out.append(
            {
                "strategy": "skactiveml",
                "seed": seed,
                "budget": b,
                "accuracy": float(np.mean(pred == yt)),
                "classes_seen": len(np.unique(y[rows])),
                "select_s": round(sel, 3),
            }
        )
    return out


def run_curve(work: Path, seeds: int) -> None:
    """Cold start (every strategy, ``seeds`` seeds) and the curve (random and auto, 3 seeds);
    each measured point is appended to WORK/<name>_points.jsonl as it comes."""
    X, y, Xt, yt, _ = clinc(work)
    _, report = halves(y)
    for name, (A, b, At, bt) in (
        ("clinc150", (X, y, Xt, yt)),
        ("report_half", part(X, y, Xt, yt, report)),
    ):
        k = len(np.unique(b))
        log = (work / f"{name}_points.jsonl").open("a")
        keep = lambda p, f=log: f.write(json.dumps(p) + "\n") or f.flush()  # noqa: E731
        cold = simulate_labeling(
            A, b, At, bt, budgets=[k],
            strategies=["random", "stratified", "typiclust", "coreset"],
            seeds=range(seeds), on_point=keep,
        )  # fmt: skip
        t0 = time.perf_counter()
        try:
            for s in range(seeds):
                pts = skactiveml_curve(A, b, At, bt, [k], s)
                cold += pts
                keep(pts[0])
        except Exception as e:  # the anchor is optional: say why it is missing
            emit(f"{name}_anchor_failed", error=repr(e)[:300])
        emit(f"{name}_anchor_seconds", seconds=round(time.perf_counter() - t0, 1))
        means = {
            s: [p["accuracy"] for p in cold if p["strategy"] == s]
            for s in dict.fromkeys(p["strategy"] for p in cold)
        }
        emit(
            f"{name}_cold_start",
            labels=k,
            **{s: f"{np.mean(v):.4f} ± {np.std(v):.4f}" for s, v in means.items()},
        )
        budgets = list(range(k, 20 * k + 1, k))
        curves = simulate_labeling(
            A, b, At, bt, budgets=budgets, strategies=["random", "auto"], seeds=range(3),
            on_point=keep,
        )  # fmt: skip
        full = full_accuracy(A, b, At, bt)
        reach = {
            s: labels_to_reach(bb, m, 0.95 * full) for s, (bb, m, _) in curve_means(curves).items()
        }
        emit(f"{name}_reach_95pct", full_accuracy=round(full, 4), target=round(0.95 * full, 4),
             **{s: (None if v is None else round(v)) for s, v in reach.items()})  # fmt: skip
        if reach.get("random") and reach.get("auto"):
            emit(f"{name}_fewer_labels_than_random",
                 auto=round(1 - reach["auto"] / reach["random"], 3))  # fmt: skip
        plot_curve(curves, work / f"{name}_curve.png", title=f"{name}: labels vs accuracy")


def flip(y: np.ndarray, X: np.ndarray, share: float, similar: bool, seed: int) -> np.ndarray:
    """A copy of ``y`` with ``share`` of the rows relabelled: at random, or to the class whose
    mean is most similar to the row's own class mean."""
    from embedlab.core.vectors import class_means

    rng = np.random.default_rng(seed)
    classes, idx = np.unique(y, return_inverse=True)
    rows = rng.choice(len(y), size=int(share * len(y)), replace=False)
    out = y.copy()
    if similar:
        M = unit_rows(class_means(X, idx, len(classes)))
        S = M @ M.T
        np.fill_diagonal(S, -np.inf)
        out[rows] = classes[np.argmax(S, axis=1)[idx[rows]]]
    else:
        shift = rng.integers(1, len(classes), size=len(rows))
        out[rows] = classes[(idx[rows] + shift) % len(classes)]
    return out


def precision_at_recall(order: np.ndarray, truth: np.ndarray, recall: float) -> float:
    """Precision of the shortest prefix of the ranking ``order`` reaching ``recall``."""
    hits = np.cumsum(truth[order])
    need = int(np.ceil(recall * truth.sum()))
    if need == 0:
        return float("nan")
    reach = np.flatnonzero(hits >= need)
    if not len(reach):
        return float(hits[-1] / len(order))
    return float(need / (reach[0] + 1))


def run_issues(work: Path, seeds: int, first: int = 0) -> None:
    from cleanlab.classification import CleanLearning
    from sklearn.linear_model import LogisticRegression

    from embedlab.analysis.diagnose import label_errors
    from embedlab.labeling.label_issues import label_issues

    X, y, _, _, _ = clinc(work)
    rows_of: dict[str, list] = {"random": [], "similar": []}
    for seed in range(first, first + seeds):  # both kinds per seed: a cut-short run still has both
        for similar in (False, True):
            kind = "similar" if similar else "random"
            rows = rows_of[kind]
            yn = flip(y, X, 0.05, similar, seed)
            truth = yn != y
            t0 = time.perf_counter()
            knn = label_errors(X, yn, sample=None, seed=seed)
            t_knn = time.perf_counter() - t0
            flagged = np.array([r["row"] for r in knn["rows"]], dtype=np.int64)
            knn_recall = float(truth[flagged].sum() / truth.sum())
            knn_precision = float(truth[flagged].mean()) if len(flagged) else 0.0
            t0 = time.perf_counter()
            ours = label_issues(X, yn, seed=seed)
            t_ours = time.perf_counter() - t0
            ranked = ours.ranking
            p_ours = precision_at_recall(ranked, truth, knn_recall)
            flagged_ours = ours.rows
            t0 = time.perf_counter()
            cl = CleanLearning(LogisticRegression(), seed=seed).find_label_issues(
                unit_rows(X), np.searchsorted(np.unique(yn), yn)
            )
            t_cl = time.perf_counter() - t0
            cl_rank = np.argsort(cl["label_quality"].to_numpy(), kind="stable")
            p_cl = precision_at_recall(cl_rank, truth, knn_recall)
            cl_flag = cl["is_label_issue"].to_numpy()
            rows.append(
                dict(
                    seed=seed,
                    knn_recall=knn_recall,
                    knn_precision=knn_precision,
                    ours_precision_at_knn_recall=p_ours,
                    cleanlab_default_precision_at_knn_recall=p_cl,
                    ours_flagged=len(flagged_ours),
                    ours_recall=float(truth[flagged_ours].sum() / truth.sum()),
                    ours_precision=float(truth[flagged_ours].mean()) if len(flagged_ours) else 0,
                    cleanlab_flagged=int(cl_flag.sum()),
                    cleanlab_recall=float(truth[cl_flag].sum() / truth.sum()),
                    cleanlab_precision=float(truth[cl_flag].mean()) if cl_flag.any() else 0,
                    seconds_knn=round(t_knn, 1),
                    seconds_ours=round(t_ours, 1),
                    seconds_cleanlab=round(t_cl, 1),
                )
            )
            emit(f"issues_{kind}_seed", **rows[-1])
    for kind, rows in rows_of.items():
        mean = {k: round(float(np.mean([r[k] for r in rows])), 4) for k in rows[0] if k != "seed"}
        emit(f"issues_{kind}", seeds=[r["seed"] for r in rows], **mean)


def run_stream(work: Path, rows: int) -> None:
    import resource

    from embedlab.data.embedding_set import EmbeddingSet
    from embedlab.data.sharded import ShardWriter
    from embedlab.labeling.suggest import suggest
    from embedlab.models.pipeline import Pipeline

    X, y, _, _, texts = clinc(work)
    path = work / f"pool-{rows}"
    if not path.exists():
        from embedlab.data.embedding_set import Provenance
        from embedlab.encoders.sentence_transformer import SentenceTransformerEncoder

        prov = Provenance(encoder=SentenceTransformerEncoder().spec, dim=X.shape[1])
        w = ShardWriter(path, {"input": f"clinc-noise-{rows}"})
        rng = np.random.default_rng(0)
        per = 100_000
        starts = range(0, rows, per)
        for i, s in enumerate(starts):
            m = min(per, rows - s)
            src = rng.integers(0, len(X), size=m)
            V = X[src] + rng.normal(0, 0.01, size=(m, X.shape[1])).astype(np.float32)
            w.write(i, EmbeddingSet(V, ids=[f"r{j}" for j in range(s, s + m)], provenance=prov), s)
        w.finish(len(starts))
    from embedlab.models.openset import OpenSetClassifier

    pick = np.random.default_rng(0).choice(len(texts), 3000, replace=False)
    pipe = Pipeline(classifier=OpenSetClassifier(head="linear"), adapt=False)
    pipe.fit([texts[i] for i in pick], list(y[pick]))
    for model in (None, pipe):
        t0 = time.perf_counter()
        s = suggest(path, 200, model=model, seed=0, progress=True)
        emit(
            "stream_suggest",
            rows=rows,
            model=model is not None,
            strategy=s.strategy,
            seconds=round(time.perf_counter() - t0, 1),
            peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            first=s.reasons[0],
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--part", choices=["tune", "curve", "issues", "stream"], required=True)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--first-seed", type=int, default=0, help="issues: the first seed")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.part == "tune":
        run_tune(args.work)
    elif args.part == "curve":
        run_curve(args.work, args.seeds)
    elif args.part == "issues":
        run_issues(args.work, args.seeds, args.first_seed)
    else:
        run_stream(args.work, args.rows)
    f = args.work / "results.json"
    old = json.loads(f.read_text()) if f.exists() else {}
    old.update(RESULTS)
    f.write_text(json.dumps(old, indent=1))


if __name__ == "__main__":
    main()
