"""Data sets embedlab knows about: the packaged demo intents, and CLINC150 and GoEmotions
from shared data."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Literal

from embedlab.core.errors import DataFormatError
from embedlab.data.readers import TextTable, read_texts

__all__ = [
    "OOS_LABEL",
    "adult_path",
    "clinc150_path",
    "clothing_reviews_path",
    "demo_path",
    "goemotions_path",
    "load_clinc150",
    "load_demo",
    "load_goemotions",
]

OOS_LABEL = "oos"


def demo_path(split: Literal["train", "test", "incoming", "hierarchy"]) -> Path:
    """Path of the packaged demo CSV (12 intents + out-of-scope ``oos`` queries; "incoming":
    later requests, two new intents among known ones; "hierarchy": the intents' four areas,
    columns child,parent)."""
    if split not in ("train", "test", "incoming", "hierarchy"):
        raise DataFormatError(
            f"demo split must be 'train', 'test', 'incoming' or 'hierarchy', not {split!r}"
        )
    return Path(str(resources.files("embedlab") / "data" / "demo" / f"{split}.csv"))


def load_demo(split: Literal["train", "test", "incoming"]) -> TextTable:
    """The demo intents: train has 14 utterances per intent + 10 ``oos``; test 6 + 30;
    incoming 8 of each of two new intents + 4 of known ones."""
    return read_texts(demo_path(split))


def _shared(relative: str, name: str) -> Path:
    roots = [os.environ.get("EMBEDLAB_DATA")] if os.environ.get("EMBEDLAB_DATA") else []
    here = Path(__file__).resolve()
    roots += [str(p / "shared" / "data") for p in here.parents]
    roots.append(str(Path.cwd().parent / "shared" / "data"))
    for root in roots:
        candidate = Path(root) / relative
        if candidate.exists():
            return candidate
    raise DataFormatError(f"{name} not found: set EMBEDLAB_DATA to the folder holding {relative}")


def clinc150_path() -> Path:
    """CLINC150 ``data_full.json`` from ``$EMBEDLAB_DATA/clinc150`` or ``../shared/data``."""
    return _shared("clinc150/data_full.json", "CLINC150")


def goemotions_path() -> Path:
    """The GoEmotions folder (train.tsv, dev.tsv, labels.txt) under ``$EMBEDLAB_DATA`` or
    ``../shared/data``."""
    return _shared("goemotions/labels.txt", "GoEmotions").parent


def adult_path() -> Path:
    """``adult/adult.parquet`` (UCI Adult census records) under ``$EMBEDLAB_DATA`` or
    ``../shared/data``."""
    return _shared("adult/adult.parquet", "adult")


def clothing_reviews_path() -> Path:
    """``clothing_reviews/reviews.parquet`` (reviews beside item ids and categories) under
    ``$EMBEDLAB_DATA`` or ``../shared/data``."""
    return _shared("clothing_reviews/reviews.parquet", "clothing_reviews")


def load_clinc150(*splits: str) -> TextTable:
    """CLINC150 rows of the given splits (train, val, test, oos_train, oos_val, oos_test).

    Out-of-scope rows carry the label ``oos``; the ``split`` metadata column says where each
    row came from.
    """
    return read_texts(clinc150_path(), splits=list(splits) or None)


def load_goemotions(split: Literal["train", "dev"]) -> tuple[list[str], list[str]]:
    """GoEmotions texts and their label cells (emotion names joined by ","; every row has at
    least one, ``neutral`` included). The shared TSV stores label ids; they are named here."""
    import csv

    if split not in ("train", "dev"):
        raise DataFormatError(f"GoEmotions split must be 'train' or 'dev', not {split!r}")
    root = goemotions_path()
    names = (root / "labels.txt").read_text(encoding="utf-8").split()
    texts, cells = [], []
    with open(root / f"{split}.tsv", encoding="utf-8", newline="") as fh:
        for row in csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):  # parsing a file
            texts.append(row[0])
            cells.append(",".join(names[int(i)] for i in row[1].split(",")))
    return texts, cells
