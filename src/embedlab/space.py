"""Former home of :class:`~embedlab.embedding_set.EmbeddingSet` (kept so that
``from embedlab.space import EmbeddingSet`` goes on working); the code lives in
:mod:`embedlab.embedding_set`."""

from embedlab.embedding_set import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST_FILE,
    ROWS_FILE,
    VECTORS_FILE,
    EmbeddingSet,
    Provenance,
    describe,
    read_manifest,
    read_vector_file,
)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST_FILE",
    "ROWS_FILE",
    "VECTORS_FILE",
    "EmbeddingSet",
    "Provenance",
    "describe",
    "read_manifest",
    "read_vector_file",
]
