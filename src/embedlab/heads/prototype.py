"""PrototypeClassifier: cosine similarity to class means (one or several per class)."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from sklearn.cluster import KMeans

from embedlab.core.vectors import class_means, cosine_to, unit_rows
from embedlab.heads.base import EmbeddingClassifier
from embedlab.heads.teen import Teen, teen_shift

__all__ = ["PrototypeClassifier", "class_means"]


class PrototypeClassifier(EmbeddingClassifier):
    """Nearest class prototype by cosine similarity.

    Parameters
    ----------
    n_prototypes : int, default 1
        Prototypes per class: 1 is the class mean; more splits each class by k-means
        (capped at the class size) and scores a class by its closest prototype.
    temperature : float, default 0.05
        Softmax temperature turning cosine similarities into probabilities.
    random_state : int, default 0
        Seed for k-means when ``n_prototypes > 1``.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]])
    >>> PrototypeClassifier().fit(X, ["a", "a", "b", "b"]).predict([[0.8, 0.3]]).tolist()
    ['a']
    """

    def __init__(self, n_prototypes: int = 1, temperature: float = 0.05, random_state: int = 0):
        self.n_prototypes = n_prototypes
        self.temperature = temperature
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> PrototypeClassifier:
        X, y_idx = self._validate_fit(X, y)
        protos, owner = self._prototypes(unit_rows(X), y_idx, len(self.classes_))
        self.prototypes_ = protos
        self.prototype_class_ = owner
        self.class_counts_ = np.bincount(y_idx, minlength=len(self.classes_)).astype(np.int64)
        self.teen_classes_ = np.asarray([], dtype=object)
        return self

    def _prototypes(
        self, U: np.ndarray, y_idx: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Unit prototypes of classes 0..k-1 of ``y_idx`` and the class owning each; each
        class's prototypes depend on its own rows only."""
        if self.n_prototypes <= 1:
            return unit_rows(class_means(U, y_idx, k)), np.arange(k, dtype=np.int64)
        protos_list, owner_list = [], []
        for c in range(k):  # a loop over classes, not rows
            Uc = U[y_idx == c]
            m = min(int(self.n_prototypes), len(Uc))
            if m == 1:
                centers = Uc.mean(axis=0, keepdims=True)
            else:
                km = KMeans(n_clusters=m, n_init=3, random_state=self.random_state).fit(Uc)
                centers = km.cluster_centers_
            protos_list.append(centers)
            owner_list.append(np.full(len(centers), c))
        return unit_rows(np.vstack(protos_list)), np.concatenate(owner_list).astype(np.int64)

    def add_classes(
        self,
        X: Any,
        y: Any,
        *,
        teen: Teen | None = None,
        X_old: Any = None,
        warm_start: Any = None,
    ) -> PrototypeClassifier:
        """A copy that also knows the classes of (X, y), exactly as if fitted on the union.

        With ``teen``, each added class with at most ``teen.max_shots`` examples has its
        prototypes moved toward similar known prototypes (:mod:`embedlab.heads.teen`).
        ``X_old`` (the known classes' rows) and ``warm_start`` are not needed; they are
        accepted so that every head's ``add_classes`` takes the same arguments.
        """
        X, y_idx, change = self._plan_add(X, y)
        m = int(y_idx.max()) + 1
        protos, owner = self._prototypes(unit_rows(X), y_idx, m)
        counts = np.bincount(y_idx, minlength=m).astype(np.int64)
        shifted = np.zeros(m, dtype=bool)
        if teen is not None:
            shifted = np.asarray([teen.applies(int(c)) for c in counts])
            move = shifted[owner]
            protos[move] = unit_rows(teen_shift(protos[move], self.prototypes_, teen))
        out = copy.deepcopy(self)
        all_protos = np.vstack([self.prototypes_, protos])
        all_owner = change.position(np.concatenate([self.prototype_class_, owner + change.n_old]))
        order = np.argsort(all_owner, kind="stable")
        out.prototypes_ = all_protos[order]
        out.prototype_class_ = all_owner[order]
        out.classes_ = change.classes
        out.class_counts_ = change.take(self._counts(), counts)
        out.teen_classes_ = self._teen_after_add(change, m, shifted)
        return out

    def remove_classes(self, labels: Any, X: Any = None, y: Any = None) -> PrototypeClassifier:
        """A copy without the classes ``labels`` (their rows are not needed)."""
        keep, change = self._plan_remove(labels)
        out = copy.deepcopy(self)
        mapping = np.cumsum(keep) - 1
        rows = keep[self.prototype_class_]
        out.prototypes_ = self.prototypes_[rows]
        out.prototype_class_ = mapping[self.prototype_class_[rows]].astype(np.int64)
        out.classes_ = change.classes
        out.class_counts_ = self._counts()[keep]
        out.teen_classes_ = self._teen_after_remove(change)
        return out

    def _counts(self) -> np.ndarray:
        counts = getattr(self, "class_counts_", None)
        return np.zeros(len(self.classes_), np.int64) if counts is None else counts

    def similarities(self, X: Any) -> np.ndarray:
        """Cosine similarity of each row to its closest prototype of each class, (n, n_classes)."""
        sims = cosine_to(self._validate_predict(X), self.prototypes_)
        if len(self.prototypes_) == len(self.classes_):
            return sims
        out = np.full((len(sims), len(self.classes_)), -np.inf, dtype=np.float32)
        np.maximum.at(out.T, self.prototype_class_, sims.T)
        return out

    def class_scores(self, X: Any) -> np.ndarray:
        """Cosine similarities divided by the temperature (softmax logits)."""
        return self.similarities(X) / float(self.temperature)
