"""Opening any encoder directory: a static student, or a sentence-transformers model (a
shallow student is one), with a one-line error for anything else."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from embedlab.core.errors import EncoderError
from embedlab.encoders.student import MANIFEST, is_student, read_manifest

__all__ = ["open_encoder"]


def open_encoder(
    path: str | os.PathLike | None = None,
    *,
    layer: int | None = None,
    dim: int | None = None,
    first_last_average: bool = False,
    **options: Any,
) -> Any:
    """The encoder in directory ``path``: a static student, or a sentence-transformers model
    (a shallow student is one); None → the packaged default. ``options`` go to
    SentenceTransformerEncoder (a static student takes ``max_chars`` only)."""
    from embedlab.encoders.sentence_transformer import SentenceTransformerEncoder

    if (
        path is not None
        and Path(path).is_dir()
        and not is_student(path)
        and (not (Path(path) / "modules.json").is_file() or _is_model2vec(Path(path)))
    ):
        raise EncoderError(
            f"{path} is neither a student made by embedlab distill (no {MANIFEST}) nor a "
            "sentence-transformers model directory (no modules.json): pass a directory "
            "written by `embedlab distill`, or a sentence-transformers model"
        )
    if path is not None and is_student(path):
        manifest = read_manifest(path)
        if manifest["kind"] == "static":
            if layer is not None or dim is not None or first_last_average:
                raise EncoderError(
                    f"{path} is a static student: it has no layers, and --layer / --dim / "
                    "first-last averaging do not apply (distil with --dim for fewer dimensions)"
                )
            from embedlab.encoders.static import StaticEncoder

            extra = {k: options[k] for k in ("max_chars",) if k in options}
            return StaticEncoder(path, manifest=manifest, **extra)
    return SentenceTransformerEncoder(
        path, layer=layer, dim=dim, first_last_average=first_last_average, **options
    )


def _is_model2vec(path: Path) -> bool:
    """A model2vec directory (it writes modules.json too, but runs as no transformer)."""
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and config.get("model_type") == "model2vec"
