"""Load test of `embedlab serve` (issue 15): throughput and latency with micro-batching,
beside the same server with batching off (one encoder call per request — the naive server)
and beside sentence-transformers called in-process, in the same run.

Usage:
  .venv/bin/python benchmarks/serve_load.py MODEL_DIR [--seconds 20] [--clients 1 8 32]
      [--batch 16] [--max-wait-ms 0] [--soak 60] [--jsonl FILE]

Servers: ``embedlab serve`` (batching), ``embedlab serve --no-batching`` (the naive server),
and the server a user writes by hand (benchmarks/naive_st_server.py: FastAPI calling
``SentenceTransformer.encode`` per request, torch, nearest prototype). Each is started on
127.0.0.1 (a free port) and warmed up. Then, per server:

* closed loop: ``--clients`` concurrent clients each send one text per request, back to back,
  for ``--seconds`` (requests/s, p50 / p99 latency, errors);
* batches: 8 clients send ``--batch`` texts per request (texts/s);
* open loop at half the saturating load: requests sent at a fixed rate, half the most
  requests/s that server reached in its closed-loop rows, for ``--seconds``; latency counts
  from each request's scheduled time, so queueing shows in p99.

``--soak S``: then ``embedlab serve`` (batching) under 32 clients for S seconds, its resident
memory read every 5 s (memory flat over a run).

The load generator is a minimal HTTP/1.1 keep-alive client on asyncio streams (pre-encoded
requests, like ``wrk``) so that on a 2-core machine most of the CPU is left to the server;
it runs in this process, on the same cores as the server. Every run stops by itself. Texts:
the packaged demo's test split, cycled. The server's resident memory is read before and
after each row. The in-process row encodes one text per call with
``SentenceTransformer.encode`` for the same time (no HTTP at all).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from embedlab.data.datasets import load_demo
from embedlab.serve.process import free_port, running_process, running_server

ANCHOR = "hand-written FastAPI + sentence-transformers"


@contextlib.contextmanager
def anchor_server(model_dir: str):
    """benchmarks/naive_st_server.py on 127.0.0.1 and a free port: (base URL, process)."""
    port = free_port()
    script = str(Path(__file__).with_name("naive_st_server.py"))
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, script, model_dir, "--port", str(port)]
    with running_process(cmd, base, ready_timeout=120, what="the anchor server") as proc:
        yield base, proc


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Connection:
    """One keep-alive HTTP/1.1 connection that sends pre-encoded POST requests."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        return cls(*await asyncio.open_connection(host, port))

    async def post(self, request: bytes) -> int:
        self.writer.write(request)
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        self.writer.close()


def requests_for(url: str, model: str, texts: list[str], per_request: int) -> list[bytes]:
    """POST /v1/classify requests, pre-encoded, ``per_request`` texts each."""
    parts = urlsplit(url)
    out = []
    for i in range(0, len(texts), per_request):
        chunk = [texts[(i + j) % len(texts)] for j in range(per_request)]
        body = json.dumps({"model": model, "input": chunk}).encode()
        head = (
            f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        out.append(head + body)
    return out


def summary(lat: list[float], errors: int, wall: float, texts_per_request: int) -> dict:
    a = np.asarray(lat) * 1000
    return {
        "requests": len(lat),
        "rps": len(lat) / wall,
        "texts_per_s": len(lat) * texts_per_request / wall,
        "p50_ms": float(np.percentile(a, 50)),
        "p99_ms": float(np.percentile(a, 99)),
        "errors": errors,
    }


async def closed_loop(url: str, reqs: list[bytes], clients: int, seconds: float) -> dict:
    """``clients`` connections, each sending its next request when the last one answered."""
    parts = urlsplit(url)
    lat: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def client(i: int) -> None:
        nonlocal errors
        conn = await Connection.open(parts.hostname, parts.port)
        j = i
        try:
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                try:
                    if await conn.post(reqs[j % len(reqs)]) != 200:
                        errors += 1
                except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                    errors += 1
                    conn.close()
                    conn = await Connection.open(parts.hostname, parts.port)
                lat.append(time.perf_counter() - t0)
                j += clients
        finally:
            conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*[client(i) for i in range(clients)])
    return summary(lat, errors, time.perf_counter() - t0, 1)


async def open_loop(url: str, reqs: list[bytes], rate: float, seconds: float) -> dict:
    """Requests sent at ``rate`` a second on a pool of 64 connections; latency from each
    request's scheduled time (waiting for a free connection counts)."""
    parts = urlsplit(url)
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(64):
        pool.put_nowait(await Connection.open(parts.hostname, parts.port))
    lat: list[float] = []
    errors = 0

    async def one(at: float, request: bytes) -> None:
        nonlocal errors
        conn = await pool.get()
        try:
            if await conn.post(request) != 200:
                errors += 1
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            errors += 1
        lat.append(time.perf_counter() - at)
        pool.put_nowait(conn)

    n = int(rate * seconds)
    start = time.perf_counter() + 0.05
    tasks = []
    for i in range(n):
        at = start + i / rate
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(at, reqs[i % len(reqs)])))
    await asyncio.gather(*tasks)
    while not pool.empty():
        pool.get_nowait().close()
    out = summary(lat, errors, time.perf_counter() - start, 1)
    out["rate"] = rate
    return out


def run_server(model_dir: str, server: str, args: argparse.Namespace) -> list[dict]:
    if server == ANCHOR:
        started = anchor_server(model_dir)
    else:
        batching = "--no-batching" not in server
        options = ["--max-wait-ms", str(args.max_wait_ms)] if batching else ["--no-batching"]
        started = running_server([model_dir], *options, ready_timeout=120)
    rows = []
    with started as (base, proc):
        name = Path(model_dir).resolve().name
        texts = load_demo("test").texts
        url = base + "/v1/classify"
        single = requests_for(url, name, texts, 1)
        batched = requests_for(url, name, texts, args.batch)
        asyncio.run(closed_loop(url, single, 4, 3.0))  # warm-up
        mem0 = rss_mb(proc.pid)

        def record(r: dict, mode: str, clients: int | str, per_request: int) -> None:
            r |= {
                "server": server,
                "mode": mode,
                "clients": clients,
                "texts_per_request": per_request,
                "rss_before_mb": round(mem0, 1),
                "rss_after_mb": round(rss_mb(proc.pid), 1),
            }
            rows.append(r)
            print(json.dumps(r), flush=True)

        for n in args.clients:
            record(asyncio.run(closed_loop(url, single, n, args.seconds)), "closed", n, 1)
        if args.clients:
            r = asyncio.run(closed_loop(url, batched, 8, args.seconds))
            r["texts_per_s"] = r["rps"] * args.batch
            record(r, "closed", 8, args.batch)
        if args.half_rate:
            rate = args.half_rate[server]
            r = asyncio.run(open_loop(url, single, rate, args.seconds))
            record(r, "open, half the saturating rate", "open", 1)
    return rows


def soak(model_dir: str, seconds: float) -> dict:
    """32 clients on `embedlab serve` for ``seconds``; resident memory every 5 s."""
    with running_server([model_dir], ready_timeout=120) as (base, proc):
        url = base + "/v1/classify"
        reqs = requests_for(url, Path(model_dir).resolve().name, load_demo("test").texts, 1)
        asyncio.run(closed_loop(url, reqs, 4, 3.0))
        samples = [rss_mb(proc.pid)]

        async def run() -> dict:
            async def sample() -> None:
                for _ in range(int(seconds // 5)):
                    await asyncio.sleep(5)
                    samples.append(rss_mb(proc.pid))

            out, _ = await asyncio.gather(closed_loop(url, reqs, 32, seconds), sample())
            return out

        r = asyncio.run(run())
    r |= {"server": "embedlab serve", "mode": f"soak {seconds:g} s", "clients": 32}
    r["rss_mb_every_5s"] = [round(x, 1) for x in samples]
    print(json.dumps(r), flush=True)
    return r


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
    r = summary(lat, 0, seconds, 1) | {
        "server": "sentence-transformers in-process (1 text/call)",
        "mode": "closed",
        "clients": 1,
        "texts_per_request": 1,
    }
    print(json.dumps(r), flush=True)
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--batch", type=int, default=16, help="texts per request in the batch row")
    ap.add_argument("--max-wait-ms", type=float, default=0.0)
    ap.add_argument("--soak", type=float, default=0.0, help="seconds of the memory soak row")
    ap.add_argument("--jsonl")
    args = ap.parse_args()
    args.half_rate = None
    servers = ["embedlab serve", "embedlab serve --no-batching", ANCHOR]
    rows = [r for server in servers for r in run_server(args.model, server, args)]
    args.half_rate = {
        server: round(
            max(r["rps"] for r in rows if r["server"] == server and r["texts_per_request"] == 1) / 2
        )
        for server in servers
    }
    print(f"half the saturating load, req/s: {args.half_rate}")
    args.clients = []  # second pass: the open-loop rows only
    rows += [r for server in servers for r in run_server(args.model, server, args)]
    rows.append(in_process(args.seconds))
    print(
        "\nserver | mode | clients | texts/req | req/s | texts/s | p50 ms | p99 ms | errors | "
        "RSS MB"
    )
    for r in rows:
        mem = f"{r['rss_before_mb']} → {r['rss_after_mb']}" if "rss_before_mb" in r else "—"
        print(
            f"{r['server']} | {r['mode']} | {r['clients']} | {r['texts_per_request']} | "
            f"{r['rps']:.1f} | {r['texts_per_s']:.1f} | {r['p50_ms']:.1f} | "
            f"{r['p99_ms']:.1f} | {r['errors']} | {mem}"
        )
    by = {(r["server"], r["mode"], r["clients"]): r["rps"] for r in rows}
    for n in sorted({r["clients"] for r in rows if isinstance(r["clients"], int)}):
        b = by.get(("embedlab serve", "closed", n))
        naive = by.get(("embedlab serve --no-batching", "closed", n))
        hand = by.get((ANCHOR, "closed", n))
        if b and naive and hand:
            print(
                f"{n} clients: batching {b / naive:.2f}x the --no-batching server's "
                f"throughput, {b / hand:.2f}x the hand-written server's"
            )
    if args.soak:
        s = soak(args.model, args.soak)
        rows.append(s)
        print(
            f"soak: {s['rps']:.0f} req/s, {s['errors']} errors, RSS MB every 5 s: "
            f"{s['rss_mb_every_5s']}"
        )
    if args.jsonl:
        with open(args.jsonl, "a") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in rows)


if __name__ == "__main__":
    main()
