"""Multi-label self-training (issue 25: ``fit --multi-label --unlabeled``): does a pool of
unlabelled texts help a multi-label model fitted on few labelled rows?

Usage:
  .venv/bin/python benchmarks/multilabel_self_training.py [--labelled 300 1000]
      [--pool 5000] [--seeds 0 1 2] [--head linear]

Data: ../shared/data/goemotions. Per seed, ``--labelled`` rows are drawn from ``train`` (the
labelled set; a label with fewer than two rows there is dropped from it and from the
scoring) and ``--pool`` other ``train`` rows with their labels dropped (the pool);
figures are on ``dev`` (5,426 rows, never used for fitting or calibration). Rows: the model
fitted on the labelled rows alone, then self-trained on the pool
(:func:`embedlab.models.self_training.self_train_multilabel`, default SelfTraining()). Vectors:
the packaged MiniLM, frozen, encoded once.
"""

from __future__ import annotations

import argparse

import numpy as np

from embedlab.data.datasets import load_goemotions
from embedlab.encoders import SentenceTransformerEncoder
from embedlab.models.multilabel import MultiLabelClassifier, evaluate_multilabel, label_indicator
from embedlab.models.self_training import self_train_multilabel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labelled", nargs="+", type=int, default=[300, 1000])
    ap.add_argument("--pool", type=int, default=5000)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--head", default="linear")
    args = ap.parse_args()
    tr_texts, tr_cells = load_goemotions("train")
    dv_texts, dv_cells = load_goemotions("dev")
    enc = SentenceTransformerEncoder()
    X_tr, X_dv = enc.encode(tr_texts), enc.encode(dv_texts)
    print("| labelled | seed | micro-F1 alone | + pool | macro-F1 alone | + pool |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in args.labelled:
        for seed in args.seeds:
            order = np.random.default_rng(seed).permutation(len(tr_texts))
            lab, pool = order[:n], order[n : n + args.pool]
            cells = [tr_cells[i].split(",") for i in lab]
            names, counts = np.unique([x for c in cells for x in c], return_counts=True)
            rare = set(names[counts < 2])  # a label needs two rows for its threshold
            cells = [",".join(x for x in c if x not in rare) or "oos" for c in cells]
            clf = MultiLabelClassifier(head=args.head).fit(X_tr[lab], cells)
            known = set(map(str, clf.classes_))
            sets = [tuple(x for x in c.split(",") if x in known) for c in dv_cells]
            Y = label_indicator(sets, clf.classes_)
            alone = evaluate_multilabel(Y, clf.predict(X_dv), clf.classes_)
            st, _ = self_train_multilabel(clf, X_tr[pool])
            both = evaluate_multilabel(Y, st.predict(X_dv), clf.classes_)
            print(
                f"| {n} | {seed} | {alone['micro_f1']:.3f} | {both['micro_f1']:.3f} | "
                f"{alone['macro_f1']:.3f} | {both['macro_f1']:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
