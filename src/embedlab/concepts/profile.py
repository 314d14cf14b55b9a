"""What concepts say about a set of rows: each class's concept profile, and which concepts
rose or fell between a reference set and new data (concept drift)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from embedlab.concepts.explain import concept_counts
from embedlab.concepts.naming import atom_label_mass

__all__ = ["class_profiles", "concept_drift"]


def class_profiles(
    concepts: Any, X: np.ndarray, labels: Sequence[str], *, top: int = 3
) -> list[dict[str, Any]]:
    """Per class (most rows first): its ``top`` concepts by mean activation over the class's
    rows, with the share of the class's activation mass each holds."""
    codes = concepts.codes(X)
    classes, mass = atom_label_mass(codes, labels)
    sizes = np.bincount(np.unique(np.asarray(labels).astype(str), return_inverse=True)[1])
    out = []
    for c in np.argsort(-sizes, kind="stable"):
        col = mass[:, c]
        total = col.sum()
        best = np.argsort(-col, kind="stable")[:top]
        out.append(
            {
                "class": str(classes[c]),
                "rows": int(sizes[c]),
                "concepts": [
                    {
                        "concept": int(a),
                        "name": concepts.names[a],
                        "share": round(float(col[a] / total), 4) if total > 0 else 0.0,
                    }
                    for a in best
                    if col[a] > 0
                ],
            }
        )
    return out


def concept_drift(
    concepts: Any, X_new: np.ndarray, X_ref: np.ndarray, *, top: int = 10
) -> dict[str, Any]:
    """Which concepts are active on a larger or smaller share of ``X_new``'s rows than of
    ``X_ref``'s: the ``top`` risers and fallers (shares, their difference, and a two-sample
    z statistic), and the total variation distance between the two concept mixes."""
    a = concept_counts(concepts.codes(X_new)).astype(np.float64)
    b = concept_counts(concepts.codes(X_ref)).astype(np.float64)
    n_a, n_b = len(X_new), len(X_ref)
    pa, pb = a / n_a, b / n_b
    pooled = (a + b) / (n_a + n_b)
    se = np.sqrt(np.maximum(pooled * (1 - pooled) * (1 / n_a + 1 / n_b), 1e-12))
    z = (pa - pb) / se
    diff = pa - pb

    def rows(order: np.ndarray) -> list[dict[str, Any]]:
        return [
            {
                "concept": int(c),
                "name": concepts.names[c],
                "new_share": round(float(pa[c]), 4),
                "reference_share": round(float(pb[c]), 4),
                "change": round(float(diff[c]), 4),
                "z": round(float(z[c]), 2),
            }
            for c in order
        ]

    tv = 0.5 * np.abs(a / max(a.sum(), 1) - b / max(b.sum(), 1)).sum()
    return {
        "rows_new": n_a,
        "rows_reference": n_b,
        "total_variation": round(float(tv), 4),
        "rose": rows(np.argsort(-diff, kind="stable")[:top]),
        "fell": rows(np.argsort(diff, kind="stable")[:top]),
    }
