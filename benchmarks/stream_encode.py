"""Streaming encode (issue 16): `embedlab encode` of Parquet files of growing size, each in a
process of its own — peak RSS should stay flat (bounded by a shard), time grow linearly.

Usage:
  .venv/bin/python benchmarks/stream_encode.py [--rows 20000 100000] [--shard-rows 20000]
      [--work /tmp/stream-encode]

Texts: the packaged demo's texts, each row made distinct with its row number (so the cache
cannot serve repeats; it is off anyway), written as Parquet. Reported per file: rows, shards,
wall seconds, texts/s, the process's own peak RSS.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from measured import run_measured

from embedlab.data.datasets import load_demo


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[20_000, 100_000])
    ap.add_argument("--shard-rows", type=int, default=20_000)
    ap.add_argument("--work", default="/tmp/stream-encode")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    base = list(load_demo("train").texts) + list(load_demo("test").texts)
    for n in args.rows:
        data = work / f"texts-{n}.parquet"
        if not data.exists():
            texts = [f"{base[i % len(base)]} #{i}" for i in range(n)]
            pq.write_table(pa.table({"text": texts}), data, row_group_size=10_000)
        out = work / f"space-{n}"
        cmd = ["encode", str(data), "-o", str(out), "--shard-rows", str(args.shard_rows)]
        stdout, wall, peak = run_measured([*cmd, "--no-cache", "--force", "--restart"])
        row = {
            "rows": n,
            "shard_rows": args.shard_rows,
            "wall_s": round(wall, 1),
            "texts_per_s": round(n / wall),
            "peak_rss_mb": round(peak, 1),
            "message": stdout.strip().splitlines()[-1][:200],
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
