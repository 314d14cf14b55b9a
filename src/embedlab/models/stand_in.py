"""A student standing in for the encoder a model was fitted with: the model's head,
transforms and thresholds stay; only the encoder changes, and only to a student trained to
reproduce that encoder's vectors (:func:`embedlab.encoders.student.stand_in_problem`).
How well it stands in is measured on the texts at hand: the cosine between the student's
and the teacher's vectors (fidelity) and how often the model gives the same label through
both (agreement)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from embedlab.core.errors import ValidationError
from embedlab.encoders.student import encoder_manifest, stand_in_problem

__all__ = ["AGREEMENT_ROWS", "agreement", "use_encoder"]

#: Rows predict samples to measure agreement with the teacher (all rows when fewer).
AGREEMENT_ROWS = 2000


def use_encoder(pipe: Any, encoder: Any) -> Any:
    """Make ``pipe`` encode with ``encoder`` (a student of its encoder); returns the
    teacher encoder it replaced. ValidationError saying why when the student may not."""
    teacher = pipe.encoder_
    problem = stand_in_problem(teacher.spec, encoder)
    if problem:
        raise ValidationError(
            f"{getattr(encoder, 'name', encoder)} cannot stand in for this model's encoder: "
            f"{problem}"
        )
    pipe.encoder = pipe._runtime_encoder = encoder
    return teacher


def agreement(pipe: Any, teacher: Any, texts: Sequence[str], *, reject: bool = True) -> dict:
    """Fidelity (cosine of the student's to the teacher's vectors) and label agreement of
    ``pipe`` (encoding with its student) with the same model through ``teacher``."""
    student = pipe.encoder_
    xs = student.encode(texts, progress=False)
    xt = teacher.encode(texts, progress=False)
    a = xs / np.maximum(np.linalg.norm(xs, axis=1, keepdims=True), 1e-12)
    b = xt / np.maximum(np.linalg.norm(xt, axis=1, keepdims=True), 1e-12)
    cos = np.einsum("ij,ij->i", a, b)
    ds = pipe.details_from_vectors(xs, top_k=1, reject=reject)
    dt = pipe.details_from_vectors(xt, top_k=1, reject=reject)
    same = np.asarray(ds.labels, dtype=object) == np.asarray(dt.labels, dtype=object)
    manifest = encoder_manifest(student) or {}
    return {
        "student": getattr(student, "name", None),
        "kind": manifest.get("kind"),
        "rows": len(texts),
        "fidelity_mean_cosine": round(float(cos.mean()), 4),
        "fidelity_p05_cosine": round(float(np.quantile(cos, 0.05)), 4),
        "label_agreement": round(float(same.mean()), 4),
        "out_of_scope_student": int(np.sum(ds.out_of_scope)),
        "out_of_scope_teacher": int(np.sum(dt.out_of_scope)),
    }


def sample_rows(n: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most :data:`AGREEMENT_ROWS` of ``n`` rows (seeded)."""
    if n <= AGREEMENT_ROWS:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, AGREEMENT_ROWS, replace=False))
