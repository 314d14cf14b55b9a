"""What embedlab owns inside a directory it saved: the files that directory's root document
lists (a bundle's bundle.json, a set's manifest.json, an index's index.json, a discovery's
summary.json, a map's map.json, an adapted encoder's marker). Replacing a directory (``--force``,
``--in-place``, a class change through the service) may remove exactly these; anything else
found there is the user's, and stops the write.
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath
from typing import Any

from embedlab.store.manifest import SAVED_KINDS, saved_kind

__all__ = ["SIGNATURE_FILE", "foreign_paths", "owned_paths"]

SIGNATURE_FILE = "signature.json"  # a bundle's optional HMAC signature (embedlab.store.signing)
ADAPT_MARKER = ".embedlab_adapt.json"  # written into every adapted encoder directory
STUDENT_MANIFEST = "embedlab-student.json"  # a distilled student's (embedlab.distill)
_DISCOVERY_FILES = ("clusters.csv", "summary.json", "report.html")


def _doc(path: Path, name: str) -> dict[str, Any] | None:
    try:
        doc = json.loads((path / name).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def _prefixes(rel: str) -> set[str]:
    """A relative path's parent folders ("a/b/c" -> {"a", "a/b"})."""
    parts = PurePosixPath(rel).parts
    return {"/".join(parts[:i]) for i in range(1, len(parts))}


def owned_paths(path: str | os.PathLike) -> tuple[set[str], set[str]] | None:
    """(files, trees) that embedlab wrote in ``path``, relative to it ("a/b" form): every file
    in ``files``, and everything below each folder in ``trees`` (an adapted encoder copied
    into a bundle). None when ``path`` is not something embedlab saved."""
    path = Path(path)
    kind = saved_kind(path, strict=True)
    files: set[str] = set()
    trees: set[str] = set()
    if kind is not None:
        name = SAVED_KINDS[kind][0]
        doc = _doc(path, name) or {}
        files.add(name)
        if kind == "bundle":
            files |= {"arrays.safetensors", SIGNATURE_FILE}
            encoder = doc.get("encoder") if isinstance(doc.get("encoder"), dict) else {}
            if isinstance(encoder.get("path"), str) and not os.path.isabs(encoder["path"]):
                trees.add(str(PurePosixPath(encoder["path"])))
            graph = encoder.get("graph")
            if isinstance(graph, dict) and isinstance(graph.get("file"), str):
                files.add(str(PurePosixPath(graph["file"])))
        elif kind == "embedding_set":
            shards = doc.get("shards") if doc.get("layout") == "sharded" else None
            entries = shards if isinstance(shards, list) else [{"path": ".", **doc}]
            for entry in entries:
                if isinstance(entry, dict) and isinstance(entry.get("files"), dict):
                    folder = PurePosixPath(str(entry.get("path", ".")))
                    files |= {str(folder / f) for f in entry["files"]}
        elif kind in ("index", "map", "concepts", "tables"):
            if isinstance(doc.get("files"), dict):
                files |= {str(f) for f in doc["files"]}
        elif kind == "discovery":
            files |= set(_DISCOVERY_FILES)
        return files, trees
    student = _doc(path, STUDENT_MANIFEST)
    if student is not None and student.get("format") == "embedlab-student":
        listed = student.get("files")
        return {STUDENT_MANIFEST, *map(str, listed if isinstance(listed, list) else [])}, trees
    marker = _doc(path, ADAPT_MARKER)
    if marker is None:
        return None
    listed = marker.get("files")
    if not isinstance(listed, list):  # a marker from before files were listed: the folder
        return {ADAPT_MARKER}, {"."}
    return {ADAPT_MARKER, *map(str, listed)}, trees


def foreign_paths(path: str | os.PathLike, limit: int = 20) -> list[str]:
    """What in ``path`` embedlab did not write (relative paths, folders with a trailing
    ``/`` when nothing in them is embedlab's); empty when the whole folder is its own. A
    directory embedlab did not save at all is foreign entirely (every top-level entry)."""
    path = Path(path)
    owned = owned_paths(path)
    if owned is None:
        return sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())[:limit]
    files, trees = owned
    if "." in trees:
        return []
    folders = set().union(*(_prefixes(f) for f in files), *(_prefixes(t) for t in trees), trees)
    found: list[str] = []

    def in_tree(rel: str) -> bool:
        return rel in trees or any(rel.startswith(t + "/") for t in trees)

    for folder, dirs, names in os.walk(path, followlinks=False):
        here = PurePosixPath(os.path.relpath(folder, path))  # "." / "x" is "x"
        keep = []
        for d in sorted(dirs):
            rel, link = str(here / d), (Path(folder) / d).is_symlink()
            if not in_tree(rel) and (link or rel not in folders):
                found.append(rel + "/")
            if rel in folders and not link:
                keep.append(d)
        dirs[:] = keep
        for n in sorted(names):
            rel = str(here / n)
            if (Path(folder) / n).is_symlink() or not (rel in files or in_tree(rel)):
                found.append(rel)
        if len(found) >= limit:
            break
    return sorted(found)[:limit]
