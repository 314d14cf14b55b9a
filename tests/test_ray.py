"""`--ray` on a local Ray runtime (127.0.0.1, started and stopped by each command): encode and
predict give the same output as the single-machine run, and an encoder actor killed midway
(SIGKILL) costs no row and duplicates none. Each command runs as its own process, bounded
in time; skipped without the ray extra."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

pytest.importorskip("ray", reason="the ray extra is not installed")

from embedlab.datasets import demo_path, load_demo
from embedlab.embedding_set import EmbeddingSet

CLI = [sys.executable, "-m", "embedlab.cli"]


def run(*args, timeout: float = 240) -> str:
    res = subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def test_ray_encode_and_predict_equal_the_local_runs(quick_model, tmp_path):
    data = demo_path("train")
    run("encode", data, "-o", tmp_path / "local", "--shard-rows", "50", "--no-cache")
    out = run("encode", data, "-o", tmp_path / "ray", "--shard-rows", "50", "--no-cache", "--ray")
    assert "4 shards" in out
    a, b = EmbeddingSet.load(tmp_path / "local"), EmbeddingSet.load(tmp_path / "ray")
    assert a.ids.tolist() == b.ids.tolist() and a.texts.tolist() == b.texts.tolist()
    np.testing.assert_allclose(a.vectors, b.vectors, atol=1e-6)
    run(
        "predict",
        quick_model,
        tmp_path / "ray",
        "-o",
        tmp_path / "p_local.csv",
        "--chunk-rows",
        "40",
    )
    run(
        "predict",
        quick_model,
        tmp_path / "ray",
        "-o",
        tmp_path / "p_ray.csv",
        "--chunk-rows",
        "40",
        "--ray",
        "--ray-actors",
        "2",
    )
    local = (tmp_path / "p_local.csv").read_text()
    assert (tmp_path / "p_ray.csv").read_text() == local and local.count("\n") == 179


def _actors() -> list[int]:
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in ps.splitlines() if "MapBatches(EncodeWorker)" in line]


def test_a_killed_ray_worker_loses_and_duplicates_no_row(tmp_path):
    t = load_demo("train")
    texts = [f"{x} ({k})" for k in range(3) for x in t.texts]
    data = tmp_path / "big.csv"
    pacsv.write_csv(pa.table({"text": texts, "label": list(t.labels) * 3}), data)
    run("encode", data, "-o", tmp_path / "reference", "--shard-rows", "20", "--no-cache")
    out = tmp_path / "out"
    args = ["encode", str(data), "-o", str(out), "--shard-rows", "20", "--no-cache", "--ray"]
    proc = subprocess.Popen(
        [*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    pieces = tmp_path / ".out.partial" / "pieces"
    killed = None
    deadline = time.monotonic() + 180
    while proc.poll() is None and time.monotonic() < deadline and killed is None:
        written = [p for p in pieces.glob("*") if ".tmp" not in p.name] if pieces.exists() else []
        actors = _actors()
        if written and actors:
            killed = actors[0]
            os.kill(killed, signal.SIGKILL)  # an encoder actor dies mid-job
        time.sleep(0.05)
    log, _ = proc.communicate(timeout=240)
    assert killed is not None, "the job ended before an actor could be killed"
    assert proc.returncode == 0, log
    got, want = EmbeddingSet.load(out), EmbeddingSet.load(tmp_path / "reference")
    assert got.ids.tolist() == want.ids.tolist() == [str(i) for i in range(len(texts))]
    assert got.texts.tolist() == texts
    np.testing.assert_allclose(got.vectors, want.vectors, atol=1e-6)
