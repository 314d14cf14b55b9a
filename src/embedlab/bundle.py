"""Saving fitted estimators as JSON + safetensors, and loading them without unpickling.

An estimator becomes ``{"class": name, "params": {...}, "attributes": {...}}``: parameters
and fitted attributes that are JSON values stay in JSON, numeric arrays go to one
safetensors file under a dotted key, string arrays become JSON lists, nested estimators
recurse. Only classes in :data:`REGISTRY` can be rebuilt, so a bundle cannot name arbitrary
code to run.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from embedlab.errors import StoreError

__all__ = ["REGISTRY", "canonical_json", "estimator_from_state", "estimator_to_state"]


def _registry() -> dict[str, type]:
    from embedlab import detect, heads
    from embedlab.openset import OpenSetClassifier

    classes = [getattr(heads, n) for n in heads.__all__ if n != "EmbeddingClassifier"]
    classes += [
        getattr(detect, n)
        for n in detect.__all__
        if n not in ("NoveltyDetector", "threshold_at_fpr")
    ]
    classes.append(OpenSetClassifier)
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
        return value.item()
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
