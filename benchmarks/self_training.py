"""Learning from unlabelled texts on CLINC150 (issue 13): the same model with and without
self-training on a pool of unlabelled texts.

Usage:
  .venv/bin/python benchmarks/self_training.py [--domains report] [--shots 0 1 5]
      [--seeds 0 1 2] [--rounds 2] [--share 0.5] [--jsonl FILE]

Pool: the chosen intents' train texts with their labels removed, + ``oos_train`` (junk the
detector should keep out). Test: those intents' test rows (accuracy without rejection) and,
for k-shot, ``oos_test`` too (accuracy with rejection, OOS AUROC).

- ``--shots 0``: zero-shot from the class names alone (``ZeroShotClassifier``, "card_arrival"
  → "card arrival"), then :func:`embedlab.models.self_training.self_train_head` on the pool.
- ``--shots k``: ``OpenSetClassifier()`` (head and detector chosen by cross-validation) on k
  rows per intent + ``oos_train``, then :func:`embedlab.models.self_training.self_train_openset`
  (what ``embedlab fit --unlabeled POOL --no-adapt`` does).

Domains as in benchmarks/fit_compare.py: choose ``--rounds`` / ``--share`` on ``tune``,
report on ``report``. Reads ../shared/data/clinc150/.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from clinc150 import k_shot
from fit_compare import domain_intents

from embedlab.core.metrics import auroc
from embedlab.data.datasets import load_clinc150
from embedlab.encoders import SentenceTransformerEncoder
from embedlab.heads import ZeroShotClassifier
from embedlab.models.openset import OpenSetClassifier
from embedlab.models.self_training import SelfTraining, self_train_head, self_train_openset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--domains", default="report", choices=("all", "tune", "report"))
    ap.add_argument("--shots", type=int, nargs="+", default=[0, 1, 5])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--rounds", type=int, nargs="+", default=[2])
    ap.add_argument("--share", type=float, nargs="+", default=[0.5])
    ap.add_argument("--jsonl")
    args = ap.parse_args()
    enc = SentenceTransformerEncoder()
    keep = domain_intents(args.domains)
    data = {}
    for split in ("train", "test", "oos_train", "oos_test"):
        t = load_clinc150(split)
        y = np.asarray(t.labels, dtype=object)
        rows = np.ones(len(y), bool)
        if keep is not None and not split.startswith("oos"):
            rows = np.isin(y, sorted(keep))
        data[split] = (enc.encode([x for x, r in zip(t.texts, rows, strict=True) if r]), y[rows])
    Xtr, ytr = data["train"]
    Xte, yte = data["test"]
    Xoos_tr, Xoos_te = data["oos_train"][0], data["oos_test"][0]
    pool = np.vstack([Xtr, Xoos_tr])
    intents = sorted(set(ytr))
    for shots in args.shots:
        seeds = [0] if shots == 0 else args.seeds
        for rounds in args.rounds:
            for share in args.share:
                cfg = SelfTraining(rounds=rounds, share=share)
                res = {"without pool": [], "with pool": []}
                secs = []
                for seed in seeds:
                    if shots == 0:
                        head = ZeroShotClassifier(encoder=enc, descriptions=intents)
                        base = head.fit()
                        t = time.perf_counter()
                        tuned, _ = self_train_head(head, None, None, pool, cfg)
                        secs.append(time.perf_counter() - t)
                        for name, m in (("without pool", base), ("with pool", tuned)):
                            acc = float((m.predict(Xte) == yte).mean())
                            res[name].append({"head_accuracy": acc})
                        continue
                    idx = k_shot(ytr, shots, seed)
                    X = np.vstack([Xtr[idx], Xoos_tr])
                    y = np.r_[ytr[idx], np.full(len(Xoos_tr), "oos", dtype=object)]
                    base = OpenSetClassifier().fit(X, y)
                    t = time.perf_counter()
                    tuned, _ = self_train_openset(base, X, y, pool, cfg)
                    secs.append(time.perf_counter() - t)
                    for name, m in (("without pool", base), ("with pool", tuned)):
                        head_acc = float((m.predict(Xte, reject=False) == yte).mean())
                        acc = float((m.predict(Xte) == yte).mean())
                        auc = auroc(m.novelty_score(Xte), m.novelty_score(Xoos_te))
                        res[name].append(
                            {"head_accuracy": head_acc, "accuracy": acc, "oos_auroc": auc}
                        )
                label = "name-only zero-shot" if shots == 0 else f"{shots}-shot"
                summary = {
                    name: {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
                    for name, rows in res.items()
                }
                gain = (
                    summary["with pool"]["head_accuracy"] - summary["without pool"]["head_accuracy"]
                )
                print(
                    f"{args.domains} | {label} | rounds {rounds} share {share} | "
                    + " | ".join(
                        f"{n}: " + ", ".join(f"{k} {v:.2%}" for k, v in s.items())
                        for n, s in summary.items()
                    )
                    + f" | gain {gain:+.2%} | {np.mean(secs):.1f} s ({len(seeds)} seeds)",
                    flush=True,
                )
                if args.jsonl:
                    with open(args.jsonl, "a") as fh:
                        row = {"domains": args.domains, "setting": label, "rounds": rounds}
                        fh.write(json.dumps({**row, "share": share, "summary": summary}) + "\n")


if __name__ == "__main__":
    main()
