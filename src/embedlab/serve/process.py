"""Start `embedlab serve` as a child process on loopback and stop it: for tests, benchmarks
and scripts that need a real server, bounded in time."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence

__all__ = ["free_port", "running_process", "running_server"]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running_process(
    cmd: Sequence[str], base: str, *, ready_timeout: float = 90.0, what: str = "the server"
) -> Iterator[subprocess.Popen]:
    """Start ``cmd``; yield the process once ``base``/readyz answers 200 (at most
    ``ready_timeout`` s); terminate it (then kill) on exit."""
    import httpx

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited: {proc.stdout.read()[-2000:]}")
            try:
                if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} was not ready in {ready_timeout:g} s")
            time.sleep(0.3)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


@contextlib.contextmanager
def running_server(
    models: Sequence[str], *options: str, ready_timeout: float = 90.0
) -> Iterator[tuple[str, subprocess.Popen]]:
    """``embedlab serve MODELS... OPTIONS`` on 127.0.0.1 and a free port; yields (base URL,
    process) once /readyz answers (at most ``ready_timeout`` s), terminates it on exit."""
    port = free_port()
    cmd = [sys.executable, "-m", "embedlab.cli", "serve", *models, "--port", str(port), *options]
    base = f"http://127.0.0.1:{port}"
    with running_process(cmd, base, ready_timeout=ready_timeout, what="embedlab serve") as proc:
        yield base, proc
