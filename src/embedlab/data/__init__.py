"""Data in and out: tables and texts from files (whole or chunk by chunk), scored pairs,
precomputed vectors, the demo and shared data sets, the EmbeddingSet and its (sharded)
layout on disk."""
