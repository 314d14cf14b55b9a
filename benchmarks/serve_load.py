"""Load test of `embedlab serve` (issue 15): throughput and latency with micro-batching,
beside the same server with batching off (one encoder call per request — the naive server)
and beside sentence-transformers called in-process, in the same run.

Usage:
  .venv/bin/python benchmarks/serve_load.py MODEL_DIR [--seconds 20] [--clients 1 8 32]
      [--max-wait-ms 0] [--jsonl FILE]

Each server is started with the CLI on 127.0.0.1 (a free port), warmed up, then driven by
``--clients`` concurrent clients that each send one text per request, back to back, for
``--seconds``; the run stops by itself. Texts: the packaged demo's test split, cycled.
Reported per configuration: requests/s, p50 / p99 latency, errors, and the server's resident
memory before and after. The in-process row encodes one text per call with
``SentenceTransformer.encode`` for the same time (no HTTP at all).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import httpx
import numpy as np

from embedlab.datasets import load_demo
from embedlab.serve.process import running_server


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def drive(url: str, model: str, texts: list[str], clients: int, seconds: float) -> dict:
    lat: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def client(i: int, c: httpx.AsyncClient) -> None:
        nonlocal errors
        j = i
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            try:
                r = await c.post(url, json={"model": model, "input": [texts[j % len(texts)]]})
                if r.status_code != 200:
                    errors += 1
            except httpx.HTTPError:
                errors += 1
            lat.append(time.perf_counter() - t0)
            j += clients

    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(timeout=30, limits=limits) as c:
        t0 = time.perf_counter()
        await asyncio.gather(*[client(i, c) for i in range(clients)])
        wall = time.perf_counter() - t0
    a = np.asarray(lat) * 1000
    return {
        "requests": len(lat),
        "rps": len(lat) / wall,
        "p50_ms": float(np.percentile(a, 50)),
        "p99_ms": float(np.percentile(a, 99)),
        "errors": errors,
    }


def run_server(
    model_dir: str, batching: bool, clients: list[int], seconds: float, wait_ms: float
) -> list[dict]:
    options = ["--max-wait-ms", str(wait_ms)] if batching else ["--no-batching"]
    rows = []
    with running_server([model_dir], *options, ready_timeout=120) as (base, proc):
        name = Path(model_dir).resolve().name
        texts = load_demo("test").texts
        asyncio.run(drive(base + "/v1/classify", name, texts, 4, 3.0))  # warm-up
        mem0 = rss_mb(proc.pid)
        for n in clients:
            r = asyncio.run(drive(base + "/v1/classify", name, texts, n, seconds))
            r |= {
                "server": "embedlab serve" + ("" if batching else " --no-batching"),
                "clients": n,
                "rss_before_mb": round(mem0, 1),
                "rss_after_mb": round(rss_mb(proc.pid), 1),
            }
            rows.append(r)
            print(json.dumps(r), flush=True)
    return rows


def in_process(seconds: float) -> dict:
    from sentence_transformers import SentenceTransformer

    from embedlab.encoders import SentenceTransformerEncoder

    model = SentenceTransformer(str(SentenceTransformerEncoder().model_path), device="cpu")
    texts = load_demo("test").texts
    model.encode(texts[:8])
    lat, stop, i = [], time.perf_counter() + seconds, 0
    while time.perf_counter() < stop:
        t0 = time.perf_counter()
        model.encode([texts[i % len(texts)]])
        lat.append(time.perf_counter() - t0)
        i += 1
    a = np.asarray(lat) * 1000
    r = {
        "server": "sentence-transformers in-process (1 text/call)",
        "clients": 1,
        "requests": len(lat),
        "rps": len(lat) / seconds,
        "p50_ms": float(np.percentile(a, 50)),
        "p99_ms": float(np.percentile(a, 99)),
        "errors": 0,
    }
    print(json.dumps(r), flush=True)
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--max-wait-ms", type=float, default=0.0)
    ap.add_argument("--jsonl")
    args = ap.parse_args()
    rows = run_server(args.model, True, args.clients, args.seconds, args.max_wait_ms)
    rows += run_server(args.model, False, args.clients, args.seconds, 0.0)
    rows.append(in_process(args.seconds))
    print("\nserver | clients | req/s | p50 ms | p99 ms | errors | RSS MB before → after")
    for r in rows:
        mem = f"{r['rss_before_mb']} → {r['rss_after_mb']}" if "rss_before_mb" in r else "—"
        print(
            f"{r['server']} | {r['clients']} | {r['rps']:.1f} | {r['p50_ms']:.1f} | "
            f"{r['p99_ms']:.1f} | {r['errors']} | {mem}"
        )
    by = {(r["server"], r["clients"]): r["rps"] for r in rows}
    for n in args.clients:
        b, naive = by.get(("embedlab serve", n)), by.get(("embedlab serve --no-batching", n))
        if b and naive:
            print(f"{n} clients: batching {b / naive:.2f}x the naive server's throughput")
    if args.jsonl:
        with open(args.jsonl, "a") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in rows)


if __name__ == "__main__":
    main()
