"""ZeroShotClassifier: class prototypes from class names or descriptions, optionally mixed
with prototypes of labelled examples."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from embedlab.core.errors import ValidationError
from embedlab.core.vectors import class_means, unit_rows
from embedlab.heads.prototype import PrototypeClassifier

__all__ = ["ZeroShotClassifier", "label_to_text"]


def label_to_text(label: str) -> str:
    """A readable phrase from a label id: ``"book_flight"`` → ``"book flight"``."""
    return str(label).replace("_", " ").replace("-", " ").strip()


class ZeroShotClassifier(PrototypeClassifier):
    """Classify by cosine similarity to encoded class descriptions.

    Parameters
    ----------
    encoder : Encoder, optional
        Encodes the descriptions; must be the encoder that produced X. Default: the packaged
        all-MiniLM-L6-v2.
    descriptions : mapping label → str or list of str, or list of labels, optional
        Several descriptions per class are averaged. Classes without a description use
        their name (underscores become spaces). Default: the labels seen in ``fit``.
    template : str, default "{}"
        Format string applied to every description, e.g. ``"a request to {}"``.
    description_weight : float, default 0.5
        With labelled examples, each prototype is α·description + (1−α)·labelled mean.
    temperature : float, default 0.05
    class_vectors : mapping label → vector (d,) or vectors (m, d), optional
        Precomputed label vectors (e.g. CLIP text vectors of the class names, to label CLIP
        image vectors); they join the encoded descriptions of their label. A label with
        vectors and no description is not encoded at all, so with vectors for every label
        no encoder is loaded.

    Examples
    --------
    >>> zs = ZeroShotClassifier(descriptions={"travel": ["book a flight", "reserve a hotel"],
    ...                                       "music": "play a song"})   # doctest: +SKIP
    >>> zs.fit().predict(encoder.encode(["fly me to rome"]))             # doctest: +SKIP
    array(['travel'], dtype=object)
    """

    def __init__(
        self,
        encoder: Any = None,
        descriptions: Mapping[str, str | Sequence[str]] | Sequence[str] | None = None,
        template: str = "{}",
        description_weight: float = 0.5,
        temperature: float = 0.05,
        class_vectors: Mapping[str, Any] | None = None,
    ):
        self.encoder = encoder
        self.descriptions = descriptions
        self.template = template
        self.description_weight = description_weight
        self.temperature = temperature
        self.class_vectors = class_vectors

    def _encoder(self) -> Any:
        if self.encoder is None:
            from embedlab.encoders import SentenceTransformerEncoder

            self.encoder_ = SentenceTransformerEncoder()
        else:
            self.encoder_ = self.encoder
        return self.encoder_

    def fit(self, X: Any = None, y: Any = None) -> ZeroShotClassifier:
        """Build prototypes from descriptions, plus labelled examples when X and y are given."""
        desc: dict[str, list[str]] = {}
        if isinstance(self.descriptions, Mapping):
            for label, texts in self.descriptions.items():
                texts = [texts] if isinstance(texts, str) else list(texts)
                if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
                    raise ValidationError(
                        f"descriptions for class {label!r} must be non-empty text"
                    )
                desc[str(label)] = texts
        elif self.descriptions is not None:
            desc = {str(label): [label_to_text(label)] for label in self.descriptions}
        given: dict[str, np.ndarray] = {}
        for label, vecs in (self.class_vectors or {}).items():
            V = np.asarray(vecs, dtype=np.float32)
            V = V[None, :] if V.ndim == 1 else V
            if V.ndim != 2 or not len(V) or not np.isfinite(V).all():
                raise ValidationError(
                    f"class_vectors[{label!r}] must be a finite vector or a 2-D array of them"
                )
            given[str(label)] = V
        dims = {V.shape[1] for V in given.values()}
        if len(dims) > 1:
            raise ValidationError(f"class_vectors have different dimensions: {sorted(dims)}")
        labelled = X is not None and y is not None
        if labelled:
            Xv, y_idx = self._validate_fit(X, y)
            seen = [str(c) for c in self.classes_]
            for label in seen:
                if label not in given:
                    desc.setdefault(label, [label_to_text(label)])
        if len(set(desc) | set(given)) < 2:
            raise ValidationError(
                "zero-shot classification needs at least 2 classes: pass descriptions={label: "
                "[text, ...]} or labelled examples"
            )
        classes = np.array(sorted(set(desc) | set(given)), dtype=object)
        texts, owner = [], []
        for c, label in enumerate(classes):  # a loop over classes and their descriptions
            for t in desc.get(label, []):
                texts.append(self.template.format(t))
                owner.append(c)
        parts, owners = [], []
        if texts:
            parts.append(unit_rows(self._encoder().encode(texts)))
            owners.append(np.asarray(owner))
        else:
            self.encoder_ = self.encoder
        for c, label in enumerate(classes):
            if label in given:
                parts.append(unit_rows(given[label]))
                owners.append(np.full(len(given[label]), c))
        if len({P.shape[1] for P in parts}) > 1:
            raise ValidationError(
                "class_vectors and the encoder's vectors have different dimensions: "
                f"{sorted({P.shape[1] for P in parts})}"
            )
        V = np.vstack(parts)
        protos = unit_rows(class_means(V, np.concatenate(owners), len(classes)))
        if labelled:
            lab = unit_rows(class_means(unit_rows(Xv), y_idx, len(self.classes_)))
            pos = np.searchsorted(classes, np.asarray(self.classes_, dtype=object).astype(str))
            a = float(self.description_weight)
            protos[pos] = unit_rows(a * protos[pos] + (1 - a) * lab)
        self.classes_ = classes
        self.prototypes_ = protos
        self.prototype_class_ = np.arange(len(classes))
        self.n_features_in_ = protos.shape[1]
        return self
