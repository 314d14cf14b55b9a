"""embedlab: machine learning on top of a frozen embedding model.

The flow: texts → :class:`Encoder` → :class:`EmbeddingSet` → transforms → heads / detectors.

>>> from embedlab import EmbeddingSet, SentenceTransformerEncoder   # doctest: +SKIP
>>> es = EmbeddingSet.from_texts(["hi", "bye"], SentenceTransformerEncoder())  # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

from embedlab.core.errors import (
    DataFormatError,
    EmbedlabError,
    EncoderError,
    StoreError,
    ValidationError,
)

# Public names load their module on first use (PEP 562), so `import embedlab` and the
# CLI's start stay clear of scikit-learn, torch, transformers, faiss and matplotlib.
_LAZY = {
    "EmbeddingCache": "embedlab.encoders.cache",
    "Encoder": "embedlab.encoders.base",
    "SentenceTransformerEncoder": "embedlab.encoders.sentence_transformer",
    "StaticEncoder": "embedlab.encoders.static",
    "open_encoder": "embedlab.encoders.loading",
    "encode_file": "embedlab.scale.encoding",
    "Index": "embedlab.compress.index",
    "evaluate_open_set": "embedlab.core.metrics",
    "MultiLabelClassifier": "embedlab.models.multilabel",
    "Hierarchy": "embedlab.models.hierarchy",
    "OpenSetClassifier": "embedlab.models.openset",
    "Pipeline": "embedlab.models.pipeline",
    "TextTable": "embedlab.data.readers",
    "read_texts": "embedlab.data.readers",
    "write_table": "embedlab.data.readers",
    "EmbeddingSet": "embedlab.data.embedding_set",
    "Provenance": "embedlab.data.embedding_set",
    "TransformChain": "embedlab.compress.transforms",
    "suggest": "embedlab.labeling.suggest",
    "simulate_labeling": "embedlab.labeling.simulate",
    "label_issues": "embedlab.labeling.label_issues",
}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from embedlab.compress.index import Index
    from embedlab.compress.transforms import TransformChain
    from embedlab.core.metrics import evaluate_open_set
    from embedlab.data.embedding_set import EmbeddingSet, Provenance
    from embedlab.data.readers import TextTable, read_texts, write_table
    from embedlab.encoders.base import Encoder
    from embedlab.encoders.cache import EmbeddingCache
    from embedlab.encoders.loading import open_encoder
    from embedlab.encoders.sentence_transformer import SentenceTransformerEncoder
    from embedlab.encoders.static import StaticEncoder
    from embedlab.labeling.label_issues import label_issues
    from embedlab.labeling.simulate import simulate_labeling
    from embedlab.labeling.suggest import suggest
    from embedlab.models.hierarchy import Hierarchy
    from embedlab.models.multilabel import MultiLabelClassifier
    from embedlab.models.openset import OpenSetClassifier
    from embedlab.models.pipeline import Pipeline
    from embedlab.scale.encoding import encode_file


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'embedlab' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "DataFormatError",
    "EmbeddingCache",
    "EmbeddingSet",
    "EmbedlabError",
    "Encoder",
    "EncoderError",
    "Hierarchy",
    "Index",
    "MultiLabelClassifier",
    "OpenSetClassifier",
    "Pipeline",
    "Provenance",
    "SentenceTransformerEncoder",
    "StaticEncoder",
    "StoreError",
    "TextTable",
    "TransformChain",
    "ValidationError",
    "__version__",
    "encode_file",
    "evaluate_open_set",
    "label_issues",
    "open_encoder",
    "read_texts",
    "simulate_labeling",
    "suggest",
    "write_table",
]
