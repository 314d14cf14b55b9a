"""Data sets embedlab knows about: the packaged demo intents, and CLINC150 from shared data."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Literal

from embedlab.errors import DataFormatError
from embedlab.readers import TextTable, read_texts

__all__ = ["OOS_LABEL", "clinc150_path", "demo_path", "load_clinc150", "load_demo"]

OOS_LABEL = "oos"


def demo_path(split: Literal["train", "test", "incoming"]) -> Path:
    """Path of the packaged demo CSV (12 intents + out-of-scope ``oos`` queries; "incoming":
    later requests, two new intents among known ones)."""
    if split not in ("train", "test", "incoming"):
        raise DataFormatError(f"demo split must be 'train', 'test' or 'incoming', not {split!r}")
    return Path(str(resources.files("embedlab") / "data" / "demo" / f"{split}.csv"))


def load_demo(split: Literal["train", "test", "incoming"]) -> TextTable:
    """The demo intents: train has 14 utterances per intent + 10 ``oos``; test 6 + 30;
    incoming 8 of each of two new intents + 4 of known ones."""
    return read_texts(demo_path(split))


def clinc150_path() -> Path:
    """CLINC150 ``data_full.json`` from ``$EMBEDLAB_DATA/clinc150`` or ``../shared/data``."""
    roots = [os.environ.get("EMBEDLAB_DATA")] if os.environ.get("EMBEDLAB_DATA") else []
    here = Path(__file__).resolve()
    roots += [str(p / "shared" / "data") for p in here.parents]
    roots.append(str(Path.cwd().parent / "shared" / "data"))
    for root in roots:
        candidate = Path(root) / "clinc150" / "data_full.json"
        if candidate.is_file():
            return candidate
    raise DataFormatError(
        "CLINC150 not found: set EMBEDLAB_DATA to the folder holding clinc150/data_full.json"
    )


def load_clinc150(*splits: str) -> TextTable:
    """CLINC150 rows of the given splits (train, val, test, oos_train, oos_val, oos_test).

    Out-of-scope rows carry the label ``oos``; the ``split`` metadata column says where each
    row came from.
    """
    return read_texts(clinc150_path(), splits=list(splits) or None)
