"""CLINC150 benchmark: every head × detector on frozen MiniLM vectors, the baselines, and the
default ``embedlab fit`` pipeline — full data and 5- / 10-shot (3 seeds).

Usage:
  .venv/bin/python benchmarks/clinc150.py frozen            # heads × detectors + baselines
  .venv/bin/python benchmarks/clinc150.py default [--shots 0 10 5] [--seeds 0 1 2]

``frozen``: one encoding of every split (cached), then on the same vectors: scikit-learn
LogisticRegression (baseline), nearest centroid + max cosine (baseline), and each embedlab
head (in-scope test accuracy without rejection, fit / predict seconds) and detector
(OOS AUROC on test vs oos_test, FPR at 95 % TPR, fit seconds).

``default``: the Pipeline that ``embedlab fit`` builds with no flags (adapt="auto",
head/detector="auto"), trained on train + oos_train (or k shots per intent + oos_train),
evaluated on test + oos_test with the issue's metrics (accuracy counts a rejection as an
error). Reads ../shared/data/clinc150/data_full.json.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from sklearn.linear_model import LogisticRegression

from embedlab.core.metrics import auroc, fpr_at_tpr
from embedlab.data.datasets import load_clinc150
from embedlab.detect import (
    EnergyDetector,
    KNNDistanceDetector,
    MahalanobisDetector,
    MaxCosineDetector,
    MaxProbDetector,
)
from embedlab.encoders import SentenceTransformerEncoder
from embedlab.heads import (
    GaussianClassifier,
    KNNClassifier,
    LinearClassifier,
    PrototypeClassifier,
)
from embedlab.models.pipeline import Pipeline


def k_shot(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Indices of k random rows per label (all rows when k == 0)."""
    if k == 0:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    return np.concatenate(
        [rng.choice(np.flatnonzero(labels == c), k, replace=False) for c in np.unique(labels)]
    )


def frozen(args: argparse.Namespace) -> None:
    enc = SentenceTransformerEncoder()
    tables = {s: load_clinc150(s) for s in ("train", "test", "oos_test")}
    X = {s: enc.encode(t.texts) for s, t in tables.items()}
    y = {s: np.asarray(t.labels, dtype=object) for s, t in tables.items()}
    heads = {
        "prototype": PrototypeClassifier(),
        "prototype×3": PrototypeClassifier(n_prototypes=3),
        "knn": KNNClassifier(),
        "knn+linear": KNNClassifier(head=LinearClassifier()),
        "linear": LinearClassifier(),
        "gaussian (LDA)": GaussianClassifier(),
        "gaussian (diag QDA)": GaussianClassifier(covariance="diagonal"),
    }
    detectors = {
        "max-cosine": MaxCosineDetector(),
        "knn": KNNDistanceDetector(),
        "mahalanobis": MahalanobisDetector(),
        "relative-mahalanobis": MahalanobisDetector(relative=True),
        "mahalanobis low-var 128": MahalanobisDetector(low_variance_components=128),
        "max-prob (linear)": MaxProbDetector(),
        "energy (linear)": EnergyDetector(),
    }
    settings = [(0, 0)] + [(k, s) for k in (10, 5) for s in args.seeds]
    rows = []
    for shots, seed in settings:
        idx = k_shot(y["train"], shots, seed)
        Xtr, ytr = X["train"][idx], y["train"][idx]
        tag = "full" if shots == 0 else f"{shots}-shot s{seed}"
        # Baselines, same vectors, same process.
        t0 = time.perf_counter()
        lr = LogisticRegression(max_iter=1000).fit(Xtr, ytr)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        acc = float((lr.predict(X["test"]) == y["test"]).mean())
        rows.append(
            (
                tag,
                "baseline: sklearn LogisticRegression",
                acc,
                None,
                fit_s,
                time.perf_counter() - t0,
            )
        )
        classes = np.unique(ytr)
        cent = np.stack([Xtr[ytr == c].mean(0) for c in classes])
        cent /= np.linalg.norm(cent, axis=1, keepdims=True)
        t0 = time.perf_counter()
        s_in = X["test"] @ cent.T
        s_out = X["oos_test"] @ cent.T
        acc = float((classes[s_in.argmax(1)] == y["test"]).mean())
        rows.append(
            (
                tag,
                "baseline: nearest centroid + max-cosine",
                acc,
                auroc(-s_in.max(1), -s_out.max(1)),
                0.0,
                time.perf_counter() - t0,
            )
        )
        for name, head in heads.items():
            t0 = time.perf_counter()
            head.fit(Xtr, ytr)
            fit_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            acc = float((head.predict(X["test"]) == y["test"]).mean())
            rows.append((tag, f"head: {name}", acc, None, fit_s, time.perf_counter() - t0))
        for name, det in detectors.items():
            t0 = time.perf_counter()
            det.fit(Xtr, ytr)
            fit_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            a, b = det.decision_function(X["test"]), det.decision_function(X["oos_test"])
            pred_s = time.perf_counter() - t0
            rows.append(
                (tag, f"detector: {name}", None, (auroc(a, b), fpr_at_tpr(a, b)), fit_s, pred_s)
            )
        print(f"done {tag}", flush=True)
    _print_frozen(rows)


def _print_frozen(rows) -> None:
    print("\n| setting | method | in-scope acc | OOS AUROC | FPR@95TPR | fit s | predict s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    groups: dict[tuple[str, str], list] = {}
    for tag, name, acc, det, fit_s, pred_s in rows:
        key = (tag.split(" s")[0], name)
        groups.setdefault(key, []).append((acc, det, fit_s, pred_s))
    for (tag, name), vals in groups.items():

        def mean(xs):
            xs = [x for x in xs if x is not None]
            return None if not xs else float(np.mean(xs))

        acc = mean([v[0] for v in vals])
        au = mean([v[1][0] if isinstance(v[1], tuple) else v[1] for v in vals])
        fpr = mean([v[1][1] if isinstance(v[1], tuple) else None for v in vals])
        fmt = lambda x, p=True: "" if x is None else (f"{100 * x:.2f}%" if p else f"{x:.2f}")  # noqa: E731
        seeds = f" (mean of {len(vals)} seeds)" if len(vals) > 1 else ""
        print(
            f"| {tag}{seeds} | {name} | {fmt(acc)} | {fmt(au)} | {fmt(fpr)} | "
            f"{fmt(mean([v[2] for v in vals]), False)} | {fmt(mean([v[3] for v in vals]), False)} |"
        )


def default(args: argparse.Namespace) -> None:
    train, oos_train = load_clinc150("train"), load_clinc150("oos_train")
    test = load_clinc150("test", "oos_test")
    labels = np.asarray(train.labels, dtype=object)
    results = []
    for shots in args.shots:
        for seed in [0] if shots == 0 else args.seeds:
            idx = k_shot(labels, shots, seed)
            texts = [train.texts[i] for i in idx] + oos_train.texts
            ys = labels[idx].tolist() + oos_train.labels
            t0 = time.perf_counter()
            pipe = Pipeline().fit(texts, ys)
            fit_s = time.perf_counter() - t0
            m = pipe.evaluate(test.texts, test.labels)
            row = {
                "setting": "full" if shots == 0 else f"{shots}-shot",
                "seed": seed,
                "fit_seconds": round(fit_s, 1),
                "head": pipe.info["head"],
                "detector": pipe.info["detector"],
                "adapted": (pipe.info["adapted"] or {}).get("seconds"),
                **m,
            }
            results.append(row)
            print(json.dumps(row), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("frozen")
    f.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    d = sub.add_parser("default")
    d.add_argument("--shots", type=int, nargs="+", default=[0, 10, 5])
    d.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    {"frozen": frozen, "default": default}[args.cmd](args)


if __name__ == "__main__":
    main()
