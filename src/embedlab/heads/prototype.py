"""PrototypeClassifier: cosine similarity to class means (one or several per class)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.cluster import KMeans

from embedlab.heads.base import EmbeddingClassifier
from embedlab.vectors import class_means, unit_rows

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
        U = unit_rows(X)
        k = len(self.classes_)
        if self.n_prototypes <= 1:
            protos, owner = class_means(U, y_idx, k), np.arange(k)
        else:
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
            protos, owner = np.vstack(protos_list), np.concatenate(owner_list)
        self.prototypes_ = unit_rows(protos)
        self.prototype_class_ = owner.astype(np.int64)
        return self

    def similarities(self, X: Any) -> np.ndarray:
        """Cosine similarity of each row to its closest prototype of each class, (n, n_classes)."""
        U = unit_rows(self._validate_predict(X))
        sims = U @ self.prototypes_.T
        if len(self.prototypes_) == len(self.classes_):
            return sims
        out = np.full((len(U), len(self.classes_)), -np.inf, dtype=np.float32)
        np.maximum.at(out.T, self.prototype_class_, sims.T)
        return out

    def class_scores(self, X: Any) -> np.ndarray:
        """Cosine similarities divided by the temperature (softmax logits)."""
        return self.similarities(X) / float(self.temperature)
