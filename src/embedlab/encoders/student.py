"""Distilled students: the manifest a student directory carries, and whether a student
may stand in for the encoder a model was fitted with (opening one:
:func:`embedlab.encoders.loading.open_encoder`).

Manifest (``embedlab-student.json``): ``format``/``version``; ``kind`` (static / shallow);
``space`` — ``teacher`` when the student was trained to reproduce the teacher's vectors (a
model fitted on the teacher may predict through it), ``own`` otherwise; ``teacher`` (name,
fingerprint, dim); ``dim``; training-text counts; ``fidelity`` (cosine to the teacher on
held-out texts); ``texts_per_second``; the options and seed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from embedlab.core.errors import EncoderError

__all__ = [
    "MANIFEST",
    "encoder_manifest",
    "is_student",
    "read_manifest",
    "stand_in_problem",
]

MANIFEST = "embedlab-student.json"
FORMAT = "embedlab-student"
VERSION = 1


def is_student(path: str | os.PathLike) -> bool:
    """True when ``path`` is a directory with a student manifest."""
    return (Path(path) / MANIFEST).is_file()


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The manifest of student directory ``path``; a one-line error when it has none."""
    file = Path(path) / MANIFEST
    if not Path(path).is_dir():
        raise EncoderError(f"encoder directory {path} does not exist")
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EncoderError(
            f"{path} has no {MANIFEST}: it is not a student written by embedlab distill "
            "(distil one with: embedlab distill -o DIR --kind static|shallow)"
        ) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise EncoderError(f"cannot read {file}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise EncoderError(f"{file} is not an embedlab student manifest")
    if not isinstance(doc.get("format_version"), int) or doc["format_version"] > VERSION:
        raise EncoderError(
            f"{file} has format_version {doc.get('format_version')!r}; this embedlab reads up "
            f"to {VERSION} (upgrade embedlab)"
        )
    if doc.get("kind") not in ("static", "shallow"):
        raise EncoderError(f"{file}: unknown student kind {doc.get('kind')!r}")
    return doc


def encoder_manifest(encoder: Any) -> dict[str, Any] | None:
    """The student manifest of ``encoder``'s directory, or None for a non-student."""
    path = getattr(encoder, "model_path", None)
    if path is None or not is_student(path):
        return None
    return getattr(encoder, "manifest", None) or read_manifest(path)


def stand_in_problem(fitted: dict[str, Any], encoder: Any) -> str | None:
    """Why ``encoder`` may not replace the encoder of spec ``fitted`` (a model's), or None.

    It may when it is that very encoder, or a student trained to reproduce that teacher's
    vectors at full width and depth."""
    spec = encoder.spec
    if spec.get("fingerprint") == fitted.get("fingerprint"):
        from embedlab.encoders.base import spec_differences

        diff = spec_differences(fitted, spec)
        if not diff:
            return None
        return "it is the model's encoder with other settings: " + ", ".join(
            f"{k} {a} != {b}" for k, (a, b) in diff.items()
        )
    manifest = encoder_manifest(encoder)
    if manifest is None:
        return (
            f"{spec.get('name')} is another encoder (fingerprint {spec.get('fingerprint')}, "
            f"the model's is {fitted.get('fingerprint')}) and not a student of it"
        )
    teacher = manifest.get("teacher") or {}
    if teacher.get("fingerprint") != fitted.get("fingerprint"):
        return (
            f"the student's teacher ({teacher.get('name')}, {teacher.get('fingerprint')}) is "
            f"not the model's encoder ({fitted.get('name')}, {fitted.get('fingerprint')})"
        )
    if manifest.get("space") != "teacher":
        return (
            "the student has its own space (distilled without --texts, so never trained to "
            "reproduce the teacher's vectors); distil it with --texts, or fit a model on it"
        )
    if fitted.get("layer") or fitted.get("truncate_dim") or fitted.get("first_last_average"):
        return "the model was fitted on a cut-down teacher (--layer/--dim); students mimic it whole"
    if int(spec.get("dim") or 0) != int(fitted.get("dim") or -1):
        return f"dimensions differ ({spec.get('dim')} != {fitted.get('dim')})"
    return None
