"""Classification heads over embeddings (scikit-learn estimators)."""

from embedlab.heads.base import EmbeddingClassifier
from embedlab.heads.gaussian import GaussianClassifier
from embedlab.heads.knn import KNNClassifier
from embedlab.heads.linear import LinearClassifier
from embedlab.heads.prototype import PrototypeClassifier
from embedlab.heads.zeroshot import ZeroShotClassifier

__all__ = [
    "EmbeddingClassifier",
    "GaussianClassifier",
    "KNNClassifier",
    "LinearClassifier",
    "PrototypeClassifier",
    "ZeroShotClassifier",
]
