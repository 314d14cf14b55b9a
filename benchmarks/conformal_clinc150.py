"""Guarantees on CLINC150 (issue 26): split-conformal out-of-scope rates at any n, Benjamini-
Hochberg FDR over batches, APS prediction sets and the drift martingale.

Usage:
  .venv/bin/python benchmarks/conformal_clinc150.py [fpr] [fdr] [sets] [drift]
      [--domains report] [--reps 500] [--detector max-cosine]

The model is fitted once (frozen MiniLM vectors; prototype head + the chosen detector, or a
linear head for ``sets``) on the train rows of the chosen domains' intents (``report``: the
held-out half of CLINC150's domains, see benchmarks/fit_compare.py — nothing here was tuned,
the thresholds are theory's). Its scores of the rows it never saw — the intents' val + test
rows (in scope) and oos_val + oos_test — are then re-split ``--reps`` times:

``fpr``: n ∈ {50, 200, 1000} in-scope calibration rows, α ∈ {1, 2, 5, 10} %; the threshold
is the ⌈(n+1)(1−α)⌉-th smallest calibration score; realised in-scope FPR on the other
in-scope rows, beside the Beta(l, n+1−l) law theory gives for it (l = ⌊(n+1)α⌋: mean and 5 /
95 % quantiles; the realised ones add the test set's own sampling noise), and the rule
before this issue (⌊αn⌋ calibration rows allowed above: the empirical quantile). OOS recall
of both rules at n = 1000.

``fdr``: batches of 200 rows, 20 % out of scope, calibration n = 1000 disjoint from the
batch; BH at q = 0.1 over each batch's conformal p-values; mean false discovery proportion
(in-scope rows among the rejected) and power (out-of-scope rows rejected).

``sets``: linear head; n = 1000 labelled calibration rows; randomised APS at 90 % and 99 %;
realised coverage on the other rows, mean set size and share of empty sets, beside the
head's top-3 (coverage, size 3).

``drift``: calibration n = 1000; 500 exchangeable streams of 2,000 in-scope rows (the pool's
other rows in random order: share that ever alarm at 100) and 500 streams of 300 in-scope
rows followed by rows 30 % out of scope (requests of 10 rows; rows after the change until
the alarm). Reads ../shared/data/clinc150/.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from fit_compare import domain_intents
from scipy import stats

from embedlab.core.conformal import aps_scores, aps_sets, benjamini_hochberg, row_uniforms
from embedlab.data.datasets import load_clinc150
from embedlab.detect.drift import DriftMonitor
from embedlab.encoders import SentenceTransformerEncoder
from embedlab.models.openset import OpenSetClassifier

NS = (50, 200, 1000)
ALPHAS = (0.01, 0.02, 0.05, 0.1)


def data(domains: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    keep = domain_intents(domains)
    enc = SentenceTransformerEncoder()
    out = {}
    for name, splits in (("train", ("train",)), ("pool", ("val", "test"))):
        t = load_clinc150(*splits)
        y = np.asarray(t.labels, dtype=object)
        rows = np.ones(len(y), bool) if keep is None else np.isin(y, list(keep))
        out[name] = (enc.encode([x for x, r in zip(t.texts, rows, strict=True) if r]), y[rows])
    o = load_clinc150("oos_val", "oos_test")
    out["oos"] = (enc.encode(o.texts), np.asarray(o.labels, dtype=object))
    return out


def beta_law(n: int, alpha: float) -> tuple[float, float, float]:
    """Mean, 5 % and 95 % quantiles of the in-scope FPR conditional on the calibration draw."""
    l = int(np.floor((n + 1) * alpha + 1e-9))  # noqa: E741
    if l == 0:
        return 0.0, 0.0, 0.0
    law = stats.beta(l, n + 1 - l)
    return l / (n + 1), float(law.ppf(0.05)), float(law.ppf(0.95))


def fpr(s_in: np.ndarray, s_oos: np.ndarray, reps: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for n in NS:
        perms = np.argsort(rng.random((reps, len(s_in))), axis=1)
        cal = np.sort(s_in[perms[:, :n]], axis=1)
        test = s_in[perms[:, n:]]
        for a in ALPHAS:
            k = int(np.ceil((n + 1) * (1 - a) - 1e-9))
            t_conf = cal[:, k - 1] if k <= n else np.full(reps, np.inf)
            t_old = cal[:, n - 1 - int(np.floor(a * n))]
            r_conf = (test > t_conf[:, None]).mean(1)
            r_old = (test > t_old[:, None]).mean(1)
            mean, q5, q95 = beta_law(n, a)
            row = {
                "n": n,
                "alpha": a,
                "fpr_mean": float(r_conf.mean()),
                "fpr_se": float(r_conf.std(ddof=1) / np.sqrt(reps)),
                "fpr_q05": float(np.quantile(r_conf, 0.05)),
                "fpr_q95": float(np.quantile(r_conf, 0.95)),
                "theory_mean": mean,
                "theory_q05": q5,
                "theory_q95": q95,
                "old_rule_fpr_mean": float(r_old.mean()),
            }
            if n == 1000:
                row["oos_recall"] = float((s_oos[None, :] > t_conf[:, None]).mean())
                row["old_rule_oos_recall"] = float((s_oos[None, :] > t_old[:, None]).mean())
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def fdr(s_in: np.ndarray, s_oos: np.ndarray, reps: int, seed: int, q: float = 0.1) -> dict:
    rng = np.random.default_rng(seed)
    fdp, power = [], []
    for _ in range(reps):
        perm = rng.permutation(len(s_in))
        cal = np.sort(s_in[perm[:1000]])
        batch_in = s_in[perm[1000:1160]]
        batch_oos = s_oos[rng.choice(len(s_oos), 40, replace=False)]
        s = np.r_[batch_in, batch_oos]
        p = (len(cal) - np.searchsorted(cal, s, side="left") + 1.0) / (len(cal) + 1.0)
        rej = benjamini_hochberg(p, q)
        fdp.append(rej[:160].sum() / max(1, rej.sum()))
        power.append(rej[160:].mean())
    out = {"q": q, "batches": reps, "mean_fdp": float(np.mean(fdp)), "power": float(np.mean(power))}
    print(json.dumps(out), flush=True)
    return out


def sets(d: dict, reps: int, seed: int, levels: tuple[float, ...] = (0.9, 0.99)) -> list[dict]:
    X, y = d["train"]
    Xp, yp = d["pool"]
    clf = OpenSetClassifier(head="linear", detector="max-cosine").fit(X, y)
    head = clf.head_  # fitted on train only: the pool rows are new to it
    proba = head.predict_proba(Xp)
    yi = np.searchsorted(head.classes_, yp.astype(str))
    u = row_uniforms(Xp)
    e = aps_scores(proba, yi, u)
    top3 = np.argsort(-proba, axis=1)[:, :3]
    rows = []
    for level in levels:
        rng = np.random.default_rng(seed)
        cov, size, empty = [], [], []
        for _ in range(reps):
            perm = rng.permutation(len(yp))
            cal, test = perm[:1000], perm[1000:]
            k = int(np.ceil(1001 * level - 1e-9))
            qhat = np.sort(e[cal])[k - 1]
            order, n_in = aps_sets(proba[test], u[test], qhat)
            rank = np.argmax(order == yi[test][:, None], axis=1)
            cov.append(float((rank < n_in).mean()))
            size.append(float(n_in.mean()))
            empty.append(float((n_in == 0).mean()))
        out = {
            "level": level,
            "resplits": reps,
            "coverage_mean": float(np.mean(cov)),
            "coverage_q05": float(np.quantile(cov, 0.05)),
            "coverage_q95": float(np.quantile(cov, 0.95)),
            "mean_set_size": float(np.mean(size)),
            "empty_sets": float(np.mean(empty)),
            "top1_accuracy": float((top3[:, 0] == yi).mean()),
            "top3_coverage": float((top3 == yi[:, None]).any(1).mean()),
        }
        print(json.dumps(out), flush=True)
        rows.append(out)
    return rows


def drift(s_in: np.ndarray, s_oos: np.ndarray, reps: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    false_alarms, delays = 0, []
    for r in range(reps):
        perm = rng.permutation(len(s_in))
        m = DriftMonitor(s_in[perm[:1000]], seed=r)
        stream = s_in[perm[1000:3000]]  # a permutation of the pool: exchangeable with them
        for b in range(0, len(stream), 10):
            m.update(stream[b : b + 10])
        false_alarms += m.alarm
        m = DriftMonitor(s_in[perm[:1000]], seed=r)
        before = s_in[perm[1000:1300]]
        is_oos = rng.random(1000) < 0.3
        after = s_in[perm[1300:2300]]  # rows none of which calibrated the monitor
        after[is_oos] = s_oos[rng.permutation(len(s_oos))[: is_oos.sum()]]
        stream = np.r_[before, after]
        for b in range(0, len(stream), 10):
            m.update(stream[b : b + 10])
            if m.alarm:
                break
        row = m.summary()["alarm_row"]
        delays.append(np.inf if row is None else row - 300)
    delays_a = np.asarray(delays)
    out = {
        "runs": reps,
        "exchangeable_alarm_share": false_alarms / reps,
        "shift_alarm_within_300": float((delays_a <= 300).mean()),
        "shift_delay_median": float(np.median(delays_a)),
        "shift_delay_q90": float(np.quantile(delays_a, 0.9)),
        "alarm_before_change": float((delays_a <= 0).mean()),
    }
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", nargs="*", default=["fpr", "fdr", "sets", "drift"])
    ap.add_argument("--domains", default="report", choices=("all", "tune", "report"))
    ap.add_argument("--reps", type=int, default=500)
    ap.add_argument("--detector", default="max-cosine")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    d = data(args.domains)
    X, y = d["train"]
    clf = OpenSetClassifier(head="prototype", detector=args.detector).fit(X, y)
    s_in = clf.detector_.decision_function(d["pool"][0]).astype(np.float64)
    s_oos = clf.detector_.decision_function(d["oos"][0]).astype(np.float64)
    print(
        json.dumps(
            {
                "domains": args.domains,
                "detector": args.detector,
                "train_rows": len(y),
                "in_scope_pool": len(s_in),
                "oos_pool": len(s_oos),
            }
        ),
        flush=True,
    )
    if "fpr" in args.what:
        fpr(s_in, s_oos, args.reps, args.seed)
    if "fdr" in args.what:
        fdr(s_in, s_oos, args.reps, args.seed)
    if "sets" in args.what:
        sets(d, args.reps, args.seed)
    if "drift" in args.what:
        drift(s_in, s_oos, args.reps, args.seed)
    print(json.dumps({"seconds": round(time.perf_counter() - t0, 1)}))


if __name__ == "__main__":
    main()
