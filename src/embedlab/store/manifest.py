"""Reading the JSON documents that describe saved directories, and file checksums."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from embedlab.core.errors import StoreError

__all__ = [
    "SAVED_KINDS",
    "read_versioned_json",
    "saved_kind",
    "saved_version",
    "sha256_file",
    "stamp_of",
]


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes; StoreError when the file is missing."""
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"{path} is missing")
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_versioned_json(
    file: Path, fmt: str, max_version: int, what: str, raw: bytes | None = None
) -> dict[str, Any]:
    """Parse ``file`` (or its bytes ``raw``, already read) and check its ``format`` is
    ``fmt`` and ``format_version`` is at most ``max_version``; every failure is a StoreError
    that names the file and the problem."""
    try:
        doc = json.loads((file.read_bytes() if raw is None else raw).decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StoreError(f"{file} is corrupted (not valid JSON: {exc})") from None
    except RecursionError:
        raise StoreError(f"{file} is corrupted (JSON nested too deeply to read)") from None
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise StoreError(f"{file} is not {what} (format != {fmt!r})")
    version = doc.get("format_version")
    if not isinstance(version, int) or version > max_version:
        raise StoreError(
            f"{file} has format_version {version!r}; this embedlab reads up to "
            f"{max_version} (upgrade embedlab)"
        )
    return doc


#: The directories embedlab saves, by the JSON document at their root and its format.
SAVED_KINDS = {
    "bundle": ("bundle.json", "embedlab.bundle"),
    "embedding_set": ("manifest.json", "embedlab.embedding_set"),
    "index": ("index.json", "embedlab.index"),
    "discovery": ("summary.json", "embedlab.discovery"),
    "map": ("map.json", "embedlab.map"),
    "concepts": ("concepts.json", "embedlab.concepts"),
    "tables": ("tables.json", "embedlab.tables"),
}


def saved_kind(path: str | os.PathLike, *, strict: bool = False) -> str | None:
    """What embedlab saved at ``path`` ("bundle", "embedding_set", "index"), by its root
    document; None for anything else. ``strict`` also requires that document to parse and
    carry the kind's ``format`` (loading validates the rest); without it a damaged root
    document still names the kind, so that loading can say what is wrong with it."""
    path = Path(path)
    for kind, (name, fmt) in SAVED_KINDS.items():
        f = path / name
        if not f.is_file():
            continue
        if not strict:
            return kind
        try:
            doc = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            continue
        if isinstance(doc, dict) and doc.get("format") == fmt:
            return kind
    return None


def stamp_of(path: str | os.PathLike) -> str | None:
    """sha256 of the root document of what embedlab saved at ``path`` (bundle.json,
    manifest.json, index.json, summary.json, map.json): it lists every other file's own checksum, so
    it changes with any of them. None when there is none right now."""
    path = Path(path)
    for name, _fmt in SAVED_KINDS.values():
        try:
            return hashlib.sha256((path / name).read_bytes()).hexdigest()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            continue
        except OSError:  # replaced while reading
            return None
    return None


def saved_version(path: str | os.PathLike) -> str:
    """A few words on what is saved at ``path`` now, for messages: "version 3" of a model
    (its lineage), "an embedlab index", or "nothing"."""
    path = Path(path)
    kind = saved_kind(path)
    if kind is None:
        return "nothing embedlab wrote" if path.exists() else "nothing"
    if kind == "bundle":
        try:
            doc = json.loads((path / "bundle.json").read_text(encoding="utf-8"))
            return f"version {int(doc['info']['lineage']['version'])}"
        except (OSError, ValueError, KeyError, TypeError, RecursionError):
            return "a model of unknown version"
    return {"embedding_set": "an EmbeddingSet", "index": "an index", "map": "a map"}.get(
        kind, "a discovery"
    )
