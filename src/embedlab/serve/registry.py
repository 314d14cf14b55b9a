"""What a service serves: model bundles and search indexes, loaded by directory and named by
it, with one encoder shared by every model or index built on the same encoder.

Every entry carries the checksum of the file that describes its directory (``bundle.json`` /
``index.json``), its *stamp*: :meth:`Registry.changed` lists the entries whose directory now
holds another version, :meth:`Registry.load_entry` loads one without touching what is served
and :meth:`Registry.swap` puts it in place — one dictionary assignment, so a request that
already holds the old entry finishes on it.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from embedlab.core.errors import ValidationError
from embedlab.detect.drift import DriftMonitor
from embedlab.models.pipeline import Pipeline
from embedlab.store.manifest import stamp_of

__all__ = [
    "Registry",
    "ServedEncoder",
    "ServedIndex",
    "ServedModel",
    "ServedTables",
    "describe_file",
    "is_encoder_dir",
    "stamp_of",
]

BUNDLE_FILE, INDEX_FILE, TABLES_FILE = "bundle.json", "index.json", "tables.json"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def describe_file(path: Path) -> Path | None:
    """The file that describes a served directory (``bundle.json``, ``index.json`` or a
    table model's ``tables.json``)."""
    for name in (BUNDLE_FILE, INDEX_FILE, TABLES_FILE):
        if (path / name).is_file():
            return path / name
    return None


@dataclass
class ServedModel:
    """One served model bundle."""

    name: str
    path: Path
    pipeline: Pipeline
    encoder_key: str
    stamp: str | None = None
    loaded: str = field(default_factory=_now)
    drift: DriftMonitor | None = None  # made from the model's calibration scores

    def __post_init__(self) -> None:
        if self.drift is None:
            try:
                self.drift = DriftMonitor(self.pipeline.classifier_.p_reference())
            except (ValidationError, AttributeError):  # a model with no calibration scores
                self.drift = None

    @property
    def threshold(self) -> float | None:
        """The out-of-scope threshold, or None (a multi-label model, or none calibrated)."""
        t = getattr(self.pipeline.classifier_, "threshold_", None)
        return float(t) if t is not None and math.isfinite(t) else None

    @property
    def version(self) -> int:
        return int(((self.pipeline.info or {}).get("lineage") or {}).get("version", 1))

    @property
    def can_add_classes(self) -> bool:
        """Single-label models that keep their training rows take new classes at run time."""
        return self.pipeline.class_change_refusal is None

    def describe(self) -> dict[str, Any]:
        """The model's entry in GET /v1/models (OpenAI's shape plus embedlab's fields)."""
        pipe = self.pipeline
        lineage = (pipe.info or {}).get("lineage") or {}
        encoder = pipe.encoder_
        return {
            "id": self.name,
            "object": "model",
            "owned_by": "embedlab",
            "created": _created(self.path, BUNDLE_FILE),
            "version": self.version,
            "fingerprint": lineage.get("fingerprint"),
            "encoder": encoder.spec.get("fingerprint"),
            "dim": int(encoder.dim),
            "kind": "multi-label" if pipe.multi_label else "single-label",
            "classes": [str(c) for c in pipe.classes_],
            "oos_label": pipe.oos_label,
            "threshold": self.threshold,
            "levels": pipe.hierarchy.level_names() if pipe.hierarchy is not None else None,
            "can_add_classes": self.can_add_classes,
            "concepts": None
            if pipe.concepts_ is None
            else {"atoms": pipe.concepts_.dictionary.n_atoms, "k": pipe.concepts_.dictionary.k},
            "loaded": self.loaded,
            "drift": None if self.drift is None else self.drift.summary(),
        }


@dataclass
class ServedTables:
    """One served table model (records: a text and categorical / numeric columns); its
    encoder is None when it reads no text."""

    name: str
    path: Path
    model: Any  # embedlab.tables.TableModel
    encoder_key: str
    encoder: Any = None
    stamp: str | None = None
    loaded: str = field(default_factory=_now)

    @property
    def version(self) -> int:
        return 1

    def describe(self) -> dict[str, Any]:
        """The model's entry in GET /v1/models (``kind``: tables)."""
        m = self.model
        return {
            "id": self.name,
            "object": "model",
            "owned_by": "embedlab",
            "created": _created(self.path, TABLES_FILE),
            "kind": "tables",
            "classes": [str(c) for c in m.classes_],
            "columns": {
                "text": m.text_col,
                "categorical": [c.name for c in m.layout_.columns],
                "numeric": m.numeric_columns_,
            },
            "tables": m.layout_.kind,
            "table_bytes": m.layout_.bytes,
            "encoder": None if self.encoder is None else self.encoder.spec.get("fingerprint"),
            "loaded": self.loaded,
        }


@dataclass
class ServedIndex:
    """One served search index (built from texts: it names its encoder)."""

    name: str
    path: Path
    index: Any
    encoder_key: str
    encoder: Any
    labels: np.ndarray | None  # each stored vector's label (None: the index keeps no labels)
    stamp: str | None = None
    loaded: str = field(default_factory=_now)
    #: an Alignment whose new encoder encodes the queries, mapped back into the index's space
    query_map: Any = None

    def describe(self) -> dict[str, Any]:
        """The index's entry in GET /v1/indexes."""
        labels = None if self.labels is None else sorted({str(v) for v in np.unique(self.labels)})
        return {
            "id": self.name,
            "object": "index",
            "created": _created(self.path, INDEX_FILE),
            "spec": self.index.spec,
            "size": len(self.index),
            "dim": int(self.index.dim),
            "encoder": (self.index.encoder or {}).get("fingerprint"),
            "labels": labels,
            "columns": [] if self.index.rows is None else list(self.index.rows.column_names),
            "loaded": self.loaded,
            "query_encoder": None
            if self.query_map is None
            else (self.query_map.new or {}).get("fingerprint"),
        }


@dataclass
class ServedEncoder:
    """One served encoder directory (a student made by ``embedlab distill``, or any
    sentence-transformers model): ``/v1/embeddings`` only."""

    name: str
    path: Path
    encoder: Any
    encoder_key: str
    stamp: str | None = None
    loaded: str = field(default_factory=_now)

    def describe(self) -> dict[str, Any]:
        """The encoder's entry in GET /v1/models (``kind``: encoder)."""
        from embedlab.encoders.student import encoder_manifest

        manifest = encoder_manifest(self.encoder) or {}
        student = {k: manifest.get(k) for k in ("kind", "space", "fidelity")} if manifest else None
        if student is not None:
            student["teacher"] = (manifest.get("teacher") or {}).get("fingerprint")
        return {
            "id": self.name,
            "object": "model",
            "owned_by": "embedlab",
            "created": _created(self.path, "."),
            "kind": "encoder",
            "encoder": self.encoder.spec.get("fingerprint"),
            "dim": int(self.encoder.dim),
            "student": student,
            "loaded": self.loaded,
        }


def is_encoder_dir(path: Path) -> bool:
    """A directory an encoder loads from: a student's, or a sentence-transformers model's."""
    from embedlab.encoders.student import MANIFEST

    return (path / MANIFEST).is_file() or (path / "modules.json").is_file()


def _gone(entry: Any) -> bool:
    """Whether a served entry's directory no longer holds what it was served from."""
    if isinstance(entry, ServedEncoder):
        return not is_encoder_dir(entry.path)
    return describe_file(entry.path) is None


def _created(path: Path, name: str) -> int:
    try:
        return int((path / name).stat().st_mtime)
    except OSError:
        return 0


def _aligned_labels(index: Any) -> np.ndarray | None:
    """The ``label`` of each stored vector, in the index's order (from its rows table)."""
    if index.rows is None or "label" not in index.rows.column_names:
        return None
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = pa.array(index.ids.astype(str))
    at = pc.index_in(ids, value_set=index.rows.column("id").cast(pa.string()))
    labels = index.rows.column("label").cast(pa.string()).take(at)
    return np.asarray(labels.to_pylist(), dtype=object)


class Registry:
    """Load model bundles and indexes from directories: ``models[name]``, ``indexes[name]``,
    ``encoders[key]`` (one object per distinct encoder)."""

    def __init__(
        self,
        paths: list[str | os.PathLike],
        *,
        backend: str | None = None,
        cache: bool = False,
        key: Any = None,
        query_maps: dict[str, str] | None = None,
    ) -> None:
        """``key``: a SigningKey every served bundle must be signed with (None: any).
        ``query_maps``: served index name → a map (`embedlab align OLD NEW`, OLD the
        index's encoder): queries are encoded with NEW and mapped back."""
        if not paths:
            raise ValidationError("serve needs at least one model or index directory")
        self.backend, self.cache, self.key = backend, cache, key
        self.query_maps = {str(k): str(v) for k, v in (query_maps or {}).items()}
        self.models: dict[str, ServedModel] = {}
        self.indexes: dict[str, ServedIndex] = {}
        self.embedders: dict[str, ServedEncoder] = {}  # encoder directories served as such
        self.tables: dict[str, ServedTables] = {}  # table models (records in, labels out)
        self.encoders: dict[str, Any] = {}
        for p in paths:
            path = Path(p).absolute()  # written back by absolute path, whatever the cwd does
            name = path.resolve().name
            if name in self.names():
                other = next(e.path for e in self.entries() if e.name == name)
                raise ValidationError(
                    f"two served directories are called {name!r} ({other} and {path}): serve "
                    "them from directories with different names"
                )
            self.swap(self.load_entry(path, name))
        stray = sorted(set(self.query_maps) - set(self.indexes))
        if stray:
            raise ValidationError(
                f"--query-map names {stray}, which are not served indexes (served: "
                f"{sorted(self.indexes) or 'none'})"
            )

    def names(self) -> list[str]:
        return sorted([*self.models, *self.indexes, *self.embedders, *self.tables])

    def get(self, name: str) -> ServedModel:
        model = self.models.get(name)
        if model is None:
            raise KeyError(name)
        return model

    def _share(self, encoder: Any) -> tuple[str, Any]:
        key = json.dumps(encoder.spec, sort_keys=True, default=str)
        return key, self.encoders.get(key, encoder)

    def load_entry(self, path: Path, name: str | None = None) -> Any:
        """Load what ``path`` holds now (a model bundle, an index or an encoder directory),
        without serving it; raises (StoreError, ValidationError, EncoderError) for a
        directory that holds none of them or a broken one.
        """
        path = Path(path).absolute()
        name = name or path.resolve().name
        desc = describe_file(path)
        if desc is None and is_encoder_dir(path):
            from embedlab.encoders.loading import open_encoder

            key, shared = self._share(open_encoder(path, cache=self.cache, backend=self.backend))
            return ServedEncoder(name, path, shared, key)
        if desc is None:
            raise ValidationError(
                f"{path}: neither a model bundle (bundle.json), an index (index.json) nor an "
                "encoder directory (a student from `embedlab distill`, or a sentence-"
                "transformers model); serve takes directories written by `embedlab fit`, "
                "`embedlab index` or `embedlab distill`"
            )
        if desc.name == INDEX_FILE:
            return self._load_index(path, name, stamp_of(path))
        if desc.name == TABLES_FILE:
            return self._load_tables(path, name)
        pipe = Pipeline.load(path, cache=self.cache, backend=self.backend, key=self.key)
        key, shared = self._share(pipe.encoder_)
        pipe.share_encoder(shared)  # one encoder object for every model built on the same one
        return ServedModel(name, path, pipe, key, pipe.source_stamp)

    def _load_tables(self, path: Path, name: str) -> ServedTables:
        from embedlab.tables import TableModel

        if self.key is not None:
            raise ValidationError(
                f"{path}: a table model carries no signature yet, and this server serves "
                "signed bundles only; serve it from a server started without a signing key"
            )
        stamp = stamp_of(path)
        model = TableModel.load(path, cache=self.cache, backend=self.backend)
        if not model.text_col:
            return ServedTables(name, path, model, "", None, stamp)
        key, shared = self._share(model.encoder)
        model.encoder = shared  # one encoder object for every entry built on the same one
        return ServedTables(name, path, model, key, shared, stamp)

    def _load_index(self, path: Path, name: str, stamp: str | None) -> ServedIndex:
        from embedlab.compress.index import Index
        from embedlab.encoders.sentence_transformer import encoder_from_spec

        index = Index.load(path)
        if not index.encoder:
            raise ValidationError(
                f"{path}: this index was built from imported vectors and names no encoder, so "
                "the service cannot encode queries for it; serve indexes built from texts"
            )
        query_map = None
        if name in self.query_maps:
            from embedlab.align import Alignment

            query_map = Alignment.load(self.query_maps[name])
            query_map.check_old(index.encoder, f"index {name!r}")
            encoder = query_map.new_encoder(backend=self.backend)
        else:
            encoder = encoder_from_spec(index.encoder, cache=self.cache, backend=self.backend)
        key, shared = self._share(encoder)
        return ServedIndex(
            name, path, index, key, shared, _aligned_labels(index), stamp, query_map=query_map
        )

    def swap(self, entry: Any) -> None:
        """Serve ``entry`` under its name from now on (requests holding the old one finish)."""
        encoder = entry.pipeline.encoder_ if isinstance(entry, ServedModel) else entry.encoder
        if encoder is not None:
            self.encoders.setdefault(entry.encoder_key, encoder)
        if isinstance(entry, ServedModel):
            self.models[entry.name] = entry
        elif isinstance(entry, ServedTables):
            self.tables[entry.name] = entry
        elif isinstance(entry, ServedEncoder):
            self.embedders[entry.name] = entry
        else:
            self.indexes[entry.name] = entry
        # an encoder no served entry uses any more (a new version brought its own) is let go;
        # requests still running on the old version hold their own reference to it
        used = {e.encoder_key for e in self.entries()}
        for key in [k for k in self.encoders if k not in used]:
            del self.encoders[key]

    def entries(self) -> list[Any]:
        return [
            *self.models.values(),
            *self.indexes.values(),
            *self.embedders.values(),
            *self.tables.values(),
        ]

    def missing(self) -> dict[str, str]:
        """Served entries whose directory moved or vanished (name -> the path served from):
        they keep serving from memory, but no change can be saved to them."""
        return {e.name: str(e.path) for e in self.entries() if _gone(e)}

    def changed(self) -> list[ServedModel | ServedIndex]:
        """The served entries whose directory now holds another version (and a complete one:
        a directory caught between two versions is left for the next look)."""
        return [e for e in self.entries() if (s := stamp_of(e.path)) is not None and s != e.stamp]
