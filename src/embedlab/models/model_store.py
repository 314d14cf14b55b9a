"""How a :class:`~embedlab.models.pipeline.Pipeline` is saved as a bundle and read back.

A bundle lists its stages in order (``stages``: encoder, transforms, classifier) and each
stage keeps its own configuration and arrays: the encoder its spec (and, adapted, its
weights under ``encoder/``), the transform chain its spec and fitted arrays
(``transform.*``), the classifier its parameters and fitted attributes (``classifier.*``,
see :func:`embedlab.store.bundle.estimator_to_state`). Beside them: the label set, the hierarchy,
the adaptation settings and the model's info (lineage, training record). The directory
format itself (checksums, atomic writes, signatures) lives in :mod:`embedlab.store.bundle`;
loading never unpickles. Bundles written before ``stages`` existed load the same way.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from embedlab.compress.transforms import TransformChain
from embedlab.core.errors import StoreError, ValidationError
from embedlab.encoders.sentence_transformer import encoder_from_spec
from embedlab.models.hierarchy import Hierarchy
from embedlab.models.lineage import continued_lineage
from embedlab.models.multilabel import MultiLabelClassifier
from embedlab.models.openset import OpenSetClassifier
from embedlab.store.bundle import (
    BUNDLE_JSON,
    estimator_from_state,
    estimator_to_state,
    read_bundle,
    write_bundle,
)

__all__ = ["STAGES", "load_pipeline", "save_pipeline"]

#: The stages of a model, in the order data flows through them.
STAGES = ("encoder", "transforms", "classifier", "concepts")


def save_pipeline(pipe: Any, path: Path, *, overwrite: bool, expect_stamp: Any, sign: Any) -> Path:
    """Write fitted ``pipe`` as a bundle at ``path`` (see :meth:`Pipeline.save`)."""
    if path.exists() and not overwrite:
        raise StoreError(f"{path} already exists (pass overwrite=True, or --force)")
    arrays: dict[str, np.ndarray] = {}
    classifier_state = estimator_to_state(pipe.classifier_, "classifier", arrays)
    transforms = None
    if pipe.chain_ is not None:
        transforms, chain_arrays = pipe.chain_.state()
        arrays.update({f"transform.{k}": v for k, v in chain_arrays.items()})
    concepts = None
    if pipe.concepts_ is not None:
        concepts, concept_arrays = pipe.concepts_.state()
        arrays.update({f"concepts.{k}": v for k, v in concept_arrays.items()})
    if overwrite and pipe.info.get("lineage"):  # a refit continues the numbering there
        pipe.info["lineage"] = continued_lineage(pipe.info, path / BUNDLE_JSON)
    encoder = pipe.encoder_
    model_dir = Path(encoder.model_path)
    pipe.source_stamp = write_bundle(
        path,
        overwrite=overwrite,
        encoder=encoder,
        copy_encoder=pipe._adapted_dir is not None
        or pipe._encoder_in_bundle
        or (model_dir.parent / BUNDLE_JSON).is_file(),
        arrays=arrays,
        expect_stamp=expect_stamp,
        sign=sign,
        fields={
            "stages": [
                s
                for s in STAGES
                if (s != "transforms" or transforms is not None)
                and (s != "concepts" or concepts is not None)
            ],
            "transforms": transforms,
            "concepts": concepts,
            "oos_label": pipe.oos_label,
            "classes": [str(c) for c in pipe.classes_],
            "hierarchy": None if pipe.hierarchy is None else pipe.hierarchy.to_json(),
            "adapt_config": _adapt_config_state(pipe.adapt_config),
            "info": pipe.info,
            "classifier": classifier_state,
        },
    )
    return path


def load_pipeline(cls: type, path: Path, *, cache: bool, backend: str | None, key: Any) -> Any:
    """Read the bundle at ``path`` into a ``cls`` (a Pipeline; see :meth:`Pipeline.load`)."""
    from embedlab.store.manifest import saved_kind

    if saved_kind(path) == "tables":
        raise ValidationError(
            f"{path} is a table model (embedlab fit --cat-cols): it takes predict, evaluate, "
            "report and serve; class changes, discovery, concepts and the other text-model "
            "commands need a text model (see the capability table in the README)"
        )
    try:
        return _load(cls, path, cache=cache, backend=backend, key=key)
    except (RecursionError, AttributeError, TypeError, KeyError, IndexError) as exc:
        # Only a bundle edited by hand (with its checksum recomputed) gets here.
        raise StoreError(
            f"{path}: {BUNDLE_JSON} does not describe a model embedlab can rebuild "
            f"({type(exc).__name__}: {str(exc)[:200]}); re-fit the model"
        ) from None


def _load(cls: type, path: Path, *, cache: bool, backend: str | None, key: Any) -> Any:
    doc, arrays, stamp = read_bundle(path, key=key)
    stages = doc.get("stages", list(STAGES))
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise StoreError(
            f"{path}: the bundle names stages this embedlab does not know: {unknown}; "
            "load it with the release that wrote it"
        )
    classifier = estimator_from_state(doc["classifier"], arrays)
    if not isinstance(classifier, (OpenSetClassifier, MultiLabelClassifier)):
        raise StoreError(f"{path}: bundle does not hold an embedlab classifier")
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
        adapt_config=_adapt_config(path, doc.get("adapt_config")),
        transform=chain.spec if chain else None,
    )
    pipe._classifier = classifier
    pipe.chain_ = chain
    pipe.info = doc.get("info", {})
    pipe.source_stamp = stamp
    pipe._encoder_in_bundle = not os.path.isabs(str(doc["encoder"].get("path")))
    if doc.get("hierarchy"):
        pipe.hierarchy = Hierarchy.from_parents(doc["hierarchy"])
    if doc.get("concepts"):
        pipe.concepts_ = _concepts_from_state(path, doc["concepts"], arrays, n_features)
    return pipe


def _concepts_from_state(
    path: Path, state: dict[str, Any], arrays: dict[str, np.ndarray], dim: int
) -> Any:
    from embedlab.concepts import ConceptSet

    prefix = "concepts."
    mine = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
    try:
        found = ConceptSet.from_state(state, mine)
    except (ValidationError, KeyError, TypeError, ValueError) as exc:
        raise StoreError(f"{path}: the bundle's concepts cannot be read ({exc})") from None
    if found.dim != dim:
        raise StoreError(
            f"{path}: the concepts describe {found.dim}-d vectors, the classifier sees {dim}-d"
        )
    return found


def _adapt_config_state(config: Any) -> dict[str, Any] | None:
    """The adaptation settings as JSON (None when the pipeline was given none)."""
    if config is None:
        return None
    if not dataclasses.is_dataclass(config):
        raise StoreError(f"adapt_config must be an AdaptConfig to be saved, not {config!r}")
    return dataclasses.asdict(config)


def _adapt_config(path: Path, state: dict[str, Any] | None) -> Any:
    if state is None:
        return None
    from embedlab.models.adapt import AdaptConfig

    names = {f.name for f in dataclasses.fields(AdaptConfig)}
    unknown = sorted(set(state) - names)
    if unknown:
        raise StoreError(f"{path}: the saved adaptation settings name unknown fields {unknown}")
    return AdaptConfig(**state)


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
