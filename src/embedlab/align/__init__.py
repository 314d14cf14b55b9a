"""Changing the encoder without relabelling or re-indexing: maps between two encoders'
spaces fitted on calibration texts (:mod:`embedlab.align.maps`), the alignment that holds
one each way with its measured fidelity (:mod:`embedlab.align.alignment`), and moving
models and indexes through it (:mod:`embedlab.align.migrate`)."""

from embedlab.align.alignment import (
    Alignment,
    align,
    fit_alignment,
    map_fidelity,
    min_calibration_texts,
)
from embedlab.align.maps import METHODS, AffineMap, fit_map, random_rotation
from embedlab.align.migrate import migrate_classifier, migrate_index, migrate_model

__all__ = [
    "METHODS",
    "AffineMap",
    "Alignment",
    "align",
    "fit_alignment",
    "fit_map",
    "map_fidelity",
    "migrate_classifier",
    "migrate_index",
    "migrate_model",
    "min_calibration_texts",
    "random_rotation",
]
