"""How a :class:`~embedlab.tables.model.TableModel` is saved and read back: ``tables.json``
(format, version, stages, options, classes, the layout, numeric scaling, the encoder's spec,
info, the arrays' checksum, its own checksum) and ``arrays.safetensors`` (the network's
parameters, the vocabularies' sorted keys and rows, the scaler's arrays). Written atomically;
loading verifies both checksums and never unpickles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embedlab.core.errors import StoreError
from embedlab.tables.columns import NumericScaler
from embedlab.tables.layout import Lookup, TableLayout
from embedlab.tables.network import RecordNet

__all__ = ["ARRAYS", "TABLES_FORMAT", "TABLES_JSON", "load_table_model", "save_table_model"]

TABLES_FORMAT = "embedlab.tables"
TABLES_JSON = "tables.json"
ARRAYS = "arrays.safetensors"


def save_table_model(model: Any, path: Path, *, overwrite: bool) -> Path:
    """Write fitted ``model`` to ``path`` (see the module)."""
    import hashlib

    from safetensors.numpy import save_file

    from embedlab import __version__
    from embedlab.store.atomic import atomic_directory
    from embedlab.store.manifest import sha256_file

    arrays = {f"net.{k}": v for k, v in model.net_.arrays().items()}
    for i, lk in enumerate(model.lookups_):
        if lk.sorted_keys is not None:
            arrays[f"vocab.{i}.keys"] = lk.sorted_keys.view(np.int64)
            arrays[f"vocab.{i}.rows"] = lk.sorted_rows
    scaler = None
    if model.scaler_ is not None:
        scaler, sa = model.scaler_.state()
        arrays.update({f"numeric.{k}": np.asarray(v) for k, v in sa.items()})
    params = {k: v for k, v in model.get_params().items() if k != "encoder"}
    encoder_spec = None
    if model.text_col:
        enc = model._text_encoder()
        encoder_spec = dict(enc.spec)
        encoder_spec["path"] = str(Path(enc.model_path).absolute())
    with atomic_directory(path, overwrite=overwrite) as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp / ARRAYS))
        doc = {
            "format": TABLES_FORMAT,
            "format_version": 1,
            "embedlab_version": __version__,
            "stages": [
                s
                for s in ("encoder", "columns", "tables", "head")
                if s != "encoder" or model.text_col
            ],
            "params": params,
            "classes": [str(c) for c in model.classes_],
            "text_dim": int(model.text_dim_),
            "input_width": int(model.net_.input_width),
            "layout": model.layout_.to_json(),
            "numeric": scaler,
            "encoder": encoder_spec,
            "info": model.info,
            "files": {ARRAYS: sha256_file(tmp / ARRAYS)},
        }
        doc["checksum"] = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
        (tmp / TABLES_JSON).write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return path


def load_table_model(cls: type, path: Path, *, cache: bool, backend: str | None) -> Any:
    """Read the table model saved at ``path`` into a ``cls``."""
    import hashlib

    from safetensors.numpy import load_file

    from embedlab.store.manifest import sha256_file

    try:
        doc = json.loads((path / TABLES_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StoreError(f"{path}: no readable {TABLES_JSON} ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != TABLES_FORMAT:
        raise StoreError(f"{path}: {TABLES_JSON} is not an embedlab table model")
    body = {k: v for k, v in doc.items() if k != "checksum"}
    if hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest() != doc.get("checksum"):
        raise StoreError(f"{path}: {TABLES_JSON} was edited or damaged (checksum differs)")
    if sha256_file(path / ARRAYS) != doc["files"].get(ARRAYS):
        raise StoreError(f"{path}: {ARRAYS} does not match {TABLES_JSON} (damaged or replaced)")
    arrays = load_file(str(path / ARRAYS))
    try:
        model = cls(**doc["params"])
        if doc.get("encoder"):
            from embedlab.encoders.sentence_transformer import encoder_from_spec

            model.encoder = encoder_from_spec(
                doc["encoder"], base_dir=path, cache=cache, backend=backend
            )
        model.classes_ = np.asarray(doc["classes"], dtype=object)
        model.text_dim_ = int(doc["text_dim"])
        model.layout_ = TableLayout.from_json(doc["layout"])
        model.lookups_ = []
        for i, col in enumerate(model.layout_.columns):
            if f"vocab.{i}.keys" in arrays:
                model.lookups_.append(
                    Lookup(
                        col,
                        arrays[f"vocab.{i}.keys"].view(np.uint64),
                        arrays[f"vocab.{i}.rows"],
                    )
                )
            else:
                model.lookups_.append(Lookup(col))
        model.scaler_ = None
        if doc.get("numeric"):
            pre = "numeric."
            model.scaler_ = NumericScaler.from_state(
                doc["numeric"],
                {k[len(pre) :]: v for k, v in arrays.items() if k.startswith(pre)},
            )
        num_dim = model.scaler_.width if model.scaler_ is not None else 0
        text_dim = model.text_dim_ + 1 if model.text_col else 0
        net = RecordNet(
            model.layout_, text_dim=text_dim, num_dim=num_dim,
            n_classes=len(model.classes_),
            hidden=int(model.hidden) if model.head == "mlp" else 0, seed=0,
            depth=int(model.depth),
        )  # fmt: skip
        pre = "net."
        net.load_state_dict(
            {
                k[len(pre) :]: torch.from_numpy(v.copy())
                for k, v in arrays.items()
                if k.startswith(pre)
            }
        )
        net.eval()
        model.net_ = net
        model.info = doc.get("info", {})
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise StoreError(
            f"{path}: the table model cannot be rebuilt ({type(exc).__name__}: {str(exc)[:200]})"
        ) from None
    return model
