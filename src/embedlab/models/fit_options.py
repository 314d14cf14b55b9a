"""What a fit is asked to do, and which options go with which label structure: the one
place these rules live. :class:`FitConfig` holds a fit's options and builds the model; the
command line builds one and checks it before any data is read, the Pipeline checks the same
rules before it fits; each names the options in its own words (``--val`` there,
``validation=`` here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from embedlab.core.conformal import check_alpha
from embedlab.core.errors import ValidationError

__all__ = ["CLI_NAMES", "LIBRARY_NAMES", "FitConfig", "Structure", "check_fit_options"]

Structure = Literal["single-label", "multi-label", "zero-shot"]

#: how the command line names each option
CLI_NAMES = {
    "calibration": "--calibration",
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
    "calibration": "calibration=",
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
    calibration: str = "split",
) -> None:
    """ValidationError naming the first option that does not go with ``structure``.

    ``multi_label`` / ``adapt`` / ``transform`` / ``validation`` / ``unlabeled`` /
    ``hierarchy``: whether the option is asked for; ``head``: the head asked for, if any."""
    from embedlab.models.openset import CALIBRATIONS

    if calibration not in CALIBRATIONS:
        raise ValidationError(
            f"{names['calibration']} must be one of {', '.join(CALIBRATIONS)}, not {calibration!r}"
        )
    if calibration != "split" and structure != "single-label":
        raise ValidationError(
            f"{names['calibration']} {calibration} works with single-label models only"
        )
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
    from embedlab.models.multilabel import MULTILABEL_HEADS

    if head is not None and head not in MULTILABEL_HEADS:
        raise ValidationError(
            f"{names['head']} {head!r} has no multi-label form; choose one of "
            + ", ".join(MULTILABEL_HEADS)
        )
    if hierarchy:
        raise ValidationError(f"{names['hierarchy']} works with single-label models only")
    if validation:
        raise ValidationError(
            f"{names['validation']} works with single-label models only (a multi-label model "
            "calibrates its per-label thresholds on held-out folds of its training rows)"
        )


def parse_target_fpr(text: str) -> float | str | None:
    """``--target-fpr``'s value: "auto", "none" (None: reject nothing) or a rate in (0, 1)."""
    word = text.strip().lower()
    if word in ("auto", "none"):
        return None if word == "none" else "auto"
    try:
        rate = float(word)
    except ValueError:
        raise ValidationError(
            f"--target-fpr must be a rate in (0, 1) such as 0.02, 'none' or 'auto', not {text!r}"
        ) from None
    return check_alpha(rate, "--target-fpr")


@dataclass(frozen=True)
class FitConfig:
    """Everything a fit needs besides its data: the label structure, head, detector, targets,
    transform, adaptation, hierarchy, labels' conventions, seed and budgets, and whether
    validation rows or an unlabelled pool will come. :meth:`check` applies the rules above
    (before any data is read); ``Pipeline.from_config`` builds the unfitted model."""

    multi_label: bool = False  # rows carry label sets
    labels_only: bool = False  # zero-shot, from label names
    head: str = "auto"
    detector: str = "auto"
    target_fpr: float | str | None = "auto"  # "auto": 0.02 with oos rows, else None
    calibration: str = "split"  # of the out-of-scope threshold: "split" or "mondrian"
    target_precision: float | None = None
    transform: str | None = None
    adapt: bool | Literal["auto"] = "auto"
    adapt_budget: float | None = None
    time_budget: float | None = None
    hierarchy: Any = None  # a Hierarchy (or, before it is read, where it comes from)
    oos_label: str = "oos"
    label_sep: str = ","
    seed: int = 0
    validation: bool = False  # validation rows will be given
    unlabeled: bool = False  # an unlabelled pool will be given

    @property
    def structure(self) -> Structure:
        """The label structure asked for."""
        if self.labels_only:
            return "zero-shot"
        return "multi-label" if self.multi_label else "single-label"

    def check(self, names: dict[str, str] = LIBRARY_NAMES) -> FitConfig:
        """ValidationError naming the first option that does not go with the structure."""
        multi = self.structure == "multi-label"
        check_fit_options(
            self.structure,
            names,
            multi_label=self.multi_label,
            hierarchy=self.hierarchy is not None,
            validation=self.validation,
            unlabeled=self.unlabeled,
            adapt=self.adapt is True,
            transform=self.transform is not None,
            head=self.head if multi else None,
            target_precision=self.target_precision,
            adapt_budget=self.adapt_budget,
            time_budget=self.time_budget,
            calibration=self.calibration,
        )
        return self

    def classifier(self) -> Any:
        """The unfitted classifier of this structure."""
        if self.structure == "multi-label":
            from embedlab.models.multilabel import MultiLabelClassifier

            return MultiLabelClassifier(
                head=self.head,
                target_precision=self.target_precision,
                oos_label=self.oos_label,
                label_sep=self.label_sep,
                random_state=self.seed,
            )
        from embedlab.models.openset import OpenSetClassifier

        if self.structure == "zero-shot":
            return OpenSetClassifier(
                target_fpr=self.target_fpr, oos_label=self.oos_label, random_state=self.seed
            )
        return OpenSetClassifier(
            head=self.head,
            detector=self.detector,
            target_fpr=self.target_fpr,
            calibration=self.calibration,
            oos_label=self.oos_label,
            time_budget=self.time_budget,
            random_state=self.seed,
        )
