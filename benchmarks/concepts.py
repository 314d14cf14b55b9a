"""Concept dictionaries of a frozen space, and the explanations they give (issue 30): the
top-k sparse autoencoder against PCA-16, OMP-16 over a k-means dictionary and a random
dictionary, in one run.

Usage: .venv/bin/python benchmarks/concepts.py [--work DIR] [--k 16] [--atoms auto]
       [--skip-sts]

Space: the packaged all-MiniLM-L6-v2 (default backend), vectors cached in WORK.
CLINC150: every dictionary fitted on train + oos_train (15,100 rows), scored on test +
oos_test (5,500; in scope and out of scope also apart). STS-B: fitted on the train
sentences, scored on the dev sentences (no labels: reconstruction, dead atoms, and the
STS-B dev Spearman of the reconstructed vectors against the dense ones).

Per method: mean cosine of each (unit) vector to its reconstruction; dead atoms (never
active on the scored rows, and on the training rows); usefulness (a logistic regression,
C=10, on the codes alone, in-scope test accuracy, against the same head on the dense unit
vectors); meaning (the share of live atoms whose label purity — the share of their
majority label in their positive activation mass on the in-scope training rows, as
concepts.csv reports it — is at least 0.5; PCA's signed components by |coefficient|);
fit time.

Explanations (ours only): the model is ``OpenSetClassifier(head="linear",
detector="energy")`` fitted on the training vectors; on the in-scope test rows, deleting
an explanation's top-3 concepts (by contribution to the margin over the runner-up) and 3
random active ones, the margin measured again through the head. Cost: 2,000 test texts
predicted through a Pipeline with and without ``explain=True`` (encoding included, and on
stored vectors alone). A seeded sample of 20 live concepts is printed for judging names.
Results: stdout (JSON lines) and WORK/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).parent))
from bench_io import RESULTS, emit, encoded
from elastic_stsb import load_stsb

from embedlab.concepts import ConceptDictionary, ConceptSet, fit_concepts
from embedlab.core.vectors import unit_rows
from embedlab.data.datasets import load_clinc150
from embedlab.encoders import SentenceTransformerEncoder

STSB = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "stsb"


class PCACodes:
    """PCA with n components as a 'dictionary': codes = coefficients."""

    def __init__(self, n: int) -> None:
        self.n = n

    def fit(self, X):
        self.pca = PCA(self.n, random_state=0).fit(unit_rows(X))
        return self

    def reconstruct(self, X):
        U = unit_rows(X)
        return self.pca.inverse_transform(self.pca.transform(U))

    def dense_codes(self, X):
        return self.pca.transform(unit_rows(X)).astype(np.float32)


def random_dictionary(n_atoms: int, k: int, X: np.ndarray) -> ConceptDictionary:
    """Random unit atoms, OMP codes: the floor."""
    d = ConceptDictionary(n_atoms, k, method="omp")
    rng = np.random.default_rng(0)
    d.decoder_ = unit_rows(rng.normal(size=(n_atoms, X.shape[1])).astype(np.float32))
    d.bias_ = unit_rows(X).mean(0).astype(np.float32)
    d.encoder_ = None
    d.n_features_in_ = X.shape[1]
    codes = d.codes(X)
    fired = np.zeros(n_atoms)
    np.add.at(fired, codes.index[codes.active()], 1)
    d.frequency_ = (fired / len(X)).astype(np.float32)
    return d


def cosine(R: np.ndarray, X: np.ndarray) -> np.ndarray:
    return np.einsum("nd,nd->n", unit_rows(R), unit_rows(X))


def purity_share(
    codes_dense: np.ndarray, labels: np.ndarray, signed: bool = False
) -> tuple[float, float]:
    """(share of live atoms with purity >= 0.5, median purity). Mass: the positive
    activations of a dictionary's atoms (as concepts.csv counts them); |coefficient| for
    PCA's signed components (``signed``)."""
    classes, y = np.unique(labels, return_inverse=True)
    M = np.zeros((codes_dense.shape[1], len(classes)))
    np.add.at(M.T, y, np.abs(codes_dense) if signed else np.maximum(codes_dense, 0))
    tot = M.sum(1)
    live = tot > 0
    p = M[live].max(1) / tot[live]
    return float((p >= 0.5).mean()), float(np.median(p))


def head_accuracy(Ztr, ytr, Zte, yte) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        lr = LogisticRegression(C=10.0, max_iter=300).fit(Ztr, ytr)
    return float((lr.predict(Zte) == yte).mean())


def dense_of(d: ConceptDictionary, X: np.ndarray) -> np.ndarray:
    return d.codes(X).dense()


def clinc(args, work: Path, enc) -> None:
    train, test = load_clinc150("train", "oos_train"), load_clinc150("test", "oos_test")
    ytr = np.asarray(train.labels, dtype=object).astype(str)
    yte = np.asarray(test.labels, dtype=object).astype(str)
    Xtr = encoded(enc, train.texts, work, "clinc-train")
    Xte = encoded(enc, test.texts, work, "clinc-test")
    itr, ite = ytr != "oos", yte != "oos"
    dense_acc = head_accuracy(unit_rows(Xtr[itr]), ytr[itr], unit_rows(Xte[ite]), yte[ite])
    emit("clinc150 dense", accuracy=round(dense_acc, 4))

    t0 = time.perf_counter()
    atoms = args.atoms if args.atoms == "auto" else int(args.atoms)
    ours = fit_concepts(
        Xtr,
        train.texts,
        ytr,
        n_atoms=atoms,
        k=args.k,
        ignore_labels=["oos"],
        progress=True,
        random_state=0,
    )
    fit_s = time.perf_counter() - t0
    d = ours.dictionary
    n_atoms = d.n_atoms
    t0 = time.perf_counter()
    omp = ConceptDictionary(n_atoms, args.k, method="omp").fit(Xtr)
    omp_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    pca = PCACodes(args.k).fit(Xtr)
    pca_s = time.perf_counter() - t0
    rnd = random_dictionary(n_atoms, args.k, Xtr)
    methods = {
        "topk-sae (ours)": (d, fit_s),
        "omp-16 over k-means": (omp, omp_s),
        "pca-16": (pca, pca_s),
        "random dictionary + omp": (rnd, 0.0),
    }
    for name, (m, secs) in methods.items():
        R = m.reconstruct(Xte)
        cos = cosine(R, Xte)
        if isinstance(m, PCACodes):
            Ctr, Cte = m.dense_codes(Xtr[itr]), m.dense_codes(Xte[ite])
            dead_test = dead_train = 0.0
        else:
            Ctr, Cte = dense_of(m, Xtr[itr]), dense_of(m, Xte[ite])
            dead_train = float(np.mean(m.frequency_ == 0))
            ct = m.codes(Xte)
            seen = np.zeros(m.n_atoms, bool)
            seen[ct.index[ct.active()]] = True
            dead_test = float(1 - seen.mean())
        acc = head_accuracy(Ctr, ytr[itr], Cte, yte[ite])
        share, median = purity_share(Ctr, ytr[itr], signed=isinstance(m, PCACodes))
        emit(
            f"clinc150 {name}",
            atoms=int(getattr(m, "n_atoms", args.k)),
            k=args.k,
            mean_cosine=round(float(cos.mean()), 4),
            mean_cosine_in_scope=round(float(cos[ite].mean()), 4),
            mean_cosine_oos=round(float(cos[~ite].mean()), 4),
            dead_share_train=round(dead_train, 4),
            dead_share_test=round(dead_test, 4),
            codes_accuracy=round(acc, 4),
            codes_accuracy_ratio=round(acc / dense_acc, 4),
            purity_share_ge_0_5=round(share, 4),
            purity_median=round(median, 4),
            fit_s=round(secs, 1),
        )
    faithfulness(ours, Xtr, ytr, Xte[ite])
    cost(ours, enc, Xtr, ytr, test.texts[:2000])
    names(ours)


def faithfulness(ours: ConceptSet, Xtr, ytr, X) -> None:
    from embedlab.models.openset import OpenSetClassifier

    clf = OpenSetClassifier(head="linear", detector="energy").fit(Xtr, ytr)
    RESULTS["_model"] = clf
    e = ours.explain(X, clf.head_, clf.detector_)
    d = ours.dictionary
    codes = d.codes(X)
    U = unit_rows(X)
    classes = list(clf.head_.classes_)
    c1 = np.asarray([classes.index(p) for p in e.predicted])
    c2 = np.asarray([classes.index(p) for p in e.runner_up])
    r = np.arange(len(U))

    def margin(V):
        s = clf.head_.class_scores(V)
        return s[r, c1] - s[r, c2]

    def without(slots):
        part = np.zeros_like(U)
        for j in range(slots.shape[1]):  # three slots, each vectorised over the rows
            s = slots[:, j]
            part += codes.value[r, s][:, None] * d.decoder_[codes.index[r, s]]
        return margin(U - part)

    base = margin(U)
    active = codes.active()
    top = np.argsort(-e.label_contribution, axis=1, kind="stable")[:, :3]
    rng = np.random.default_rng(0)
    key = np.where(active, rng.random(active.shape), -1.0)
    rand = np.argsort(-key, axis=1, kind="stable")[:, :3]
    drop_top = float((base - without(top)).mean())
    drop_rand = float((base - without(rand)).mean())
    exact = np.abs(e.label_bias + e.label_contribution.sum(1) + e.label_residual - e.margin)
    emit(
        "clinc150 explanations",
        rows=len(X),
        margin_mean=round(float(base.mean()), 4),
        drop_top3=round(drop_top, 4),
        drop_random3=round(drop_rand, 4),
        ratio=round(drop_top / max(drop_rand, 1e-9), 2),
        sum_error_max=float(exact.max()),
        residual_share_of_margin=round(
            float(np.median(np.abs(e.label_residual) / np.abs(e.margin))), 4
        ),
    )


def cost(ours: ConceptSet, enc, Xtr, ytr, texts) -> None:
    from embedlab.models.pipeline import Pipeline

    clf = RESULTS.pop("_model")
    pipe = Pipeline(encoder=enc, classifier=clf, adapt=False)
    pipe._classifier = clf
    pipe.concepts_ = ours
    texts = list(texts)
    pipe.predict_details(texts[:64])  # warm
    times = {}
    for mode in ("plain", "explain", "plain", "explain"):
        t0 = time.perf_counter()
        pipe.predict_details(texts, explain=mode == "explain")
        times.setdefault(mode, []).append(time.perf_counter() - t0)
    V = enc.encode(texts)
    vt = {}
    for mode in ("plain", "explain", "plain", "explain"):
        t0 = time.perf_counter()
        pipe.details_from_vectors(V, explain=mode == "explain")
        vt.setdefault(mode, []).append(time.perf_counter() - t0)
    p, x = min(times["plain"]), min(times["explain"])
    vp, vx = min(vt["plain"]), min(vt["explain"])
    emit(
        "clinc150 explanation cost",
        texts=len(texts),
        predict_s=round(p, 2),
        predict_explain_s=round(x, 2),
        added_share=round(x / p - 1, 4),
        vectors_only_s=round(vp, 3),
        vectors_only_explain_s=round(vx, 3),
    )


def names(ours: ConceptSet) -> None:
    live = [c for c in ours.concepts if c.frequency > 0 and c.label is not None]
    rng = np.random.default_rng(0)
    sample = [
        live[i] for i in sorted(rng.choice(len(live), size=min(20, len(live)), replace=False))
    ]
    emit(
        "clinc150 concept sample",
        concepts=[
            {
                "id": c.id,
                "name": c.name,
                "words": c.words,
                "text": c.texts[0] if c.texts else "",
                "label": c.label,
                "purity": c.purity,
                "frequency": c.frequency,
            }
            for c in sample
        ],
    )


def sts(args, work: Path, enc) -> None:
    a1, a2, _ = load_stsb(STSB / "sts-train.csv")
    b1, b2, gold = load_stsb(STSB / "sts-dev.csv")
    train = sorted(set(a1) | set(a2))
    Xtr = encoded(enc, train, work, "sts-train")
    X1 = encoded(enc, b1, work, "sts-dev-1")
    X2 = encoded(enc, b2, work, "sts-dev-2")
    dense = float(spearmanr(cosine(X1, X2), gold).statistic)
    t0 = time.perf_counter()
    ours = fit_concepts(Xtr, train, None, k=args.k, progress=True, random_state=0).dictionary
    fit_s = time.perf_counter() - t0
    pca = PCACodes(args.k).fit(Xtr)
    t0 = time.perf_counter()
    omp = ConceptDictionary(ours.n_atoms, args.k, method="omp").fit(Xtr)
    omp_s = time.perf_counter() - t0
    rnd = random_dictionary(ours.n_atoms, args.k, Xtr)
    Xte = np.vstack([X1, X2])
    for name, m, secs in (
        ("topk-sae (ours)", ours, fit_s),
        ("omp-16 over k-means", omp, omp_s),
        ("pca-16", pca, 0.0),
        ("random dictionary + omp", rnd, 0.0),
    ):
        R1, R2 = m.reconstruct(X1), m.reconstruct(X2)
        out = {
            "mean_cosine": round(float(cosine(np.vstack([R1, R2]), Xte).mean()), 4),
            "stsb_dev_spearman": round(float(spearmanr(cosine(R1, R2), gold).statistic), 4),
            "dense_spearman": round(dense, 4),
            "fit_s": round(secs, 1),
        }
        if not isinstance(m, PCACodes):
            ct = m.codes(Xte)
            seen = np.zeros(m.n_atoms, bool)
            seen[ct.index[ct.active()]] = True
            out.update(
                atoms=m.n_atoms,
                dead_share_train=round(float(np.mean(m.frequency_ == 0)), 4),
                dead_share_test=round(float(1 - seen.mean()), 4),
            )
        emit(f"stsb {name}", **out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--atoms", default="auto", help="Atoms of every dictionary ('auto' or N).")
    ap.add_argument("--skip-sts", action="store_true")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="concepts-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("EMBEDLAB_CACHE", str(work / "cache"))
    enc = SentenceTransformerEncoder(cache=False)
    emit("setup", backend=enc.resolved_backend, k=args.k)
    clinc(args, work, enc)
    if not args.skip_sts:
        sts(args, work, enc)
    (work / "results.json").write_text(json.dumps(RESULTS, indent=1, default=str))
    print(f"wrote {work / 'results.json'}")


if __name__ == "__main__":
    main()
