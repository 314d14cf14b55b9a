"""Novel-class discovery on CLINC150 (issue 13): a model that never saw 30 intents; does
`discover` find them among the test rows it rejects?

Usage:
  .venv/bin/python benchmarks/discovery.py [--domains report] [--hidden 30] [--seeds 0 1 2]
      [--with-oos] [--jsonl FILE]

Per seed: 30 intents are drawn from the chosen domains' intents and hidden (their train rows
removed); ``OpenSetClassifier()`` (head and detector chosen by cross-validation, as
`embedlab fit --no-adapt`) is fitted on the other intents' train rows + ``oos_train``. It
predicts the test rows (+ ``oos_test`` with ``--with-oos``); the rejected rows go to
:func:`embedlab.analysis.discover.discover_classes` with the model's kept rows as reference, as
`embedlab discover` does. Reported on the rejected rows of hidden intents: clustering
accuracy (Hungarian matching, noise counted as one more cluster), NMI, ARI; the number of
clusters found k̂ beside the 30 hidden intents (and beside those with at least
``min_size`` rejected rows, the most any method could find); the share of hidden-intent
rows rejected at all; and, on the same rows, k-means given the true k (30).

Domains as in benchmarks/fit_compare.py: the clustering recipe was chosen on ``tune``;
``report`` is the held-out half. Reads ../shared/data/clinc150/.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from fit_compare import domain_intents
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from embedlab.analysis.discover import discover_classes
from embedlab.core.vectors import unit_rows
from embedlab.data.datasets import load_clinc150
from embedlab.encoders import SentenceTransformerEncoder
from embedlab.models.openset import OpenSetClassifier


def hungarian_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    _, yi = np.unique(y, return_inverse=True)
    _, pi = np.unique(pred, return_inverse=True)
    table = np.zeros((pi.max() + 1, yi.max() + 1))
    np.add.at(table, (pi, yi), 1)
    r, c = linear_sum_assignment(-table)
    return float(table[r, c].sum() / len(y))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--domains", default="report", choices=("all", "tune", "report"))
    ap.add_argument("--hidden", type=int, default=30)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--min-size", type=int, default=5)
    ap.add_argument("--with-oos", action="store_true")
    ap.add_argument(
        "--level",
        type=float,
        default=None,
        help="select rows by conformal p-value <= level (issue 26); default: the rejected rows",
    )
    ap.add_argument("--jsonl")
    args = ap.parse_args()
    enc = SentenceTransformerEncoder()
    tr, te, oos_tr = (load_clinc150(s) for s in ("train", "test", "oos_train"))
    Xtr, ytr = enc.encode(tr.texts), np.asarray(tr.labels, dtype=object)
    Xte, yte, te_texts = enc.encode(te.texts), np.asarray(te.labels, dtype=object), te.texts
    Xoos = enc.encode(oos_tr.texts)
    if args.with_oos:
        oos_te = load_clinc150("oos_test")
        Xte = np.vstack([Xte, enc.encode(oos_te.texts)])
        yte = np.r_[yte, np.full(len(oos_te), "oos", dtype=object)]
        te_texts = [*te_texts, *oos_te.texts]
    pool = sorted(domain_intents(args.domains) or set(ytr))
    rows = []
    for seed in args.seeds:
        hidden = np.random.default_rng(seed).choice(pool, args.hidden, replace=False)
        known = ~np.isin(ytr, hidden)
        clf = OpenSetClassifier().fit(
            np.vstack([Xtr[known], Xoos]),
            np.r_[ytr[known], np.full(len(Xoos), "oos", dtype=object)],
        )
        d = clf.predict_details(Xte, top_k=1)
        rejected = d.out_of_scope if args.level is None else d.p_value <= args.level
        Xr, yr = Xte[rejected], yte[rejected]
        texts = [t for t, r in zip(te_texts, rejected, strict=True) if r]
        t = time.perf_counter()
        ref_X, ref_y, _, _ = clf.kept_rows()
        found = discover_classes(
            Xr, texts, reference=(ref_X, ref_y), min_size=args.min_size, seed=seed
        )
        secs = time.perf_counter() - t
        hid = np.isin(yr, hidden)
        lab = found.labels[hid]
        new_cluster = (found.labels >= 0) & (found.known_classes() == None)  # noqa: E711
        known_rows = ~hid & (yr != "oos")
        findable = sum(int((yr[hid] == c).sum() >= args.min_size) for c in hidden)
        km = KMeans(args.hidden, n_init=3, random_state=seed).fit_predict(unit_rows(Xr[hid]))
        row = {
            "seed": seed,
            "model": f"{clf.head_name_} / {clf.detector_name_}",
            "rejected_rows": int(rejected.sum()),
            "hidden_rejected_share": float(rejected[np.isin(yte, hidden)].mean()),
            "known_rejected_share": float(rejected[~np.isin(yte, hidden) & (yte != "oos")].mean()),
            "known_clusters": len(found.clusters) - found.k,
            "known_rows_in_new_clusters": float(
                known_rows[new_cluster].sum() / max(1, new_cluster.sum())
            ),
            "known_rows_kept_out": float(1 - new_cluster[known_rows].mean())
            if known_rows.any()
            else None,
            "hidden_rejected_rows": int(hid.sum()),
            "k_hat": found.k,
            "findable_intents": findable,
            "abs_k_error": abs(found.k - args.hidden),
            "accuracy": hungarian_accuracy(yr[hid], lab),
            "nmi": float(normalized_mutual_info_score(yr[hid], lab)),
            "ari": float(adjusted_rand_score(yr[hid], lab)),
            "noise_share": float((lab < 0).mean()),
            "kmeans_true_k_accuracy": hungarian_accuracy(yr[hid], km),
            "kmeans_true_k_nmi": float(normalized_mutual_info_score(yr[hid], km)),
            "kmeans_true_k_ari": float(adjusted_rand_score(yr[hid], km)),
            "cut": found.cut,
            "calibration": found.calibration["rounds"],
            "seconds": round(secs, 2),
        }
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "calibration"}))
        if args.jsonl:
            with open(args.jsonl, "a") as fh:
                fh.write(json.dumps({"domains": args.domains, **row}) + "\n")
    keys = ("k_hat", "abs_k_error", "accuracy", "nmi", "ari", "hidden_rejected_share")
    keys += ("known_rejected_share", "known_rows_in_new_clusters", "known_clusters")
    keys += ("kmeans_true_k_nmi", "kmeans_true_k_ari")
    print(f"\nmean of {len(rows)} seeds, {args.domains} domains:")
    for k in keys:
        print(f"  {k}: {np.mean([r[k] for r in rows]):.3f}")


if __name__ == "__main__":
    main()
