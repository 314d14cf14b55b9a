"""`/v1/embeddings` under load: embedlab serve (the teacher, and students) beside
infinity-emb serving the same MiniLM from its local directory, in one run (issue 28).

Usage:
  .venv/bin/python benchmarks/serve_embeddings.py [--students DIR ...] [--seconds 15]
      [--clients 1 8 32] [--infinity PATH/TO/infinity_emb]

The peer is infinity-emb 0.0.78 (PyPI), installed apart (its pins clash with embedlab's):
  python3.11 -m venv inf-venv
  inf-venv/bin/pip install "infinity-emb[server,torch]==0.0.78" torch==2.13.0
started as ``infinity_emb v2 --model-id <packaged MiniLM dir> --engine torch --device cpu``
on 127.0.0.1 (offline). embedlab serves the same directory (an encoder directory is served
for /v1/embeddings; backend auto = its ONNX int8 graph) and each student given.

Per server, after a warm-up: closed loop with 1, 8, 32 clients, one text per request
(requests/s, p50 / p99 ms); then open loop at the same offered load for every server — half
the requests/s infinity reached at 32 clients — for the p99 under half load. Texts: the
packaged demo's test split, cycled. Loopback only; every run stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import closed_loop, open_loop, requests_for

from embedlab.data.datasets import load_demo
from embedlab.encoders import default_model_path
from embedlab.serve.process import free_port, running_server

DEFAULT_INFINITY = Path(__file__).resolve().parents[2] / "inf-venv" / "bin" / "infinity_emb"


@contextlib.contextmanager
def infinity_server(binary: Path, model_dir: Path, timeout: float = 180):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [str(binary), "v2", "--model-id", str(model_dir), "--engine", "torch"]
    cmd += ["--device", "cpu", "--host", "127.0.0.1", "--port", str(port)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError("infinity_emb exited before it was ready")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError("infinity_emb was not ready in time")
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def measure(name: str, url: str, model: str, args, rate: float | None) -> list[dict]:
    texts = load_demo("test").texts
    single = requests_for(url, model, texts, 1)
    asyncio.run(closed_loop(url, single, 4, 3.0))  # warm-up
    rows = []
    for n in args.clients:
        r = asyncio.run(closed_loop(url, single, n, args.seconds))
        rows.append({"server": name, "mode": "closed", "clients": n, **r})
        print(json.dumps(rows[-1]), flush=True)
    if rate:
        r = asyncio.run(open_loop(url, single, rate, args.seconds))
        rows.append({"server": name, "mode": "open", "rate": rate, **r})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--students", type=Path, nargs="*", default=[])
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--infinity", type=Path, default=DEFAULT_INFINITY)
    args = ap.parse_args()
    teacher = default_model_path()
    rows: list[dict] = []
    rate = None
    if args.infinity.exists():
        with infinity_server(args.infinity, teacher) as base:
            peer = measure(
                "infinity-emb 0.0.78 (torch)", base + "/embeddings", str(teacher), args, None
            )
            rows += peer
            top = max(r["rps"] for r in peer if r["mode"] == "closed")
            rate = round(top / 2, 1)
            rows += measure(
                "infinity-emb 0.0.78 (torch)",
                base + "/embeddings",
                str(teacher),
                argparse.Namespace(clients=[], seconds=args.seconds),
                rate,
            )
    else:
        print(f"infinity_emb not found at {args.infinity}: the peer rows are left out")
    for directory in [teacher, *args.students]:
        name = "embedlab serve " + ("(teacher)" if directory == teacher else directory.name)
        with running_server([str(directory)], ready_timeout=300) as (base, _proc):
            model = Path(directory).resolve().name
            rows += measure(name, base + "/v1/embeddings", model, args, rate)
    print(json.dumps({"summary": rows}))


if __name__ == "__main__":
    main()
