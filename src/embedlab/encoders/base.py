"""The Encoder protocol and the text checks every encoder applies at its boundary."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from embedlab.core.errors import EncoderError, ValidationError

__all__ = ["DEFAULT_MAX_CHARS", "Encoder", "check_texts", "spec_differences"]

log = logging.getLogger("embedlab")

#: Characters kept per text before tokenising. Transformer encoders truncate to a few hundred
#: tokens anyway; cutting megabyte-long strings first keeps tokenisation from stalling.
DEFAULT_MAX_CHARS = 100_000


#: What makes two encoders' vectors comparable: the model, the layer, the dimension kept.
COMPARABLE_KEYS = ("fingerprint", "layer", "truncate_dim", "first_last_average")


def spec_differences(a: dict[str, Any], b: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The keys of :data:`COMPARABLE_KEYS` on which encoder specs ``a`` and ``b`` differ, with
    (a's value, b's value); empty when their vectors can be compared."""
    return {k: (a.get(k), b.get(k)) for k in COMPARABLE_KEYS if a.get(k) != b.get(k)}


def check_same_encoder(mine: dict[str, Any], theirs: dict[str, Any] | None, where: Any) -> None:
    """Refuse vectors (saved at ``where``, made by the encoder spec ``theirs``) that another
    encoder than ``mine`` — model, layer, dimension — made, or of unknown origin."""
    if not theirs:
        raise ValidationError(
            f"{where} holds imported vectors of unknown origin; the model can only score "
            "vectors of its own encoder — give the texts, or encode them with "
            "`embedlab encode` and the model's encoder"
        )
    diff = spec_differences(theirs, mine)
    if diff:
        shown = ", ".join(f"{k}: set {a!r} vs model {b!r}" for k, (a, b) in diff.items())
        raise ValidationError(
            f"{where} was encoded with another encoder than the model's ({shown}); give the "
            "texts, or encode them again with the model's encoder"
        )


@runtime_checkable
class Encoder(Protocol):
    """Anything that turns texts into a float32 matrix.

    ``dim`` is the output dimension, ``spec`` a JSON-able dict that identifies the encoder
    (its ``fingerprint`` key, when present, changes whenever the vectors would).
    """

    @property
    def dim(self) -> int: ...

    @property
    def spec(self) -> dict[str, Any]: ...

    def encode(self, texts: Sequence[str], *, progress: bool | None = None) -> np.ndarray: ...


def check_texts(texts: Any, *, max_chars: int = DEFAULT_MAX_CHARS) -> list[str]:
    """Return ``texts`` as a list of non-empty strings, cut to ``max_chars`` characters.

    Raises EncoderError naming the rows for non-strings, bytes that are not UTF-8, and
    empty or whitespace-only texts. Logs one warning with a count when texts were cut.
    """
    if isinstance(texts, str):
        raise EncoderError("encode() takes a list of texts, not a single string; wrap it: [text]")
    out: list[str] = []
    bad_type: list[int] = []
    empty: list[int] = []
    cut = 0
    for i, t in enumerate(texts):
        if isinstance(t, bytes):
            try:
                t = t.decode("utf-8")
            except UnicodeDecodeError:
                raise EncoderError(f"text at row {i} is not valid UTF-8") from None
        if not isinstance(t, str):
            bad_type.append(i)
            continue
        if not t.strip():
            empty.append(i)
        if len(t) > max_chars:
            t = t[:max_chars]
            cut += 1
        out.append(t)
    if bad_type:
        raise EncoderError(f"texts must be strings; rows {bad_type[:10]} are not")
    if empty:
        raise EncoderError(
            f"{len(empty)} empty or whitespace-only text(s) at rows {empty[:10]}"
            + (" ..." if len(empty) > 10 else "")
            + "; remove them (the CLI's --skip-empty does this and reports the count)"
        )
    if cut:
        log.warning("%d text(s) longer than %d characters were cut to that length", cut, max_chars)
    return out
