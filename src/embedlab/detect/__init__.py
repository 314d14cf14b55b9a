"""Out-of-scope / novelty detectors (one contract, PyOD's): decision_function (higher = more
novel), a calibrated threshold_, predict → 1 where out of scope, else 0."""

from embedlab.detect.base import NoveltyDetector, calibrated_threshold
from embedlab.detect.cosine import MaxCosineDetector
from embedlab.detect.head import EnergyDetector, MaxProbDetector
from embedlab.detect.knn import KNNDistanceDetector
from embedlab.detect.mahalanobis import MahalanobisDetector

__all__ = [
    "EnergyDetector",
    "KNNDistanceDetector",
    "MahalanobisDetector",
    "MaxCosineDetector",
    "MaxProbDetector",
    "NoveltyDetector",
    "calibrated_threshold",
]
