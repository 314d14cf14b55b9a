"""Moving CLINC150 models and indexes to another encoder through a map, against a native
refit on that encoder, in one run (issue 29).

Usage: .venv/bin/python benchmarks/align_migrate.py --students DIR [--work DIR]
       [--sizes 50 100 200 500 1000 2000] [--full-at 500 2000]

DIR holds the students of ``benchmarks/distill.py`` (``static``, ``shallow``,
``model2vec-plain``). Old encoder: the packaged all-MiniLM-L6-v2 (onnx-int8). New encoders:
the static and shallow students (trained to reproduce it on CLINC150 train texts), and two
that were not trained toward it: model2vec's plain distillation (its own 256-d PCA space,
no texts) and the teacher cut at layer 3 (mean pooling of layer 3).

The model: ``OpenSetClassifier()`` (automatic head and detector, the CLINC150 default fit
on a frozen encoder) fitted on train + oos_train vectors of the old encoder. Calibration
texts: a seeded sample of CLINC150 *val* + oos_val (no train or test text), n in --sizes.
For each pair and n: the model migrated through the ``auto`` map; at the --full-at sizes
also through each method (procrustes, ridge, relative, residual where the dimensions
match), a random rotation (floor) and aecp 0.2.1's RidgeMapping (anchor, same texts);
scored on test + oos_test (accuracy with rejection, OOS AUROC) beside the native refit:
``OpenSetClassifier()`` fitted on the new encoder's own train vectors (the ceiling).
Search: an old-encoder flat index of the in-scope train rows queried with new-encoder test
queries through the backward map; recall@10 = share of the 10 hits with the query's label,
beside the new encoder's own index. Times: align (fit on encoded vectors) + migrate.
Results: stdout (JSON lines), WORK/results.json, WORK/align_curve.png.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_io import RESULTS, emit, encoded

from embedlab.align import fit_alignment, migrate_classifier, random_rotation
from embedlab.align.alignment import Alignment
from embedlab.data.datasets import load_clinc150
from embedlab.encoders import SentenceTransformerEncoder
from embedlab.encoders.loading import open_encoder
from embedlab.models.openset import OpenSetClassifier


def score(clf, X, y) -> dict:
    pred = clf.predict(X)
    is_oos = y == "oos"
    s = clf.novelty_score(X)
    return {
        "accuracy": round(float((pred == y).mean()), 4),
        "oos_auroc": round(float(roc_auc_score(is_oos, s)), 4),
    }


def recall10(index_X, index_y, Q, qy) -> float:
    from embedlab.compress.index import Index

    idx = Index("flat", index_X.shape[1]).add(index_X)
    ids, _ = idx.search(Q, 10)
    hits = index_y[ids.astype(int)]
    return round(float((hits == qy[:, None]).mean()), 4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--students", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 200, 500, 1000, 2000])
    ap.add_argument(
        "--full-at",
        type=int,
        nargs="+",
        default=[500, 2000],
        help="Sizes at which every method and anchor runs (elsewhere: auto only).",
    )
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="align-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("EMBEDLAB_CACHE", str(work / "cache"))
    train = load_clinc150("train", "oos_train")
    test = load_clinc150("test", "oos_test")
    val = load_clinc150("val", "oos_val")
    y_train = np.asarray(train.labels, dtype=object).astype(str)
    y_test = np.asarray(test.labels, dtype=object).astype(str)
    old = SentenceTransformerEncoder(cache=False)
    news = {
        "static student": open_encoder(args.students / "static", cache=False),
        "shallow student": open_encoder(args.students / "shallow", cache=False),
        "model2vec plain": open_encoder(args.students / "model2vec-plain", cache=False),
        "layer-3 cut": SentenceTransformerEncoder(cache=False, layer=3),
    }
    OLD = {
        s: encoded(old, d.texts, work, f"old-{s}")
        for s, d in (("train", train), ("test", test), ("val", val))
    }
    t0 = time.perf_counter()
    model = OpenSetClassifier().fit(OLD["train"], y_train)
    emit(
        "old model",
        fit_s=round(time.perf_counter() - t0, 1),
        head=model.head_name_,
        detector=model.detector_name_,
        **score(model, OLD["test"], y_test),
    )
    rng = np.random.default_rng(0)
    order = rng.permutation(len(val.texts))
    in_train = y_train != "oos"
    in_test = y_test != "oos"
    curves: dict[str, dict[int, float]] = {}
    for name, enc in news.items():
        slug = name.replace(" ", "-")
        N = {
            s: encoded(enc, d.texts, work, f"{slug}-{s}")
            for s, d in (("train", train), ("test", test), ("val", val))
        }
        t0 = time.perf_counter()
        native = OpenSetClassifier().fit(N["train"], y_train)
        nat = score(native, N["test"], y_test)
        nat_recall = recall10(
            N["train"][in_train], y_train[in_train], N["test"][in_test], y_test[in_test]
        )
        emit(
            name,
            native=nat,
            native_fit_s=round(time.perf_counter() - t0, 1),
            native_head=native.head_name_,
            native_detector=native.detector_name_,
            native_recall10=nat_recall,
        )
        for n in args.sizes:
            rows = np.sort(order[:n])
            A, B = OLD["val"][rows], N["val"][rows]
            out = {}
            full = n in args.full_at
            methods = ("auto", "procrustes", "ridge", "relative", "residual") if full else ("auto",)
            for method in methods:
                if method == "residual" and A.shape[1] != B.shape[1]:
                    continue
                t0 = time.perf_counter()
                al = fit_alignment(A, B, method=method, old=old.spec, new=enc.spec)
                t_align = time.perf_counter() - t0
                t0 = time.perf_counter()
                moved = migrate_classifier(model, al)
                t_migrate = time.perf_counter() - t0
                m = score(moved, N["test"], y_test)
                entry = {
                    **m,
                    "accuracy_ratio": round(m["accuracy"] / nat["accuracy"], 4),
                    "auroc_ratio": round(m["oos_auroc"] / nat["oos_auroc"], 4),
                    "map_cosine": al.info["fidelity"]["forward"]["mean_cosine"],
                    "align_s": round(t_align, 2),
                    "migrate_s": round(t_migrate, 2),
                }
                if method == "auto":
                    entry["chosen"] = al.method
                    entry["recall10_through_map"] = recall10(
                        OLD["train"][in_train],
                        y_train[in_train],
                        al.backward(N["test"][in_test]),
                        y_test[in_test],
                    )
                    entry["recall10_ratio"] = round(entry["recall10_through_map"] / nat_recall, 4)
                    curves.setdefault(name, {})[n] = entry["accuracy_ratio"]
                out[method] = entry
            if not full:
                emit(name, **{f"n={n}": out})
                continue
            rot = random_rotation(A.shape[1], B.shape[1], seed=0)
            floor = migrate_classifier(model, _as_alignment(rot, al))
            out["random rotation"] = score(floor, N["test"], y_test)
            try:
                from aecp import RidgeMapping

                t0 = time.perf_counter()
                fwd = RidgeMapping(seed=0).fit(A, B)
                t_aecp = time.perf_counter() - t0
                m = score(
                    migrate_classifier(model, _as_alignment(fwd.transform, al)), N["test"], y_test
                )
                m["accuracy_ratio"] = round(m["accuracy"] / nat["accuracy"], 4)
                m["auroc_ratio"] = round(m["oos_auroc"] / nat["oos_auroc"], 4)
                m["align_s"] = round(t_aecp, 2)
                out["aecp ridge"] = m
            except ImportError:
                out["aecp ridge"] = "aecp not installed"
            emit(name, **{f"n={n}": out})
    (work / "results.json").write_text(json.dumps(RESULTS, indent=1))
    plot(curves, work / "align_curve.png")
    print(f"wrote {work / 'results.json'}")


def _as_alignment(fn, like: Alignment) -> Alignment:
    """``like`` with its forward map replaced by ``fn`` (an anchor's map)."""
    from embedlab.align.maps import AffineMap

    class _Map(AffineMap):
        def __call__(self, X):
            Y = np.asarray(fn(np.asarray(X, np.float32)), np.float32)
            return Y / np.maximum(np.linalg.norm(Y, axis=1, keepdims=True), 1e-12)

    base = like.forward_map
    wrapped = _Map(base.method, base.W, base.b, base.anchors, True)
    return Alignment(wrapped, like.backward_map, old=like.old, new=like.new, info=like.info)


def plot(curves: dict, path: Path) -> None:
    from matplotlib.figure import Figure  # no pyplot: no global backend

    fig = Figure(figsize=(6.4, 4))
    ax = fig.add_subplot()
    for name, pts in curves.items():
        xs = sorted(pts)
        ax.plot(xs, [pts[x] for x in xs], marker="o", label=name)
    ax.axhline(0.95, ls="--", c="grey", lw=0.8)
    ax.axhline(0.98, ls=":", c="grey", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("calibration texts (CLINC150 val)")
    ax.set_ylabel("migrated accuracy / native refit")
    ax.set_title("CLINC150 model moved from MiniLM through the map (auto)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
