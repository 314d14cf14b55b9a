"""The comparison that decides `embedlab fit`'s defaults (issue 12): on the same CLINC150 rows,
frozen MiniLM + scikit-learn LogisticRegression (C chosen by cross-validation), SetFit
(optional) and embedlab's default fit.

Usage:
  .venv/bin/python benchmarks/fit_compare.py [--domains report] [--settings full 10 5]
      [--seeds 0 1 2] [--methods lr embedlab setfit autointent] [--fit KEY=VALUE ...]
      [--jsonl FILE]

Domains: CLINC150's 10 domains (``domains.json``) are split once, by their order in that
file, into ``tune`` (banking, kitchen_and_dining, auto_and_commute, utility, small_talk) and
``report`` (credit_cards, home, travel, work, meta). Choices of recipe are made on ``tune``;
the table that is reported runs on ``report`` (75 intents each), so it measures data the
recipe was not fitted to. ``all`` uses the 150 intents.

Rows: train (all of it for ``full``, else k per intent, seeded) of the chosen intents; test
= those intents' test rows + the 1,000 ``oos_test`` rows. embedlab also gets the 100
``oos_train`` rows (it uses them only for selection and calibration); LR and SetFit have no
notion of out-of-scope, so their OOS AUROC uses 1 - max probability and they have no
"accuracy with rejection".

Metrics: accuracy with rejection (a rejected in-scope row is an error), head accuracy (no
rejection), OOS AUROC, fit seconds (LR: the C search + final fit on vectors encoded
beforehand, encoding time shown apart; SetFit and embedlab: everything).

AutoIntent (``--methods autointent``) runs in its own virtual environment (see
benchmarks/autointent_run.py; skipped when ``../ai-venv`` or $AUTOINTENT_PYTHON is missing):
its ``classic-light`` preset with the packaged MiniLM as embedder, the same out-of-scope
training rows as embedlab; its answers carry its own out-of-scope decision, so its "head
accuracy" is its in-scope accuracy with its rejections counted as errors.

SetFit runs only if the ``setfit`` package imports (``pip install setfit``; it is not one of
embedlab's dependencies): MiniLM body, its paper's few-shot settings (20 pair iterations,
1 epoch, batch 16), logistic-regression head; it is skipped for ``full`` (20 iterations over
15,000 rows is 600,000 pairs).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from clinc150 import k_shot  # the same k-shot rows as benchmarks/clinc150.py

from embedlab.core.metrics import auroc
from embedlab.data.datasets import clinc150_path, load_clinc150

TUNE = ("banking", "kitchen_and_dining", "auto_and_commute", "utility", "small_talk")


def domain_intents(which: str) -> set[str] | None:
    if which == "all":
        return None
    domains = json.loads((Path(clinc150_path()).parent / "domains.json").read_text())
    names = list(domains)
    chosen = [d for d in names if (d in TUNE) == (which == "tune")]
    return {i for d in chosen for i in domains[d]}


def st_vectors(texts: list[str], cache: dict[str, np.ndarray]) -> np.ndarray:
    """Frozen MiniLM vectors from sentence-transformers itself (what a user would write)."""
    missing = [t for t in dict.fromkeys(texts) if t not in cache]
    if missing:
        from sentence_transformers import SentenceTransformer

        from embedlab.encoders.sentence_transformer import default_model_path

        if "_model" not in st_vectors.__dict__:
            st_vectors._model = SentenceTransformer(  # type: ignore[attr-defined]
                str(default_model_path()), device="cpu", local_files_only=True
            )
        vecs = st_vectors._model.encode(missing, batch_size=32, normalize_embeddings=True)  # type: ignore[attr-defined]
        cache.update(zip(missing, np.asarray(vecs, dtype=np.float32), strict=True))
    return np.stack([cache[t] for t in texts])


def run_lr(train, test, oos, cache) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    t0 = time.perf_counter()
    X, Xt, Xo = (st_vectors(list(t), cache) for t in (train[0], test[0], oos))
    enc_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    y = np.asarray(train[1])
    folds = min(5, int(np.unique(y, return_counts=True)[1].min()))
    search = GridSearchCV(
        LogisticRegression(max_iter=2000),
        {"C": [0.1, 1.0, 10.0, 100.0]},
        cv=StratifiedKFold(folds, shuffle=True, random_state=0),
        n_jobs=1,
    ).fit(X, y)
    fit_s = time.perf_counter() - t0
    clf = search.best_estimator_
    head = float((clf.predict(Xt) == np.asarray(test[1])).mean())
    novelty = lambda Z: 1.0 - clf.predict_proba(Z).max(axis=1)  # noqa: E731
    return {
        "accuracy": None,
        "head_accuracy": head,
        "oos_auroc": auroc(novelty(Xt), novelty(Xo)),
        "fit_seconds": round(fit_s, 1),
        "encode_seconds": round(enc_s, 1),
        "C": search.best_params_["C"],
    }


def run_setfit(train, test, oos, seed: int) -> dict | None:
    try:
        from datasets import Dataset
        from setfit import SetFitModel, Trainer, TrainingArguments
    except ImportError:
        return None
    from embedlab.encoders.sentence_transformer import default_model_path

    t0 = time.perf_counter()
    model = SetFitModel.from_pretrained(str(default_model_path()), local_files_only=True)
    data = Dataset.from_dict({"text": list(train[0]), "label": list(train[1])})
    # SetFit's trainer writes checkpoints under output_dir ("checkpoints/" in the working
    # directory by default): keep them in a temporary folder, removed afterwards.
    with tempfile.TemporaryDirectory(prefix="embedlab-setfit-") as out:
        args = TrainingArguments(
            output_dir=out, batch_size=16, num_iterations=20, num_epochs=1, seed=seed
        )
        Trainer(model=model, args=args, train_dataset=data).train()
    fit_s = time.perf_counter() - t0
    pred = np.asarray(model.predict(list(test[0])))
    probs_t = np.asarray(model.predict_proba(list(test[0])))
    probs_o = np.asarray(model.predict_proba(list(oos)))
    return {
        "accuracy": None,
        "head_accuracy": float((pred == np.asarray(test[1])).mean()),
        "oos_auroc": auroc(1 - probs_t.max(axis=1), 1 - probs_o.max(axis=1)),
        "fit_seconds": round(fit_s, 1),
    }


def run_embedlab(train, oos_train, test, oos, fit_kw: dict) -> dict:
    from embedlab.models.pipeline import Pipeline

    texts = list(train[0]) + list(oos_train[0])
    labels = list(train[1]) + list(oos_train[1])
    t0 = time.perf_counter()
    pipe = Pipeline(**fit_kw).fit(texts, labels, progress=False)
    fit_s = time.perf_counter() - t0
    m = pipe.evaluate(list(test[0]) + list(oos), list(test[1]) + ["oos"] * len(oos))
    return {
        "accuracy": m["accuracy"],
        "head_accuracy": m["head_accuracy"],
        "oos_auroc": m["oos_auroc"],
        "in_scope_rejected": m["in_scope_rejected"],
        "fit_seconds": round(fit_s, 1),
        "head": pipe.info["head"],
        "detector": pipe.info["detector"],
        "adapt": pipe.info.get("adapted")
        and {k: pipe.info["adapted"].get(k) for k in ("steps", "epochs_done", "seconds", "kept")},
    }


def run_autointent(train, oos_train, test, oos, seed: int) -> dict | None:
    """AutoIntent's classic-light preset on the packaged MiniLM (benchmarks/autointent_run.py),
    given the same out-of-scope training rows as embedlab. Its answers include its own
    out-of-scope decision: accuracy counts a wrong rejection as an error, and its in-scope
    accuracy (its only "head accuracy") does too."""
    from autointent_peer import available
    from autointent_peer import run_autointent as run

    if not available():
        return None
    texts = list(train[0]) + list(oos_train[0])
    labels = list(train[1]) + [None] * len(oos_train[0])
    got = run(texts, labels, list(test[0]) + list(oos), seed)
    said = np.asarray(["oos" if p is None else p for p in got["predictions"]], dtype=object)
    truth = np.asarray(list(test[1]) + ["oos"] * len(oos), dtype=object)
    inside = truth != "oos"
    return {
        "accuracy": float((said == truth).mean()),
        "head_accuracy": float((said[inside] == truth[inside]).mean()),
        "oos_auroc": None,
        "in_scope_rejected": float((said[inside] == "oos").mean()),
        "fit_seconds": got["fit_seconds"],
        "preset": got["preset"],
    }


def parse_fit(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--domains", choices=["tune", "report", "all"], default="report")
    ap.add_argument("--settings", nargs="+", default=["full", "10", "5"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=["lr", "embedlab", "setfit"])
    ap.add_argument("--fit", nargs="*", default=[], help="Pipeline(**kw) for embedlab, KEY=VALUE")
    ap.add_argument("--jsonl", type=Path, help="append every result row to this file")
    ap.add_argument(
        "--label-names",
        action="store_true",
        help="experiment: add each intent's name (underscores as spaces) as one more "
        "training row of that intent, for every method",
    )
    args = ap.parse_args()

    intents = domain_intents(args.domains)
    train_all, oos_train = load_clinc150("train"), load_clinc150("oos_train")
    test_all, oos_test = load_clinc150("test"), load_clinc150("oos_test")
    keep = lambda labels: np.array([intents is None or y in intents for y in labels])  # noqa: E731
    tr_mask, te_mask = keep(train_all.labels), keep(test_all.labels)
    tr_texts = np.asarray(train_all.texts, dtype=object)[tr_mask]
    tr_labels = np.asarray(train_all.labels, dtype=object)[tr_mask]
    test = (
        np.asarray(test_all.texts, dtype=object)[te_mask].tolist(),
        np.asarray(test_all.labels, dtype=object)[te_mask].tolist(),
    )
    oos = oos_test.texts
    cache: dict[str, np.ndarray] = {}
    fit_kw = parse_fit(args.fit)
    rows = []
    for setting in args.settings:
        shots = 0 if setting == "full" else int(setting)
        for seed in [0] if shots == 0 else args.seeds:
            idx = k_shot(tr_labels, shots, seed)
            train = (tr_texts[idx].tolist(), tr_labels[idx].tolist())
            if args.label_names:
                names = sorted(set(train[1]))
                train = (train[0] + [n.replace("_", " ") for n in names], train[1] + names)
            for method in args.methods:
                if method == "lr":
                    res = run_lr(train, test, oos, cache)
                elif method == "setfit":
                    res = None if shots == 0 else run_setfit(train, test, oos, seed)
                    if res is None:
                        continue
                elif method == "autointent":
                    oos_rows = (oos_train.texts, oos_train.labels)
                    res = run_autointent(train, oos_rows, test, oos, seed)
                    if res is None:
                        continue
                else:
                    res = run_embedlab(
                        train, (oos_train.texts, oos_train.labels), test, oos, fit_kw
                    )
                row = {
                    "domains": args.domains,
                    "setting": "full" if shots == 0 else f"{shots}-shot",
                    "seed": seed,
                    "method": method,
                    "fit": fit_kw if method == "embedlab" else None,
                    "label_names": args.label_names,
                    "n_train": len(train[0]),
                    **res,
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
                if args.jsonl:
                    with args.jsonl.open("a", encoding="utf-8") as fh:
                        fh.write(json.dumps(row) + "\n")
    print_table(rows)


def print_table(rows: list[dict]) -> None:
    pct = lambda x: "—" if x is None else f"{100 * x:.2f} %"  # noqa: E731
    print(
        "\n| domains | setting | method | seeds | accuracy (rejection = error) | "
        "head accuracy | OOS AUROC | fit s |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|")
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["domains"], r["setting"], r["method"]), []).append(r)
    for (domains, setting, method), rs in groups.items():

        def mean(key, rs=rs):
            vals = [r[key] for r in rs if r.get(key) is not None]
            return float(np.mean(vals)) if vals else None

        fit_s = mean("fit_seconds")
        print(
            f"| {domains} | {setting} | {method} | {len(rs)} | {pct(mean('accuracy'))} | "
            f"{pct(mean('head_accuracy'))} | {pct(mean('oos_auroc'))} | {fit_s:.0f} |"
        )


if __name__ == "__main__":
    main()
