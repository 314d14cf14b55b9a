"""Every embedlab Index kind on N × 384 synthetic-but-structured vectors: build time, memory,
queries/s and recall@10 against exact search.

Usage: .venv/bin/python benchmarks/index_synthetic.py [--n 1000000] [--queries 1000]
           [--specs flat,sq8,...]

Data: "embedding-like" vectors — 2,000 cluster centres in a 384-d space whose variance decays
along its principal axes (power law, like sentence embeddings), each point = its centre + a
per-cluster-scaled Gaussian, L2-normalised. Queries are fresh points from the same mixture.
Ground truth is exact inner-product top-10 (FAISS IndexFlatIP, the anchor, in this process).
Memory = growth of the process's resident set while building (peak RSS is also printed).
"""

from __future__ import annotations

import argparse
import gc
import resource
import time

import faiss
import numpy as np

from embedlab.compress.index import Index

DIM = 384
K = 10
DEFAULT_SPECS = (
    "flat",
    "sq8",
    "pq48",
    "binary,rescore10",
    "dim96,rerank10",
    "ivf1024,pq48",
    "hnsw16",
)


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def make_data(n: int, n_queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scales = (np.arange(1, DIM + 1, dtype=np.float32) ** -0.6).astype(np.float32)
    centres = rng.standard_normal((2000, DIM), dtype=np.float32) * scales
    spread = rng.uniform(0.3, 0.8, 2000).astype(np.float32)

    def draw(m: int) -> np.ndarray:
        out = np.empty((m, DIM), dtype=np.float32)
        for s in range(0, m, 100_000):  # chunks keep the temporaries small
            c = rng.integers(0, 2000, min(100_000, m - s))
            noise = rng.standard_normal((len(c), DIM), dtype=np.float32) * scales
            block = centres[c] + spread[c, None] * noise
            out[s : s + len(c)] = block / np.linalg.norm(block, axis=1, keepdims=True)
        return out

    return draw(n), draw(n_queries)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--specs", default=";".join(DEFAULT_SPECS), help="specs separated by ;")
    args = ap.parse_args()
    specs = [s for s in args.specs.split(";") if s]
    t0 = time.perf_counter()
    X, Q = make_data(args.n, args.queries)
    print(
        f"data: {args.n:,} × {DIM} float32 ({X.nbytes / 2**30:.2f} GiB), {len(Q)} queries, "
        f"made in {time.perf_counter() - t0:.0f} s; faiss {faiss.__version__}, "
        f"{faiss.omp_get_max_threads()} threads"
    )
    exact = faiss.IndexFlatIP(DIM)
    exact.add(X)
    t0 = time.perf_counter()
    _, truth = exact.search(Q, K)
    exact_qps = len(Q) / (time.perf_counter() - t0)
    del exact
    gc.collect()
    print(f"anchor FAISS IndexFlatIP: {exact_qps:,.0f} queries/s\n")
    print("| index | bytes/vector | build s | memory MiB | queries/s | recall@10 |")
    print("|---|---:|---:|---:|---:|---:|")
    for spec in specs:
        gc.collect()
        before = rss_mib()
        t0 = time.perf_counter()
        index = Index(spec, DIM)
        if spec.startswith(("ivf", "pq", "sq8")):
            sample = np.random.default_rng(1).choice(args.n, min(args.n, 100_000), replace=False)
            index.train(X[np.sort(sample)])
        for s in range(0, args.n, 200_000):
            index.add(X[s : s + 200_000])
        build = time.perf_counter() - t0
        grown = rss_mib() - before
        index.search(Q[:10], K)  # lazy structures (binary codes index, prefix index)
        t0 = time.perf_counter()
        ids, _ = index.search(Q, K)
        qps = len(Q) / (time.perf_counter() - t0)
        found = ids.astype(np.int64)
        recall = np.mean([len(np.intersect1d(a, b)) / K for a, b in zip(found, truth, strict=True)])
        print(
            f"| {spec} | {index.bytes_per_vector():g} | {build:.1f} | {grown:,.0f} | "
            f"{qps:,.0f} | {recall:.4f} |",
            flush=True,
        )
        del index, ids, found
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS {peak:,.0f} MiB")


if __name__ == "__main__":
    main()
