"""Pipeline: texts → encoder → OpenSetClassifier, fitted as one unit and saved as a bundle.

A bundle is a directory: ``bundle.json`` (format, versions, the stages — encoder spec,
transforms, classifier, concepts — label set, lineage), ``arrays.safetensors``, the adapted
``encoder/`` and its ``onnx/`` graph when there are. Its format: :mod:`embedlab.store.bundle`
and :mod:`embedlab.models.model_store`; loading verifies checksums and never unpickles.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from embedlab.compress.transforms import TransformChain
from embedlab.core.errors import ValidationError
from embedlab.core.splits import calibration_holdout
from embedlab.core.validation import check_vectors, validated
from embedlab.encoders import SentenceTransformerEncoder
from embedlab.encoders.base import check_texts, spec_differences
from embedlab.models.class_changes import change_arguments, check_explainable, child_pipeline
from embedlab.models.fit_options import FitConfig, check_fit_options
from embedlab.models.fitting import (
    TempFolder,
    fit_multi_label,
    fit_single_label,
    fit_zero_shot,
    should_adapt,
)
from embedlab.models.hierarchy import Hierarchy
from embedlab.models.lineage import training_fingerprint
from embedlab.models.model_evaluation import evaluate_multi_label, evaluate_single_label
from embedlab.models.model_store import load_pipeline, save_pipeline
from embedlab.models.multilabel import MultiLabelClassifier
from embedlab.models.openset import OpenSetClassifier
from embedlab.models.predictions import Predictions
from embedlab.store.atomic import AS_AT_START
from embedlab.store.bundle import BUNDLE_FORMAT_VERSION

__all__ = ["BUNDLE_FORMAT_VERSION", "Pipeline", "calibration_holdout", "should_adapt"]

log = logging.getLogger("embedlab")


class Pipeline(BaseEstimator):
    """Texts in, labels (or out-of-scope) out.

    Parameters
    ----------
    encoder : SentenceTransformerEncoder, optional
        Default: the packaged all-MiniLM-L6-v2.
    classifier : OpenSetClassifier or MultiLabelClassifier, optional
        Default: ``OpenSetClassifier()`` (automatic head and detector). A
        :class:`~embedlab.models.multilabel.MultiLabelClassifier` makes a multi-label pipeline:
        each row's label is a set (a string of labels joined by its ``label_sep``, or a
        list), predictions are sets, and "none of the labels" is the out-of-scope answer.
    adapt : bool or "auto", default "auto"
        Fine-tune the encoder on labelled in-scope texts first (:mod:`embedlab.models.adapt`).
    adapt_config : AdaptConfig, optional
    calibration_fraction : float, default 0.1
        With adaptation, this share of each in-scope class (at most half; more when the
        target rate needs it) is kept out of fine-tuning to set the out-of-scope threshold.
    transform : str, optional
        A :class:`~embedlab.compress.transforms.TransformChain` spec applied between the encoder and
        the classifier, e.g. ``"layer4,dim128,norm"`` or ``"center,whiten,sq8"``. It is
        fitted on the in-scope training vectors. A chain ending in a code step (sq8,
        binary, pqM) is applied as encode-then-decode, so the classifier sees exactly what
        that storage keeps. ``layerK`` picks the encoder layer (and then no adaptation).
    hierarchy : Hierarchy, optional
        Parents of the labels (:mod:`embedlab.models.hierarchy`): predictions then carry every
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
        self.classifier = classifier
        self.adapt = adapt
        self.adapt_config = adapt_config
        self.calibration_fraction = calibration_fraction
        self.transform = transform
        self.hierarchy = hierarchy
        # fitted state (set by fit, load or a class change)
        self.chain_: TransformChain | None = None
        self.info: dict[str, Any] = {}
        #: sha256 of the bundle.json this pipeline was loaded from (None: not loaded)
        self.source_stamp: str | None = None
        self._classifier: OpenSetClassifier | MultiLabelClassifier | None = None
        self._runtime_encoder: SentenceTransformerEncoder | None = None
        self._adapted_dir: Path | None = None
        self._work: TempFolder | None = None
        self._encoder_in_bundle = False  # loaded from a bundle that holds its encoder
        self.concepts_: Any = None  # the optional concepts stage (embedlab.concepts)

    @classmethod
    def from_config(
        cls,
        config: FitConfig,
        encoder: SentenceTransformerEncoder | None = None,
        hierarchy: Hierarchy | None = None,
    ) -> Pipeline:
        """The unfitted pipeline a :class:`~embedlab.models.fit_options.FitConfig` asks for:
        ``encoder``, the structure's classifier, the transform, adaptation (not zero-shot)
        and ``hierarchy`` (the Hierarchy read from what the config names)."""
        from embedlab.models.adapt import AdaptConfig

        trained = config.structure != "zero-shot"
        return cls(
            encoder=encoder,
            classifier=config.classifier(),
            adapt=config.adapt if trained else False,
            adapt_config=AdaptConfig(time_budget=config.adapt_budget, seed=config.seed)
            if trained
            else None,
            transform=config.transform if config.structure != "zero-shot" else None,
            hierarchy=hierarchy,
        )

    def _template(self) -> OpenSetClassifier | MultiLabelClassifier:
        """The classifier a fit starts from (a fresh clone of it is fitted)."""
        return self.classifier if self.classifier is not None else OpenSetClassifier()

    @property
    def classifier_(self) -> OpenSetClassifier | MultiLabelClassifier:
        """The fitted classifier (ValidationError before fit or load)."""
        if self._classifier is None:
            raise ValidationError("this pipeline is not fitted yet: call fit() or Pipeline.load()")
        return self._classifier

    @property
    def oos_label(self) -> str:
        return str(self._current().oos_label)

    @property
    def classes_(self) -> np.ndarray:
        return self.classifier_.classes_

    @property
    def multi_label(self) -> bool:
        """Whether rows carry label sets (a MultiLabelClassifier) rather than one label."""
        return isinstance(self._current(), MultiLabelClassifier)

    def _current(self) -> OpenSetClassifier | MultiLabelClassifier:
        """The fitted classifier, or before a fit the one it will start from."""
        return self._classifier or self._template()

    def _fitted(self) -> bool:
        return self._classifier is not None

    def _single_label_only(self, what: str) -> None:
        if self.multi_label:
            raise ValidationError(
                f"{what} works on single-label models only; this one is multi-label"
            )

    @property
    def encoder_(self) -> SentenceTransformerEncoder:
        """The encoder this pipeline encodes texts with: the adapted one after a fit that
        adapted it, else the one given, else the packaged one (built on first use)."""
        return self._encoder()

    @property
    def class_change_refusal(self) -> str | None:
        """Why classes cannot be added to or removed from this model without a refit (it
        keeps no training rows); None when they can."""
        if not hasattr(self._current(), "train_X_"):
            return "it keeps no training rows"
        return None

    def share_encoder(self, encoder: SentenceTransformerEncoder) -> None:
        """Encode with ``encoder`` from now on: an already loaded encoder of the same spec
        (the service shares one per spec between its models). ValidationError when it is
        another encoder (model, layer, dimension, weights)."""
        if spec_differences(self._encoder().spec, encoder.spec):
            raise ValidationError("share_encoder needs an encoder of the same spec as this model's")
        self.encoder = self._runtime_encoder = encoder

    def _start_fit(self) -> None:
        """Forget what an earlier fit adapted: a new fit starts from the given encoder."""
        if self._adapted_dir is not None:
            self._runtime_encoder, self._adapted_dir, self._work = None, None, None

    def _encoder(self) -> SentenceTransformerEncoder:
        if self._runtime_encoder is None:
            if self.encoder is not None:
                self._runtime_encoder = self.encoder
            else:
                layer = TransformChain(self.transform).layer if self.transform else None
                self._runtime_encoder = SentenceTransformerEncoder(layer=layer)
        return self._runtime_encoder

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
        :mod:`embedlab.models.self_training`, ``self_training`` = a SelfTraining to change rounds
        or share). The encoder is adapted on the labelled rows only.
        """
        check_fit_options(
            "multi-label" if self.multi_label else "single-label",
            validation=validation is not None,
            unlabeled=unlabeled is not None,
            hierarchy=self.hierarchy is not None,
            adapt=self.adapt is True,
        )
        self._start_fit()
        if self.multi_label:
            return fit_multi_label(self, texts, labels, progress, unlabeled, self_training)
        return fit_single_label(
            self,
            texts,
            labels,
            validation=validation,
            unlabeled=unlabeled,
            self_training=self_training,
            progress=progress,
        )

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
        self._start_fit()
        return fit_zero_shot(
            self,
            labels,
            descriptions,
            in_scope_texts=in_scope_texts,
            template=template,
            progress=progress,
        )

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
            sets = self.classifier_.predict_label_sets(self._vectors(texts, progress))
            return np.fromiter(sets, dtype=object, count=len(sets))  # a 1-D array of tuples
        return self.predict_details(texts, top_k=1, reject=reject, progress=progress).labels

    def predict_details(
        self,
        texts: Sequence[str],
        *,
        top_k: int = 3,
        reject: bool = True,
        fdr: float | None = None,
        sets: float | None = None,
        explain: bool = False,
        progress: bool | None = None,
    ) -> Predictions:
        """Per text (:class:`~embedlab.models.predictions.Predictions`): ``labels`` (as
        :meth:`predict`), ``confidence`` (the head's top-1 probability), ``novelty`` (higher
        = more unusual), ``out_of_scope``, the head's ``top_k`` classes and confidences, and
        with a hierarchy the coarser ``levels``, ``p_value`` (conformal: small = unusual).
        ``reject=False``: no rejection, the novelty still given. ``fdr=q``: reject the texts
        Benjamini–Hochberg picks over this batch (expected share of in-scope texts among the
        rejected ≤ q). ``sets=0.9``: prediction sets holding the true label with probability
        ≥ 0.9 (single-label). Multi-label: ``labels`` joined by the model's separator (the
        sets in ``label_sets``; ``oos_label`` for none), ``novelty`` how far the row is from
        passing any label's threshold, the top labels with their own scores. ``explain=True``: the
        concepts behind each label and novelty score (:meth:`Predictions.explain`)."""
        if not self._fitted():
            raise ValidationError("this pipeline is not fitted yet: call fit() or Pipeline.load()")
        if explain:
            check_explainable(self)
        X = self._encoder().encode(texts, progress=progress)  # validates the texts
        return self.details_from_vectors(
            X, top_k=top_k, reject=reject, fdr=fdr, sets=sets, explain=explain
        )

    def fit_concepts(
        self, texts: Sequence[str] | None = None, labels: Any = None, **options: Any
    ) -> Pipeline:
        """A copy with a concepts stage, learnt from ``texts`` / ``labels`` or the kept rows
        (:func:`~embedlab.concepts.model_concepts.with_concepts`); this one is unchanged."""
        from embedlab.concepts.model_concepts import with_concepts

        return with_concepts(self, texts, labels, **options)

    def details_from_vectors(
        self,
        X: np.ndarray,
        *,
        top_k: int = 3,
        reject: bool = True,
        fdr: float | None = None,
        sets: float | None = None,
        explain: bool = False,
    ) -> Predictions:
        """:meth:`predict_details` for vectors the encoder already made (the service encodes
        once for every model that shares an encoder); the fitted transform is applied here.
        The vectors are checked here (numeric, 2-D, the encoder's width, finite), once."""
        if explain:
            check_explainable(self)
        X = self._features(check_vectors(X, dim=self._encoder().dim))
        if self.multi_label:
            return self.classifier_.predict_details(X, top_k=top_k, fdr=fdr, sets=sets)
        with validated():
            out = self.classifier_.predict_details(
                X, top_k=top_k, reject=reject, fdr=fdr, sets=sets
            )
            if explain:
                clf = self.classifier_
                out = out.with_explanations(self.concepts_.explain(X, clf.head_, clf.detector_))
        if self.hierarchy is None:
            return out
        return out.with_levels(self.hierarchy.coarser_levels(out.labels, [self.oos_label]))

    def evaluate(
        self,
        texts: Sequence[str],
        labels: Sequence[Any],
        *,
        reject: bool = True,
        hierarchy: Hierarchy | None = None,
        progress: bool | None = None,
    ) -> dict[str, Any]:
        """Metrics on labelled texts (open-set: ``accuracy`` beside ``head_accuracy``, every
        level of a hierarchy; or multi-label): see :mod:`embedlab.models.model_evaluation`."""
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
        labels, options, hierarchy = change_arguments(self, texts, labels, teen, parents)
        if vectors is None:
            X = self._vectors(texts, progress)
        else:
            X = self._features(check_vectors(vectors, dim=self._encoder().dim))
            if len(X) != len(texts):
                raise ValidationError(f"{len(X)} vectors for {len(texts)} texts")
        clf = self.classifier_.add_classes(X, labels, **options)
        change = dict(clf.update_)
        change["rows_fingerprint"] = training_fingerprint(texts, [str(v) for v in labels])
        if parents:
            change["parents"] = dict(sorted(parents.items()))
        child = child_pipeline(self, clf, change)
        child.hierarchy = hierarchy
        return child

    def remove_classes(self, labels: Sequence[str] | str) -> Pipeline:
        """A new pipeline without the classes ``labels``; this one is unchanged."""
        if not self._fitted():
            raise ValidationError("this pipeline is not fitted yet: call fit() or Pipeline.load()")
        clf = self.classifier_.remove_classes(labels)
        return child_pipeline(self, clf, dict(clf.update_))

    def suggest(self, pool: Any, n: int = 10, **options: Any) -> Any:
        """Which ``n`` of ``pool`` to label next, and why (labeling.suggest.suggest_for)."""
        from embedlab.labeling.suggest import suggest_for

        return suggest_for(self, pool, n, **options)

    def discover(self, texts: Sequence[str], **options: Any) -> Any:
        """New classes among the ``texts`` this model finds unusual: a Discovery
        (``options``: those of :func:`embedlab.analysis.discover.discover_in_model`)."""
        from embedlab.analysis.discover import discover_in_model

        return discover_in_model(self, texts, **options)

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
        :mod:`embedlab.models.model_store`).

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
