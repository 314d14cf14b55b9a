"""embedlab: machine learning on top of a frozen embedding model.

The flow: texts → :class:`Encoder` → :class:`EmbeddingSet` → transforms → heads / detectors.

>>> from embedlab import EmbeddingSet, SentenceTransformerEncoder   # doctest: +SKIP
>>> es = EmbeddingSet.from_texts(["hi", "bye"], SentenceTransformerEncoder())  # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"

from embedlab.encoders import EmbeddingCache, Encoder, SentenceTransformerEncoder
from embedlab.encoding import encode_file
from embedlab.errors import (
    DataFormatError,
    EmbedlabError,
    EncoderError,
    StoreError,
    ValidationError,
)
from embedlab.index import Index
from embedlab.metrics import evaluate_open_set
from embedlab.openset import OpenSetClassifier
from embedlab.pipeline import Pipeline
from embedlab.readers import TextTable, read_texts, write_table
from embedlab.space import EmbeddingSet, Provenance
from embedlab.transforms import TransformChain

__all__ = [
    "DataFormatError",
    "EmbeddingCache",
    "EmbeddingSet",
    "EmbedlabError",
    "Encoder",
    "EncoderError",
    "Index",
    "OpenSetClassifier",
    "Pipeline",
    "Provenance",
    "SentenceTransformerEncoder",
    "StoreError",
    "TextTable",
    "TransformChain",
    "ValidationError",
    "__version__",
    "encode_file",
    "evaluate_open_set",
    "read_texts",
    "write_table",
]
