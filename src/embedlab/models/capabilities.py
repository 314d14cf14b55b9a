"""What every label structure can do: the structure × capability table of the README,
written once here and walked by ``tests/test_capabilities.py`` (every cell that works is
exercised; every cell that does not is refused with an error, and says why here)."""

from __future__ import annotations

__all__ = ["CAPABILITIES", "STRUCTURES", "TABLE", "capability_table"]

#: The label structures a model can have (records: a table model, `embedlab fit --cat-cols`,
#: text beside categorical and numeric columns: :mod:`embedlab.tables`).
STRUCTURES = ("single-label", "hierarchy", "multi-label", "zero-shot", "records")

#: What a user does with a model, as the command line names it.
CAPABILITIES = (
    "fit --adapt",
    "add-classes",
    "remove-classes",
    "discover",
    "fit --unlabeled",
    "serve-time classes",
    "streaming / Ray predict",
    "report",
    "p-values, --fdr",
    "--sets",
    "drift alarm",
    "concepts, --explain",
)

_ZERO_SHOT_CHANGE = "keeps no labelled rows: fit --labels-only again with the new names (seconds)"

#: structure → capability → None (works) or why it does not (one line).
TABLE: dict[str, dict[str, str | None]] = {
    "single-label": dict.fromkeys(CAPABILITIES),
    "hierarchy": dict.fromkeys(CAPABILITIES),
    "multi-label": {
        **dict.fromkeys(CAPABILITIES),
        "--sets": "its answer is already a set of labels (each calibrated to its threshold)",
        "concepts, --explain": "an explanation is one label's margin over the runner-up; "
        "per-label explanations of a multi-label model are not built yet",
    },
    "zero-shot": {
        **dict.fromkeys(CAPABILITIES),
        "fit --adapt": "no training texts to adapt on (label names only)",
        "add-classes": _ZERO_SHOT_CHANGE,
        "remove-classes": _ZERO_SHOT_CHANGE,
        "discover": "no labelled rows to calibrate the cluster cut on",
        "fit --unlabeled": "fit --labels-only takes no pool (self-training from names is "
        "embedlab.models.self_training.self_train_head)",
        "serve-time classes": _ZERO_SHOT_CHANGE,
        "--sets": "its calibration texts carry no labels (Pipeline.classifier_.calibrate(X, y) "
        "with labelled rows makes sets)",
    },
}


_FIXED_CLASSES = "its classes are fixed at fit: refit with the new labels (seconds to minutes)"
_NO_DETECTOR = "no out-of-scope detector or calibration yet: every record gets one of its classes"

TABLE["records"] = {
    "fit --adapt": "the encoder stays frozen: the tables and the head learn instead",
    "add-classes": _FIXED_CLASSES,
    "remove-classes": _FIXED_CLASSES,
    "discover": _NO_DETECTOR,
    "fit --unlabeled": "self-training on records is not built yet",
    "serve-time classes": _FIXED_CLASSES,
    "streaming / Ray predict": "embedlab predict streams records chunk by chunk (memory bounded "
    "by a chunk); not on Ray workers yet",
    "report": None,
    "p-values, --fdr": _NO_DETECTOR,
    "--sets": _NO_DETECTOR,
    "drift alarm": _NO_DETECTOR,
    "concepts, --explain": "concepts explain a text embedding; a record's model is read through "
    "its report's column importance",
}


def capability_table() -> str:
    """The table as Markdown (✓, or ✗ with the reason), as in the README."""
    lines = [
        "| capability | " + " | ".join(STRUCTURES) + " |",
        "|---" * (len(STRUCTURES) + 1) + "|",
    ]
    for cap in CAPABILITIES:
        cells = ["✓" if TABLE[s][cap] is None else f"✗ {TABLE[s][cap]}" for s in STRUCTURES]
        lines.append(f"| {cap} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
