"""Multi-label classification on GoEmotions (issue 14): per-label calibrated thresholds vs
scikit-learn's one-vs-rest logistic regression with one global threshold, same vectors.

Usage:
  .venv/bin/python benchmarks/goemotions.py [--heads auto linear mlp prototype knn]
      [--target-precision 0.5] [--jsonl FILE]

Data: ../shared/data/goemotions (28 labels, Reddit comments, 16 % of training rows carry
two or more). Everything is fitted on ``train``; thresholds are calibrated on out-of-fold
scores of ``train`` (never on ``dev``); all figures are on ``dev`` (5,426 rows), the split
the issue names. Vectors: the packaged MiniLM, frozen, encoded once for every method.

Rows:
- ``sklearn OvR LR, 0.5``: ``OneVsRestClassifier(LogisticRegression())`` on unit rows, a
  label predicted when its probability ≥ 0.5 (the anchor);
- ``sklearn OvR LR, 0.3``: the same with the global 0.3 the GoEmotions paper used;
- ``MultiLabelClassifier(head=...)``: embedlab's heads, one F1-maximising threshold per
  label; ``auto`` (the default, what ``embedlab fit --multi-label`` does) keeps linear or
  mlp by out-of-fold macro-F1 on train; ``auto`` again with ``--target-precision``.
Published reference (Demszky et al. 2020): fine-tuned BERT-base, test split, macro-F1 0.46.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier

from embedlab.core.vectors import unit_rows
from embedlab.data.datasets import load_goemotions
from embedlab.encoders import SentenceTransformerEncoder
from embedlab.models.multilabel import (
    MultiLabelClassifier,
    evaluate_multilabel,
    label_indicator,
    parse_label_sets,
)

KEYS = ("macro_f1", "micro_f1", "subset_accuracy", "hamming_loss", "label_cardinality_predicted")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--heads", nargs="+", default=["auto", "linear", "mlp", "prototype", "knn"])
    ap.add_argument("--target-precision", type=float, default=0.5)
    ap.add_argument("--jsonl")
    args = ap.parse_args()
    enc = SentenceTransformerEncoder()
    tr_texts, tr_cells = load_goemotions("train")
    dv_texts, dv_cells = load_goemotions("dev")
    t = time.perf_counter()
    Xtr, Xdv = enc.encode(tr_texts), enc.encode(dv_texts)
    print(f"encoded {len(Xtr) + len(Xdv)} texts in {time.perf_counter() - t:.0f} s")
    tr_sets, dv_sets = parse_label_sets(tr_cells), parse_label_sets(dv_cells)
    classes = np.asarray(sorted({lab for s in tr_sets for lab in s}), dtype=object)
    Ytr, Ydv = label_indicator(tr_sets, classes), label_indicator(dv_sets, classes)
    rows = []

    def record(name: str, P: np.ndarray, secs: float, **extra) -> None:
        m = evaluate_multilabel(Ydv, P, classes)
        prec = np.mean([v["precision"] for v in m["per_label"].values()])
        row = {"method": name, **{k: m[k] for k in KEYS}, "macro_precision": float(prec)}
        row |= {"fit_seconds": round(secs, 1), **extra}
        rows.append(row)
        print(json.dumps(row), flush=True)

    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ovr = OneVsRestClassifier(LogisticRegression(max_iter=1000)).fit(unit_rows(Xtr), Ytr)
    secs = time.perf_counter() - t
    proba = ovr.predict_proba(unit_rows(Xdv))
    record("sklearn OvR LR, global 0.5", proba >= 0.5, secs)
    record("sklearn OvR LR, global 0.3", proba >= 0.3, secs)
    runs = [(head, None) for head in args.heads] + [("auto", args.target_precision)]
    for head, tp in runs:
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            clf = MultiLabelClassifier(head=head, target_precision=tp).fit(Xtr, tr_sets)
        secs = time.perf_counter() - t
        what = clf.threshold_strategy_ if tp is None else f"per-label precision >= {tp:g}"
        record(
            f"MultiLabelClassifier({head}), thresholds {what}",
            clf.predict(Xdv),
            secs,
            held_out_macro_f1=clf.oof_metrics_["macro_f1"],
            labels_never_predicted=int((~clf.threshold_reached_).sum()),
            head_kept=clf.head_,
            selection=clf.selection_,
        )
    base = rows[0]["macro_f1"]
    print(
        "\nmethod | macro-F1 | vs 0.5 baseline | micro-F1 | subset acc | Hamming | "
        f"cardinality (true {float(Ydv.sum(1).mean()):.3f}) | macro precision | fit s"
    )
    for r in rows:
        print(
            f"{r['method']} | {r['macro_f1']:.4f} | {100 * (r['macro_f1'] - base):+.2f} pt | "
            f"{r['micro_f1']:.4f} | {r['subset_accuracy']:.2%} | {r['hamming_loss']:.4f} | "
            f"{r['label_cardinality_predicted']:.3f} | {r['macro_precision']:.3f} | "
            f"{r['fit_seconds']}"
        )
    if args.jsonl:
        with open(args.jsonl, "a") as fh:
            for r in rows:
                fh.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
