"""Exceptions raised by embedlab.

Every error a user can trigger with bad input derives from :class:`EmbedlabError`, so the CLI
can print its message without a traceback and library users can catch one type.
"""

from __future__ import annotations


class EmbedlabError(Exception):
    """Base class for errors caused by user input, files or configuration."""


class ValidationError(EmbedlabError, ValueError):
    """An array, label set or argument is malformed (NaN, wrong shape, duplicate ids...)."""


class InputTypeError(ValidationError, TypeError):
    """An input of the wrong type (a dict where an array belongs): a ValidationError that is
    also the TypeError scikit-learn's contract promises."""


class DataFormatError(EmbedlabError, ValueError):
    """An input table (CSV / JSONL / Parquet / JSON) cannot be read as asked."""


class StoreError(EmbedlabError, OSError):
    """A saved directory (EmbeddingSet, bundle) is missing, corrupted or incompatible."""


class EncoderError(EmbedlabError, RuntimeError):
    """An encoder cannot be loaded or cannot encode the given texts."""


class RefusedOverwrite(StoreError, FileExistsError):
    """An output exists and may not be replaced (not asked to, or not something embedlab wrote)."""


class VersionConflict(StoreError):
    """A directory changed between reading it and writing its next version (another writer
    got there first): nothing was written, and the other writer's version stands."""
