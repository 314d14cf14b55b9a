"""`--ray` on a local Ray runtime (127.0.0.1, started and stopped by each command): encode and
predict give the same output as the single-machine run, and an encoder or model actor
killed midway (SIGKILL) costs no row and duplicates none. `--ray-address` on a cluster the
test starts as a user would (`ray start --head`, token authentication on, kept on
127.0.0.1): refused without the token, with the reason; the same output with it. Each
command runs as its own process, bounded in time; skipped without the ray extra."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

pytest.importorskip("ray", reason="the ray extra is not installed")

from embedlab.data.datasets import demo_path, load_demo
from embedlab.data.embedding_set import EmbeddingSet

CLI = [sys.executable, "-m", "embedlab.cli"]


def run(*args, timeout: float = 240, env: dict[str, str] | None = None) -> str:
    res = subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env
    )
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def fails(*args, timeout: float = 60, env: dict[str, str] | None = None) -> str:
    res = subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env
    )
    assert res.returncode != 0, res.stdout + res.stderr
    return " ".join((res.stdout + res.stderr).split())


def _actors(worker: str) -> list[int]:
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in ps.splitlines() if f"MapBatches({worker})" in line]


@pytest.mark.parametrize("job", ["encode", "predict"])
def test_a_killed_ray_worker_loses_and_duplicates_no_row(quick_model, tmp_path, job, request):
    """encode on a runtime of its own (``--ray``); predict on the cluster a user started
    (``--ray-address``, the module's head): an actor killed midway either way."""
    t = load_demo("train")
    texts = [f"{x} ({k})" for k in range(3) for x in t.texts]
    data = tmp_path / "big.csv"
    pacsv.write_csv(pa.table({"text": texts, "label": list(t.labels) * 3}), data)
    if job == "encode":  # on Ray the shards keep their vectors in Parquet
        args = ["encode", data, "--shard-rows", "20", "--no-cache"]
        out, reference, worker = tmp_path / "out", tmp_path / "reference", "EncodeWorker"
        on_ray = ["--vector-format", "parquet"]
        env = None
    else:
        head = request.getfixturevalue("ray_head")
        args = ["predict", quick_model, data, "--chunk-rows", "20"]
        out, reference, worker = tmp_path / "out.csv", tmp_path / "ref.csv", "PredictWorker"
        on_ray, env = ["--ray-actors", "2", "--ray-address", head["address"]], head["token"]
    run(*args, "-o", reference)
    proc = subprocess.Popen(
        [*CLI, *map(str, [*args, "-o", out, "--ray", *on_ray])],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    pieces = tmp_path / f".{out.name}.partial" / "pieces"
    killed = None
    deadline = time.monotonic() + 180
    while proc.poll() is None and time.monotonic() < deadline and killed is None:
        written = [p for p in pieces.glob("*") if ".tmp" not in p.name] if pieces.exists() else []
        actors = _actors(worker)
        if written and actors:
            killed = actors[0]
            os.kill(killed, signal.SIGKILL)  # an actor dies mid-job
        time.sleep(0.05)
    log, _ = proc.communicate(timeout=240)
    assert killed is not None, "the job ended before an actor could be killed"
    assert proc.returncode == 0, log
    if job == "predict":
        assert _ran_on(head, "PredictWorker")  # on the cluster, not on a runtime of its own
        assert out.read_text() == reference.read_text()
        assert [r["text"] for r in pacsv.read_csv(out).to_pylist()] == texts
        return
    assert not list(out.rglob("vectors.npy"))  # the same rows, stored the other way
    got, want = EmbeddingSet.load(out), EmbeddingSet.load(reference)
    assert got.ids.tolist() == want.ids.tolist() == [str(i) for i in range(len(texts))]
    assert got.texts.tolist() == texts
    np.testing.assert_allclose(got.vectors, want.vectors, atol=1e-6)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head():
    """A Ray cluster as a user starts one (``ray start --head``, token authentication on),
    kept on loopback: without RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 Ray swaps 127.0.0.1 for
    the machine's address. Its own process group and temp folder (Ray's socket paths must be
    short); stopped, and anything left of it killed, at the end."""
    port, token = _free_port(), secrets.token_hex(16)
    temp = tempfile.mkdtemp(prefix="rayhead", dir="/tmp")
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    base["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    with_token = {**base, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    log = open(Path(temp) / "head.log", "w")  # noqa: SIM115 - closed below
    head = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("ray")),
            "start",
            "--head",
            "--node-ip-address=127.0.0.1",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--temp-dir={temp}",
            "--block",
        ],
        env=with_token,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while "Ray runtime started" not in (Path(temp) / "head.log").read_text():
            assert head.poll() is None, (Path(temp) / "head.log").read_text()
            assert time.monotonic() < deadline, "the Ray head did not start in 90 s"
            time.sleep(0.5)
        yield {"address": f"127.0.0.1:{port}", "env": base, "token": with_token, "temp": temp}
    finally:
        _stop(head, token)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def _stop(head: subprocess.Popen, token: str) -> None:
    """The head's process group asked to stop, then killed; then any process of this
    cluster that left the group (Ray's actors do: found by the cluster's token in their
    environment)."""
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):  # its drain waits on a GCS gone
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(wait)
    mark = f"RAY_AUTH_TOKEN={token}".encode()
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if mark in (proc / "environ").read_bytes().split(b"\0"):
                os.kill(int(proc.name), signal.SIGKILL)


def _ran_on(head: dict, worker: str) -> bool:
    """Whether the cluster's workers logged ``worker`` (the job ran there, not on a runtime
    of its own)."""
    logs = Path(head["temp"]).glob("session_*/logs/*")
    return any(worker in p.read_text(errors="replace") for p in logs if p.is_file())


def test_ray_address_joins_an_existing_cluster_with_its_token(ray_head, tmp_path):
    data, address = demo_path("train"), ray_head["address"]
    cmd = ["encode", data, "-o", tmp_path / "ray", "--shard-rows", "50", "--no-cache", "--ray"]
    said = fails(*cmd, "--ray-address", address, env=ray_head["env"])
    assert f"the Ray cluster at {address} refused" in said and "RAY_AUTH_MODE=token" in said
    assert not (tmp_path / "ray").exists() and not (tmp_path / ".ray.partial").exists()

    run(*cmd, "--ray-address", address, env=ray_head["token"])
    assert _ran_on(ray_head, "EncodeWorker")
    run("encode", data, "-o", tmp_path / "local", "--shard-rows", "50", "--no-cache")
    a, b = EmbeddingSet.load(tmp_path / "local"), EmbeddingSet.load(tmp_path / "ray")
    assert a.ids.tolist() == b.ids.tolist() and a.texts.tolist() == b.texts.tolist()
    np.testing.assert_allclose(a.vectors, b.vectors, atol=1e-6)
    # predict on this cluster: test_a_killed_ray_worker_loses_and_duplicates_no_row[predict]


def test_a_ray_address_where_nothing_listens_is_named_at_once(tmp_path):
    address = f"127.0.0.1:{_free_port()}"
    t0 = time.monotonic()
    said = fails("encode", demo_path("train"), "-o", tmp_path / "out", "--ray",
                 "--ray-address", address)  # fmt: skip
    assert f"no Ray cluster answers at {address}" in said and time.monotonic() - t0 < 30
    assert not (tmp_path / "out").exists()
