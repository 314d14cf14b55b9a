"""Class-incremental learning on CLINC150 (issue 13): a model fitted on some intents takes
new intents step by step with ``add_classes`` — beside a refit from scratch at every step
and plain nearest-class-mean, on the same frozen vectors.

Usage:
  .venv/bin/python benchmarks/class_incremental.py [--domains all] [--base 50] [--step 10]
      [--shots 0 5] [--seeds 0] [--head NAME] [--jsonl FILE]
  .venv/bin/python benchmarks/class_incremental.py teen-grid --domains tune [--seeds 0 1 2]

Protocol (``run``, the default): the chosen intents are shuffled (seeded); the first
``--base`` form the base model, fitted on all their train rows + ``oos_train`` with
``OpenSetClassifier()`` (head and detector chosen by cross-validation, as `embedlab fit
--no-adapt` does); then ``--step`` new intents per step, with all their train rows
(``--shots 0``) or k per intent. After each step, on the test rows of every intent seen so
far: accuracy without rejection (class-incremental accuracy), accuracy on the base intents
and on the added ones, and OOS AUROC against ``oos_test``.

Methods, same vectors:
- ``add_classes``: the base model, then ``add_classes`` at each step (TEEN on its default
  "auto": added intents with ≤ 10 examples are calibrated);
- ``add_classes, no TEEN``;
- ``refit``: ``OpenSetClassifier()`` fitted from scratch on all rows seen so far (new
  head / detector selection every time);
- ``NCM``: plain nearest class mean (``PrototypeClassifier``) on all rows seen so far.
``--head prototype`` (or ``gaussian``) fixes the head of the base model and of the refits
(the detector is still chosen): then ``add_classes`` vs ``add_classes, no TEEN`` is TEEN vs
plain prototypes in this protocol. Seconds are the classifier's only (vectors are encoded
once, up front, for every method).
Average incremental accuracy = mean over the base and every step; forgetting = accuracy on
the base intents after the base fit minus after the last step.

``teen-grid`` (for choosing TEEN's defaults; run it on ``--domains tune`` only): 5-shot new
intents added to a base of a third of the intents, prototype and Gaussian heads, accuracy on
the added intents' test rows for α × τ.

Domains as in benchmarks/fit_compare.py: ``tune`` / ``report`` halves of CLINC150's domains,
or ``all``. Reads ../shared/data/clinc150/.
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
from embedlab.heads import PrototypeClassifier
from embedlab.heads.teen import Teen
from embedlab.models.openset import OpenSetClassifier


def load(domains: str):
    enc = SentenceTransformerEncoder()
    out = {}
    keep = domain_intents(domains)
    for split in ("train", "test", "oos_train", "oos_test"):
        t = load_clinc150(split)
        y = np.asarray(t.labels, dtype=object)
        rows = (
            np.ones(len(y), bool)
            if keep is None or split.startswith("oos")
            else np.isin(y, sorted(keep))
        )
        texts = [x for x, r in zip(t.texts, rows, strict=True) if r]
        out[split] = (enc.encode(texts), y[rows])
    return out


def accuracy(pred, y, mask=None) -> float | None:
    m = np.ones(len(y), bool) if mask is None else mask
    return None if not m.any() else float((pred[m] == y[m]).mean())


def run(args: argparse.Namespace) -> None:
    data = load(args.domains)
    Xtr, ytr = data["train"]
    Xte, yte = data["test"]
    Xoos_tr = data["oos_train"][0]
    Xoos_te = data["oos_test"][0]
    out = open(args.jsonl, "a") if args.jsonl else None  # noqa: SIM115 - appended per run
    for seed in args.seeds:
        order = np.random.default_rng(seed).permutation(np.unique(ytr))
        base = order[: args.base]
        steps = [order[i : i + args.step] for i in range(args.base, len(order), args.step)]
        for shots in args.shots:
            base_rows = np.isin(ytr, base)
            # the rows each step adds: all of the new intents' rows, or k of each (seeded)
            step_rows = []
            for new in steps:
                idx = np.flatnonzero(np.isin(ytr, new))
                if shots:
                    idx = idx[k_shot(ytr[idx], shots, seed)]
                step_rows.append(idx)
            rows = {m: [] for m in ("add_classes", "add_classes, no TEEN", "refit", "NCM")}
            t = time.perf_counter()
            Xb = np.vstack([Xtr[base_rows], Xoos_tr])
            yb = np.r_[ytr[base_rows], np.full(len(Xoos_tr), "oos", dtype=object)]
            base_model = OpenSetClassifier(head=args.head).fit(Xb, yb)
            base_s = time.perf_counter() - t
            inc = {"add_classes": base_model, "add_classes, no TEEN": base_model}
            seen_idx = np.flatnonzero(base_rows)
            for step in range(len(steps) + 1):
                if step:
                    new_idx = step_rows[step - 1]
                    seen_idx = np.r_[seen_idx, new_idx]
                    for name, teen in (("add_classes", "auto"), ("add_classes, no TEEN", False)):
                        t = time.perf_counter()
                        inc[name] = inc[name].add_classes(Xtr[new_idx], ytr[new_idx], teen=teen)
                        secs = time.perf_counter() - t
                        rows[name].append({"seconds": secs})
                    t = time.perf_counter()
                    refit = OpenSetClassifier(head=args.head).fit(
                        np.vstack([Xtr[seen_idx], Xoos_tr]),
                        np.r_[ytr[seen_idx], np.full(len(Xoos_tr), "oos", dtype=object)],
                    )
                    rows["refit"].append({"seconds": time.perf_counter() - t})
                else:
                    for name in inc:
                        rows[name].append({"seconds": base_s})
                    refit = base_model
                    rows["refit"].append({"seconds": base_s})
                t = time.perf_counter()
                ncm = PrototypeClassifier().fit(Xtr[seen_idx], ytr[seen_idx])
                rows["NCM"].append({"seconds": time.perf_counter() - t})
                seen = set(ytr[seen_idx])
                te = np.isin(yte, sorted(seen))
                old = np.isin(yte, base)
                for name, model in [*inc.items(), ("refit", refit), ("NCM", ncm)]:
                    if name == "NCM":
                        pred = model.predict(Xte[te])
                        auc = None
                    else:
                        pred = model.predict(Xte[te], reject=False)
                        auc = auroc(model.novelty_score(Xte[te]), model.novelty_score(Xoos_te))
                    rows[name][-1].update(
                        step=step,
                        classes=len(seen),
                        accuracy=accuracy(pred, yte[te]),
                        base_accuracy=accuracy(pred, yte[te], old[te]),
                        added_accuracy=accuracy(pred, yte[te], ~old[te]),
                        oos_auroc=auc,
                        head=getattr(model, "head_name_", "prototype"),
                        detector=getattr(model, "detector_name_", None),
                    )
            label = f"{args.domains}, seed {seed}, " + (f"{shots}-shot new" if shots else "full")
            summary = summarise(rows)
            print_run(label, rows, summary)
            if out:
                out.write(json.dumps({"run": label, "steps": rows, "summary": summary}) + "\n")
                out.flush()


def summarise(rows: dict) -> dict:
    out = {}
    for name, steps in rows.items():
        step_s = [r["seconds"] for r in steps[1:]]
        out[name] = {
            "final_accuracy": steps[-1]["accuracy"],
            "average_incremental_accuracy": float(np.mean([r["accuracy"] for r in steps])),
            "forgetting": steps[0]["base_accuracy"] - steps[-1]["base_accuracy"],
            "final_added_accuracy": steps[-1]["added_accuracy"],
            "final_oos_auroc": steps[-1]["oos_auroc"],
            "seconds_per_step": float(np.mean(step_s)) if step_s else None,
        }
    return out


def print_run(label: str, rows: dict, summary: dict) -> None:
    print(f"\n## {label}")
    print("step | classes | " + " | ".join(rows))
    for i in range(len(rows["refit"])):
        cells = [f"{rows[n][i]['accuracy']:.2%} ({rows[n][i]['seconds']:.2f} s)" for n in rows]
        print(f"{i} | {rows['refit'][i]['classes']} | " + " | ".join(cells))
    print("method | final acc | avg incremental acc | forgetting | added acc | AUROC | s/step")
    for n, s in summary.items():
        auc = "—" if s["final_oos_auroc"] is None else f"{s['final_oos_auroc']:.2%}"
        print(
            f"{n} | {s['final_accuracy']:.2%} | {s['average_incremental_accuracy']:.2%} | "
            f"{s['forgetting']:+.2%} | {s['final_added_accuracy']:.2%} | {auc} | "
            f"{s['seconds_per_step']:.3f}"
        )
    ratio = summary["add_classes"]["seconds_per_step"] / summary["refit"]["seconds_per_step"]
    gap = summary["refit"]["final_accuracy"] - summary["add_classes"]["final_accuracy"]
    print(f"add_classes vs refit: {gap:+.2%} pts behind, {ratio:.2%} of its time per step")


def teen_grid(args: argparse.Namespace) -> None:
    data = load(args.domains)
    Xtr, ytr = data["train"]
    Xte, yte = data["test"]
    alphas = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    taus = (4.0, 8.0, 16.0, 32.0)
    res: dict[tuple[str, float, float], list[tuple[float, float]]] = {}
    for seed in args.seeds:
        order = np.random.default_rng(seed).permutation(np.unique(ytr))
        base, new = order[: len(order) // 3], order[len(order) // 3 :]
        b = np.isin(ytr, base)
        idx = np.flatnonzero(np.isin(ytr, new))
        idx = idx[k_shot(ytr[idx], 5, seed)]
        te = np.isin(yte, new)
        for head in ("prototype", "gaussian"):
            clf = OpenSetClassifier(head=head, detector="max-cosine").fit(Xtr[b], ytr[b])
            for a in alphas:
                for tau in taus:
                    if a == 1.0 and tau != taus[0]:
                        continue
                    m = clf.add_classes(Xtr[idx], ytr[idx], teen=Teen(alpha=a, tau=tau))
                    all_te = np.isin(yte, np.r_[base, new])
                    pred = m.predict(Xte[all_te], reject=False)
                    hit = pred == yte[all_te]
                    res.setdefault((head, a, tau), []).append(
                        (float(hit[te[all_te]].mean()), float(hit.mean()))
                    )
    print("head | alpha | tau | added-intent accuracy | all-intent accuracy (means of seeds)")
    for (head, a, tau), v in sorted(res.items()):
        new_acc, all_acc = np.mean(v, axis=0)
        print(f"{head} | {a} | {tau if a < 1 else '—'} | {new_acc:.2%} | {all_acc:.2%}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", nargs="?", default="run", choices=("run", "teen-grid"))
    ap.add_argument("--domains", default="all", choices=("all", "tune", "report"))
    ap.add_argument("--base", type=int, default=50)
    ap.add_argument("--step", type=int, default=10)
    ap.add_argument("--shots", type=int, nargs="+", default=[0, 5])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--head", default="auto", help="fix the head (prototype, gaussian, ...)")
    ap.add_argument("--jsonl")
    args = ap.parse_args()
    (teen_grid if args.mode == "teen-grid" else run)(args)


if __name__ == "__main__":
    main()
