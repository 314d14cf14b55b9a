"""Encoders: texts → float32 vectors."""

from embedlab.encoders.base import Encoder, check_texts
from embedlab.encoders.cache import EmbeddingCache, default_cache_dir
from embedlab.encoders.sentence_transformer import (
    DEFAULT_MODEL_NAME,
    SentenceTransformerEncoder,
    default_model_path,
    model_fingerprint,
)

__all__ = [
    "DEFAULT_MODEL_NAME",
    "EmbeddingCache",
    "Encoder",
    "SentenceTransformerEncoder",
    "check_texts",
    "default_cache_dir",
    "default_model_path",
    "model_fingerprint",
]
