"""A model's lineage: its version number, a fingerprint of what it is, its parent's
fingerprint and the history of changes (a fit, classes added or removed, a refit over an
earlier version). The service reports version and fingerprint; versioned writes never let
numbers go back at one place."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embedlab.store.bundle import json_sha256

__all__ = [
    "continued_lineage",
    "fit_lineage",
    "json_default",
    "lineage",
    "training_fingerprint",
]


def training_fingerprint(texts: Sequence[str], labels: Sequence[str]) -> str:
    """sha256 over the (text, label) rows, in order."""
    h = hashlib.sha256()
    for t, y in zip(texts, labels, strict=True):
        h.update(t.encode("utf-8"))
        h.update(b"\x1f")
        h.update(str(y).encode("utf-8"))
        h.update(b"\x1e")
    return h.hexdigest()


def json_default(value: Any) -> Any:
    """numpy scalars and arrays as JSON values (``json.dumps(default=...)``)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON data")


def lineage(parent_info: dict[str, Any] | None, change: dict[str, Any]) -> dict[str, Any]:
    """Version, fingerprint and history of a model: a fit is version 1; each class change
    makes a child whose fingerprint hashes its parent's with the change."""
    parent = None
    history: list[dict[str, Any]] = []
    version = 1
    if parent_info is not None:
        prev = parent_info.get("lineage") or lineage(
            None, {"op": "fit", "training": parent_info.get("training", {})}
        )
        parent, version = prev["fingerprint"], int(prev["version"]) + 1
        history = [*prev.get("history", []), {"version": version, **change}]
    return {
        "version": version,
        "fingerprint": json_sha256({"parent": parent, "change": change}),
        "parent": parent,
        "history": history,
    }


def fit_lineage(info: dict[str, Any], encoder: Any, op: str) -> dict[str, Any]:
    """The lineage of a fit: the training data and a digest of the model (encoder, head,
    detector, thresholds, transform), so that a refit with other data or options gets
    another fingerprint and the same fit the same one."""
    model = {k: info.get(k) for k in ("head", "detector", "threshold", "thresholds")}
    model["transform"] = info.get("transform")
    model["encoder"] = (getattr(encoder, "spec", None) or {}).get("fingerprint")
    digest = hashlib.sha256(json.dumps(model, sort_keys=True, default=json_default).encode())
    return lineage(None, {"op": op, "training": info["training"], "model": digest.hexdigest()})


def continued_lineage(info: dict[str, Any], replaced: Path) -> dict[str, Any] | None:
    """The lineage of ``info`` saved over the bundle whose bundle.json is ``replaced``: a
    fresh fit there becomes that model's next version (op ``refit``; numbers never go back
    at one place). Otherwise, or when there is no readable earlier version, unchanged."""
    own = info.get("lineage")
    if not own or own.get("parent") is not None or not replaced.is_file():
        return own
    try:
        prev = json.loads(replaced.read_text(encoding="utf-8"))["info"]["lineage"]
        version = int(prev["version"])
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return own  # not a readable earlier version: nothing to continue
    if prev.get("fingerprint") == own.get("fingerprint"):
        return own  # the same model again
    rows = (info.get("training") or {}).get("n")
    return {
        "version": version + 1,
        "fingerprint": own.get("fingerprint"),
        "parent": prev.get("fingerprint"),
        "history": [
            *prev.get("history", []),
            {"version": version + 1, "op": "refit", "rows": rows},
        ],
    }
