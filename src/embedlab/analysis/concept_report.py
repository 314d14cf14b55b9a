"""The report's concept sections: a model's concepts (the most frequent, frequency ×
purity, each class's profile) and the concepts that rose or fell against reference data."""

from __future__ import annotations

from typing import Any

import numpy as np

from embedlab.analysis.html_parts import cards_html as _cards
from embedlab.analysis.html_parts import table_html as _table

__all__ = ["concept_drift_section", "concepts_section"]


def concepts_section(concepts: Any, X: np.ndarray, y: np.ndarray, oos: str) -> tuple[str, str]:
    """The model's concepts: the most frequent (name, words, purity, a typical text), a
    frequency × purity picture, and each class's concept profile on these rows."""
    from embedlab.analysis.plots import scatter
    from embedlab.concepts.profile import class_profiles

    d = concepts.dictionary
    items = concepts.concepts
    pur = np.asarray([c.purity if c.purity is not None else np.nan for c in items])
    freq = np.asarray([c.frequency for c in items])
    live = freq > 0
    cards = {"atoms": d.n_atoms, "active per text": d.k, "never active": int((~live).sum())}
    if np.isfinite(pur).any():
        cards["share of live atoms ≥ 0.5 pure"] = float(
            np.mean(pur[live & np.isfinite(pur)] >= 0.5)
        )
    top = sorted(items, key=lambda c: -c.frequency)[:15]
    table = _table(
        ["concept", "name", "top words", "frequency", "label (purity)", "a typical text"],
        [
            [
                c.id,
                c.name,
                " ".join(c.words[:5]),
                c.frequency,
                "" if c.label is None else f"{c.label} ({c.purity:.2f})",
                c.texts[0][:80] if c.texts else "",
            ]
            for c in top
        ],
    )
    ok = live & np.isfinite(pur)
    picture = ""
    if ok.sum() >= 2:
        picture = scatter(
            np.column_stack([np.log10(freq[ok]), pur[ok]]),
            ["purity ≥ 0.5" if p >= 0.5 else "mixed" for p in pur[ok]],
            [
                f"{items[i].name} — fires on {freq[i]:.2%}, {items[i].label} {pur[i]:.2f}"
                for i in np.flatnonzero(ok)
            ],
            title="concepts: log10 share of texts it fires on (x) × label purity (y)",
        )
    keep = y != oos
    profiles = class_profiles(concepts, X[keep], y[keep]) if keep.any() else []
    prof = _table(
        ["class", "rows", "its concepts (share of the class's activation)"],
        [
            [
                p["class"],
                p["rows"],
                "; ".join(f"{c['name']} ({c['share']:.0%})" for c in p["concepts"]),
            ]
            for p in profiles[:60]
        ],
    )
    return (
        "Concepts",
        _cards(cards) + table + picture + "<h3>Each class's concepts</h3>" + prof,
    )


def concept_drift_section(concepts: Any, X_new: np.ndarray, X_ref: np.ndarray) -> tuple[str, str]:
    """Which concepts rose or fell in ``X_new`` against ``X_ref`` (shares of rows)."""
    from embedlab.concepts.profile import concept_drift

    drift = concept_drift(concepts, X_new, X_ref)
    header = ["concept", "name", "share here", "share in reference", "change", "z"]

    def rows(items):
        return [
            [r["concept"], r["name"], r["new_share"], r["reference_share"], r["change"], r["z"]]
            for r in items
        ]

    return (
        "Concept drift",
        _cards(
            {
                "rows here": drift["rows_new"],
                "reference rows": drift["rows_reference"],
                "total variation": drift["total_variation"],
            }
        )
        + "<h3>Rose</h3>"
        + _table(header, rows(drift["rose"]))
        + "<h3>Fell</h3>"
        + _table(header, rows(drift["fell"])),
    )
