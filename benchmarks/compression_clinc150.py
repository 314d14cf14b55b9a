"""CLINC150 under compression: same-intent retrieval and classification, beside float32 and
sentence-transformers' ``quantize_embeddings`` + FAISS flat, in one process.

Usage: .venv/bin/python benchmarks/compression_clinc150.py

Retrieval: each in-scope test utterance queries the 15,000 training utterances; a hit is a
training row of the same intent. recall@10 = share of queries with a same-intent row in the
top 10; MRR@10 = mean 1/rank of the first one; P@10 = share of same-intent rows in the top
10. Classification: prototype head (class means) + max-cosine OOS detector, and LDA +
relative Mahalanobis, fitted on the (de)compressed training vectors, scored on test /
oos_test. Bytes per vector are what the search structure stores (rescoring steps also read
the float32 vectors of the shortlist).
"""

from __future__ import annotations

import time
import warnings

import faiss
import numpy as np

from embedlab.compress.index import Index
from embedlab.compress.transforms import TransformChain
from embedlab.core.metrics import auroc, retrieval_at_k
from embedlab.data.datasets import load_clinc150
from embedlab.detect import MahalanobisDetector, MaxCosineDetector
from embedlab.encoders import SentenceTransformerEncoder
from embedlab.heads import GaussianClassifier, PrototypeClassifier

K = 10


def classify(Xtr, Xte, Xoo, ytr, yte) -> dict[str, float]:
    head = PrototypeClassifier().fit(Xtr, ytr)
    det = MaxCosineDetector(calibration_split=0).fit(Xtr, ytr)
    lda = GaussianClassifier().fit(Xtr, ytr)
    rmd = MahalanobisDetector(relative=True, calibration_split=0).fit(Xtr, ytr)
    return {
        "accuracy": float((head.predict(Xte) == yte).mean()),
        "auroc": auroc(det.decision_function(Xte), det.decision_function(Xoo)),
        "lda_accuracy": float((lda.predict(Xte) == yte).mean()),
        "rmd_auroc": auroc(rmd.decision_function(Xte), rmd.decision_function(Xoo)),
    }


def main() -> None:
    enc = SentenceTransformerEncoder()
    tr, te, oo = (load_clinc150(s) for s in ("train", "test", "oos_test"))
    Xtr, Xte, Xoo = enc.encode(tr.texts), enc.encode(te.texts), enc.encode(oo.texts)
    ytr, yte = np.asarray(tr.labels, dtype=object), np.asarray(te.labels, dtype=object)
    rows = []

    def run(name, bytes_per_vector, search, decoded):
        t0 = time.perf_counter()
        ranked = search(Xte)
        qps = len(Xte) / (time.perf_counter() - t0)
        rows.append(
            {
                "method": name,
                "bytes": bytes_per_vector,
                "qps": qps,
                **retrieval_at_k(ytr[ranked], yte, K),
                **classify(*decoded, ytr, yte),
            }
        )

    def embedlab_index(spec):
        idx = Index(spec, Xtr.shape[1]).add(Xtr)
        return idx, lambda Q: idx.search(Q, K)[0].astype(int)

    idx, fn = embedlab_index("flat")
    run("float32, embedlab flat", idx.bytes_per_vector(), fn, (Xtr, Xte, Xoo))
    for spec, name in (
        ("binary,rescore10", "embedlab binary + rescore (r=10)"),
        ("dim96,rerank10", "embedlab dim96 shortlist + rerank (r=10)"),
    ):
        idx, fn = embedlab_index(spec)
        chain = TransformChain("binary" if spec.startswith("binary") else "dim96,norm").fit(Xtr)
        dec = tuple(chain.float_vectors(X) for X in (Xtr, Xte, Xoo))
        run(name, idx.bytes_per_vector(), fn, dec)
    for spec in (
        "int8",
        "dim192,norm,int8",
        "center,pca192,norm,int8",
        "dim96,norm",
        "dim48,norm",
        "pq192",
        "pq96",
        "pq48",
        "binary",
    ):
        chain = TransformChain(spec).fit(Xtr)
        dec = tuple(chain.float_vectors(X) for X in (Xtr, Xte, Xoo))
        flat = faiss.IndexFlatIP(dec[0].shape[1])
        flat.add(np.ascontiguousarray(dec[0]))
        run(
            f"embedlab {spec} (decoded, exact search)",
            chain.bytes_per_vector(),
            lambda Q, c=chain, f=flat: f.search(np.ascontiguousarray(c.float_vectors(Q)), K)[1],
            dec,
        )
    # Anchor: sentence-transformers quantize_embeddings + FAISS flat, same vectors.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from sentence_transformers.quantization import quantize_embeddings
    ub = {n: quantize_embeddings(X, "ubinary") for n, X in (("tr", Xtr), ("te", Xte))}
    bidx = faiss.IndexBinaryFlat(Xtr.shape[1])
    bidx.add(ub["tr"])
    signs = tuple(
        np.unpackbits(quantize_embeddings(X, "ubinary"), axis=1).astype(np.float32) * 2 - 1
        for X in (Xtr, Xte, Xoo)
    )
    run(
        "anchor: ST quantize ubinary + FAISS binary flat",
        Xtr.shape[1] / 8,
        lambda Q: bidx.search(quantize_embeddings(Q, "ubinary"), K)[1],
        signs,
    )
    i8 = tuple(
        quantize_embeddings(X, "int8", calibration_embeddings=Xtr).astype(np.float32)
        for X in (Xtr, Xte, Xoo)
    )
    fidx = faiss.IndexFlatIP(Xtr.shape[1])
    fidx.add(i8[0])
    run(
        "anchor: ST quantize int8 + FAISS flat",
        float(Xtr.shape[1]),
        lambda Q: fidx.search(
            quantize_embeddings(Q, "int8", calibration_embeddings=Xtr).astype(np.float32), K
        )[1],
        i8,
    )

    base = rows[0]
    print(f"{len(Xte)} queries over {len(Xtr)} training rows; k = {K}")
    print(
        "| method | bytes/vector | × smaller | recall@10 | MRR@10 | P@10 | prototype acc | "
        "max-cos AUROC | LDA acc | rel-Maha AUROC | kept (P@10 / proto acc / LDA acc) | "
        "queries/s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        kept = " / ".join(
            f"{100 * r[m] / base[m]:.1f}%" for m in ("p@10", "accuracy", "lda_accuracy")
        )
        print(
            f"| {r['method']} | {r['bytes']:g} | {base['bytes'] / r['bytes']:.0f} | "
            f"{100 * r['recall@10']:.2f}% | {100 * r['mrr@10']:.2f}% | {100 * r['p@10']:.2f}% | "
            f"{100 * r['accuracy']:.2f}% | {100 * r['auroc']:.2f}% | "
            f"{100 * r['lda_accuracy']:.2f}% | {100 * r['rmd_auroc']:.2f}% | {kept} | "
            f"{r['qps']:,.0f} |"
        )


if __name__ == "__main__":
    main()
