"""A fitted dictionary with its named concepts: what ``embedlab concepts`` writes and what a
model carries as its optional ``concepts`` stage.

On disk (a directory of its own): ``concepts.json`` (format, the space it describes, the
dictionary's settings, every concept), ``dictionary.safetensors`` (decoder, bias, encoder,
frequencies) and ``concepts.csv`` (a table for people). Written atomically; loading never
unpickles and checks the arrays' checksum.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embedlab.concepts.dictionary import ConceptDictionary, SparseCodes
from embedlab.concepts.explain import Explanations, concept_counts, explain_rows
from embedlab.concepts.naming import Concept, concepts_csv, name_concepts
from embedlab.core.errors import StoreError, ValidationError

__all__ = ["ConceptSet", "fit_concepts"]

FORMAT = "embedlab.concepts"
VERSION = 1
DOC_FILE, ARRAYS_FILE, CSV_FILE = "concepts.json", "dictionary.safetensors", "concepts.csv"


class ConceptSet:
    """A :class:`ConceptDictionary` and a :class:`Concept` per atom. ``space``: the encoder
    spec (or model fingerprint) of the vectors it was fitted on; ``fitted_on``: what
    they were (rows, labelled or not)."""

    def __init__(
        self,
        dictionary: ConceptDictionary,
        concepts: Sequence[Concept],
        *,
        space: dict[str, Any] | None = None,
        fitted_on: dict[str, Any] | None = None,
    ) -> None:
        if len(concepts) != dictionary.n_atoms:
            raise ValidationError(f"{len(concepts)} concepts for {dictionary.n_atoms} atoms")
        self.dictionary, self.concepts = dictionary, list(concepts)
        self.space, self.fitted_on = space, dict(fitted_on or {})

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.concepts]

    @property
    def dim(self) -> int:
        return int(self.dictionary.n_features_in_)

    def __repr__(self) -> str:
        d = self.dictionary
        return f"ConceptSet({d.n_atoms} atoms, k={d.k}, {d.method}, {self.dim}-d)"

    def codes(self, X: Any) -> SparseCodes:
        return self.dictionary.codes(X)

    def counts(self, X: Any) -> np.ndarray:
        """How many rows of ``X`` each concept is active on."""
        return concept_counts(self.codes(X))

    def explain(self, X: Any, head: Any, detector: Any) -> Explanations:
        """Concept contributions for the feature rows ``X`` of a head and detector."""
        return explain_rows(
            np.asarray(X, dtype=np.float32),
            dictionary=self.dictionary,
            names=self.names,
            head=head,
            detector=detector,
        )

    def renamed(
        self, X: Any, texts: Sequence[str] | None, labels: Sequence[str] | None, **kw: Any
    ) -> ConceptSet:
        """The same dictionary, its concepts named again from ``X`` (and texts / labels):
        after a class change, where the label mix moved. Without texts, each concept keeps
        its words and typical texts and gets its new label mix."""
        codes = self.codes(X)
        if texts is not None:
            fresh = name_concepts(codes, texts, labels, **kw)
        else:
            fresh = name_concepts(codes, [""] * len(codes), labels, **kw)
            for new, old in zip(fresh, self.concepts, strict=True):
                new.words, new.texts = old.words, old.texts
                new.name = old.name if old.words else (new.label or old.name)
        return ConceptSet(
            self.dictionary,
            fresh,
            space=self.space,
            fitted_on={**self.fitted_on, "renamed_on_rows": len(codes)},
        )

    # ------------------------------------------------------------------ quality
    def summary(self, X: Any, labels: Sequence[str] | None = None) -> dict[str, Any]:
        """Reconstruction (mean cosine of each unit row to its reconstruction), dead atoms,
        and with labels the share of live atoms of label purity ≥ 0.5, on ``X``."""
        from embedlab.core.vectors import unit_rows

        X = np.asarray(X, dtype=np.float32)
        codes = self.codes(X)
        R = self.dictionary.decode(codes)
        cos = np.einsum("nd,nd->n", unit_rows(R), unit_rows(X))
        live = concept_counts(codes) > 0
        out: dict[str, Any] = {
            "rows": len(X),
            "mean_cosine": round(float(cos.mean()), 4),
            "dead_share": round(float(1 - live.mean()), 4),
            "dead_in_training": len(self.dictionary.dead_atoms()),
        }
        pur = [c.purity for c in self.concepts if c.purity is not None]
        if pur:
            out["purity_median"] = round(float(np.median(pur)), 4)
            out["purity_share_ge_0_5"] = round(float(np.mean(np.asarray(pur) >= 0.5)), 4)
        return out

    # ------------------------------------------------------------------ saving
    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(JSON-able document, arrays) — for a directory of its own or a model bundle."""
        config, arrays = self.dictionary.state()
        doc = {
            "dictionary": config,
            "space": self.space,
            "fitted_on": self.fitted_on,
            "concepts": [c.to_json() for c in self.concepts],
        }
        return doc, arrays

    @classmethod
    def from_state(cls, doc: dict[str, Any], arrays: dict[str, np.ndarray]) -> ConceptSet:
        dictionary = ConceptDictionary.from_state(doc["dictionary"], arrays)
        return cls(
            dictionary,
            [Concept.from_json(c) for c in doc["concepts"]],
            space=doc.get("space"),
            fitted_on=doc.get("fitted_on"),
        )

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the directory (concepts.json, dictionary.safetensors, concepts.csv),
        atomically; a directory that holds anything embedlab did not write is refused."""
        from safetensors.numpy import save_file

        from embedlab.store.atomic import atomic_directory
        from embedlab.store.manifest import sha256_file

        path = Path(path)
        doc, arrays = self.state()
        with atomic_directory(path, overwrite=overwrite) as tmp:
            save_file(
                {k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp / ARRAYS_FILE)
            )
            (tmp / CSV_FILE).write_text(concepts_csv(self.concepts), encoding="utf-8")
            full = {
                "format": FORMAT,
                "format_version": VERSION,
                **doc,
                "files": {f: sha256_file(tmp / f) for f in (ARRAYS_FILE, CSV_FILE)},
            }
            (tmp / DOC_FILE).write_text(json.dumps(full, indent=1), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> ConceptSet:
        """Read a saved concept set, checking its checksum (StoreError otherwise)."""
        from safetensors.numpy import load_file

        from embedlab.store.containment import refuse_links
        from embedlab.store.manifest import read_versioned_json, sha256_file

        path = Path(path)
        if not (path / DOC_FILE).is_file():
            raise StoreError(f"no concepts at {path} (make them with `embedlab concepts`)")
        doc = read_versioned_json(path / DOC_FILE, FORMAT, VERSION, "an embedlab concept set")
        refuse_links(path, "the concept set")
        f = path / ARRAYS_FILE
        try:
            if sha256_file(f) != doc["files"][ARRAYS_FILE]:
                raise StoreError(f"{f}: its checksum does not match {DOC_FILE} (damaged?)")
            return cls.from_state(doc, load_file(str(f)))
        except (KeyError, TypeError, ValueError, OSError) as exc:
            raise StoreError(f"{path}: not a concept set embedlab can read ({exc})") from None


def fit_concepts(
    X: Any,
    texts: Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
    *,
    n_atoms: int | str = "auto",
    k: int = 16,
    method: str = "topk-sae",
    random_state: int = 0,
    ignore_labels: Sequence[str] = (),
    space: dict[str, Any] | None = None,
    progress: bool | None = None,
    **options: Any,
) -> ConceptSet:
    """Learn a dictionary of ``X`` and name its atoms from ``texts`` / ``labels``."""
    d = ConceptDictionary(n_atoms, k, method=method, random_state=random_state, **options)
    codes = d.fit_codes(X, progress=progress)
    names = name_concepts(
        codes,
        texts if texts is not None else [""] * len(codes),
        labels,
        ignore_labels=ignore_labels,
    )
    return ConceptSet(
        d,
        names,
        space=space,
        fitted_on={"rows": len(codes), "labelled": labels is not None, "texts": texts is not None},
    )
