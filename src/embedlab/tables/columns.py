"""The columns beside the text, made numeric: categorical values → 64-bit keys (missing,
rare and unseen values handled and counted), numeric values → standardised floats.

A categorical value is read as a string (``3``, ``3.0`` and ``"3"`` are one value) and
hashed with a fixed key, salted by its column, into a 64-bit *key*; tables index their rows
by keys, so the hashed kinds need no vocabulary at all. Missing values (None, NaN, empty
strings) get a key of their own: missing is a category, learned like any other.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from embedlab.core.errors import ValidationError

__all__ = [
    "MISSING_KEY",
    "CategoricalStats",
    "NumericScaler",
    "TablesWarning",
    "column_keys",
    "column_values",
    "label_strings",
    "mix",
    "no_text",
    "parse_bytes",
    "row_count",
]

#: The key of a missing value (None, NaN, empty string) in every column.
MISSING_KEY = np.uint64(0)
_HASH_KEY = "embedlab.tables"  # 16 bytes: pandas' siphash key
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


class TablesWarning(UserWarning):
    """Something about a column the fit worked around (one value, numbers as categories…)."""


def column_values(data: Any, name: str) -> np.ndarray:
    """Column ``name`` of ``data`` (a pyarrow Table, a pandas DataFrame or a mapping of
    sequences) as a 1-D array; ValidationError naming the columns there are when it is not
    there."""
    if hasattr(data, "column_names"):  # pyarrow
        names = list(data.column_names)
        if name in names:
            return np.asarray(data.column(name).to_numpy(zero_copy_only=False))
    elif hasattr(data, "columns") and hasattr(data, "__getitem__"):  # pandas
        names = [str(c) for c in data.columns]
        if name in names:
            return np.asarray(data[name].to_numpy())
    elif isinstance(data, Mapping):
        names = [str(c) for c in data]
        if name in data:
            return np.asarray(data[name], dtype=object if _stringy(data[name]) else None)
    else:
        raise ValidationError(
            f"columns must come as a table (pyarrow, pandas) or a mapping of column → values, "
            f"not {type(data).__name__}"
        )
    shown = ", ".join(repr(n) for n in names[:20])
    raise ValidationError(f"no column {name!r} in the data (it has {shown})")


def label_strings(y: Any) -> np.ndarray:
    """Labels as an object array of strings (1 and "1" are one label); ValidationError
    naming the rows (from 1) whose label is missing."""
    import pandas as pd

    arr = np.asarray(y, dtype=object).ravel()
    missing = pd.isna(arr) | (pd.Series(arr, dtype=object).astype(str).str.strip() == "").to_numpy()
    if missing.any():
        rows = np.flatnonzero(missing)[:10] + 1
        raise ValidationError(
            f"{int(missing.sum())} label(s) missing (rows {', '.join(map(str, rows))}, "
            "counted from 1)"
        )
    return pd.Series(arr, dtype=object).astype(str).to_numpy(dtype=object)


def no_text(texts: np.ndarray) -> np.ndarray:
    """Whether each text is missing or blank (such a row reads as "no text")."""
    import pandas as pd

    s = pd.Series(texts, dtype=object)
    is_str = s.map(type).eq(str).to_numpy()
    blank = s.where(is_str, "").astype(str).str.strip().eq("").to_numpy()
    return ~is_str | blank


def _stringy(values: Any) -> bool:
    return any(isinstance(v, str) for v in list(values[:100]))


def _as_strings(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(strings, missing mask): every value as a string ("3" for 3 and 3.0), in one pass."""
    import pandas as pd

    s = pd.Series(values, copy=False)
    missing = s.isna().to_numpy().copy()
    if s.dtype.kind == "f":
        whole = np.isfinite(s.to_numpy()) & (np.mod(s.fillna(0).to_numpy(), 1) == 0)
        out = s.astype(object)
        if whole.any():
            out[whole] = s[whole].astype(np.int64).astype(str)
        out[~whole & ~missing] = s[~whole & ~missing].astype(str)
        strings = out.astype(str).to_numpy(dtype=object)
    else:
        strings = s.astype(str).to_numpy(dtype=object)
    if s.dtype.kind not in "iufb":
        text = pd.Series(strings, dtype=object).str.strip()
        missing |= (text == "").to_numpy()
        # "3.0" (a float in an object column, or a CSV cell) is the number 3: one value
        strings = text.str.replace(r"^(-?\d+)\.0+$", r"\1", regex=True).to_numpy(dtype=object)
    return strings, missing


def column_keys(values: np.ndarray, column: str) -> np.ndarray:
    """The 64-bit key of every value of ``column`` (uint64; :data:`MISSING_KEY` for a missing
    value). Deterministic across processes and machines (a keyed siphash, salted by the
    column's name: one value in two columns has two keys)."""
    import pandas as pd

    strings, missing = _as_strings(values)
    salted = np.asarray(strings, dtype=object)
    keys = pd.util.hash_array(salted, hash_key=_HASH_KEY.ljust(16)[:16], categorize=True)
    keys = mix(keys, _column_salt(column))
    keys[keys == MISSING_KEY] = np.uint64(1)  # keep 0 for missing
    keys[missing] = MISSING_KEY
    return keys


def _column_salt(column: str) -> np.uint64:
    import hashlib

    return np.uint64(int.from_bytes(hashlib.sha256(column.encode()).digest()[:8], "little"))


def mix(keys: np.ndarray, salt: np.uint64 | int) -> np.ndarray:
    """Another well-spread 64-bit hash of ``keys`` for each ``salt`` (splitmix64's
    finaliser over key ^ salt): the independent hash functions of the hashed tables."""
    with np.errstate(over="ignore"):
        z = (keys ^ np.uint64(salt)) + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


@dataclass(frozen=True)
class CategoricalStats:
    """What the fit saw of one categorical column: its distinct keys by count (most
    frequent first), the count of each, how many rows were missing, and a few display
    values (the most frequent)."""

    name: str
    keys: np.ndarray  # uint64, distinct non-missing keys, most frequent first
    counts: np.ndarray  # int64, aligned with keys
    rows: int
    missing: int
    top_values: tuple[str, ...]

    @property
    def distinct(self) -> int:
        return len(self.keys)

    @classmethod
    def of(cls, values: np.ndarray, name: str) -> tuple[CategoricalStats, np.ndarray]:
        """The stats of a training column and its keys. Warns (TablesWarning) when the
        column holds numbers (ids are fine; a quantity belongs in the numeric columns)."""
        numbers = _numbers(values)
        if numbers is not None:
            warnings.warn(
                f"categorical column {name!r} holds numbers ({len(np.unique(numbers)):,} "
                "distinct): each value is a category of its own; if their order means "
                "something, pass the column as numeric (--num-cols) instead",
                TablesWarning,
                stacklevel=3,
            )
        keys = column_keys(values, name)
        present = keys != MISSING_KEY
        uniq, first, counts = np.unique(keys[present], return_index=True, return_counts=True)
        order = np.lexsort((uniq, -counts))  # count desc, then key: deterministic
        strings, _ = _as_strings(np.asarray(values)[present][first[order[:5]]])
        stats = cls(
            name=name,
            keys=uniq[order],
            counts=counts[order].astype(np.int64),
            rows=len(keys),
            missing=int((~present).sum()),
            top_values=tuple(str(s) for s in strings),
        )
        return stats, keys


def _numbers(values: np.ndarray) -> np.ndarray | None:
    """The non-missing values as floats when every one of them is a number (numeric
    dtype, or strings such as "42" read from a CSV file); else None."""
    import pandas as pd

    s = pd.Series(values, copy=False)
    s = s[~s.isna()]
    if not len(s):
        return None
    if s.dtype.kind in "iuf":
        return s.to_numpy(np.float64)
    if s.dtype.kind == "b":
        return None
    parsed = pd.to_numeric(s, errors="coerce")
    if parsed.isna().any():
        return None
    return parsed.to_numpy(np.float64)


class NumericScaler:
    """Numeric columns → float32 features: the standardised value (heavy-tailed columns,
    skewness above 2, through asinh first; clipped at ±5 standard deviations) and its
    piecewise-linear encoding over ``bins`` training quantiles (Gorishniy et al. 2022: one
    feature per bin, 0 below it, 1 above, linear within), so that a network sees thresholds
    as trees do. A missing value reads as the column's mean, with a 0/1 "missing" feature
    beside columns that had missing values in training."""

    def __init__(self, columns: Sequence[str], bins: int = 16) -> None:
        self.columns = list(columns)
        self.bins = bins
        self.edges_: list[np.ndarray] = []
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None
        self.asinh_: np.ndarray | None = None
        self.missing_flag_: np.ndarray | None = None

    @staticmethod
    def _floats(values: np.ndarray, name: str) -> np.ndarray:
        try:
            out = np.array(values, dtype=np.float64)  # a copy: arrow's arrays are read-only
        except (TypeError, ValueError):
            import pandas as pd

            out = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(np.float64)
            bad = np.isnan(out) & ~pd.isna(pd.Series(values)).to_numpy()
            if bad.any():
                example = values[np.flatnonzero(bad)[0]]
                raise ValidationError(
                    f"numeric column {name!r} holds {int(bad.sum()):,} values that are not "
                    f"numbers (e.g. {example!r}); pass it as categorical (--cat-cols)"
                ) from None
        out[~np.isfinite(out)] = np.nan
        return out

    def fit(self, data: Any) -> NumericScaler:
        cols = [self._floats(column_values(data, c), c) for c in self.columns]
        k = len(cols)
        self.mean_ = np.zeros(k)
        self.scale_ = np.ones(k)
        self.asinh_ = np.zeros(k, dtype=bool)
        self.missing_flag_ = np.zeros(k, dtype=bool)
        self.mean_raw_ = np.zeros(k)
        self.edges_ = []
        for j, (name, x) in enumerate(zip(self.columns, cols, strict=True)):
            ok = x[~np.isnan(x)]
            if len(ok) == 0:
                raise ValidationError(f"numeric column {name!r} has no values in the data")
            self.mean_raw_[j] = ok.mean()
            self.missing_flag_[j] = len(ok) < len(x)
            sd = ok.std()
            skew = float(((ok - ok.mean()) ** 3).mean() / sd**3) if sd > 0 else 0.0
            if abs(skew) > 2:
                self.asinh_[j] = True
                ok = np.arcsinh(ok)
            self.mean_[j] = ok.mean()
            self.scale_[j] = ok.std() if ok.std() > 0 else 1.0
            edges = np.unique(np.quantile(ok, np.linspace(0, 1, self.bins + 1)))
            self.edges_.append(edges if len(edges) > 2 else np.zeros(0))
        return self

    @property
    def width(self) -> int:
        if self.mean_ is None:
            return 0
        ple = sum(max(len(e) - 1, 0) for e in self.edges_)
        return len(self.columns) + int(self.missing_flag_.sum()) + ple

    @staticmethod
    def _piecewise(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
        lo, hi = edges[:-1], edges[1:]
        return np.clip((x[:, None] - lo) / np.maximum(hi - lo, 1e-12), 0.0, 1.0)

    def transform(self, data: Any) -> tuple[np.ndarray, int]:
        """(features (n, width) float32, number of missing values filled)."""
        if self.mean_ is None:
            raise ValidationError("the numeric scaler is not fitted")
        cols, flags, pieces, filled = [], [], [], 0
        for j, name in enumerate(self.columns):
            x = self._floats(column_values(data, name), name)
            miss = np.isnan(x)
            filled += int(miss.sum())
            if len(self.edges_[j]):
                pieces.append(self._piecewise(np.where(miss, self.mean_raw_[j], x), self.edges_[j]))
            if self.asinh_[j]:
                x = np.arcsinh(x)
            z = np.clip((x - self.mean_[j]) / self.scale_[j], -5, 5)
            z[miss] = 0.0
            cols.append(z)
            if self.missing_flag_[j]:
                flags.append(miss.astype(np.float64))
        if not cols:
            return np.zeros((row_count(data), 0), np.float32), 0
        return np.column_stack(cols + flags + pieces).astype(np.float32), filled

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        edges = {f"edges.{j}": e for j, e in enumerate(self.edges_)}
        return {"columns": self.columns, "bins": self.bins}, {
            **edges,
            "mean_raw": self.mean_raw_,
            "mean": self.mean_,
            "scale": self.scale_,
            "asinh": self.asinh_.astype(np.uint8),
            "missing_flag": self.missing_flag_.astype(np.uint8),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Any:
        out = cls(state["columns"], int(state.get("bins", 16)))
        out.edges_ = [np.asarray(arrays[f"edges.{j}"], np.float64) for j in range(len(out.columns))]
        out.mean_raw_ = np.asarray(arrays["mean_raw"], np.float64)
        out.mean_ = np.asarray(arrays["mean"], np.float64)
        out.scale_ = np.asarray(arrays["scale"], np.float64)
        out.asinh_ = np.asarray(arrays["asinh"]).astype(bool)
        out.missing_flag_ = np.asarray(arrays["missing_flag"]).astype(bool)
        if not len(out.mean_) == len(out.scale_) == len(out.columns):
            raise ValidationError("the numeric scaler's arrays do not match its columns")
        return out


def row_count(data: Any) -> int:
    """Rows of a table (pyarrow, pandas) or a mapping of columns."""
    if hasattr(data, "num_rows"):
        return int(data.num_rows)
    if hasattr(data, "shape"):
        return int(data.shape[0])
    first = next(iter(data.values()), [])
    return len(first)


def parse_bytes(text: str | int | float) -> int:
    """``"2MB"``, ``"512KiB"``, ``"1.5GB"``, ``3000000`` → bytes (kB/MB/GB are powers of 1000,
    KiB/MiB/GiB of 1024). ValidationError for anything else."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value, unit = float(text), "b"
    else:
        import re

        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-zA-Z]*)\s*", str(text))
        if not m:
            raise ValidationError(f"cannot read {text!r} as a size: write e.g. 2MB, 512KiB, 3e6")
        value, unit = float(m.group(1)), m.group(2).lower() or "b"
    units = {
        "b": 1, "kb": 1e3, "k": 1e3, "mb": 1e6, "m": 1e6, "gb": 1e9, "g": 1e9,
        "kib": 1024, "mib": 1024**2, "gib": 1024**3,
    }  # fmt: skip
    if unit not in units:
        raise ValidationError(f"unknown size unit {unit!r} in {text!r}: use B, kB, MB, GB, KiB…")
    out = value * units[unit]
    if not math.isfinite(out) or out < 64:
        raise ValidationError(f"a table budget of {text!r} is too small (at least 64 bytes)")
    return int(out)
