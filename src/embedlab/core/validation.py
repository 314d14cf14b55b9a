"""Input checks shared by every boundary (EmbeddingSet, readers, heads, detectors).

Each check raises :class:`~embedlab.core.errors.ValidationError` with a message that names the
problem and where it is, so the numerical code behind a boundary can trust its arrays.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from typing import Any

import numpy as np

from embedlab.core.errors import InputTypeError, ValidationError

__all__ = ["check_ids", "check_labels", "check_vectors", "validated"]

#: Set (per thread / task, never process-wide) while an estimator hands its already
#: validated rows to the estimators inside it; see :func:`validated`.
_VALIDATED: ContextVar[bool] = ContextVar("embedlab_validated", default=False)


@contextlib.contextmanager
def validated() -> Iterator[None]:
    """Inside: the rows an estimator passes on to the estimators it is made of (head,
    detector) were validated once at its own boundary, so each of them only checks the array
    type, dtype and width instead of running scikit-learn's full check again."""
    token = _VALIDATED.set(True)
    try:
        yield
    finally:
        _VALIDATED.reset(token)


def _preview(items: Sequence[Any], limit: int = 5) -> str:
    shown = ", ".join(repr(x) for x in list(items)[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")


def _rows(indices: Sequence[int], limit: int = 5) -> str:
    """Row positions for a message, counted from 1 as every embedlab message counts them."""
    return _preview([int(i) + 1 for i in indices], limit) + " (counted from 1)"


def check_vectors(
    X: Any,
    *,
    name: str = "vectors",
    dim: int | None = None,
    allow_empty: bool = False,
    copy: bool = False,
) -> np.ndarray:
    """Return ``X`` as a 2-D float32 array, or raise a ValidationError naming what is wrong.

    Rejects non-numeric input, arrays that are not 2-D, a dimension other than ``dim`` when
    given, zero rows (unless ``allow_empty``), and NaN or infinite values (naming the rows).
    Memory-mapped float32 input is returned without a copy unless ``copy`` is true.
    """
    src = None
    if isinstance(X, np.ndarray) and X.dtype == np.float32 and not copy:
        arr = X
    else:
        src = X if isinstance(X, np.ndarray) else None
        if src is not None and np.iscomplexobj(src):
            raise ValidationError(
                f"{name} holds complex numbers; embeddings must be real (take .real or abs())"
            )
        try:
            with np.errstate(over="ignore", invalid="ignore"), warnings.catch_warnings():
                warnings.simplefilter("error", np.exceptions.ComplexWarning)
                arr = np.array(X, dtype=np.float32, copy=copy or None)
        except np.exceptions.ComplexWarning:
            raise ValidationError(
                f"{name} holds complex numbers; embeddings must be real (take .real or abs())"
            ) from None
        except (TypeError, ValueError, OverflowError) as exc:
            raise ValidationError(f"{name} must be numeric: {exc}") from None
    if arr.ndim == 1 and arr.size and dim is not None and arr.shape[0] == dim:
        raise ValidationError(
            f"{name} is 1-D with {arr.shape[0]} values; pass a 2-D array (n, {dim}), "
            "e.g. X.reshape(1, -1) for one vector"
        )
    if arr.ndim != 2:
        raise ValidationError(f"{name} must be a 2-D array (n, d); got shape {arr.shape}")
    if arr.shape[0] == 0 and not allow_empty:
        raise ValidationError(f"{name} is empty (0 rows)")
    if arr.shape[1] == 0:
        raise ValidationError(f"{name} has 0 dimensions")
    if dim is not None and arr.shape[1] != dim:
        raise ValidationError(f"{name} has dimension {arr.shape[1]}, expected {dim}")
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        if src is not None and src.dtype.kind in "fiu":
            with np.errstate(invalid="ignore"):
                src_finite = np.isfinite(np.asarray(src[bad], dtype=np.float64)).all(axis=1)
            if src_finite.all():
                raise ValidationError(
                    f"{name} holds values too large for float32 (|x| > 3.4e38) in "
                    f"{bad.size} row(s): rows {_rows(bad.tolist())}; "
                    "rescale the vectors"
                )
        raise ValidationError(
            f"{name} contains NaN or infinite values in {bad.size} row(s): "
            f"rows {_rows(bad.tolist())}"
        )
    return arr


def check_ids(ids: Any, n: int, *, name: str = "ids") -> np.ndarray:
    """Return ``ids`` as an object array of ``n`` unique strings, or raise."""
    arr = np.asarray([str(i) for i in ids], dtype=object)
    if arr.shape != (n,):
        raise ValidationError(f"{name} has {arr.shape[0]} entries for {n} rows")
    uniq, counts = np.unique(arr.astype(str), return_counts=True)
    if uniq.size != n:
        dups = uniq[counts > 1]
        raise ValidationError(f"{name} must be unique; duplicated: {_preview(dups.tolist())}")
    return arr


def check_labels(labels: Any, n: int, *, name: str = "labels") -> np.ndarray:
    """Return ``labels`` as an object array of ``n`` non-empty strings, or raise."""
    raw = list(labels)
    if len(raw) != n:
        raise ValidationError(f"{name} has {len(raw)} entries for {n} rows")
    missing = [i for i, v in enumerate(raw) if v is None or (isinstance(v, float) and v != v)]
    if missing:
        raise ValidationError(f"{name} are missing in {len(missing)} row(s): rows {_rows(missing)}")
    arr = np.asarray([str(v) for v in raw], dtype=object)
    empty = np.flatnonzero(np.char.str_len(arr.astype(str)) == 0) if n else np.array([], int)
    if empty.size:
        raise ValidationError(
            f"{name} are empty in {empty.size} row(s): rows {_rows(empty.tolist())}"
        )
    return arr


NO_Y = "no_validation"  # scikit-learn's marker for "X only"


def validate_estimator_data(
    estimator: Any, X: Any, y: Any = NO_Y, *, reset: bool, ensure_min_samples: int = 1
) -> Any:
    """scikit-learn's ``validate_data`` for embedlab's estimators (float32 / float64 input),
    raising :class:`ValidationError` — also a ``ValueError`` — named after the estimator.
    Pass ``y`` (even None, which is then an error) to validate X and y together."""
    if (
        not reset
        and _VALIDATED.get()
        and isinstance(X, np.ndarray)
        and X.dtype == np.float32
        and X.ndim == 2
        and (isinstance(y, str) and y == NO_Y)
        and X.shape[1] == getattr(estimator, "n_features_in_", -1)
    ):
        return X  # checked at the boundary of the estimator that holds this one
    from sklearn.utils.validation import validate_data

    kw = {"dtype": [np.float32, np.float64], "reset": reset}
    try:
        if isinstance(y, str) and y == NO_Y:
            return validate_data(estimator, X, ensure_min_samples=ensure_min_samples, **kw)
        return validate_data(estimator, X, y, ensure_min_samples=ensure_min_samples, **kw)
    except ValidationError:
        raise
    except TypeError as exc:  # e.g. a dict for X: also a TypeError, as scikit-learn promises
        raise InputTypeError(f"{type(estimator).__name__}: {exc}") from None
    except ValueError as exc:
        raise ValidationError(f"{type(estimator).__name__}: {exc}") from None
