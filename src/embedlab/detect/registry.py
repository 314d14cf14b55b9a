"""Detectors by name: what ``--detector`` / ``OpenSetClassifier(detector=...)`` accept."""

from __future__ import annotations

from typing import Any

from embedlab.core.errors import ValidationError

__all__ = ["DETECTORS", "make_detector"]

DETECTORS = ("max-cosine", "knn", "mahalanobis", "relative-mahalanobis", "max-prob", "energy")


def make_detector(name: str) -> Any:
    """A fresh detector by name (one of DETECTORS)."""
    from embedlab.detect.cosine import MaxCosineDetector
    from embedlab.detect.head import EnergyDetector, MaxProbDetector
    from embedlab.detect.knn import KNNDistanceDetector
    from embedlab.detect.mahalanobis import MahalanobisDetector

    table = {
        "max-cosine": MaxCosineDetector,
        "knn": KNNDistanceDetector,
        "mahalanobis": MahalanobisDetector,
        "relative-mahalanobis": lambda: MahalanobisDetector(relative=True),
        "max-prob": MaxProbDetector,
        "energy": EnergyDetector,
    }
    if name not in table:
        raise ValidationError(
            f"unknown detector {name!r}; choose one of: auto, {', '.join(DETECTORS)}"
        )
    return table[name]()
