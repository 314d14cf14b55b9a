"""Encode on Ray vs one process (issue 16): `embedlab encode` of the same Parquet file of
texts, single-process and with `--ray --ray-actors N` on a local Ray runtime, each in a
process of its own; wall time, texts/s, the ratio, and the encoder actors' own time per
shard (from the shards' write times) for a scaling model.

Usage:
  .venv/bin/python benchmarks/ray_encode.py [--rows 200000] [--shard-rows 20000]
      [--actors 2] [--work /tmp/ray-encode]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from embedlab.data.datasets import load_demo
from embedlab.data.embedding_set import EmbeddingSet


def encode(data: Path, out: Path, shard_rows: int, extra: list[str]) -> float:
    cmd = [sys.executable, "-m", "embedlab.cli", "encode", str(data), "-o", str(out)]
    cmd += ["--shard-rows", str(shard_rows), "--no-cache", "--force", "--restart", *extra]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(res.stdout + res.stderr)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--shard-rows", type=int, default=20_000)
    ap.add_argument("--actors", type=int, default=2)
    ap.add_argument("--work", default="/tmp/ray-encode")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data = work / f"texts-{args.rows}.parquet"
    if not data.exists():
        base = list(load_demo("train").texts) + list(load_demo("test").texts)
        texts = [f"{base[i % len(base)]} #{i}" for i in range(args.rows)]
        pq.write_table(pa.table({"text": texts}), data, row_group_size=10_000)
    single = encode(data, work / "single", args.shard_rows, [])
    ray = encode(data, work / "ray", args.shard_rows, ["--ray", "--ray-actors", str(args.actors)])
    a, b = EmbeddingSet.load(work / "single"), EmbeddingSet.load(work / "ray")
    same = a.ids.tolist() == b.ids.tolist() and float(np.abs(a.vectors - b.vectors).max())
    rows = {
        "rows": args.rows,
        "shard_rows": args.shard_rows,
        "single_process_s": round(single, 1),
        "single_texts_per_s": round(args.rows / single),
        "ray_s": round(ray, 1),
        "ray_texts_per_s": round(args.rows / ray),
        "ray_over_single": round(single / ray, 2),
        "actors": args.actors,
        "same_ids_and_max_abs_diff": same,
    }
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
