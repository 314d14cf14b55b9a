"""Calling AutoIntent (benchmarks/autointent_run.py, in its own virtual environment) from a
benchmark in embedlab's: the rows go in a JSON file, its answers come back in another."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

#: AutoIntent's interpreter (override with AUTOINTENT_PYTHON); see autointent_run.py.
PYTHON = os.environ.get(
    "AUTOINTENT_PYTHON", str(Path(__file__).resolve().parents[2] / "ai-venv" / "bin" / "python")
)


def available() -> bool:
    return Path(PYTHON).is_file()


def run_autointent(
    texts: list[str], labels: list, test: list[str], seed: int, preset: str = "classic-light"
) -> dict:
    """AutoIntent's ``preset`` fitted on (texts, labels) — a label, None (out of scope) or
    a list of labels per row — and its answers on ``test``, with its fit seconds."""
    from embedlab.encoders.sentence_transformer import default_model_path

    job = {
        "model": str(default_model_path()),
        "preset": preset,
        "seed": seed,
        "train": [[t, y] for t, y in zip(texts, labels, strict=True)],
        "test": list(test),
    }
    with tempfile.TemporaryDirectory(prefix="embedlab-autointent-") as tmp:
        src, out = Path(tmp) / "in.json", Path(tmp) / "out.json"
        src.write_text(json.dumps(job), encoding="utf-8")
        here = Path(__file__).resolve().parent
        done = subprocess.run(
            [PYTHON, str(here / "autointent_run.py"), str(src), str(out)],
            timeout=7200,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        if done.returncode != 0:  # its own words: the last line of its traceback
            lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
            raise RuntimeError(lines[-1] if lines else f"exit {done.returncode}")
        return json.loads(out.read_text(encoding="utf-8"))
