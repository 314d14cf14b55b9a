"""Learned tables for categorical columns under a byte budget (issue 32).

Parts (``--part``), each printing JSON lines and adding to WORK/results.json:

* ``synthetic`` — 1,000,000 training records (+100,000 scored) from
  :func:`embedlab.tables.synthetic_records` (ids with 10³, 10⁴, 10⁵, 10⁶ values, Zipf 1.1,
  per-value and planted pairwise effects): ``full`` tables, then ``hash``, ``qr``,
  ``unified`` and ``mixed`` at 1/16 of the full tables' bytes; held-out log-loss beside the
  Bayes-optimal one (the true probabilities' log-loss on the same rows); the share of the
  hash → full gap each kind closes; training seconds. Seeds 0, 1, 2 (decisions were made on
  seed 100).
* ``adult`` — UCI Adult (8 categorical + 6 numeric columns, target income), 80/20 splits
  with seeds 1…5: scikit-learn's HistGradientBoostingClassifier (native categorical
  support; the anchor), full tables, and every kind at 1/8 of the full tables' bytes. AUC.
  (Settings were explored on one other split: numpy seed 0, rows 0–30,000 / 30,000–40,000.)
* ``many_ids`` — one id column with 10,000,000 distinct values (each once, 2,000,000 of
  them again, in 12,000,000 rows; the target a function of a planted 1,000-value group):
  ``auto`` under a 2 MB budget, then ``full`` under the same budget (it keeps what fits
  and says so); seconds and peak memory.
* ``clothing`` — clothing_reviews, target ``Recommended IND``, 80/20 splits with seeds
  0…4: the review's embedding alone, the tables alone (Clothing ID, Division, Department,
  Class + Age, Positive Feedback Count), both, both with ``select_columns`` (columns whose
  absence lowers the held-out log-loss of the training rows' tenth are left out), and
  HistGradientBoosting on the same features
  (the 384 embedding columns + ordinal ids + numbers). AUC mean ± sd.

Run: ``python benchmarks/tables.py --work /tmp/tables --part synthetic|adult|clothing``
(2 cores; the packaged MiniLM encoder for the reviews, cached in WORK).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_io import RESULTS, emit, encoded

from embedlab.tables import TableModel, TablesWarning, synthetic_records

ADULT_CAT = ["workclass", "education", "marital-status", "occupation", "relationship", "race",
             "gender", "native-country"]  # fmt: skip
ADULT_NUM = ["age", "fnlwgt", "educational-num", "capital-gain", "capital-loss", "hours-per-week"]
CLOTH_CAT = ["Clothing ID", "Division Name", "Department Name", "Class Name"]
CLOTH_NUM = ["Age", "Positive Feedback Count"]
CLOTH_TEXT = "Review Text"


def _mean_sd(values: list[float]) -> str:
    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1) if len(values) > 1 else 0:.4f}"


def synthetic(seeds: list[int], rows: int, fraction: float) -> None:
    closures: dict[str, list[float]] = {}
    for seed in seeds:
        t = time.perf_counter()
        data = synthetic_records(rows + 100_000, seed=seed)
        train, test = data.split(rows)
        emit(f"synthetic/{seed}/data", rows=rows, test_rows=100_000,
             bayes_log_loss=round(test.bayes_log_loss, 5),
             generate_s=round(time.perf_counter() - t, 1))  # fmt: skip
        found = {}
        budget = None
        for kind in ("full", "hash", "qr", "unified", "mixed"):
            t = time.perf_counter()
            m = TableModel(cat_cols=list(train.columns), tables=kind,
                           budget=None if kind == "full" else budget, seed=seed)  # fmt: skip
            m.fit(train.columns, train.y)
            fit_s = time.perf_counter() - t
            if kind == "full":
                budget = int(m.layout_.full_bytes * fraction)
            ev = m.evaluate(test.columns, test.y)
            found[kind] = ev["log_loss"]
            emit(f"synthetic/{seed}/{kind}", bytes=m.layout_.bytes,
                 vocabulary_bytes=m.layout_.vocabulary_bytes,
                 full_bytes=m.layout_.full_bytes, log_loss=round(ev["log_loss"], 5),
                 auc=round(ev["auc"], 5),
                 gap_to_bayes=round(ev["log_loss"] - test.bayes_log_loss, 5),
                 fit_s=round(fit_s, 1), epochs=m.info["epochs_run"],
                 best_epoch=m.info["best_epoch"],
                 layout=m.layout_.describe())  # fmt: skip
        gap = found["hash"] - found["full"]
        for kind in ("qr", "unified", "mixed"):
            share = (found["hash"] - found[kind]) / gap if gap > 0 else float("nan")
            closures.setdefault(kind, []).append(share)
            emit(f"synthetic/{seed}/{kind}", closes_hash_full_gap=round(share, 4))
    for kind, vals in closures.items():
        emit(f"synthetic/summary/{kind}", closes_gap=_mean_sd(vals), seeds=seeds)


def adult(seeds: list[int], fraction: float) -> None:
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    from embedlab.data.datasets import adult_path

    d = pd.read_parquet(adult_path())
    y = d["income"].astype(str).to_numpy()
    X = d[ADULT_CAT + ADULT_NUM].copy()
    for c in ADULT_CAT:
        X[c] = X[c].astype("category")
    aucs: dict[str, list[float]] = {}
    for seed in seeds:
        tr, te = train_test_split(np.arange(len(d)), test_size=0.2, random_state=seed, stratify=y)
        t = time.perf_counter()
        hgb = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=seed)
        hgb.fit(X.iloc[tr], y[tr])
        auc = roc_auc_score(y[te] == ">50K", hgb.predict_proba(X.iloc[te])[:, 1])
        aucs.setdefault("hist_gradient_boosting", []).append(auc)
        emit(f"adult/{seed}/hist_gradient_boosting", auc=round(auc, 5),
             fit_s=round(time.perf_counter() - t, 1))  # fmt: skip
        budget = None
        for kind in ("full", "auto", "hash", "qr", "mixed", "unified"):
            t = time.perf_counter()
            m = TableModel(cat_cols=ADULT_CAT, num_cols=ADULT_NUM, tables=kind,
                           budget=None if kind == "full" else budget, seed=seed)  # fmt: skip
            m.fit(d.iloc[tr], y[tr])
            if kind == "full":
                budget = int(m.layout_.full_bytes * fraction)
            ev = m.evaluate(d.iloc[te], y[te])
            aucs.setdefault(kind, []).append(ev["auc"])
            emit(f"adult/{seed}/{kind}", auc=round(ev["auc"], 5), bytes=m.layout_.bytes,
                 full_bytes=m.layout_.full_bytes, width=m.layout_.dim,
                 fit_s=round(time.perf_counter() - t, 1))  # fmt: skip
    for kind, vals in aucs.items():
        emit(f"adult/summary/{kind}", auc=_mean_sd(vals), seeds=seeds)


def clothing(seeds: list[int], work: Path) -> None:
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    from embedlab.data.datasets import clothing_reviews_path
    from embedlab.encoders import SentenceTransformerEncoder

    d = pd.read_parquet(clothing_reviews_path())
    texts = d[CLOTH_TEXT].fillna("").astype(str).tolist()
    has = np.array([bool(t.strip()) for t in texts])
    enc = SentenceTransformerEncoder()
    V = np.zeros((len(d), enc.dim), np.float32)
    V[has] = encoded(enc, [t for t, h in zip(texts, has, strict=True) if h], work, "reviews")
    y = d["Recommended IND"].astype(str).to_numpy()
    ordinal = d[CLOTH_CAT].copy()
    for c in CLOTH_CAT:
        ordinal[c] = ordinal[c].astype("category").cat.codes  # -1 for missing
    hgb_X = np.hstack([V, ordinal.to_numpy(np.float32), d[CLOTH_NUM].to_numpy(np.float32)])
    n_emb = V.shape[1]
    aucs: dict[str, list[float]] = {}
    for seed in seeds:
        tr, te = train_test_split(np.arange(len(d)), test_size=0.2, random_state=seed, stratify=y)
        variants = {
            "text_only": dict(text_col=CLOTH_TEXT),
            "tables_only": dict(cat_cols=CLOTH_CAT, num_cols=CLOTH_NUM),
            "text_and_tables": dict(text_col=CLOTH_TEXT, cat_cols=CLOTH_CAT, num_cols=CLOTH_NUM),
            "text_and_tables_selected": dict(
                text_col=CLOTH_TEXT, cat_cols=CLOTH_CAT, num_cols=CLOTH_NUM, select_columns=True
            ),
        }
        for name, kw in variants.items():
            t = time.perf_counter()
            m = TableModel(seed=seed, **kw)
            vec = V if "text_col" in kw else None
            m.fit(d.iloc[tr], y[tr], vectors=None if vec is None else vec[tr])
            ev = m.evaluate(d.iloc[te], y[te], vectors=None if vec is None else vec[te])
            aucs.setdefault(name, []).append(ev["auc"])
            emit(f"clothing/{seed}/{name}", auc=round(ev["auc"], 5),
                 fit_s=round(time.perf_counter() - t, 1), epochs=m.info["epochs_run"],
                 left_out=m.info.get("column_selection", {}).get("left_out"))  # fmt: skip
        t = time.perf_counter()
        cat_idx = list(range(n_emb, n_emb + len(CLOTH_CAT)))
        hgb = HistGradientBoostingClassifier(random_state=seed, categorical_features=cat_idx[1:])
        hgb.fit(hgb_X[tr], y[tr])  # Clothing ID (1,206 values) stays ordinal: over HGB's 255
        auc = roc_auc_score(y[te] == "1", hgb.predict_proba(hgb_X[te])[:, 1])
        aucs.setdefault("hist_gradient_boosting", []).append(auc)
        emit(f"clothing/{seed}/hist_gradient_boosting", auc=round(auc, 5),
             fit_s=round(time.perf_counter() - t, 1))  # fmt: skip
    for kind, vals in aucs.items():
        emit(f"clothing/summary/{kind}", auc=_mean_sd(vals), seeds=seeds)


def many_ids(rows: int, distinct: int) -> None:
    import resource

    rng = np.random.default_rng(0)
    # every id once, then rows - distinct repeats: exactly ``distinct`` distinct values
    ids = np.concatenate([np.arange(distinct), rng.integers(0, distinct, rows - distinct)])
    ids = ids[rng.permutation(rows)]
    group = ids % 1000
    effect = rng.normal(0, 1.5, 1000)
    y = (rng.random(rows) < 1 / (1 + np.exp(-effect[group]))).astype(np.int64)
    data = {"id": ids.astype(str).astype(object)}
    emit("many_ids/data", rows=rows, distinct=len(np.unique(ids)))
    for kind in ("auto", "full"):
        t = time.perf_counter()
        m = TableModel(cat_cols=["id"], tables=kind, budget="2MB", epochs=2, seed=0)
        m.fit(data, y)
        emit(f"many_ids/{kind}", fit_s=round(time.perf_counter() - t, 1),
             bytes=m.layout_.bytes, full_bytes=m.layout_.full_bytes,
             layout=m.layout_.describe(),
             peak_rss_gb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
                               2))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--part", choices=["synthetic", "adult", "clothing", "many_ids"], required=True)
    ap.add_argument("--seeds", default=None, help="comma-separated (default: per part)")
    ap.add_argument("--rows", type=int, default=1_000_000, help="synthetic training rows")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    warnings.simplefilter("ignore", TablesWarning)  # ids given as numbers: intended here
    if args.part == "synthetic":
        synthetic(seeds or [0, 1, 2], args.rows, 1 / 16)
    elif args.part == "many_ids":
        many_ids(12_000_000, 10_000_000)
    elif args.part == "adult":
        adult(seeds or [1, 2, 3, 4, 5], 1 / 8)
    else:
        clothing(seeds or [0, 1, 2, 3, 4], args.work)
    out = args.work / "results.json"
    old = json.loads(out.read_text()) if out.exists() else {}
    old.update(RESULTS)
    out.write_text(json.dumps(old, indent=1))


if __name__ == "__main__":
    main()
