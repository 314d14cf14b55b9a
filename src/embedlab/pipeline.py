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

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embedlab.bundle import (
    BUNDLE_FORMAT_VERSION,
    BUNDLE_JSON,
    ENCODER_DIR,
    estimator_from_state,
    estimator_to_state,
    json_sha256,
    read_bundle,
    write_bundle,
)
from embedlab.encoders import SentenceTransformerEncoder
from embedlab.encoders.base import check_texts
from embedlab.encoders.sentence_transformer import encoder_from_spec
from embedlab.errors import StoreError, ValidationError
from embedlab.metrics import evaluate_open_set
from embedlab.openset import OpenSetClassifier
from embedlab.splits import calibration_holdout
from embedlab.transforms import TransformChain
from embedlab.validation import check_labels

__all__ = ["BUNDLE_FORMAT_VERSION", "Pipeline", "calibration_holdout", "should_adapt"]

log = logging.getLogger("embedlab")


#: ``adapt="auto"`` fine-tunes the encoder when each class has at least this many examples
#: on average and the whole set fits the time budget; see docs/benchmarks.md for why.
AUTO_ADAPT_MIN_PER_CLASS = 5


def should_adapt(n_texts: int, n_classes: int) -> bool:
    """The ``adapt="auto"`` rule (measured on CLINC150, see docs/benchmarks.md)."""
    return n_classes >= 2 and n_texts / n_classes >= AUTO_ADAPT_MIN_PER_CLASS


def training_fingerprint(texts: Sequence[str], labels: Sequence[str]) -> str:
    """sha256 over the (text, label) rows, in order."""
    h = hashlib.sha256()
    for t, y in zip(texts, labels, strict=True):
        h.update(t.encode("utf-8"))
        h.update(b"\x1f")
        h.update(str(y).encode("utf-8"))
        h.update(b"\x1e")
    return h.hexdigest()


class Pipeline:
    """Texts in, labels (or out-of-scope) out.

    Parameters
    ----------
    encoder : SentenceTransformerEncoder, optional
        Default: the packaged all-MiniLM-L6-v2.
    classifier : OpenSetClassifier, optional
        Default: ``OpenSetClassifier()`` (automatic head and detector).
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
    """

    def __init__(
        self,
        encoder: SentenceTransformerEncoder | None = None,
        classifier: OpenSetClassifier | None = None,
        adapt: bool | str = "auto",
        adapt_config: Any = None,
        calibration_fraction: float = 0.1,
        transform: str | None = None,
    ) -> None:
        self.encoder = encoder
        self.transform = transform
        self.chain_: TransformChain | None = None
        self.calibration_fraction = calibration_fraction
        self.classifier = classifier if classifier is not None else OpenSetClassifier()
        self.adapt = adapt
        self.adapt_config = adapt_config
        self.info: dict[str, Any] = {}
        self._adapted_dir: Path | None = None
        self._work: _TempDir | None = None

    @property
    def oos_label(self) -> str:
        return str(self.classifier.oos_label)

    @property
    def classes_(self) -> np.ndarray:
        return self.classifier.classes_

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
        start = time.perf_counter()
        texts = check_texts(texts)
        labels = check_labels(labels, len(texts)).astype(str)
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
        self.info["lineage"] = _lineage(None, {"op": "fit", "training": self.info["training"]})
        return self

    def _vectors(self, texts: Sequence[str], progress: bool | None) -> np.ndarray:
        if not hasattr(self.classifier, "detector_"):
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
        ``reject=False``)."""
        return self.predict_details(texts, top_k=1, reject=reject, progress=progress)["label"]

    def predict_details(
        self,
        texts: Sequence[str],
        *,
        top_k: int = 3,
        reject: bool = True,
        progress: bool | None = None,
    ) -> dict[str, np.ndarray]:
        """Per text: ``label`` (as :meth:`predict`), ``score`` (novelty: higher = more out of
        scope), ``out_of_scope``, and the ``top{i}_label`` / ``top{i}_prob`` of the head.
        ``reject=False``: no rejection (closed-set data), the score is still given."""
        return self.classifier.predict_details(
            self._vectors(texts, progress), top_k=top_k, reject=reject
        )

    def evaluate(
        self,
        texts: Sequence[str],
        labels: Sequence[Any],
        *,
        reject: bool = True,
        progress: bool | None = None,
    ) -> dict[str, Any]:
        """Open-set metrics on labelled texts (see :func:`embedlab.metrics.evaluate_open_set`).

        ``head_accuracy`` (no rejection) is always reported beside ``accuracy`` (a rejected
        in-scope row counts as an error); ``reject=False`` evaluates with rejection off.
        Labels that are neither a known class nor ``oos_label`` raise a ValidationError.
        """
        start = time.perf_counter()
        labels = check_labels(labels, len(texts)).astype(str)
        known = set(map(str, self.classes_)) | {self.oos_label}
        unknown = sorted(set(labels.tolist()) - known)
        if unknown:
            raise ValidationError(
                f"{len(unknown)} label(s) were not seen in training: {unknown[:10]}; relabel "
                f"them {self.oos_label!r} to count them as out of scope"
            )
        details = self.predict_details(texts, top_k=1, reject=reject, progress=progress)
        metrics = evaluate_open_set(
            labels, details["label"], details["score"], self.oos_label, details["top1_label"]
        )
        metrics["rejection"] = bool(reject)
        metrics["seconds"] = round(time.perf_counter() - start, 3)
        return metrics

    # ------------------------------------------------------------ class-set changes
    def add_classes(
        self,
        texts: Sequence[str],
        labels: Sequence[Any],
        *,
        teen: Any = "auto",
        progress: bool | None = None,
    ) -> Pipeline:
        """A new pipeline that also knows the classes of (texts, labels); no encoder
        training, no head re-selection (see :meth:`OpenSetClassifier.add_classes`: closed-form
        head update, TEEN for few-shot classes, threshold recalibrated). This one is unchanged.
        """
        texts = check_texts(texts)
        labels = check_labels(labels, len(texts)).astype(str)
        clf = self.classifier.add_classes(
            self._vectors(texts, progress),
            labels,
            teen=teen,
        )
        change = dict(clf.update_)
        change["rows_fingerprint"] = training_fingerprint(texts, labels)
        return self._child(clf, change)

    def remove_classes(self, labels: Sequence[str] | str) -> Pipeline:
        """A new pipeline without the classes ``labels``; this one is unchanged."""
        if not hasattr(self.classifier, "detector_"):
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
        )
        child.chain_ = self.chain_
        child._adapted_dir, child._work = self._adapted_dir, self._work
        info = json.loads(json.dumps(self.info, default=_json_default))
        training = info.setdefault("training", {})
        counts = dict(training.get("label_counts", {}))
        kept = np.asarray(classifier.train_class_)
        names = [str(c) for c in classifier.classes_]
        class_counts = np.bincount(kept, minlength=len(names))
        counts = {k: v for k, v in counts.items() if k == self.oos_label or k in names}
        counts.update({n: int(c) for n, c in zip(names, class_counts, strict=True)})
        if change.get("oos_rows"):
            counts[self.oos_label] = counts.get(self.oos_label, 0) + int(change["oos_rows"])
        training["label_counts"] = dict(sorted(counts.items()))
        training["n"] = int(sum(counts.values()))
        training["n_oos"] = int(counts.get(self.oos_label, 0))
        info["threshold"] = classifier.threshold_
        info["calibrated_on"] = (
            "rows held out of adaptation (kept rows, recalibrated after the class change)"
            if classifier.train_held_.any()
            else "a held-out split of the kept training rows (recalibrated after the class change)"
        )
        info["lineage"] = _lineage(self.info, change)
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
        X_ref, y_ref, _, _ = clf.kept_rows()
        if all_rows:
            chosen = np.ones(len(X), dtype=bool)
            selection = f"all {len(X)} rows"
        else:
            chosen = clf.predict_details(X, top_k=1)["out_of_scope"]
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
    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the fitted pipeline as a bundle directory (atomically)."""
        if not hasattr(self.classifier, "detector_"):
            raise ValidationError("cannot save an unfitted pipeline")
        path = Path(path)
        if path.exists() and not overwrite:
            raise StoreError(f"{path} already exists (pass overwrite=True, or --force)")
        arrays: dict[str, np.ndarray] = {}
        classifier_state = estimator_to_state(self.classifier, "classifier", arrays)
        transforms = None
        if self.chain_ is not None:
            transforms, chain_arrays = self.chain_.state()
            arrays.update({f"transform.{k}": v for k, v in chain_arrays.items()})
        encoder = self._encoder()
        model_dir = Path(encoder.model_path)
        return write_bundle(
            path,
            overwrite=overwrite,
            encoder=encoder,
            copy_encoder=self._adapted_dir is not None
            or (model_dir.parent / BUNDLE_JSON).is_file(),
            arrays=arrays,
            fields={
                "transforms": transforms,
                "oos_label": self.oos_label,
                "classes": [str(c) for c in self.classes_],
                "info": self.info,
                "classifier": classifier_state,
            },
        )

    @classmethod
    def load(
        cls, path: str | os.PathLike, *, cache: bool = True, backend: str | None = None
    ) -> Pipeline:
        """Load a bundle; raises StoreError for a missing, edited, corrupted or newer bundle.

        ``backend`` (else ``$EMBEDLAB_BACKEND``, else the one saved) runs the encoder."""

        path = Path(path)
        try:
            return cls._load(path, cache=cache, backend=backend)
        except (RecursionError, AttributeError, TypeError, KeyError, IndexError) as exc:
            # Only a bundle edited by hand (with its checksum recomputed) gets here.
            raise StoreError(
                f"{path}: {BUNDLE_JSON} does not describe a model embedlab can rebuild "
                f"({type(exc).__name__}: {str(exc)[:200]}); re-fit the model"
            ) from None

    @classmethod
    def _load(cls, path: Path, *, cache: bool, backend: str | None) -> Pipeline:
        doc, arrays = read_bundle(path)
        classifier = estimator_from_state(doc["classifier"], arrays)
        if not isinstance(classifier, OpenSetClassifier):
            raise StoreError(f"{path}: bundle does not hold an OpenSetClassifier")
        encoder = encoder_from_spec(doc["encoder"], base_dir=path, cache=cache, backend=backend)
        chain = None
        if doc.get("transforms"):
            chain = _chain_from_state(path, doc["transforms"], arrays)
            if chain.dim_in != encoder.dim:
                raise StoreError(
                    f"{path}: the transform expects {chain.dim_in}-d vectors but the encoder "
                    f"gives {encoder.dim}-d"
                )
        n_features = getattr(classifier, "n_features_in_", None)
        if (
            n_features != (chain.output_dim() if chain else encoder.dim)
            or [str(c) for c in classifier.classes_] != doc["classes"]
        ):
            raise StoreError(
                f"{path}: classifier expects {n_features}-d vectors and classes "
                f"{len(classifier.classes_)}, but the encoder gives {encoder.dim}-d / bundle lists "
                f"{len(doc['classes'])} classes"
            )
        pipe = cls(
            encoder=encoder,
            classifier=classifier,
            adapt=False,
            transform=chain.spec if chain else None,
        )
        pipe.chain_ = chain
        pipe.info = doc.get("info", {})
        return pipe


class _TempDir:
    """A temporary folder removed when the last object holding it goes away."""

    def __init__(self, path: Path) -> None:
        self.path = path
        weakref.finalize(self, shutil.rmtree, path, ignore_errors=True)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON data")


def _lineage(parent_info: dict[str, Any] | None, change: dict[str, Any]) -> dict[str, Any]:
    """Version, fingerprint and history of a model: a fit is version 1; each class change
    makes a child whose fingerprint hashes its parent's with the change."""
    parent = None
    history: list[dict[str, Any]] = []
    version = 1
    if parent_info is not None:
        prev = parent_info.get("lineage") or _lineage(
            None, {"op": "fit", "training": parent_info.get("training", {})}
        )
        parent, version = prev["fingerprint"], int(prev["version"]) + 1
        history = [*prev.get("history", []), {"version": version, **change}]
    return {
        "version": version,
        "fingerprint": json_sha256({"parent": parent, "change": change}),
        "parent": parent,
        "history": history,
    }


def _chain_from_state(path: Path, config: Any, arrays: dict[str, np.ndarray]) -> TransformChain:
    prefix = "transform."
    try:
        chain = TransformChain.from_state(
            config, {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
        )
    except (ValidationError, KeyError, TypeError) as exc:
        raise StoreError(f"{path}: the saved transform cannot be rebuilt: {exc}") from None
    if not chain.fitted or chain.dim_in is None:
        raise StoreError(f"{path}: the saved transform {chain.spec!r} is not fitted")
    return chain
