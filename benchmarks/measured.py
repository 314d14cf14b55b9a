"""Run an `embedlab` command in a process of its own and read its own peak RSS (for the
benchmark scripts)."""

from __future__ import annotations

import subprocess
import sys
import time

_WRAPPER = (
    "import resource, runpy, sys\n"
    "sys.argv = ['embedlab', *sys.argv[1:]]\n"
    "try:\n"
    "    runpy.run_module('embedlab.cli', run_name='__main__')\n"
    "finally:\n"
    "    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
    "    print(f'PEAK_RSS_KB {peak}', file=sys.stderr)\n"
)


def run_measured(args: list[str]) -> tuple[str, float, float]:
    """`embedlab ARGS`: (its stdout, wall seconds, its peak RSS in MB); SystemExit with its
    output when it fails."""
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", _WRAPPER, *args], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode:
        raise SystemExit(res.stdout + res.stderr)
    peak_kb = int(res.stderr.rsplit("PEAK_RSS_KB", 1)[1].split()[0])
    return res.stdout, wall, peak_kb / 1024
