"""A job killed (SIGKILL) at random points: the helper behind the resumption tests."""

from __future__ import annotations

import random
import subprocess
import time
from pathlib import Path


def kill_at_random_points(
    cmd: list[str], pieces: Path, output: Path, *, times: int = 3, seed: int = 0
) -> int:
    """Run ``cmd`` up to ``times`` times, each killed a random moment (0-0.4 s) after one
    more finished piece appeared in ``pieces`` than at the last kill; stops early once
    ``output`` exists. Bounded: each run under 120 s. How many kills there were."""
    rng = random.Random(seed)
    kills = 0
    for _ in range(times):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            done = (
                len([p for p in pieces.glob("*") if ".tmp" not in p.name]) if pieces.exists() else 0
            )
            if done >= 1 + kills:
                time.sleep(rng.uniform(0.0, 0.4))
                proc.kill()
                kills += 1
                break
            time.sleep(0.02)
        if proc.poll() is None and time.monotonic() >= deadline:
            proc.kill()
        proc.wait(timeout=60)
        if output.exists():
            break
    return kills
