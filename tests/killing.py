"""A job stopped by SIGKILL at chosen points: the helper behind the resumption tests.

The kill is deterministic (``EMBEDLAB_CRASH_AT``, see :mod:`embedlab.store.jobs`): the job kills
itself just before or just after it finishes a chosen piece, so every run of a test crashes
at the same places whatever the machine's speed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from embedlab.store.jobs import CRASH_AT


def crash_at(cmd: list[str], points: list[str], output: Path) -> None:
    """Run ``cmd`` once per point ("before-commit:N" / "after-commit:N"); each run must die
    by SIGKILL there, leaving no ``output``. Bounded: each run under 120 s."""
    for point in points:
        proc = subprocess.run(
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            env={**os.environ, CRASH_AT: point},
        )
        assert proc.returncode == -9, f"{point}: exit {proc.returncode}: {proc.stderr[-300:]}"
        assert not output.exists(), f"{point}: the output was published by a crashed run"
