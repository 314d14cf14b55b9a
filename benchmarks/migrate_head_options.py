"""Ways to move a linear head through a map, timed and scored on CLINC150 (issue 29):
refit on the mapped rows (what ``migrate`` does), the head in closed form (least squares
from the mapped rows to the old head's logits), and L-BFGS started from that closed form.

Usage: .venv/bin/python benchmarks/migrate_head_options.py --work DIR [--calib 2000]

DIR is the --work folder of ``benchmarks/align_migrate.py``: the CLINC150 vectors it cached
(old-{train,val,test}.npy and <encoder>-{val,test}.npy). In-scope rows only; the head is
``LogisticRegression(C=10)`` on unit rows, as the default model's linear head. The map is
``fit_alignment(method="auto")`` on a seeded sample of --calib val texts; accuracy on test.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from embedlab.align import fit_alignment
from embedlab.core.vectors import unit_rows
from embedlab.data.datasets import load_clinc150


def lr(max_iter: int = 300, warm: bool = False) -> LogisticRegression:
    return LogisticRegression(C=10.0, max_iter=max_iter, tol=1e-4, warm_start=warm)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--calib", type=int, default=2000)
    ap.add_argument("--encoders", nargs="+", default=["layer-3-cut", "static-student"])
    args = ap.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)
    y = np.asarray(load_clinc150("train", "oos_train").labels, dtype=object).astype(str)
    yt = np.asarray(load_clinc150("test", "oos_test").labels, dtype=object).astype(str)
    A, V = np.load(args.work / "old-train.npy"), np.load(args.work / "old-val.npy")
    m, mt = y != "oos", yt != "oos"
    classes, yi = np.unique(y[m], return_inverse=True)
    yti = np.searchsorted(classes, yt[mt])
    X = unit_rows(A[m])
    old = lr().fit(X, yi)
    rows = np.sort(np.random.default_rng(0).permutation(len(V))[: args.calib])
    for name in args.encoders:
        W, T = np.load(args.work / f"{name}-val.npy"), np.load(args.work / f"{name}-test.npy")
        al = fit_alignment(V[rows], W[rows], method="auto")
        Z, Tz = unit_rows(al.forward(A[m])), unit_rows(T[mt])
        out: dict = {"encoder": name, "map": al.method}
        t0 = time.perf_counter()
        cold = lr().fit(Z, yi)
        out["refit"] = {
            "s": round(time.perf_counter() - t0, 1),
            "iterations": int(cold.n_iter_[0]),
            "accuracy": round(float((cold.predict(Tz) == yti).mean()), 4),
        }
        t0 = time.perf_counter()
        logits = X @ old.coef_.T + old.intercept_
        Z1 = np.hstack([Z, np.ones((len(Z), 1), np.float32)]).astype(np.float64)
        G = Z1.T @ Z1
        sol = np.linalg.solve(G + 1e-3 * np.trace(G) / len(G) * np.eye(len(G)), Z1.T @ logits)
        Wc, bc = sol[:-1].T, sol[-1] - sol[-1].mean()
        out["closed form"] = {
            "s": round(time.perf_counter() - t0, 2),
            "accuracy": round(float(((Tz @ Wc.T + bc).argmax(1) == yti).mean()), 4),
        }
        for cap in (300, 30):
            t0 = time.perf_counter()
            w = lr(cap, warm=True)
            w.coef_, w.intercept_ = Wc.copy(), bc.copy()
            w.fit(Z, yi)
            out[f"warm start, max {cap} iterations"] = {
                "s": round(time.perf_counter() - t0, 1),
                "iterations": int(w.n_iter_[0]),
                "accuracy": round(float((w.predict(Tz) == yti).mean()), 4),
            }
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
