"""What `fit` should do with closed-set data (issue 27, item 5): training rows without any
out-of-scope example, fitted at the old default (reject 2 % of in-scope inputs) and at
the new one (``target_fpr="auto"``: no out-of-scope rows, nothing rejected).

Usage (from benchmarks/):
  ../.venv/bin/python closed_set.py [--data clinc clothing] [--settings full 10]
      [--seeds 0 1 2] [--adapt]

``clinc``: CLINC150's report intents (benchmarks/fit_compare.py's ``report`` half), train
rows only (no ``oos_train``), scored on those intents' test rows; the 1,000 ``oos_test``
rows show what a closed-set model gives up (the share the 2 % threshold would have
caught). ``clothing``: Women's E-Commerce Clothing Reviews, ``Department Name`` from
``Review Text`` (6 departments), seeded 3,000 training and 3,000 test rows (``full``) or
k per department. Frozen encoder unless ``--adapt`` (the default fit adapts when each
class has 5+ rows). Per setting and seed: accuracy (a rejected row is an error), the
in-scope share rejected, and for CLINC150 the out-of-scope recall.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pyarrow.parquet as pq
from clinc150 import k_shot
from fit_compare import domain_intents

from embedlab.data.datasets import clinc150_path, load_clinc150
from embedlab.models.openset import OpenSetClassifier
from embedlab.models.pipeline import Pipeline


def clinc(shots: int, seed: int) -> tuple:
    intents = domain_intents("report")
    tr, te = load_clinc150("train"), load_clinc150("test")
    keep = np.isin(np.asarray(tr.labels, dtype=object), sorted(intents))
    texts = np.asarray(tr.texts, dtype=object)[keep]
    labels = np.asarray(tr.labels, dtype=object)[keep]
    idx = k_shot(labels, shots, seed)
    t_keep = np.isin(np.asarray(te.labels, dtype=object), sorted(intents))
    test = (
        np.asarray(te.texts, dtype=object)[t_keep].tolist(),
        np.asarray(te.labels, dtype=object)[t_keep].tolist(),
    )
    return (texts[idx].tolist(), labels[idx].tolist()), test, load_clinc150("oos_test").texts


def clothing(shots: int, seed: int) -> tuple:
    path = clinc150_path().parent.parent / "clothing_reviews" / "reviews.parquet"
    t = pq.read_table(path, columns=["Review Text", "Department Name"]).to_pydict()
    text = np.asarray(t["Review Text"], dtype=object)
    dept = np.asarray(t["Department Name"], dtype=object)
    ok = np.flatnonzero([bool(x) and bool(d) for x, d in zip(text, dept, strict=True)])
    rng = np.random.default_rng(seed)
    order = rng.permutation(ok)
    test_rows, pool = order[:3000], order[3000:]
    train_rows = pool[:3000] if shots == 0 else pool[k_shot(dept[pool], shots, seed)]
    return (
        (text[train_rows].tolist(), dept[train_rows].tolist()),
        (text[test_rows].tolist(), dept[test_rows].tolist()),
        None,
    )


def run(train, test, oos, target_fpr, adapt: bool) -> dict:
    t0 = time.perf_counter()
    pipe = Pipeline(classifier=OpenSetClassifier(target_fpr=target_fpr), adapt=adapt)
    pipe.fit(*train, progress=False)
    fit_s = time.perf_counter() - t0
    m = pipe.evaluate(*test)
    out = {
        "target_fpr": target_fpr,
        "rate in force": pipe.classifier_.rate(),
        "accuracy": round(m["accuracy"], 4),
        "head_accuracy": round(m["head_accuracy"], 4),
        "in_scope_rejected": round(m["in_scope_rejected"], 4),
        "fit_s": round(fit_s, 1),
    }
    if oos is not None:
        out["oos_recall"] = round(float(pipe.predict_details(oos).out_of_scope.mean()), 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", default=["clinc", "clothing"])
    ap.add_argument("--settings", nargs="+", default=["full", "10"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--adapt", action="store_true", help="adapt=auto instead of frozen")
    args = ap.parse_args()
    for name in args.data:
        for setting in args.settings:
            shots = 0 if setting == "full" else int(setting)
            for seed in [0] if shots == 0 and name == "clinc" else args.seeds:
                train, test, oos = (clinc if name == "clinc" else clothing)(shots, seed)
                for target in (0.02, "auto"):
                    row = run(train, test, oos, target, "auto" if args.adapt else False)
                    row.update(data=name, setting=setting, seed=seed, rows=len(train[0]))
                    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
