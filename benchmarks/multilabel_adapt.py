"""Multi-label encoder adaptation (issue 27, item 2): `fit --multi-label` frozen against
`fit --multi-label --adapt`, beside one-vs-rest LogisticRegression at 0.5 on frozen vectors.

Usage (from benchmarks/):
  ../.venv/bin/python multilabel_adapt.py mix --half tune|report [--rows 300 1000 0]
  ../.venv/bin/python multilabel_adapt.py goemotions --half tune|report [--rows 1000 0]

Data as in benchmarks/multilabel_small.py: ``mix`` composes multi-intent requests from
CLINC150's tune or report intents (rows 0 = every train row of those intents, composed
once each); ``goemotions`` subsamples the train split (rows 0 = all of it; ``tune`` scores
on 3,000 train rows kept out of every subsample, ``report`` on dev). Labels with fewer
than 2 training rows are dropped from both sides. Per setting and seed: micro- / macro-F1
of LR at 0.5, of the frozen pipeline and of the adapted one (its held-out curve, the
checkpoint kept, fit seconds), and AutoIntent's classic-light preset on the packaged
MiniLM when its environment is there (benchmarks/autointent_run.py).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
from autointent_peer import available, run_autointent
from fit_compare import domain_intents
from multilabel_small import compose
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier

from embedlab.core.vectors import unit_rows
from embedlab.data.datasets import load_clinc150, load_goemotions
from embedlab.encoders import SentenceTransformerEncoder
from embedlab.models.multilabel import (
    MultiLabelClassifier,
    evaluate_multilabel,
    label_indicator,
    parse_label_sets,
)
from embedlab.models.pipeline import Pipeline


def data(args: argparse.Namespace, n: int, seed: int) -> tuple:
    """(train texts, train sets, test texts, test sets)."""
    if args.data == "mix":
        intents = sorted(domain_intents(args.half))
        te = compose("test", intents, 2000, np.random.default_rng(0))
        if n == 0:
            y = np.asarray(load_clinc150("train").labels, dtype=object)
            n = int(np.isin(y, intents).sum())
        return (*compose("train", intents, n, np.random.default_rng(seed + 10)), *te)
    texts, cells = load_goemotions("train")
    sets = parse_label_sets(cells)
    pool = np.random.default_rng(123).permutation(len(texts))
    rows = pool[3000:] if n == 0 else pool[3000 + seed * n : 3000 + (seed + 1) * n]
    if args.half == "tune":
        te = ([texts[i] for i in pool[:3000]], [sets[i] for i in pool[:3000]])
    else:
        dv_texts, dv_cells = load_goemotions("dev")
        te = (dv_texts, parse_label_sets(dv_cells))
    return [texts[i] for i in rows], [sets[i] for i in rows], *te


def f1(Y: np.ndarray, P: np.ndarray) -> list[float]:
    m = evaluate_multilabel(Y, P, np.arange(Y.shape[1]).astype(str))
    return [round(m["micro_f1"], 4), round(m["macro_f1"], 4)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", choices=("mix", "goemotions"))
    ap.add_argument("--half", default="report", choices=("tune", "report"))
    ap.add_argument("--rows", type=int, nargs="+", default=[300, 1000, 0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=["lr", "frozen", "adapted", "autointent"])
    args = ap.parse_args()
    enc = SentenceTransformerEncoder()
    for n in args.rows:
        for seed in [0] if n == 0 else args.seeds:
            texts, sets, te_texts, te_sets = data(args, n, seed)
            counts: dict[str, int] = {}
            for row in sets:
                for lab in row:
                    counts[lab] = counts.get(lab, 0) + 1
            classes = np.asarray(sorted(k for k, v in counts.items() if v >= 2), dtype=object)
            keep = set(classes.tolist())
            sets = [tuple(lab for lab in row if lab in keep) for row in sets]
            te_sets = [tuple(lab for lab in row if lab in keep) for row in te_sets]
            Ye = label_indicator(te_sets, classes)
            res: dict = {"data": args.data, "half": args.half, "rows": len(texts), "seed": seed}
            res["labels"] = len(classes)
            if "lr" in args.methods:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    lr = OneVsRestClassifier(LogisticRegression(max_iter=1000))
                    lr.fit(unit_rows(enc.encode(texts)), label_indicator(sets, classes))
                    res["lr_0.5"] = f1(Ye, lr.predict_proba(unit_rows(enc.encode(te_texts))) >= 0.5)
            if "autointent" in args.methods and available():
                try:
                    got = run_autointent(texts, [list(s) for s in sets], te_texts, seed)
                except RuntimeError as exc:  # e.g. a hold-out split that misses a label
                    res["autointent"] = f"refused: {exc}"
                else:
                    P = label_indicator([tuple(p or ()) for p in got["predictions"]], classes)
                    res["autointent"], res["autointent_fit_s"] = f1(Ye, P), got["fit_seconds"]
            for method in ("frozen", "adapted"):
                if method not in args.methods:
                    continue
                t0 = time.perf_counter()
                pipe = Pipeline(classifier=MultiLabelClassifier(), adapt=method == "adapted")
                pipe.fit(texts, sets, progress=False)
                fit_s = round(time.perf_counter() - t0, 1)
                got = pipe.predict(te_texts)
                P = label_indicator([tuple(lab for lab in s if lab in keep) for s in got], classes)
                res[method] = f1(Ye, P)
                res[f"{method}_fit_s"] = fit_s
                a = pipe.info.get("adapted")
                if a:
                    res["kept"] = a["kept"]
                    res["curve"] = [p["accuracy"] for p in a["validation_curve"]]
            print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
