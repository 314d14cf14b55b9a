"""What a class change (add / remove classes) does to a model's record: the hierarchy with
the new classes under their parents, and the info of the new version (label counts,
threshold, what it was calibrated on, lineage)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from embedlab.core.errors import ValidationError
from embedlab.models.hierarchy import Hierarchy
from embedlab.models.lineage import json_default, lineage

__all__ = ["changed_info", "check_explainable", "child_pipeline", "extended_hierarchy"]


def change_arguments(
    pipe: Any,
    texts: Sequence[str],
    labels: Sequence[Any],
    teen: Any,
    parents: Mapping[str, str] | None,
) -> tuple[Any, dict[str, Any], Hierarchy | None]:
    """What a pipeline's ``add_classes`` passes on: the labels (multi-label cells as given:
    the classifier parses its sets), the classifier's options, and the extended hierarchy."""
    if pipe.multi_label:
        if len(labels) != len(texts):
            raise ValidationError(f"labels has {len(labels)} entries for {len(texts)} rows")
        return labels, {}, None
    from embedlab.core.validation import check_labels

    labels = check_labels(labels, len(texts)).astype(str)
    hierarchy = extended_hierarchy(
        pipe.hierarchy, list(map(str, pipe.classes_)), pipe.oos_label, labels, parents
    )
    return labels, {"teen": teen}, hierarchy


def extended_hierarchy(
    hierarchy: Hierarchy | None,
    classes: Sequence[str],
    oos_label: str,
    labels: np.ndarray,
    parents: Mapping[str, str] | None,
) -> Hierarchy | None:
    """``hierarchy`` with the classes of ``labels`` that are neither known ``classes`` nor
    ``oos_label`` under their ``parents``."""
    new = sorted(set(labels.tolist()) - {*classes, oos_label})
    if hierarchy is None:
        if parents:
            raise ValidationError(
                "parents were given but this model has no hierarchy (fit with --hierarchy)"
            )
        return None
    parents = {str(k): str(v) for k, v in (parents or {}).items()}
    stray = sorted(set(parents) - set(new))
    if stray:
        raise ValidationError(f"parents name classes that are not being added: {stray}")
    missing = [c for c in new if c not in parents and c not in hierarchy.parent]
    if missing:
        raise ValidationError(
            f"this model has a hierarchy: give each new class a parent ({missing[:10]} "
            "have none; --parent CLASS=PARENT, or parents={class: parent})"
        )
    extended = Hierarchy.from_parents({**hierarchy.parent, **parents})
    extended.check_labels([*classes, *new])
    return extended


def changed_info(
    info: Mapping[str, Any], classifier: Any, change: dict[str, Any], oos_label: str
) -> dict[str, Any]:
    """The info of the model a class change made from a model with ``info``: its label
    counts and row totals, the recalibrated threshold(s), and the lineage entry."""
    out = json.loads(json.dumps(info, default=json_default))
    training = out.setdefault("training", {})
    names = [str(c) for c in classifier.classes_]
    if hasattr(classifier, "train_Y_"):  # multi-label: rows carry sets of labels
        _multi_label_info(out, classifier, names)
    else:
        counts = dict(training.get("label_counts", {}))
        counts = {k: v for k, v in counts.items() if k == oos_label or k in names}
        kept = np.asarray(classifier.train_class_)
        class_counts = np.bincount(kept, minlength=len(names))
        counts.update({n: int(c) for n, c in zip(names, class_counts, strict=True)})
        if change.get("oos_rows"):
            counts[oos_label] = counts.get(oos_label, 0) + int(change["oos_rows"])
        training["label_counts"] = dict(sorted(counts.items()))
        training["n"] = int(sum(counts.values()))
        training["n_oos"] = int(counts.get(oos_label, 0))
        out["threshold"] = classifier.threshold_
        out["calibrated_on"] = (
            "rows held out of adaptation (kept rows, recalibrated after the class change)"
            if classifier.train_held_.any()
            else "a held-out split of the kept training rows (recalibrated after the class change)"
        )
    out["lineage"] = lineage(info, change)
    return out


def _multi_label_info(out: dict[str, Any], classifier: Any, names: list[str]) -> None:
    """A multi-label model's counts (rows per label; rows with none) and thresholds."""
    Y = np.asarray(classifier.train_Y_, dtype=bool)
    training = out["training"]
    training["label_counts"] = {n: int(c) for n, c in zip(names, Y.sum(0), strict=True)}
    training["n"] = len(Y)
    training["n_oos"] = int((~Y.any(1)).sum())
    training["n_multi_label"] = int((Y.sum(1) > 1).sum())
    out["thresholds"] = {
        n: (float(t) if np.isfinite(t) else None)
        for n, t in zip(names, classifier.thresholds_, strict=True)
    }


def child_pipeline(pipe: Any, classifier: Any, change: dict[str, Any]) -> Any:
    """The new version of ``pipe`` a class change made: the same encoder, transform and
    settings around the changed ``classifier``, its info updated by ``change``."""
    child = type(pipe)(
        encoder=pipe.encoder_,
        classifier=classifier,
        adapt=False,
        adapt_config=pipe.adapt_config,
        calibration_fraction=pipe.calibration_fraction,
        transform=pipe.transform,
        hierarchy=pipe.hierarchy,
    )
    child.chain_ = pipe.chain_
    child._classifier = classifier
    child._adapted_dir, child._work = pipe._adapted_dir, pipe._work
    child._encoder_in_bundle = pipe._encoder_in_bundle
    child.info = changed_info(pipe.info, classifier, change, pipe.oos_label)
    if pipe.concepts_ is not None:
        from embedlab.concepts.model_concepts import renamed_for

        child.concepts_ = renamed_for(child, pipe.concepts_)
    return child


def check_explainable(pipe: Any) -> None:
    """ValidationError unless ``pipe`` can explain its answers (single-label, with concepts)."""
    if pipe.concepts_ is None:
        raise ValidationError(
            "this model has no concepts to explain with: add them with `embedlab concepts "
            "MODEL --in-place` (or Pipeline.fit_concepts)"
        )
    if pipe.multi_label:
        raise ValidationError(
            "explaining works on single-label models only; this one is multi-label"
        )
