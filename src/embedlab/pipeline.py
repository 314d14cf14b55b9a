"""Pipeline: texts → encoder → OpenSetClassifier, fitted as one unit and saved as a bundle.

A bundle is a directory::

    bundle.json          format, versions, encoder spec, label set, training fingerprint,
                         selection results, and every estimator's parameters / attributes
    arrays.safetensors   the estimators' numeric arrays
    encoder/             the adapted encoder (only when the pipeline was fitted with adapt)
    onnx/                the ONNX graph the encoder runs on (when it runs on ONNX Runtime)

Its format lives in :mod:`embedlab.bundle` (write_bundle / read_bundle); loading verifies
checksums and versions and never unpickles.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embedlab.atomic import AS_AT_START
from embedlab.bundle import (
    BUNDLE_FORMAT_VERSION,
    ENCODER_DIR,
)
from embedlab.class_changes import changed_info, extended_hierarchy
from embedlab.encoders import SentenceTransformerEncoder
from embedlab.encoders.base import check_texts
from embedlab.errors import ValidationError
from embedlab.fit_options import check_fit_options
from embedlab.hierarchy import Hierarchy
from embedlab.lineage import (
    fit_lineage,
    training_fingerprint,
)
from embedlab.model_evaluation import evaluate_multi_label, evaluate_single_label
from embedlab.model_store import load_pipeline, save_pipeline
from embedlab.multilabel import MultiLabelClassifier, label_indicator
from embedlab.openset import OpenSetClassifier
from embedlab.predictions import Predictions
from embedlab.splits import calibration_holdout
from embedlab.transforms import TransformChain
from embedlab.validation import check_labels, check_vectors, validated

__all__ = ["BUNDLE_FORMAT_VERSION", "Pipeline", "calibration_holdout", "should_adapt"]

log = logging.getLogger("embedlab")


#: ``adapt="auto"`` fine-tunes the encoder when each class has at least this many examples
#: on average and the whole set fits the time budget; see docs/benchmarks.md for why.
AUTO_ADAPT_MIN_PER_CLASS = 5


def should_adapt(n_texts: int, n_classes: int) -> bool:
    """The ``adapt="auto"`` rule (measured on CLINC150, see docs/benchmarks.md)."""
    return n_classes >= 2 and n_texts / n_classes >= AUTO_ADAPT_MIN_PER_CLASS


class Pipeline:
    """Texts in, labels (or out-of-scope) out.

    Parameters
    ----------
    encoder : SentenceTransformerEncoder, optional
        Default: the packaged all-MiniLM-L6-v2.
    classifier : OpenSetClassifier or MultiLabelClassifier, optional
        Default: ``OpenSetClassifier()`` (automatic head and detector). A
        :class:`~embedlab.multilabel.MultiLabelClassifier` makes a multi-label pipeline:
        each row's label is a set (a string of labels joined by its ``label_sep``, or a
        list), predictions are sets, and "none of the labels" is the out-of-scope answer.
    adapt : bool or "auto", default "auto"
        Fine-tune the encoder on the labelled in-scope texts first (see :mod:`embedlab.adapt`).
    adapt_config : AdaptConfig, optional
    calibration_fraction : float, default 0.1
        With adaptation, this share of each in-scope class (at most half of it) is kept out
        of fine-tuning and used to set the out-of-scope threshold.
    transform : str, optional
        A :class:`~embedlab.transforms.TransformChain` spec applied between the encoder and
        the classifier, e.g. ``"layer4,dim128,norm"`` or ``"center,whiten,int8"``. It is
        fitted on the in-scope training vectors. A chain ending in a code step (int8,
        binary, pqM) is applied as encode-then-decode, so the classifier sees exactly what
        that storage keeps. ``layerK`` picks the encoder layer (and then no adaptation).
    hierarchy : Hierarchy, optional
        Parents of the labels (:mod:`embedlab.hierarchy`): predictions then carry every
        level (the predicted label mapped up), and evaluation scores each level.
    """

    def __init__(
        self,
        encoder: SentenceTransformerEncoder | None = None,
        classifier: OpenSetClassifier | MultiLabelClassifier | None = None,
        adapt: bool | str = "auto",
        adapt_config: Any = None,
        calibration_fraction: float = 0.1,
        transform: str | None = None,
        hierarchy: Hierarchy | None = None,
    ) -> None:
        self.encoder = encoder
        self.hierarchy = hierarchy
        self.transform = transform
        self.chain_: TransformChain | None = None
        self.calibration_fraction = calibration_fraction
        self.classifier = classifier if classifier is not None else OpenSetClassifier()
        self.adapt = adapt
        self.adapt_config = adapt_config
        self.info: dict[str, Any] = {}
        self._adapted_dir: Path | None = None
        self._work: _TempDir | None = None
        self._encoder_in_bundle = False  # loaded from a bundle that holds its encoder
        #: sha256 of the bundle.json this pipeline was loaded from (None: not loaded)
        self.source_stamp: str | None = None

    @property
    def oos_label(self) -> str:
        return str(self.classifier.oos_label)

    @property
    def classes_(self) -> np.ndarray:
        return self.classifier.classes_

    @property
    def multi_label(self) -> bool:
        """Whether rows carry label sets (a MultiLabelClassifier) rather than one label."""
        return isinstance(self.classifier, MultiLabelClassifier)

    def _fitted(self) -> bool:
        return hasattr(self.classifier, "detector_") or hasattr(self.classifier, "params_")

    def _single_label_only(self, what: str) -> None:
        if self.multi_label:
            raise ValidationError(
                f"{what} works on single-label models only; this one is multi-label"
            )

    @property
    def encoder_(self) -> SentenceTransformerEncoder:
        """The encoder this pipeline encodes texts with (the packaged one, built on first
        use, when none was given)."""
        return self._encoder()

    @property
    def class_change_refusal(self) -> str | None:
        """Why classes cannot be added to or removed from this model without a refit (it
        keeps no training rows); None when they can."""
        if not hasattr(self.classifier, "train_X_"):
            return "it keeps no training rows"
        return None

    def _encoder(self) -> SentenceTransformerEncoder:
        if self.encoder is None:
            layer = TransformChain(self.transform).layer if self.transform else None
            self.encoder = SentenceTransformerEncoder(layer=layer)
        return self.encoder

    def _features(self, X: np.ndarray) -> np.ndarray:
        """Encoder output → what the classifier sees (the fitted transform chain, if any)."""
        if self.chain_ is None:
            return X
        return self.chain_.float_vectors(X)

    def fit(
        self,
        texts: Sequence[str],
        labels: Sequence[Any],
        *,
        validation: tuple[Sequence[str], Sequence[Any]] | None = None,
        unlabeled: Sequence[str] | None = None,
        self_training: Any = None,
        progress: bool | None = None,
    ) -> Pipeline:
        """Fit on labelled texts; rows labelled ``oos_label`` only calibrate and select.

        ``validation`` = (texts, labels): when given, the out-of-scope threshold is set on its
        in-scope rows instead of on rows held out of the training data.
        ``unlabeled``: texts without labels; after the fit, the classifier's head self-trains
        on its own confident guesses among them (rows its detector rejects stay out; see
        :mod:`embedlab.self_training`, ``self_training`` = a SelfTraining to change rounds
        or share). The encoder is adapted on the labelled rows only.
        """
        check_fit_options(
            "multi-label" if self.multi_label else "single-label",
            validation=validation is not None,
            unlabeled=unlabeled is not None,
            hierarchy=self.hierarchy is not None,
            adapt=self.adapt is True,
        )
        if self.multi_label:
            return self._fit_multi_label(texts, labels, progress, unlabeled, self_training)
        start = time.perf_counter()
        texts = check_texts(texts)
        labels = check_labels(labels, len(texts)).astype(str)
        if self.hierarchy is not None:
            self.hierarchy.check_labels(labels, ignore=[self.oos_label], complete=True)
        is_oos = labels == self.oos_label
        in_classes = np.unique(labels[~is_oos])
        encoder = self._encoder()
        chain = TransformChain(self.transform) if self.transform else None
        if chain is not None and chain.layer is not None and encoder.layer != chain.layer:
            raise ValidationError(
                f"transform {self.transform!r} asks for layer {chain.layer} but the encoder "
                f"gives layer {encoder.layer or 'last'}; pass an encoder with layer="
                f"{chain.layer}, or drop layer{chain.layer} from the spec"
            )
        do_adapt = self.adapt if isinstance(self.adapt, bool) else None
        if self.adapt == "auto":
            do_adapt = should_adapt(int((~is_oos).sum()), len(in_classes)) and not getattr(
                encoder, "elastic", False
            )
        elif not isinstance(self.adapt, bool):
            raise ValidationError(f"adapt must be True, False or 'auto', not {self.adapt!r}")
        adapt_report = None
        calibration_mask = None
        if do_adapt and len(in_classes) >= 2:
            from embedlab.adapt import adapt_encoder

            # Rows the adapted encoder has seen look more in-scope than new inputs will, so a
            # threshold set on them rejects too much: hold some out of adaptation to calibrate.
            calibration_mask = calibration_holdout(labels, is_oos, self.calibration_fraction)
            train_rows = ~is_oos & ~calibration_mask
            work = Path(tempfile.mkdtemp(prefix="embedlab-adapt-"))
            # The adapted model lives here until save() copies it into a bundle; it is
            # deleted with the last pipeline that uses it (this one, or one derived from it
            # by add_classes / remove_classes).
            self._work = _TempDir(work)
            encoder, adapt_report = adapt_encoder(
                encoder,
                [t for t, keep in zip(texts, train_rows, strict=True) if keep],
                labels[train_rows],
                work / ENCODER_DIR,
                self.adapt_config,
                # The same held-out (in-scope) rows pick the checkpoint, or the frozen encoder.
                validation=(
                    [t for t, h in zip(texts, calibration_mask, strict=True) if h],
                    labels[calibration_mask],
                ),
                progress=progress,
            )
            adapt_report["calibration_rows"] = int(calibration_mask.sum())
            if adapt_report.get("kept") != "frozen":
                self.encoder = encoder
                self._adapted_dir = work / ENCODER_DIR
        t_enc = time.perf_counter()
        X = encoder.encode(texts, progress=progress)
        encode_s = time.perf_counter() - t_enc
        t_fit = time.perf_counter()
        self.chain_ = chain.fit(X[~is_oos] if (~is_oos).any() else X) if chain else None
        X = self._features(X)
        self.classifier.fit(X, labels, calibration_mask=calibration_mask, progress=progress)
        self_report = None
        selection = self.classifier.selection_  # self-training refits without re-selecting
        if unlabeled is not None:
            from embedlab.self_training import SelfTraining, self_train_openset

            pool = check_texts(unlabeled)
            X_pool = self._features(encoder.encode(pool, progress=progress))
            self.classifier, self_report = self_train_openset(
                self.classifier,
                X,
                labels,
                X_pool,
                self_training or SelfTraining(),
            )
            self_report["pool_fingerprint"] = training_fingerprint(pool, [""] * len(pool))
        if validation is not None:
            v_texts = check_texts(validation[0])
            v_labels = check_labels(validation[1], len(v_texts)).astype(str)
            v_in = [t for t, y in zip(v_texts, v_labels, strict=True) if y != self.oos_label]
            if not v_in:
                raise ValidationError("the validation data has no in-scope rows to calibrate on")
            self.classifier.calibrate(self._features(encoder.encode(v_in, progress=progress)))
        fit_s = time.perf_counter() - t_fit
        counts = dict(zip(*np.unique(labels, return_counts=True), strict=True))
        self.info = {
            "training": {
                "fingerprint": training_fingerprint(texts, labels),
                "n": len(texts),
                "n_oos": int(is_oos.sum()),
                "label_counts": {str(k): int(v) for k, v in counts.items()},
            },
            "adapted": adapt_report,
            "timings": {
                "encode_seconds": round(encode_s, 2),
                "classifier_fit_seconds": round(fit_s, 2),
                "total_seconds": round(time.perf_counter() - start, 2),
            },
            "transform": self.transform,
            "head": self.classifier.head_name_,
            "detector": self.classifier.detector_name_,
            "threshold": self.classifier.threshold_,
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
        self.info["lineage"] = fit_lineage(self.info, self._encoder(), "fit")
        return self

    def fit_labels_only(
        self,
        labels: Sequence[str],
        descriptions: Sequence[str | None] | None = None,
        *,
        in_scope_texts: Sequence[str] | None = None,
        template: str = "{}",
        progress: bool | None = None,
    ) -> Pipeline:
        """A zero-shot model from label names alone: each label's prototype is the mean of
        its encoded descriptions (a label may come several times with several
        descriptions; no description = its name, underscores read as spaces). With a
        hierarchy, the labels are its leaves and coarser levels are predicted through
        them (CHiLS: finer names are easier to match than coarse ones).

        Out of scope: max-cosine to the prototypes. ``in_scope_texts`` (typical inputs,
        no labels needed) set the threshold so that ``target_fpr`` of them are rejected;
        without them nothing can calibrate it and nothing is rejected (``info`` says so).
        """
        check_fit_options("zero-shot", transform=bool(self.transform), adapt=self.adapt is True)
        from embedlab.heads.zeroshot import label_to_text

        start = time.perf_counter()
        self._single_label_only("fit_labels_only")
        names = [str(v).strip() for v in labels]
        if descriptions is None:
            descriptions = [None] * len(names)
        if len(descriptions) != len(names):
            raise ValidationError(f"{len(descriptions)} descriptions for {len(names)} labels")
        empty = [i + 1 for i, n in enumerate(names) if not n]
        if empty:
            raise ValidationError(f"empty label name in row(s) {empty[:10]}")
        if self.oos_label in names:
            raise ValidationError(f"{self.oos_label!r} is the out-of-scope label, not a class")
        if len(set(names)) < 2:
            raise ValidationError("zero-shot classification needs at least 2 labels")
        if self.hierarchy is not None:
            self.hierarchy.check_labels(names, complete=True)
        phrases = [
            template.format(d.strip() if isinstance(d, str) and d.strip() else label_to_text(n))
            for n, d in zip(names, descriptions, strict=True)
        ]
        encoder = self._encoder()
        V = encoder.encode(phrases, progress=progress)
        clf = OpenSetClassifier.from_prototypes(
            V,
            names,
            oos_label=self.oos_label,
            target_fpr=self.classifier.target_fpr,
        )
        self.classifier = clf
        if in_scope_texts is not None:
            texts = check_texts(in_scope_texts)
            clf.calibrate(encoder.encode(texts, progress=progress))
            calibrated = f"{len(texts)} in-scope texts (target FPR {clf.target_fpr:g})"
        else:
            calibrated = "nothing: no in-scope texts were given, so nothing is rejected"
        counts = dict(zip(*np.unique(names, return_counts=True), strict=True))
        self.info = {
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
        self.info["lineage"] = fit_lineage(self.info, self._encoder(), "fit_labels_only")
        return self

    def _fit_multi_label(
        self,
        texts: Sequence[str],
        labels: Sequence[Any],
        progress: bool | None,
        unlabeled: Sequence[str] | None = None,
        self_training: Any = None,
    ) -> Pipeline:
        """Fit a multi-label pipeline: frozen encoder (adaptation is single-label), then
        the classifier's per-label scores and thresholds (then self-training on the
        ``unlabeled`` pool, as for single-label models)."""
        start = time.perf_counter()
        texts = check_texts(texts)
        if len(labels) != len(texts):
            raise ValidationError(f"labels has {len(labels)} entries for {len(texts)} rows")
        clf = self.classifier
        sets = clf.label_sets(list(labels))
        encoder = self._encoder()
        chain = TransformChain(self.transform) if self.transform else None
        t_enc = time.perf_counter()
        X = encoder.encode(texts, progress=progress)
        encode_s = time.perf_counter() - t_enc
        t_fit = time.perf_counter()
        self.chain_ = chain.fit(X) if chain else None
        X = self._features(X)
        clf.fit(X, sets)
        self_report = None
        if unlabeled is not None:
            from embedlab.self_training import SelfTraining, self_train_multilabel

            pool = check_texts(unlabeled)
            X_pool = self._features(encoder.encode(pool, progress=progress))
            self.classifier, self_report = self_train_multilabel(
                clf, X_pool, self_training or SelfTraining()
            )
            self_report["pool_fingerprint"] = training_fingerprint(pool, [""] * len(pool))
            clf = self.classifier
        fit_s = time.perf_counter() - t_fit
        Y = label_indicator(sets, clf.classes_)
        sep = clf.label_sep
        cells = [sep.join(s) if s else self.oos_label for s in sets]
        self.info = {
            "training": {
                "fingerprint": training_fingerprint(texts, cells),
                "n": len(texts),
                "n_oos": int((~Y.any(1)).sum()),
                "n_multi_label": int((Y.sum(1) > 1).sum()),
                "label_counts": {
                    str(c): int(v) for c, v in zip(clf.classes_, Y.sum(0), strict=True)
                },
            },
            "multi_label": True,
            "label_sep": sep,
            "adapted": None,
            "timings": {
                "encode_seconds": round(encode_s, 2),
                "classifier_fit_seconds": round(fit_s, 2),
                "total_seconds": round(time.perf_counter() - start, 2),
            },
            "transform": self.transform,
            "head": f"multi-label {clf.head_}",
            "selection": clf.selection_,
            "detector": "per-label thresholds (none passed = out of scope)",
            "threshold": None,
            "thresholds": {
                str(c): (float(t) if np.isfinite(t) else None)
                for c, t in zip(clf.classes_, clf.thresholds_, strict=True)
            },
            "target_precision": clf.target_precision,
            "calibrated_on": f"out-of-fold scores of the training rows ({clf.cv} folds)",
            "held_out_metrics": clf.oof_metrics_,
            "self_training": self_report,
        }
        self.info["lineage"] = fit_lineage(self.info, self._encoder(), "fit")
        return self

    def _vectors(self, texts: Sequence[str], progress: bool | None) -> np.ndarray:
        if not self._fitted():
            raise ValidationError("this pipeline is not fitted yet: call fit() or Pipeline.load()")
        return self._features(self._encoder().encode(texts, progress=progress))  # validates

    def embed(self, texts: Sequence[str], *, progress: bool | None = None) -> np.ndarray:
        """The vectors the classifier sees for ``texts`` (encoder, then the fitted transform)."""
        return self._vectors(check_texts(texts), progress)

    def predict(
        self, texts: Sequence[str], *, reject: bool = True, progress: bool | None = None
    ) -> np.ndarray:
        """The label of each text: one of ``classes_``, or ``oos_label`` when the detector
        rejects it (the one label outside ``classes_`` a pipeline ever returns; never with
        ``reject=False``). A multi-label pipeline returns each text's label set as a tuple
        (empty: none of the labels)."""
        if self.multi_label:
            sets = self.classifier.predict_label_sets(self._vectors(texts, progress))
            return np.fromiter(sets, dtype=object, count=len(sets))  # a 1-D array of tuples
        return self.predict_details(texts, top_k=1, reject=reject, progress=progress).labels

    def predict_details(
        self,
        texts: Sequence[str],
        *,
        top_k: int = 3,
        reject: bool = True,
        progress: bool | None = None,
    ) -> Predictions:
        """Per text (:class:`~embedlab.predictions.Predictions`): ``labels`` (as
        :meth:`predict`), ``confidence`` (the head's top-1 probability), ``novelty`` (higher
        = more unusual), ``out_of_scope``, the head's ``top_k`` classes and confidences, and
        with a hierarchy the coarser ``levels``. ``reject=False``: no rejection (closed-set
        data), the novelty is still given.

        Multi-label: ``labels`` are the predicted labels joined by the model's separator
        (``oos_label`` for none; the sets in ``label_sets``), ``novelty`` how far the row is
        from passing any label's threshold (> 0: none passes, ``out_of_scope``), and the top
        labels with their per-label scores (they need not sum to 1)."""
        if not self._fitted():
            raise ValidationError("this pipeline is not fitted yet: call fit() or Pipeline.load()")
        X = self._encoder().encode(texts, progress=progress)  # validates the texts
        return self.details_from_vectors(X, top_k=top_k, reject=reject)

    def details_from_vectors(
        self, X: np.ndarray, *, top_k: int = 3, reject: bool = True
    ) -> Predictions:
        """:meth:`predict_details` for vectors the encoder already made (the service encodes
        once for every model that shares an encoder); the fitted transform is applied here.
        The vectors are checked here (numeric, 2-D, the encoder's width, finite), once."""
        X = self._features(check_vectors(X, dim=self._encoder().dim))
        if self.multi_label:
            return self.classifier.predict_details(X, top_k=top_k)
        with validated():
            out = self.classifier.predict_details(X, top_k=top_k, reject=reject)
        if self.hierarchy is None:
            return out
        return out.with_levels(
            {
                name: self.hierarchy.at_level(out.labels, i, keep=[self.oos_label])
                for i, name in enumerate(self.hierarchy.level_names()[:-1], start=1)
            }
        )

    def evaluate(
        self,
        texts: Sequence[str],
        labels: Sequence[Any],
        *,
        reject: bool = True,
        hierarchy: Hierarchy | None = None,
        progress: bool | None = None,
    ) -> dict[str, Any]:
        """Open-set metrics on labelled texts (see :func:`embedlab.metrics.evaluate_open_set`).

        ``head_accuracy`` (no rejection) is always reported beside ``accuracy`` (a rejected
        in-scope row counts as an error); ``reject=False`` evaluates with rejection off.
        Labels that are neither a known class nor ``oos_label`` raise a ValidationError.
        With a hierarchy (the model's, or ``hierarchy`` here), ``hierarchy`` holds the
        accuracy at every level and the wrong leaves that still have the right parent.
        """
        if self.multi_label:
            if hierarchy is not None:
                raise ValidationError("label hierarchies work with single-label models only")
            return evaluate_multi_label(self, texts, labels, progress=progress)
        return evaluate_single_label(
            self, texts, labels, reject=reject, hierarchy=hierarchy, progress=progress
        )

    # ------------------------------------------------------------ class-set changes
    def add_classes(
        self,
        texts: Sequence[str],
        labels: Sequence[Any],
        *,
        teen: Any = "auto",
        progress: bool | None = None,
        vectors: np.ndarray | None = None,
        parents: Mapping[str, str] | None = None,
    ) -> Pipeline:
        """A new pipeline that also knows the classes of (texts, labels); no encoder
        training, no head re-selection (see :meth:`OpenSetClassifier.add_classes`: closed-form
        head update, TEEN for few-shot classes, threshold recalibrated). This one is unchanged.
        ``vectors``: the texts' encoder vectors when they are already encoded (the service).
        ``parents``: new class → its parent, for a pipeline with a hierarchy (every new class
        needs one there, as every class did at fit).
        """
        texts = check_texts(texts)
        if self.multi_label:  # label cells stay as given: the classifier parses its sets
            if len(labels) != len(texts):
                raise ValidationError(f"labels has {len(labels)} entries for {len(texts)} rows")
            options: dict[str, Any] = {}
            hierarchy = None
        else:
            labels = check_labels(labels, len(texts)).astype(str)
            options = {"teen": teen}
            hierarchy = extended_hierarchy(
                self.hierarchy, list(map(str, self.classes_)), self.oos_label, labels, parents
            )
        if vectors is None:
            X = self._vectors(texts, progress)
        else:
            X = self._features(check_vectors(vectors, dim=self._encoder().dim))
            if len(X) != len(texts):
                raise ValidationError(f"{len(X)} vectors for {len(texts)} texts")
        clf = self.classifier.add_classes(X, labels, **options)
        change = dict(clf.update_)
        change["rows_fingerprint"] = training_fingerprint(texts, [str(v) for v in labels])
        if parents:
            change["parents"] = dict(sorted(parents.items()))
        child = self._child(clf, change)
        child.hierarchy = hierarchy
        return child

    def remove_classes(self, labels: Sequence[str] | str) -> Pipeline:
        """A new pipeline without the classes ``labels``; this one is unchanged."""
        if not self._fitted():
            raise ValidationError("this pipeline is not fitted yet: call fit() or Pipeline.load()")
        clf = self.classifier.remove_classes(labels)
        return self._child(clf, dict(clf.update_))

    def _child(self, classifier: OpenSetClassifier, change: dict[str, Any]) -> Pipeline:
        child = Pipeline(
            encoder=self.encoder,
            classifier=classifier,
            adapt=False,
            adapt_config=self.adapt_config,
            calibration_fraction=self.calibration_fraction,
            transform=self.transform,
            hierarchy=self.hierarchy,
        )
        child.chain_ = self.chain_
        child._adapted_dir, child._work = self._adapted_dir, self._work
        child._encoder_in_bundle = self._encoder_in_bundle
        info = changed_info(self.info, classifier, change, self.oos_label)
        child.info = info
        return child

    def discover(
        self,
        texts: Sequence[str],
        *,
        all_rows: bool = False,
        min_size: int = 5,
        n_central: int = 3,
        seed: int = 0,
        progress: bool | None = None,
    ) -> Any:
        """New classes among the ``texts`` this model rejects (every text with
        ``all_rows``): a :class:`~embedlab.discover.Discovery`, its cut calibrated on the
        model's kept training rows (see :mod:`embedlab.discover`)."""
        from embedlab.discover import discover_classes

        texts = check_texts(texts)
        X = self._vectors(texts, progress)
        clf = self.classifier
        X_ref, y_ref = clf.reference_rows()
        if all_rows:
            chosen = np.ones(len(X), dtype=bool)
            selection = f"all {len(X)} rows"
        else:
            chosen = clf.predict_details(X, top_k=1).out_of_scope
            selection = f"the {int(chosen.sum())} of {len(X)} rows the model rejects"
            if not chosen.any():
                raise ValidationError(
                    f"the model rejects none of the {len(X)} rows: nothing to discover among "
                    "them (all_rows / --all clusters every row)"
                )
        if chosen.sum() < min_size:
            raise ValidationError(
                f"{selection.removeprefix('the ')}: fewer than min_size {min_size}, too few to "
                "form a cluster"
            )
        rows = np.flatnonzero(chosen)
        found = discover_classes(
            X[rows],
            [texts[i] for i in rows],
            reference=(X_ref, y_ref),
            min_size=min_size,
            n_central=n_central,
            reserved=[*map(str, clf.classes_), self.oos_label],
            seed=seed,
        )
        found.rows, found.selection, found.n_input = rows, selection, len(X)
        return found

    # ------------------------------------------------------------------ bundle
    def save(
        self,
        path: str | os.PathLike,
        *,
        overwrite: bool = False,
        expect_stamp: str | object | None = AS_AT_START,
        sign: Any = None,
    ) -> Path:
        """Write the fitted pipeline as a bundle directory (atomically; see
        :mod:`embedlab.model_store`).

        ``expect_stamp``: the bundle.json checksum ``path`` must still hold when the new
        version replaces it (default: what it held when the write began; pass
        :attr:`source_stamp` to write the next version of the bundle this was loaded from),
        else VersionConflict and nothing is written. ``sign``: a SigningKey to sign with."""
        if not self._fitted():
            raise ValidationError("cannot save an unfitted pipeline")
        return save_pipeline(
            self, Path(path), overwrite=overwrite, expect_stamp=expect_stamp, sign=sign
        )

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        *,
        cache: bool = True,
        backend: str | None = None,
        key: Any = None,
    ) -> Pipeline:
        """Load a bundle; raises StoreError for a missing, edited, corrupted or newer bundle,
        one that names a path outside itself, or (with ``key``, a SigningKey) one not signed
        with that key.

        ``backend`` (else ``$EMBEDLAB_BACKEND``, else the one saved) runs the encoder. The
        loaded pipeline's :attr:`source_stamp` is the checksum of the bundle.json it read."""
        return load_pipeline(cls, Path(path).absolute(), cache=cache, backend=backend, key=key)


class _TempDir:
    """A temporary folder removed when the last object holding it goes away."""

    def __init__(self, path: Path) -> None:
        self.path = path
        weakref.finalize(self, shutil.rmtree, path, ignore_errors=True)
