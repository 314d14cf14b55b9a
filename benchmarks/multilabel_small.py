"""Multi-label at a few hundred rows (issue 27, item 1): embedlab's threshold strategies
against one-vs-rest LogisticRegression at 0.5, on frozen MiniLM vectors.

Usage (from benchmarks/):
  ../.venv/bin/python multilabel_small.py mix --domains tune|report [--rows 300 1000]
  ../.venv/bin/python multilabel_small.py goemotions --split tune|report [--rows 300 1000]

``mix``: multi-intent requests composed from CLINC150 as MixATIS / MixSNIPS do — 70 % of
rows join two utterances of different intents with " and ", the rest are one utterance —
from the chosen half's intents (``tune`` / ``report``, as benchmarks/fit_compare.py);
training rows from the train split, 2,000 test rows from the test split, seeded.
``goemotions``: training subsamples of the train split; ``tune`` scores them on 3,000
other train rows, ``report`` on dev (never used to choose anything). Labels with fewer than
2 training rows are dropped from both sides. Per setting and seed: micro- and macro-F1 of
LR at 0.5, and of ``MultiLabelClassifier`` with each strategy (head auto) and ``auto``
(what ``fit --multi-label`` does), with the strategy it chose.
"""

from __future__ import annotations

import argparse
import json
import warnings

import numpy as np
from fit_compare import domain_intents
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

STRATEGIES = ("per-label", "shrunk", "global", "auto")


def compose(split: str, intents: list[str], n: int, rng: np.random.Generator) -> tuple:
    """``n`` requests of one or two intents (70 % two) from ``split``'s rows."""
    t = load_clinc150(split)
    y = np.asarray(t.labels, dtype=object)
    idx = np.flatnonzero(np.isin(y, intents))
    first = rng.choice(idx, n)
    second = rng.choice(idx, n)
    two = rng.random(n) < 0.7
    texts, sets = [], []
    for a, b, pair in zip(first, second, two, strict=True):  # building the requests
        if pair and y[a] != y[b]:
            texts.append(f"{t.texts[a]} and {t.texts[b]}")
            sets.append((y[a], y[b]))
        else:
            texts.append(t.texts[a])
            sets.append((y[a],))
    return texts, sets


def score(Xt: np.ndarray, Yt: np.ndarray, Xe: np.ndarray, Ye: np.ndarray) -> dict:
    keep = Yt.sum(0) >= 2
    Yt, Ye = Yt[:, keep], Ye[:, keep]
    names = np.arange(int(keep.sum())).astype(str)
    out: dict = {"labels": int(keep.sum())}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lr = OneVsRestClassifier(LogisticRegression(max_iter=1000)).fit(unit_rows(Xt), Yt)
    m = evaluate_multilabel(Ye, lr.predict_proba(unit_rows(Xe)) >= 0.5, names)
    out["lr_0.5"] = [round(m["micro_f1"], 3), round(m["macro_f1"], 3)]
    for strategy in STRATEGIES:
        clf = MultiLabelClassifier(threshold_strategy=strategy).fit(Xt, Yt)
        m = evaluate_multilabel(Ye, clf.predict(Xe), names)
        out[strategy] = [round(m["micro_f1"], 3), round(m["macro_f1"], 3)]
        if strategy == "auto":
            out["chosen"] = clf.threshold_strategy_
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", choices=("mix", "goemotions"))
    ap.add_argument("--domains", default="report", choices=("tune", "report"))
    ap.add_argument("--split", default="report", choices=("tune", "report"))
    ap.add_argument("--rows", type=int, nargs="+", default=[300, 1000])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    enc = SentenceTransformerEncoder()
    if args.data == "mix":
        intents = sorted(domain_intents(args.domains))
        classes = np.asarray(intents, dtype=object)
        te_texts, te_sets = compose("test", intents, 2000, np.random.default_rng(0))
        Xe, Ye = enc.encode(te_texts), label_indicator(te_sets, classes)
    else:
        tr_texts, tr_cells = load_goemotions("train")
        sets = parse_label_sets(tr_cells)
        classes = np.asarray(sorted({lab for s in sets for lab in s}), dtype=object)
        pool = np.random.default_rng(123).permutation(len(tr_texts))
        if args.split == "tune":
            Xe = enc.encode([tr_texts[i] for i in pool[:3000]])
            Ye = label_indicator([sets[i] for i in pool[:3000]], classes)
        else:
            dv_texts, dv_cells = load_goemotions("dev")
            Xe, Ye = enc.encode(dv_texts), label_indicator(parse_label_sets(dv_cells), classes)
    for n in args.rows:
        for seed in args.seeds:
            if args.data == "mix":
                texts, tr_sets = compose("train", intents, n, np.random.default_rng(seed + 10))
                Xt, Yt = enc.encode(texts), label_indicator(tr_sets, classes)
            else:
                rows = pool[3000 + seed * n : 3000 + (seed + 1) * n]
                Xt = enc.encode([tr_texts[i] for i in rows])
                Yt = label_indicator([sets[i] for i in rows], classes)
            res = {"data": args.data, "half": args.domains if args.data == "mix" else args.split}
            res |= {"rows": n, "seed": seed, **score(Xt, Yt, Xe, Ye)}
            print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
