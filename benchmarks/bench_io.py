"""What the benchmark scripts share: results printed as JSON lines and kept for a
results.json, and encoded vectors cached in the work folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

#: key → what was measured under it (each script writes it to WORK/results.json)
RESULTS: dict[str, dict] = {}


def emit(key: str, **values) -> None:
    """Record ``values`` under ``key`` and print them as one JSON line."""
    RESULTS.setdefault(key, {}).update(values)
    print(json.dumps({"key": key, **values}), flush=True)


def encoded(encoder, texts, work: Path, name: str) -> np.ndarray:
    """``texts`` encoded, from WORK/<name>.npy when an earlier run left it there."""
    f = work / f"{name}.npy"
    if f.exists():
        return np.load(f)
    X = encoder.encode(texts, progress=True)
    np.save(f, X)
    return X
