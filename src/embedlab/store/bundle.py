"""The model bundle format, in one place: a directory of ``bundle.json`` (format, versions,
encoder spec, label set, estimator states, checksums), ``arrays.safetensors``, the adapted
encoder (``encoder/``, when there is one) and the ONNX graph the encoder runs on
(``onnx/``, when it runs on ONNX Runtime). Loading verifies every checksum and never
unpickles.

Saving fitted estimators as JSON + safetensors, and loading them without unpickling:
An estimator becomes ``{"class": name, "params": {...}, "attributes": {...}}``: parameters
and fitted attributes that are JSON values stay in JSON, numeric arrays go to one
safetensors file under a dotted key, string arrays become JSON lists, nested estimators
recurse. Only classes in :data:`REGISTRY` can be rebuilt, so a bundle cannot name arbitrary
code to run.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from embedlab.core.errors import StoreError
from embedlab.store.atomic import AS_AT_START, atomic_directory
from embedlab.store.containment import inside, refuse_links
from embedlab.store.manifest import read_versioned_json, sha256_file
from embedlab.store.ownership import SIGNATURE_FILE

__all__ = [
    "ARRAYS_FILE",
    "BUNDLE_FORMAT",
    "BUNDLE_FORMAT_VERSION",
    "BUNDLE_JSON",
    "ENCODER_DIR",
    "GRAPH_DIR",
    "REGISTRY",
    "SIGNATURE_FILE",
    "canonical_json",
    "estimator_from_state",
    "estimator_to_state",
    "read_bundle",
    "sign_bundle",
    "write_bundle",
]

BUNDLE_FORMAT = "embedlab.bundle"
BUNDLE_FORMAT_VERSION = 1
BUNDLE_JSON = "bundle.json"
ARRAYS_FILE = "arrays.safetensors"
ENCODER_DIR = "encoder"
GRAPH_DIR = "onnx"  # the exported graph the encoder runs on, when it runs on ONNX Runtime


def _registry() -> dict[str, type]:
    from embedlab import detect, heads
    from embedlab.models.multilabel import MultiLabelClassifier
    from embedlab.models.openset import OpenSetClassifier

    classes = [getattr(heads, n) for n in heads.__all__ if n != "EmbeddingClassifier"]
    classes += [
        getattr(detect, n)
        for n in detect.__all__
        if n not in ("NoveltyDetector", "calibrated_threshold")
    ]
    classes += [OpenSetClassifier, MultiLabelClassifier]
    return {c.__name__: c for c in classes}


REGISTRY: dict[str, type] = {}


def _registered(name: str) -> type | None:
    """The allow-listed class called ``name`` (the registry fills on first use)."""
    if not REGISTRY:
        REGISTRY.update(_registry())
    return REGISTRY.get(name)


def _is_estimator(v: Any) -> bool:
    return hasattr(v, "get_params") and hasattr(v, "fit")


def _encode(value: Any, key: str, arrays: dict[str, np.ndarray]) -> Any:
    if _is_estimator(value):
        return {"__estimator__": estimator_to_state(value, key, arrays)}
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "fiub":
            arrays[key] = np.ascontiguousarray(value)
            return {"__array__": key}
        if value.dtype.kind in "OUS":
            if value.ndim != 1:
                raise StoreError(f"cannot store {key}: only 1-D string arrays are supported")
            return {"__strings__": [str(v) for v in value.tolist()]}
        raise StoreError(f"cannot store {key}: unsupported dtype {value.dtype}")
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):  # JSON has no inf / nan
        return {"__float__": repr(value)}
    if isinstance(value, dict):
        return {"__dict__": {str(k): _encode(v, f"{key}.{k}", arrays) for k, v in value.items()}}
    if isinstance(value, (list, tuple)):
        return [_encode(v, f"{key}.{i}", arrays) for i, v in enumerate(value)]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if hasattr(value, "spec") and hasattr(value, "encode"):  # an Encoder: keep its identity only
        return {"__encoder__": value.spec}
    raise StoreError(f"cannot store {key}: {type(value).__name__} is not JSON / array data")


def _decode(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    if not isinstance(value, dict):
        return value
    if "__estimator__" in value:
        return estimator_from_state(value["__estimator__"], arrays)
    if "__float__" in value:  # inf, -inf or nan
        if value["__float__"] not in ("inf", "-inf", "nan"):
            raise StoreError(f"bundle holds an unknown float {value['__float__']!r}")
        return float(value["__float__"])
    if "__array__" in value:
        key = value["__array__"]
        if key not in arrays:
            raise StoreError(f"bundle is missing array {key!r}")
        return arrays[key]
    if "__strings__" in value:
        return np.asarray(value["__strings__"], dtype=object)
    if "__dict__" in value:
        return {k: _decode(v, arrays) for k, v in value["__dict__"].items()}
    if "__encoder__" in value:
        return None  # encoders are rebuilt from the bundle's encoder spec, not from here
    raise StoreError(f"bundle holds an unknown value {sorted(value)[:3]}")


def estimator_to_state(est: Any, prefix: str, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """JSON-able description of a (fitted) estimator; its arrays are added to ``arrays``."""
    name = type(est).__name__
    if _registered(name) is None:
        raise StoreError(f"{name} cannot be saved in a bundle (not an embedlab estimator)")
    params = {
        k: _encode(v, f"{prefix}.params.{k}", arrays) for k, v in est.get_params(deep=False).items()
    }
    attrs = {
        k: _encode(v, f"{prefix}.{k}", arrays)
        for k, v in vars(est).items()
        if k.endswith("_") and not k.startswith("_")
    }
    return {"class": name, "params": params, "attributes": attrs}


def estimator_from_state(state: dict[str, Any], arrays: dict[str, np.ndarray]) -> Any:
    """Rebuild an estimator saved by :func:`estimator_to_state`."""
    cls = _registered(str(state.get("class")))
    if cls is None:
        raise StoreError(f"bundle names an unknown estimator: {state.get('class')!r}")
    try:
        params = {k: _decode(v, arrays) for k, v in state["params"].items()}
        est = cls(**params)
        for k, v in state["attributes"].items():
            if not (k.endswith("_") and not k.startswith("_")):
                raise StoreError(f"bundle sets a non-fitted attribute {k!r}")
            setattr(est, k, _decode(v, arrays))
    except KeyError as exc:
        raise StoreError(f"bundle names an unknown estimator or field: {exc}") from None
    except TypeError as exc:
        raise StoreError(f"bundle parameters do not match {state.get('class')}: {exc}") from None
    return est


def canonical_json(obj: Any) -> str:
    """Stable JSON text (sorted keys) used for checksums."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def json_sha256(obj: Any) -> str:
    """sha256 of the canonical JSON text of ``obj``."""
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- bundle directory
def _split_timings(fields: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``fields`` without what depends on the machine's speed (the fit's timings, the
    adaptation's and the head selection's seconds), and those apart: they are kept outside
    the checksum, so the same data, options and seed give the same checksum on any
    machine."""
    info = dict(fields.get("info") or {})
    timings: dict[str, Any] = {}
    if "timings" in info:
        timings["timings"] = info.pop("timings")
    adapted = info.get("adapted")
    if isinstance(adapted, dict) and "seconds" in adapted:
        info["adapted"] = {k: v for k, v in adapted.items() if k != "seconds"}
        timings["adapt_seconds"] = adapted["seconds"]
    selection = info.get("selection")
    if isinstance(selection, dict) and "seconds" in selection:  # the head selection's time
        info["selection"] = {k: v for k, v in selection.items() if k != "seconds"}
        timings["selection_seconds"] = selection["seconds"]
    out = {**fields, "info": info} if "info" in fields else dict(fields)
    state = out.get("classifier")
    kept = ((state or {}).get("attributes") or {}).get("selection_")
    if isinstance(kept, dict) and "seconds" in (kept.get("__dict__") or {}):
        record = {k: v for k, v in kept["__dict__"].items() if k != "seconds"}
        attributes = {**state["attributes"], "selection_": {**kept, "__dict__": record}}
        out["classifier"] = {**state, "attributes": attributes}
        timings.setdefault("selection_seconds", kept["__dict__"]["seconds"])
    return out, timings


def _finite_json(value: Any) -> Any:
    """``value`` with every infinite or NaN float replaced by None: JSON has no such
    numbers (estimator states keep theirs exactly, as ``{"__float__": "inf"}``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_json(v) for v in value]
    return value


def _join_timings(doc: dict[str, Any]) -> dict[str, Any]:
    timings = doc.pop("timings", None)
    info = doc.get("info")
    if isinstance(timings, dict) and isinstance(info, dict):
        if "timings" in timings:
            info["timings"] = timings["timings"]
        if isinstance(info.get("adapted"), dict) and "adapt_seconds" in timings:
            info["adapted"]["seconds"] = timings["adapt_seconds"]
        if isinstance(info.get("selection"), dict) and "selection_seconds" in timings:
            info["selection"]["seconds"] = timings["selection_seconds"]
    kept = ((doc.get("classifier") or {}).get("attributes") or {}).get("selection_")
    if isinstance(timings, dict) and "selection_seconds" in timings and isinstance(kept, dict):
        kept.get("__dict__", {})["seconds"] = timings["selection_seconds"]
    return doc


def write_bundle(
    path: str | os.PathLike,
    *,
    overwrite: bool,
    encoder: Any,
    copy_encoder: bool,
    arrays: dict[str, np.ndarray],
    fields: dict[str, Any],
    expect_stamp: str | object | None = AS_AT_START,
    sign: Any = None,
) -> str:
    """Write a bundle directory atomically: ``fields`` (JSON values) and the encoder's spec
    into bundle.json, ``arrays`` into arrays.safetensors, the encoder's model directory
    when ``copy_encoder`` (an adapted encoder), and the ONNX graph it runs on.

    The write replaces ``path`` only if it still holds the version whose bundle.json has
    the checksum ``expect_stamp`` (default: what it held when the write began), else
    VersionConflict. ``sign`` (a :class:`~embedlab.store.signing.SigningKey`) adds signature.json.
    An encoder outside the bundle is referred to by absolute path; inside it, relatively.
    Returns the new bundle.json's sha256 (its stamp)."""
    from safetensors.numpy import save_file

    from embedlab import __version__

    path = Path(path)
    spec = dict(encoder.spec)
    spec["path"] = str(Path(encoder.model_path).absolute())
    checked, timings = _split_timings(_finite_json(fields))
    with atomic_directory(path, overwrite=overwrite, expect_stamp=expect_stamp) as tmp:
        if copy_encoder:
            shutil.copytree(encoder.model_path, tmp / ENCODER_DIR)
            spec["path"] = ENCODER_DIR  # relative to the bundle
        graph = _bundle_graph(encoder, tmp)
        if graph is not None:
            spec["graph"] = graph
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp / ARRAYS_FILE))
        doc = {
            "format": BUNDLE_FORMAT,
            "format_version": BUNDLE_FORMAT_VERSION,
            "embedlab_version": __version__,
            "encoder": spec,
            **checked,
            "arrays_sha256": sha256_file(tmp / ARRAYS_FILE),
        }
        doc["checksum"] = json_sha256(doc)
        if timings:
            doc["timings"] = timings  # outside the checksum: they vary with the machine
        data = json.dumps(doc, indent=1).encode("utf-8")
        (tmp / BUNDLE_JSON).write_bytes(data)
        if sign is not None:
            from embedlab.store.signing import sign_document

            (tmp / SIGNATURE_FILE).write_bytes(sign_document(sign, data, BUNDLE_JSON))
    return hashlib.sha256(data).hexdigest()


def read_bundle(
    path: str | os.PathLike, *, key: Any = None
) -> tuple[dict[str, Any], dict[str, np.ndarray], str]:
    """bundle.json, the arrays and the stamp (bundle.json's sha256) of the bundle at
    ``path``, every checksum and version verified, every path it names checked to stay
    inside it; with ``key`` (a SigningKey) its signature too. StoreError (naming the file
    and the fix) for anything missing, edited, corrupted, unsigned, leaving the bundle or
    made by an incompatible embedlab."""
    from safetensors.numpy import load_file

    from embedlab import __version__

    path = Path(path)
    doc, stamp = _read_bundle_json(path, key)
    arrays_file = inside(path, ARRAYS_FILE, "the bundle's arrays")
    if sha256_file(arrays_file) != doc.get("arrays_sha256"):
        raise StoreError(
            f"{path}: {ARRAYS_FILE} does not match bundle.json (corrupted or replaced)"
        )
    major = lambda v: str(v).split(".")[0]  # noqa: E731
    if major(doc.get("embedlab_version")) != major(__version__):
        raise StoreError(
            f"{path} was made by embedlab {doc.get('embedlab_version')}, incompatible with "
            f"this embedlab {__version__}; re-fit it with this version"
        )
    try:
        arrays = load_file(str(arrays_file))
    except Exception as exc:  # safetensors raises its own error types
        raise StoreError(f"{path}: cannot read {ARRAYS_FILE}: {exc}") from None
    return doc, arrays, stamp


def _bundle_graph(encoder: Any, tmp: Path) -> dict[str, Any] | None:
    """Copy the ONNX graph the encoder runs on into the bundle, so that the bundle predicts
    at once on another machine (nothing to export, no backend check); None on torch."""
    kind = getattr(encoder, "_backend", None)
    if kind not in ("onnx", "onnx-int8"):
        return None
    from embedlab.encoders.onnx_backend import ONNX_EXPORT_VERSION

    runner = encoder.onnx_backend(kind)
    source = runner.ensure_exported()
    rel = f"{GRAPH_DIR}/{kind}.onnx"
    (tmp / GRAPH_DIR).mkdir()
    shutil.copyfile(source, tmp / rel)
    return {
        "kind": kind,
        "file": rel,
        "sha256": sha256_file(tmp / rel),
        "layer": runner.layer,
        "export_version": ONNX_EXPORT_VERSION,
    }


def _read_bundle_json(path: Path, key: Any = None) -> tuple[dict[str, Any], str]:
    f = path / BUNDLE_JSON
    if not path.is_dir():
        raise StoreError(f"no model bundle at {path} (make one with `embedlab fit`)")
    if not f.is_file():
        raise StoreError(f"{path} is not a model bundle: {BUNDLE_JSON} is missing")
    refuse_links(path, "the bundle")  # embedlab never writes links: none may lead out of it
    raw = f.read_bytes()
    if key is not None:
        from embedlab.store.signing import verify_signature

        sig = path / SIGNATURE_FILE
        verify_signature(key, raw, sig.read_bytes() if sig.is_file() else None, path)
    doc = read_versioned_json(
        f, BUNDLE_FORMAT, BUNDLE_FORMAT_VERSION, "an embedlab model bundle", raw=raw
    )
    checksum = doc.pop("checksum", None)
    timings = doc.pop("timings", None)
    if checksum != json_sha256(doc):
        raise StoreError(
            f"{f} was modified after it was saved (checksum mismatch); re-fit the model "
            "rather than editing the bundle by hand"
        )
    for key_name in ("encoder", "classifier", "classes", "oos_label"):
        if key_name not in doc:
            raise StoreError(f"{f} lacks {key_name!r}")
    _check_encoder_paths(path, doc["encoder"])
    if timings is not None:
        doc["timings"] = timings
    return _join_timings(doc), hashlib.sha256(raw).hexdigest()


def _check_encoder_paths(path: Path, spec: Any) -> None:
    """The encoder's paths in bundle.json: a relative model path and the graph file must stay
    inside the bundle (never absolute, no ``..``, no links); the graph is a self-contained
    ONNX file whose initialisers fit in it. An absolute model path is a reference to a
    sentence-transformers directory outside the bundle (read, fingerprinted, never written)."""
    if not isinstance(spec, dict):
        raise StoreError(f"{path}: bundle.json's encoder is not a description of an encoder")
    model = spec.get("path")
    if isinstance(model, str) and not os.path.isabs(model):
        inside(path, model, "the encoder's model directory")
    elif not isinstance(model, str):
        raise StoreError(f"{path}: bundle.json names no encoder path")
    elif (
        not (Path(model) / "modules.json").is_file() and not (Path(model) / "config.json").is_file()
    ):
        from embedlab.encoders.sentence_transformer import DEFAULT_MODEL_NAME

        if spec.get("name") != DEFAULT_MODEL_NAME:  # the packaged one is found again by name
            raise StoreError(
                f"{path}: the encoder {model} it refers to is not a sentence-transformers "
                "model directory (no modules.json / config.json)"
            )
    graph = spec.get("graph")
    if graph is not None:
        if not isinstance(graph, dict) or not str(graph.get("file", "")).startswith(
            f"{GRAPH_DIR}/"
        ):
            named = graph.get("file") if isinstance(graph, dict) else graph
            raise StoreError(
                f"{path}: bundle.json names the ONNX graph {named!r}, outside the bundle's "
                f"{GRAPH_DIR}/ folder; refusing to read it"
            )
        inside(path, graph["file"], "the encoder's ONNX graph")


def sign_bundle(path: str | os.PathLike, key: Any) -> None:
    """Add (or replace) ``key``'s signature (a SigningKey) of the bundle at ``path``, after
    verifying its checksums (a damaged bundle is not signed); under the bundle's write lock,
    so that a version written meanwhile is never signed by mistake."""
    from embedlab.store.atomic import atomic_write_bytes, version_lock
    from embedlab.store.signing import sign_document

    path = Path(path)
    with version_lock(path):
        _doc, _arrays, stamp = read_bundle(path)
        data = (path / BUNDLE_JSON).read_bytes()
        if hashlib.sha256(data).hexdigest() != stamp:
            raise StoreError(f"{path} changed while it was being signed; sign it again")
        atomic_write_bytes(path / SIGNATURE_FILE, sign_document(key, data, BUNDLE_JSON))
