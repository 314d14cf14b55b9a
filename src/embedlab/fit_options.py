"""Which fit options go with which label structure: the one place these rules live. The
command line checks them before any data is read, the Pipeline before it fits; each names
the options in its own words (``--val`` there, ``validation=`` here).
"""

from __future__ import annotations

from typing import Literal

from embedlab.errors import ValidationError

__all__ = ["CLI_NAMES", "LIBRARY_NAMES", "Structure", "check_fit_options"]

Structure = Literal["single-label", "multi-label", "zero-shot"]

#: how the command line names each option
CLI_NAMES = {
    "multi_label": "--multi-label",
    "labels_only": "--labels-only",
    "hierarchy": "--hierarchy",
    "validation": "--val",
    "unlabeled": "--unlabeled",
    "adapt": "--adapt",
    "transform": "--transform",
    "head": "--head",
    "target_precision": "--target-precision",
    "adapt_budget": "--adapt-budget",
    "time_budget": "--time-budget",
}
#: how the library names them
LIBRARY_NAMES = {
    "multi_label": "a MultiLabelClassifier",
    "labels_only": "fit_labels_only",
    "hierarchy": "hierarchy=",
    "validation": "validation=",
    "unlabeled": "unlabeled=",
    "adapt": "adapt=True",
    "transform": "transform=",
    "head": "head=",
    "target_precision": "target_precision=",
    "adapt_budget": "adapt_config.time_budget",
    "time_budget": "time_budget=",
}


def check_fit_options(
    structure: Structure,
    names: dict[str, str] = LIBRARY_NAMES,
    *,
    multi_label: bool = False,
    hierarchy: bool = False,
    validation: bool = False,
    unlabeled: bool = False,
    adapt: bool = False,
    transform: bool = False,
    head: str | None = None,
    target_precision: float | None = None,
    adapt_budget: float | None = None,
    time_budget: float | None = None,
) -> None:
    """ValidationError naming the first option that does not go with ``structure``.

    ``multi_label`` / ``adapt`` / ``transform`` / ``validation`` / ``unlabeled`` /
    ``hierarchy``: whether the option is asked for; ``head``: the head asked for, if any."""
    for key, value in (("adapt_budget", adapt_budget), ("time_budget", time_budget)):
        if value is not None and not value > 0:
            raise ValidationError(f"{names[key]} must be more than 0 seconds, not {value:g}")
    if structure == "zero-shot":
        asked = [
            names[k]
            for k, v in (
                ("multi_label", multi_label),
                ("unlabeled", unlabeled),
                ("transform", transform),
                ("adapt", adapt),
            )
            if v
        ]
        if asked:
            raise ValidationError(
                f"{names['labels_only']} takes no {' or '.join(asked)} (there are no training "
                "texts to use them on)"
            )
        return
    if structure == "single-label":
        if target_precision is not None:
            raise ValidationError(f"{names['target_precision']} goes with {names['multi_label']}")
        return
    from embedlab.multilabel import MULTILABEL_HEADS

    if head is not None and head not in MULTILABEL_HEADS:
        raise ValidationError(
            f"{names['head']} {head!r} has no multi-label form; choose one of "
            + ", ".join(MULTILABEL_HEADS)
        )
    if hierarchy:
        raise ValidationError(f"{names['hierarchy']} works with single-label models only")
    if adapt:
        raise ValidationError(
            f"{names['adapt']} works with single-label models only (multi-label thresholds are "
            "calibrated out of fold on the training rows, which an adapted encoder has seen)"
        )
    if validation:
        raise ValidationError(
            f"{names['validation']} works with single-label models only (a multi-label model "
            "calibrates its per-label thresholds on held-out folds of its training rows)"
        )
