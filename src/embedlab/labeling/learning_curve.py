"""Would more labels pay? A model's learning curve from its own rows, extrapolated.

Out-of-fold points: the labelled rows are split in ``folds``; a head is fitted on growing
shares of the other folds and scored on the held-out one. An inverse power law
``accuracy(n) = a − b · n^(−c)`` (the usual shape of learning curves; Hestness et al. 2017)
is fitted to the points and read at 2× and 4× the labels there are now, with ``a`` (the
ceiling the curve approaches) stated.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from embedlab.core.errors import ValidationError
from embedlab.core.validation import check_labels, check_vectors
from embedlab.core.vectors import unit_rows

__all__ = ["learning_curve", "power_law"]


def power_law(n: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    """a − b · n^(−c): accuracy against labels."""
    return a - b * np.power(n, -c)


def learning_curve(
    X: Any,
    labels: Any,
    *,
    head: str = "linear",
    shares: tuple[float, ...] = (0.1, 0.2, 0.35, 0.5, 0.75, 1.0),
    folds: int = 3,
    seed: int = 0,
) -> dict[str, Any]:
    """Points (labels, mean out-of-fold accuracy, sd over folds), the fitted power law and
    its reading at 1×, 2× and 4× the labels of ``X`` (``None`` when the fit fails, said in
    ``note``). Rows of ``X`` are a model's labelled training rows (in-scope)."""
    from scipy.optimize import curve_fit
    from sklearn.model_selection import StratifiedKFold

    from embedlab.heads.registry import make_head

    X = unit_rows(check_vectors(X, name="X"))
    y = check_labels(labels, len(X))
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2 or counts.min() < folds:
        raise ValidationError(
            f"a learning curve needs 2+ classes with {folds}+ rows each "
            f"(smallest class: {counts.min()} rows)"
        )
    rng = np.random.default_rng(seed)
    acc: dict[int, list[float]] = {}
    split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in split.split(X, y):
        order = rng.permutation(train)
        for share in shares:
            m = max(2, round(share * len(train)))
            rows = order[:m]
            if len(np.unique(y[rows])) < 2:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                h = make_head(head).fit(X[rows], y[rows])
            acc.setdefault(m, []).append(float(np.mean(h.predict(X[test]) == y[test])))
    n = np.array(sorted(acc), dtype=np.float64)
    mean = np.array([np.mean(acc[int(v)]) for v in n])
    sd = np.array([np.std(acc[int(v)]) for v in n])
    out: dict[str, Any] = {
        "head": head,
        "labels_now": len(X),
        "points": [
            {"labels": int(a), "accuracy": float(b), "sd": float(c)}
            for a, b, c in zip(n, mean, sd, strict=True)
        ],
        "fit": None,
        "at": None,
        "note": "",
    }
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p, _ = curve_fit(
                power_law, n, mean, p0=(min(1.0, mean[-1] + 0.05), 1.0, 0.5),
                bounds=([0.0, 0.0, 0.01], [1.0, np.inf, 3.0]), maxfev=20_000,
            )  # fmt: skip
    except (RuntimeError, ValueError) as exc:
        out["note"] = f"the power law did not fit these points ({exc})"
        return out
    out["fit"] = {"ceiling": float(p[0]), "b": float(p[1]), "c": float(p[2])}
    # the folds train on (folds-1)/folds of the rows: the model itself has all of them
    now = len(X)
    out["at"] = {f"{k}x": float(power_law(k * now, *p)) for k in (1, 2, 4)}
    gain = out["at"]["2x"] - out["at"]["1x"]
    out["note"] = (
        f"doubling the labels ({now} → {2 * now}) would add about {100 * gain:.1f} points of "
        f"accuracy (the curve's ceiling: {100 * p[0]:.1f} %)"
    )
    return out
