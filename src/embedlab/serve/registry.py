"""The models a service serves: loaded by directory, named by it, one encoder (and one
micro-batcher) shared by every model built on the same encoder."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from embedlab.errors import ValidationError
from embedlab.pipeline import Pipeline

__all__ = ["Registry", "ServedModel"]


@dataclass
class ServedModel:
    """One served model bundle."""

    name: str
    path: Path
    pipeline: Pipeline
    encoder_key: str
    loaded: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def threshold(self) -> float | None:
        """The out-of-scope threshold, or None (a multi-label model, or none calibrated)."""
        t = getattr(self.pipeline.classifier, "threshold_", None)
        return float(t) if t is not None and math.isfinite(t) else None

    def describe(self) -> dict[str, Any]:
        """The model's entry in GET /v1/models (OpenAI's shape plus embedlab's fields)."""
        pipe = self.pipeline
        info = pipe.info or {}
        lineage = info.get("lineage") or {}
        return {
            "id": self.name,
            "object": "model",
            "owned_by": "embedlab",
            "created": int(self.path.joinpath("bundle.json").stat().st_mtime),
            "version": lineage.get("version", 1),
            "fingerprint": lineage.get("fingerprint"),
            "encoder": pipe._encoder().spec.get("fingerprint"),
            "dim": int(pipe._encoder().dim),
            "kind": "multi-label" if pipe.multi_label else "single-label",
            "classes": [str(c) for c in pipe.classes_],
            "oos_label": pipe.oos_label,
            "threshold": self.threshold,
            "levels": pipe.hierarchy.level_names() if pipe.hierarchy is not None else None,
            "loaded": self.loaded,
        }


class Registry:
    """Load model bundles from directories; ``models[name]``; ``encoders[key]``."""

    def __init__(
        self, paths: list[str | os.PathLike], *, backend: str | None = None, cache: bool = False
    ) -> None:
        if not paths:
            raise ValidationError("serve needs at least one model directory")
        self.models: dict[str, ServedModel] = {}
        self.encoders: dict[str, Any] = {}
        for p in paths:
            path = Path(p)
            if not (path / "bundle.json").is_file():
                raise ValidationError(
                    f"{path}: not a model bundle (no bundle.json); serve takes directories "
                    "written by `embedlab fit`"
                )
            name = path.resolve().name
            if name in self.models:
                raise ValidationError(
                    f"two served models are called {name!r} ({self.models[name].path} and "
                    f"{path}): serve them from directories with different names"
                )
            pipe = Pipeline.load(path, cache=cache, backend=backend)
            encoder = pipe._encoder()
            key = json.dumps(encoder.spec, sort_keys=True, default=str)
            # one encoder object for every model built on the same one: encoded once
            shared = self.encoders.setdefault(key, encoder)
            pipe.encoder = shared
            self.models[name] = ServedModel(name, path, pipe, key)

    def get(self, name: str) -> ServedModel:
        model = self.models.get(name)
        if model is None:
            raise KeyError(name)
        return model
