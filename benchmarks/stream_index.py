"""An IVF-PQ index built from a sharded set (issue 16): `embedlab index SET -o OUT --spec
ivfN,pqM` over 1,000,000 × 384 stored vectors — train on a sample, add shard by shard — its
wall time, peak RSS and recall@10, beside FAISS given the whole array in memory (the anchor:
the same factory string, training sample and nprobe).

Usage:
  .venv/bin/python benchmarks/stream_index.py [--rows 1000000] [--work /tmp/stream-bench]
      [--spec ivf1024,pq16] [--train-rows 100000] [--queries 1000]

The set is the one benchmarks/stream_predict.py writes (made here if missing). Recall@10:
1,000 rows of the set drawn at random (seeded) as queries, against exact inner-product
top-10 over all rows; the query itself counts. Each build runs as a process of its own
(its own peak RSS read at exit).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from measured import run_measured
from stream_predict import fit, synthetic

_ANCHOR = """
import json, resource, sys, time
import faiss, numpy as np
from embedlab.data.sharded import ShardedSet
data, out = sys.argv[1], sys.argv[5]
nlist, m, train_rows = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
t0 = time.perf_counter()
ss = ShardedSet(data)
X = np.concatenate([np.asarray(s.vectors) for s in ss])  # the whole array in memory
rng = np.random.default_rng(0)
sample = X[np.sort(rng.choice(len(X), size=min(train_rows, len(X)), replace=False))]
index = faiss.index_factory(X.shape[1], f"IVF{nlist},PQ{m}x8np", faiss.METRIC_INNER_PRODUCT)
index.train(sample)
index.add(X)
faiss.write_index(index, out)
wall = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"wall_s": round(wall, 2), "peak_rss_mb": round(peak, 1)}))
"""


def exact_top10(data: Path, queries: np.ndarray) -> np.ndarray:
    """Row numbers of the exact inner-product top 10 of each query, shard by shard."""
    from embedlab.data.sharded import ShardedSet

    best_s = np.full((len(queries), 10), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), 10), dtype=np.int64)
    start = 0
    for shard in ShardedSet(data):
        S = queries @ np.asarray(shard.vectors).T
        top = np.argpartition(-S, 10, axis=1)[:, :10]
        s_all = np.concatenate([best_s, np.take_along_axis(S, top, axis=1)], axis=1)
        i_all = np.concatenate([best_i, top + start], axis=1)
        keep = np.argsort(-s_all, axis=1)[:, :10]
        best_s = np.take_along_axis(s_all, keep, axis=1)
        best_i = np.take_along_axis(i_all, keep, axis=1)
        start += shard.n
    return best_i


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--work", default="/tmp/stream-bench")
    ap.add_argument("--spec", default="ivf1024,pq16")
    ap.add_argument("--train-rows", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=1000)
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    fit(work / "model-prototype", "prototype")
    data = work / f"vectors-{args.rows}"
    synthetic(data, work / "model-prototype", args.rows)
    nlist = int(args.spec.split(",")[0].removeprefix("ivf"))
    m = int(args.spec.split(",")[1].removeprefix("pq"))

    out = work / f"index-{args.spec.replace(',', '-')}"
    cmd = ["index", str(data), "-o", str(out), "--spec", args.spec, "--force"]
    _, wall, peak = run_measured([*cmd, "--train-rows", str(args.train_rows)])
    ours = {"build": "embedlab index (shard by shard)", "wall_s": round(wall, 2)}
    ours["peak_rss_mb"] = round(peak, 1)

    anchor_file = work / "anchor.faiss"
    res = subprocess.run(
        [sys.executable, "-c", _ANCHOR, str(data), str(nlist), str(m), str(args.train_rows),
         str(anchor_file)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    theirs = {"build": "FAISS, whole array in memory"} | json.loads(res.stdout)

    import faiss

    from embedlab.compress.index import Index
    from embedlab.data.sharded import ShardedSet

    ss = ShardedSet(data)
    rng = np.random.default_rng(1)
    rows = np.sort(rng.choice(ss.n, size=args.queries, replace=False))
    X0 = np.concatenate([np.asarray(s.vectors) for s in ss])[rows]  # only the query rows kept
    t0 = time.perf_counter()
    truth = exact_top10(data, X0)
    print(f"exact top-10 of {args.queries} queries: {time.perf_counter() - t0:.1f} s", flush=True)

    index = Index.load(out)
    ids, _ = index.search(X0, k=10)
    found = ids.astype(np.int64)  # the set's ids are its row numbers
    ours["recall_at_10"] = round(recall(found, truth), 4)
    anchor_index = faiss.read_index(str(anchor_file))
    faiss.extract_index_ivf(anchor_index).nprobe = min(16, nlist)
    _, rows_found = anchor_index.search(X0, 10)
    theirs["recall_at_10"] = round(recall(rows_found, truth), 4)
    for r in (ours, theirs):
        print(json.dumps({"rows": args.rows, "spec": args.spec, **r}), flush=True)


if __name__ == "__main__":
    main()
