"""How a :class:`~embedlab.models.pipeline.Pipeline` is fitted, per label structure: single-label
(encoder adaptation when it pays, transform, open-set classifier, self-training, threshold
calibration), multi-label (per-label scorers and thresholds, self-training) and zero-shot
from label names. Each records what it trained on in the pipeline's ``info``."""

from __future__ import annotations

import shutil
import tempfile
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import clone

from embedlab.compress.transforms import TransformChain
from embedlab.core.conformal import min_calibration_rows
from embedlab.core.errors import ValidationError
from embedlab.core.splits import calibration_holdout
from embedlab.core.validation import check_labels
from embedlab.encoders.base import check_texts
from embedlab.models.conformal_calibration import resolve_target_fpr
from embedlab.models.lineage import fit_lineage, training_fingerprint
from embedlab.models.multilabel import label_indicator
from embedlab.models.openset import OpenSetClassifier
from embedlab.store.bundle import ENCODER_DIR

__all__ = ["fit_multi_label", "fit_single_label", "fit_zero_shot", "should_adapt"]

#: ``adapt="auto"`` fine-tunes the encoder when each class has at least this many examples
#: on average and the whole set fits the time budget; see docs/benchmarks.md for why.
AUTO_ADAPT_MIN_PER_CLASS = 5


def should_adapt(n_texts: int, n_classes: int) -> bool:
    """The ``adapt="auto"`` rule (measured on CLINC150, see docs/benchmarks.md)."""
    return n_classes >= 2 and n_texts / n_classes >= AUTO_ADAPT_MIN_PER_CLASS


def fit_single_label(
    pipe: Any,
    texts: Sequence[str],
    labels: Sequence[Any],
    *,
    validation: tuple[Sequence[str], Sequence[Any]] | None,
    unlabeled: Sequence[str] | None,
    self_training: Any,
    progress: bool | None,
) -> Any:
    """:meth:`Pipeline.fit` of a single-label pipeline (options already checked)."""
    start = time.perf_counter()
    texts = check_texts(texts)
    labels = check_labels(labels, len(texts)).astype(str)
    if pipe.hierarchy is not None:
        pipe.hierarchy.check_labels(labels, ignore=[pipe.oos_label], complete=True)
    is_oos = labels == pipe.oos_label
    encoder = pipe._encoder()
    chain = _transform_chain(pipe, encoder)
    calibration_mask, adapt_report = _adapt_encoder(pipe, texts, labels, is_oos, progress)
    encoder = pipe._encoder()  # the adapted one, when adaptation kept its weights
    t_enc = time.perf_counter()
    X = encoder.encode(texts, progress=progress)
    encode_s = time.perf_counter() - t_enc
    t_fit = time.perf_counter()
    pipe.chain_ = chain.fit(X[~is_oos] if (~is_oos).any() else X) if chain else None
    X = pipe._features(X)
    clf = clone(pipe._template())
    clf.fit(X, labels, calibration_mask=calibration_mask, progress=progress)
    pipe._classifier = clf
    self_report = None
    selection = clf.selection_  # pipe-training refits without re-selecting
    if unlabeled is not None:
        from embedlab.models.self_training import SelfTraining, self_train_openset

        pool = check_texts(unlabeled)
        X_pool = pipe._features(encoder.encode(pool, progress=progress))
        pipe._classifier, self_report = self_train_openset(
            clf, X, labels, X_pool, self_training or SelfTraining()
        )
        self_report["pool_fingerprint"] = training_fingerprint(pool, [""] * len(pool))
    if validation is not None:
        _calibrate_on(pipe, validation, progress)
    pipe.info = {
        "training": _training_record(texts, labels, is_oos),
        "adapted": adapt_report,
        "timings": {
            "encode_seconds": round(encode_s, 2),
            "classifier_fit_seconds": round(time.perf_counter() - t_fit, 2),
            "total_seconds": round(time.perf_counter() - start, 2),
        },
        "transform": pipe.transform,
        "head": pipe._classifier.head_name_,
        "detector": pipe._classifier.detector_name_,
        "threshold": _finite(pipe._classifier.threshold_),
        "calibrated_on": "validation data"
        if validation is not None
        else (
            "rows held out of adaptation"
            if calibration_mask is not None
            else "a held-out split of the training rows"
        ),
        "selection": selection,
        "self_training": self_report,
    }
    pipe.info["lineage"] = fit_lineage(pipe.info, pipe._encoder(), "fit")
    return pipe


def _transform_chain(pipe: Any, encoder: Any) -> TransformChain | None:
    """The (unfitted) transform chain of ``transform``; its layer must be the encoder's."""
    chain = TransformChain(pipe.transform) if pipe.transform else None
    if chain is not None and chain.layer is not None and encoder.layer != chain.layer:
        raise ValidationError(
            f"transform {pipe.transform!r} asks for layer {chain.layer} but the encoder "
            f"gives layer {encoder.layer or 'last'}; pass an encoder with layer="
            f"{chain.layer}, or drop layer{chain.layer} from the spec"
        )
    return chain


def _can_adapt(encoder: Any) -> bool:
    """Whether ``encoder`` is a whole transformer that adaptation can fine-tune."""
    return hasattr(encoder, "torch_reference") and not getattr(encoder, "elastic", False)


def _check_adaptable(encoder: Any) -> bool:
    """True for an encoder ``adapt=True`` can fine-tune; ValidationError for one without
    transformer layers (a static student)."""
    if not hasattr(encoder, "torch_reference"):
        raise ValidationError(
            f"{getattr(encoder, 'name', encoder)} has no transformer layers to adapt "
            "(a static student); fit with adapt off (--no-adapt)"
        )
    return True


def _adapt_encoder(
    pipe: Any, texts: list[str], labels: np.ndarray, is_oos: np.ndarray, progress: bool | None
) -> tuple[np.ndarray | None, dict[str, Any] | None]:
    """Fine-tune the encoder when ``adapt`` says so (``auto``: :func:`should_adapt`):
    returns the rows held out of it to calibrate on (None: no adaptation) and its report.
    The adapted encoder becomes the one this pipeline encodes with."""
    encoder = pipe._encoder()
    in_classes = np.unique(labels[~is_oos])
    if pipe.adapt == "auto":
        do_adapt = should_adapt(int((~is_oos).sum()), len(in_classes)) and _can_adapt(encoder)
    elif isinstance(pipe.adapt, bool):
        do_adapt = pipe.adapt and _check_adaptable(encoder)
    else:
        raise ValidationError(f"adapt must be True, False or 'auto', not {pipe.adapt!r}")
    if not do_adapt or len(in_classes) < 2:
        return None, None
    # Rows the adapted encoder has seen look more in-scope than new inputs will, so a
    # threshold set on them rejects too much: hold some out of adaptation to calibrate.
    calibration_mask = calibration_holdout(labels, is_oos, _calibration_share(pipe, is_oos))
    train_rows = ~is_oos & ~calibration_mask
    # The same held-out (in-scope) rows pick the checkpoint, or the frozen encoder.
    report = _run_adaptation(pipe, texts, labels, train_rows, calibration_mask, progress)
    return calibration_mask, report


#: The share of multi-label rows kept out of adaptation: the per-label thresholds are
#: calibrated on them alone (out of fold), so it is larger than single-label's.
MULTILABEL_CALIBRATION_SHARE = 0.2


def _adapt_multi_label(
    pipe: Any, texts: list[str], sets: list[tuple[str, ...]], progress: bool | None
) -> tuple[np.ndarray | None, dict[str, Any] | None]:
    """Fine-tune the encoder on label sets when ``adapt`` says so (``auto``: as for
    single labels, :func:`should_adapt` over the rows that carry a label; on composed
    CLINC150 requests it gained 10-13 pt of micro-F1, docs/benchmarks.md): returns the
    rows held out of it (a share of each row's rarest label, and of rows without a label)
    and its report."""
    if pipe.adapt not in (True, False, "auto"):
        raise ValidationError(f"adapt must be True, False or 'auto', not {pipe.adapt!r}")
    encoder = pipe._encoder()
    counts: dict[str, int] = {}
    for row in sets:
        for lab in row:
            counts[lab] = counts.get(lab, 0) + 1
    labelled = sum(1 for row in sets if row)
    wanted = (pipe.adapt is True and _check_adaptable(encoder)) or (
        pipe.adapt == "auto" and should_adapt(labelled, len(counts)) and _can_adapt(encoder)
    )
    if not wanted or len(counts) < 2:
        return None, None

    rarest = np.asarray(
        [min(row, key=lambda lab: (counts[lab], lab)) if row else "" for row in sets],
        dtype=object,
    )
    share = max(pipe.calibration_fraction, MULTILABEL_CALIBRATION_SHARE)
    calibration_mask = calibration_holdout(rarest, np.zeros(len(sets), dtype=bool), share)
    report = _run_adaptation(
        pipe, texts, sets, ~calibration_mask, calibration_mask, progress, multi_label=True
    )
    return calibration_mask, report


def _run_adaptation(
    pipe: Any,
    texts: list[str],
    labels: Sequence[Any],
    train_rows: np.ndarray,
    held_rows: np.ndarray,
    progress: bool | None,
    *,
    multi_label: bool = False,
) -> dict[str, Any]:
    """Adapt the pipeline's encoder on ``train_rows``, scoring checkpoints on ``held_rows``;
    the adapted encoder (unless the frozen one was kept) becomes the pipeline's. Returns
    adaptation's report."""
    from embedlab.models.adapt import adapt_encoder

    pick = lambda mask, items: [v for v, keep in zip(items, mask, strict=True) if keep]  # noqa: E731
    work = Path(tempfile.mkdtemp(prefix="embedlab-adapt-"))
    # The adapted model lives here until save() copies it into a bundle; it is deleted
    # with the last pipeline that uses it (this one, or one derived from it by
    # add_classes / remove_classes).
    pipe._work = TempFolder(work)
    adapted, report = adapt_encoder(
        pipe._encoder(),
        pick(train_rows, texts),
        pick(train_rows, labels),
        work / ENCODER_DIR,
        pipe.adapt_config,
        validation=(pick(held_rows, texts), pick(held_rows, labels)),
        progress=progress,
        multi_label=multi_label,
    )
    report["calibration_rows"] = int(held_rows.sum())
    if report.get("kept") != "frozen":
        pipe._runtime_encoder = adapted
        pipe._adapted_dir = work / ENCODER_DIR
    return report


def _calibration_share(pipe: Any, is_oos: np.ndarray) -> float:
    """The share of in-scope rows kept out of adaptation: ``calibration_fraction``, raised
    to what the target rate needs for a finite threshold (1/target_fpr − 1 rows, and a
    margin for rounding per class), at most half."""
    alpha = resolve_target_fpr(getattr(pipe._template(), "target_fpr", None), bool(is_oos.any()))
    n_in = max(1, int((~is_oos).sum()))
    if alpha is None:
        return pipe.calibration_fraction
    return max(pipe.calibration_fraction, min(0.5, (min_calibration_rows(alpha) + 2) / n_in))


def _calibrate_on(
    pipe: Any, validation: tuple[Sequence[str], Sequence[Any]], progress: bool | None
) -> None:
    """Set the threshold on the in-scope rows of the validation data."""
    v_texts = check_texts(validation[0])
    v_labels = check_labels(validation[1], len(v_texts)).astype(str)
    in_scope = v_labels != pipe.oos_label
    v_in = [t for t, keep in zip(v_texts, in_scope, strict=True) if keep]
    if not v_in:
        raise ValidationError("the validation data has no in-scope rows to calibrate on")
    X_in = pipe._encoder().encode(v_in, progress=progress)
    y_in = v_labels[in_scope]
    known = np.isin(y_in, pipe.classifier_.classes_.astype(str))
    # rows of classes the model does not know calibrate the threshold, not the sets
    pipe.classifier_.calibrate(pipe._features(X_in), y_in if known.all() else None)


def fit_multi_label(
    pipe: Any,
    texts: Sequence[str],
    labels: Sequence[Any],
    progress: bool | None,
    unlabeled: Sequence[str] | None = None,
    self_training: Any = None,
) -> Any:
    """Fit a multi-label pipeline: encoder adaptation when asked (thresholds are then
    calibrated on the rows held out of it), then the classifier's per-label scores and
    thresholds (then pipe-training on the ``unlabeled`` pool, as for single-label
    models)."""
    start = time.perf_counter()
    texts = check_texts(texts)
    if len(labels) != len(texts):
        raise ValidationError(f"labels has {len(labels)} entries for {len(texts)} rows")
    clf = clone(pipe._template())
    sets = clf.label_sets(list(labels))
    chain = TransformChain(pipe.transform) if pipe.transform else None
    calibration_mask, adapt_report = _adapt_multi_label(pipe, texts, sets, progress)
    encoder = pipe._encoder()  # the adapted one, when adaptation kept its weights
    t_enc = time.perf_counter()
    X = encoder.encode(texts, progress=progress)
    encode_s = time.perf_counter() - t_enc
    t_fit = time.perf_counter()
    pipe.chain_ = chain.fit(X) if chain else None
    X = pipe._features(X)
    clf.fit(X, sets, calibration_mask=calibration_mask)
    pipe._classifier = clf
    self_report = None
    if unlabeled is not None:
        from embedlab.models.self_training import SelfTraining, self_train_multilabel

        pool = check_texts(unlabeled)
        X_pool = pipe._features(encoder.encode(pool, progress=progress))
        pipe._classifier, self_report = self_train_multilabel(
            clf, X_pool, self_training or SelfTraining()
        )
        self_report["pool_fingerprint"] = training_fingerprint(pool, [""] * len(pool))
        clf = pipe._classifier
    fit_s = time.perf_counter() - t_fit
    Y = label_indicator(sets, clf.classes_)
    sep = clf.label_sep
    cells = [sep.join(s) if s else pipe.oos_label for s in sets]
    pipe.info = {
        "training": {
            "fingerprint": training_fingerprint(texts, cells),
            "n": len(texts),
            "n_oos": int((~Y.any(1)).sum()),
            "n_multi_label": int((Y.sum(1) > 1).sum()),
            "label_counts": {str(c): int(v) for c, v in zip(clf.classes_, Y.sum(0), strict=True)},
        },
        "multi_label": True,
        "label_sep": sep,
        "adapted": adapt_report,
        "timings": {
            "encode_seconds": round(encode_s, 2),
            "classifier_fit_seconds": round(fit_s, 2),
            "total_seconds": round(time.perf_counter() - start, 2),
        },
        "transform": pipe.transform,
        "head": f"multi-label {clf.head_}",
        "selection": clf.selection_,
        "detector": "per-label thresholds (none passed = out of scope)",
        "threshold": None,
        "thresholds": {
            str(c): (float(t) if np.isfinite(t) else None)
            for c, t in zip(clf.classes_, clf.thresholds_, strict=True)
        },
        "target_precision": clf.target_precision,
        "threshold_strategy": clf.threshold_strategy_,
        "threshold_selection": clf.threshold_selection_,
        "calibrated_on": f"out-of-fold scores of the training rows ({clf.cv} folds)"
        if calibration_mask is None
        else f"out-of-fold scores of the {int(calibration_mask.sum())} rows held out of "
        f"adaptation ({clf.cv} folds)",
        "held_out_metrics": clf.oof_metrics_,
        "self_training": self_report,
    }
    pipe.info["lineage"] = fit_lineage(pipe.info, pipe._encoder(), "fit")
    return pipe


def fit_zero_shot(
    pipe: Any,
    labels: Sequence[str],
    descriptions: Sequence[str | None] | None,
    *,
    in_scope_texts: Sequence[str] | None,
    template: str,
    progress: bool | None,
) -> Any:
    """:meth:`Pipeline.fit_labels_only` (options already checked)."""
    from embedlab.heads.zeroshot import label_to_text

    start = time.perf_counter()
    pipe._single_label_only("fit_labels_only")
    names = [str(v).strip() for v in labels]
    if descriptions is None:
        descriptions = [None] * len(names)
    if len(descriptions) != len(names):
        raise ValidationError(f"{len(descriptions)} descriptions for {len(names)} labels")
    empty = [i + 1 for i, n in enumerate(names) if not n]
    if empty:
        raise ValidationError(f"empty label name in row(s) {empty[:10]}")
    if pipe.oos_label in names:
        raise ValidationError(f"{pipe.oos_label!r} is the out-of-scope label, not a class")
    if len(set(names)) < 2:
        raise ValidationError("zero-shot classification needs at least 2 labels")
    if pipe.hierarchy is not None:
        pipe.hierarchy.check_labels(names, complete=True)
    phrases = [
        template.format(d.strip() if isinstance(d, str) and d.strip() else label_to_text(n))
        for n, d in zip(names, descriptions, strict=True)
    ]
    encoder = pipe._encoder()
    V = encoder.encode(phrases, progress=progress)
    clf = OpenSetClassifier.from_prototypes(
        V,
        names,
        oos_label=pipe.oos_label,
        target_fpr=pipe._template().target_fpr,
    )
    pipe._classifier = clf
    if in_scope_texts is not None:
        texts = check_texts(in_scope_texts)
        clf.calibrate(encoder.encode(texts, progress=progress))
        calibrated = f"{len(texts)} in-scope texts (target FPR {clf.rate():g})"
    else:
        calibrated = "nothing: no in-scope texts were given, so nothing is rejected"
    counts = dict(zip(*np.unique(names, return_counts=True), strict=True))
    pipe.info = {
        "training": {
            "fingerprint": training_fingerprint(phrases, names),
            "n": 0,
            "n_oos": 0,
            "label_counts": {},
            "descriptions": {str(k): int(v) for k, v in counts.items()},
        },
        "zero_shot": {"template": template, "descriptions": len(phrases)},
        "adapted": None,
        "transform": None,
        "head": "zero-shot prototypes (label names / descriptions)",
        "detector": "max-cosine",
        "threshold": clf.threshold_ if np.isfinite(clf.threshold_) else None,
        "calibrated_on": calibrated,
        "selection": None,
        "timings": {"total_seconds": round(time.perf_counter() - start, 2)},
    }
    pipe.info["lineage"] = fit_lineage(pipe.info, pipe._encoder(), "fit_labels_only")
    return pipe


class TempFolder:
    """A temporary folder removed when the last object holding it goes away."""

    def __init__(self, path: Path) -> None:
        self.path = path
        weakref.finalize(self, shutil.rmtree, path, ignore_errors=True)


def _training_record(texts: list[str], labels: np.ndarray, is_oos: np.ndarray) -> dict[str, Any]:
    """What a single-label fit trained on: fingerprint, rows, out-of-scope rows, counts."""
    counts = dict(zip(*np.unique(labels, return_counts=True), strict=True))
    return {
        "fingerprint": training_fingerprint(texts, labels),
        "n": len(texts),
        "n_oos": int(is_oos.sum()),
        "label_counts": {str(k): int(v) for k, v in counts.items()},
    }


def _finite(value: float) -> float | None:
    """``value``, or None where it is not finite (a threshold that rejects nothing): the
    bundle's JSON has no infinity."""
    return float(value) if np.isfinite(value) else None
