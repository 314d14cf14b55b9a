"""Label hierarchies on CLINC150 (issue 14): zero-shot over the 10 domains from the domain
names alone vs through the 150 intent names mapped up (CHiLS), and a hierarchy with
examples — accuracy at each level and wrong intents that still get the right domain.

Usage:
  .venv/bin/python benchmarks/hierarchy.py [--jsonl FILE]

Data: ../shared/data/clinc150 (``data_full.json`` test split, in-scope rows: 4,500;
``domains.json``: domain → intents). Names are read as text with underscores as spaces
("credit_cards" → "credit cards"); no descriptions, no examples for the zero-shot rows.
All through :class:`embedlab.models.pipeline.Pipeline` — ``fit_labels_only`` is
`embedlab fit --labels-only`, ``hierarchy=`` is ``--hierarchy``. Accuracy without
rejection (the zero-shot models calibrate no threshold without in-scope texts).

Rows:
- zero-shot, domain names: a zero-shot model whose labels are the 10 domains;
- zero-shot, intent names → domain: labels = the 150 intents, ``--hierarchy domains.json``,
  the domain read off the predicted intent;
- with examples: ``OpenSetClassifier()`` (head / detector chosen) fitted on the train split
  with the hierarchy: intent and domain accuracy, and how many wrong intents sit in the
  right domain; beside it, the same classifier fitted on train rows relabelled with their
  domain (a flat domain classifier).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from embedlab.data.datasets import clinc150_path, load_clinc150
from embedlab.models.hierarchy import evaluate_levels, read_hierarchy
from embedlab.models.openset import OpenSetClassifier
from embedlab.models.pipeline import Pipeline


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jsonl")
    args = ap.parse_args()
    tree = read_hierarchy(clinc150_path().parent / "domains.json")
    te = load_clinc150("test")
    texts, intents = te.texts, np.asarray(te.labels, dtype=object)
    domains = tree.at_level(intents, 1)
    rows = []

    def record(name: str, **values) -> None:
        row = {"method": name, **values}
        rows.append(row)
        print(json.dumps(row), flush=True)

    t = time.perf_counter()
    coarse = Pipeline(adapt=False).fit_labels_only(sorted(tree.parents))
    pred = coarse.predict(texts, reject=False)
    record(
        "zero-shot, domain names",
        domain_accuracy=float((pred == domains).mean()),
        seconds=round(time.perf_counter() - t, 1),
    )
    t = time.perf_counter()
    fine = Pipeline(adapt=False, hierarchy=tree).fit_labels_only(sorted(tree.parent))
    d = fine.predict_details(texts, reject=False)
    lv = evaluate_levels(intents, d.labels, tree)
    record(
        "zero-shot, intent names -> domain (CHiLS)",
        domain_accuracy=float((d.levels["level1"] == domains).mean()),
        intent_accuracy=lv["accuracy_by_level"]["label"],
        wrong_intent_right_domain=lv["wrong_leaf_right_parent_share"],
        seconds=round(time.perf_counter() - t, 1),
    )
    # with examples: vectors encoded once, classifiers on them
    enc = fine.encoder_
    tr = load_clinc150("train")
    Xtr, ytr = enc.encode(tr.texts), np.asarray(tr.labels, dtype=object)
    Xte = enc.encode(texts)
    t = time.perf_counter()
    clf = OpenSetClassifier().fit(Xtr, ytr)
    pred = clf.predict(Xte, reject=False)
    lv = evaluate_levels(intents, pred, tree)
    record(
        "with examples: intents, domain mapped up",
        domain_accuracy=lv["accuracy_by_level"]["level1"],
        intent_accuracy=lv["accuracy_by_level"]["label"],
        wrong_intent_right_domain=lv["wrong_leaf_right_parent_share"],
        head=clf.head_name_,
        seconds=round(time.perf_counter() - t, 1),
    )
    t = time.perf_counter()
    flat = OpenSetClassifier().fit(Xtr, tree.at_level(ytr, 1))
    record(
        "with examples: flat domain classifier",
        domain_accuracy=float((flat.predict(Xte, reject=False) == domains).mean()),
        head=flat.head_name_,
        seconds=round(time.perf_counter() - t, 1),
    )
    print("\nmethod | domain accuracy | intent accuracy | wrong intents in the right domain")
    for r in rows:
        ia, wr = r.get("intent_accuracy"), r.get("wrong_intent_right_domain")
        print(
            f"{r['method']} | {r['domain_accuracy']:.2%} | "
            f"{'—' if ia is None else f'{ia:.2%}'} | {'—' if wr is None else f'{wr:.1%}'}"
        )
    if args.jsonl:
        with open(args.jsonl, "a") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in rows)


if __name__ == "__main__":
    main()
