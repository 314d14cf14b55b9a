"""Streaming predict over stored vectors (issue 16): `embedlab predict MODEL SET -o OUT`
on 1,000,000 × 384 synthetic-but-structured vectors, throughput and peak memory, beside the
head's bare matrix products on the same vectors (the anchor: what the arithmetic alone costs).

Usage:
  .venv/bin/python benchmarks/stream_predict.py [--rows 1000000] [--work /tmp/stream-bench]
      [--heads prototype gaussian] [--vector-format npy|parquet]

Models: fitted on the packaged demo data with the frozen packaged encoder (`embedlab fit
--no-adapt --head H`). Vectors: for each row a demo intent drawn at random, its training
mean plus Gaussian noise (so that rows sit at the distances real ones do: the noise scale is
the demo's own within-class spread), 10 % of rows drawn around no intent (isotropic, out of
scope); L2-normalised; written as a sharded EmbeddingSet (100,000 rows a shard) whose
provenance names the model's encoder. Each `embedlab predict` runs as its own process
(`/proc` peak RSS of that process, wall time of the whole command and of the predicting
part as the command prints no timing: both measured here).
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

from embedlab.data.datasets import demo_path, load_demo
from embedlab.data.embedding_set import EmbeddingSet, Provenance
from embedlab.data.sharded import ShardWriter


def fit(model: Path, head: str) -> None:
    if (model / "bundle.json").is_file():
        return
    cmd = [sys.executable, "-m", "embedlab.cli", "fit", str(demo_path("train")), "-o", str(model)]
    cmd += ["--no-adapt", "--head", head, "--force"]
    subprocess.run(cmd, check=True, capture_output=True)


def synthetic(out: Path, model: Path, rows: int, seed: int = 0, vector_format: str = "npy") -> None:
    if (out / "manifest.json").is_file():
        return
    from embedlab.models.pipeline import Pipeline

    pipe = Pipeline.load(model, cache=False)
    enc = pipe._encoder()
    t = load_demo("train")
    X = enc.encode(list(t.texts))
    labels = np.asarray(t.labels, dtype=object)
    names = sorted(set(labels) - {"oos"})
    means = np.stack([X[labels == n].mean(axis=0) for n in names]).astype(np.float32)
    spread = float(np.mean([X[labels == n].std(axis=0).mean() for n in names]))
    rng = np.random.default_rng(seed)
    job = {"synthetic": rows, "seed": seed, "model": str(model)}
    writer = ShardWriter(out, job, vector_format=vector_format)
    shard_rows = 100_000
    for i, s in enumerate(range(0, rows, shard_rows)):
        n = min(shard_rows, rows - s)
        cls = rng.integers(0, len(names), n)
        V = means[cls] + rng.normal(0, spread, (n, X.shape[1])).astype(np.float32)
        oos = rng.random(n) < 0.10
        V[oos] = rng.normal(0, 1, (int(oos.sum()), X.shape[1])).astype(np.float32)
        V /= np.linalg.norm(V, axis=1, keepdims=True)
        truth = np.where(oos, "oos", np.asarray(names, dtype=object)[cls])
        es = EmbeddingSet(
            V,
            ids=[str(j) for j in range(s, s + n)],
            labels=truth,
            provenance=Provenance(encoder=enc.spec, dim=X.shape[1], source="synthetic"),
        )
        writer.write(i, es, s)
    writer.finish(-(-rows // shard_rows))


def run_predict(model: Path, data: Path, out: Path) -> dict:
    """`embedlab predict` in a process of its own; its wall time and its own peak RSS."""
    args = ["predict", str(model), str(data), "-o", str(out), "--force", "--no-keep-columns"]
    stdout, wall, peak = run_measured([*args, "--no-cache"])
    startup_cmd = [
        sys.executable,
        "-c",
        "from embedlab.models.pipeline import Pipeline; "
        f"Pipeline.load({str(model)!r}, cache=False)",
    ]
    t1 = time.perf_counter()
    subprocess.run(startup_cmd, check=True, capture_output=True)
    startup = time.perf_counter() - t1
    return {
        "wall_s": round(wall, 2),
        "startup_s": round(startup, 2),
        "peak_rss_mb": round(peak, 1),
        "message": stdout.strip().splitlines()[-1],
    }


def anchor(model: Path, data: Path) -> float:
    """Vectors per second of the head's bare arithmetic: cosine to the class means, argmax,
    max similarity (the prototype head and max-cosine detector, no validation, no output)."""
    from embedlab.data.sharded import ShardedSet
    from embedlab.models.pipeline import Pipeline

    pipe = Pipeline.load(model, cache=False)
    P = pipe.classifier_.head_.prototypes_
    ss = ShardedSet(data)
    t0 = time.perf_counter()
    for shard in ss:
        V = np.asarray(shard.vectors)
        for s in range(0, len(V), 65_536):
            S = V[s : s + 65_536] @ P.T
            S.argmax(axis=1)
            S.max(axis=1)
    return ss.n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--work", default="/tmp/stream-bench")
    ap.add_argument("--heads", nargs="+", default=["prototype", "gaussian"])
    ap.add_argument("--vector-format", default="npy", choices=["npy", "parquet"])
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    for head in args.heads:
        fit(work / f"model-{head}", head)
    suffix = "" if args.vector_format == "npy" else f"-{args.vector_format}"
    data = work / f"vectors-{args.rows}{suffix}"
    t0 = time.perf_counter()
    synthetic(data, work / f"model-{args.heads[0]}", args.rows, vector_format=args.vector_format)
    print(f"synthetic set: {time.perf_counter() - t0:.1f} s", flush=True)
    rows = []
    for head in args.heads:
        r = run_predict(work / f"model-{head}", data, work / f"pred-{head}.parquet")
        predicting = r["wall_s"] - r["startup_s"]
        r |= {
            "head": head,
            "rows": args.rows,
            "vectors_per_s_whole_command": round(args.rows / r["wall_s"]),
            "vectors_per_s_after_startup": round(args.rows / predicting),
        }
        rows.append(r)
        print(json.dumps(r), flush=True)
    if "prototype" in args.heads:
        a = anchor(work / "model-prototype", data)
        print(json.dumps({"anchor": "prototype arithmetic only", "vectors_per_s": round(a)}))


if __name__ == "__main__":
    main()
