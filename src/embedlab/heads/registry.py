"""Heads by name: what ``--head`` / ``OpenSetClassifier(head=...)`` accept."""

from __future__ import annotations

from typing import Any

from embedlab.core.errors import ValidationError

__all__ = ["HEADS", "make_head"]

HEADS = ("prototype", "knn", "linear", "gaussian", "qda")


def make_head(name: str) -> Any:
    """A fresh head by name (one of HEADS)."""
    from embedlab.heads.gaussian import GaussianClassifier
    from embedlab.heads.knn import KNNClassifier
    from embedlab.heads.linear import LinearClassifier
    from embedlab.heads.prototype import PrototypeClassifier

    table = {
        "prototype": PrototypeClassifier,
        "knn": lambda: KNNClassifier(head=LinearClassifier()),
        "linear": LinearClassifier,
        "gaussian": GaussianClassifier,
        "qda": lambda: GaussianClassifier(covariance="diagonal"),
    }
    if name not in table:
        raise ValidationError(f"unknown head {name!r}; choose one of: auto, {', '.join(HEADS)}")
    return table[name]()
