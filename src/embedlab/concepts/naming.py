"""Names for a dictionary's atoms, from the texts they fire on — no language model.

For each atom: its words (class-based TF-IDF, as BERTopic does: the texts an atom fires
on, weighted by its activation, form one document; words frequent there and rare over all
atoms score high), its most typical texts (highest activation), how often it fires, and
— when the texts are labelled — its label mix and purity (the activation-weighted share of
its majority label). The name is its top words.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from embedlab.concepts.dictionary import SparseCodes

__all__ = ["Concept", "atom_label_mass", "concepts_csv", "name_concepts"]

N_WORDS = 5
N_TEXTS = 3


@dataclass
class Concept:
    """One atom of a dictionary, described by the texts it fires on."""

    id: int
    name: str
    words: list[str]
    texts: list[str]
    frequency: float
    label: str | None = None
    purity: float | None = None
    label_mix: list[tuple[str, float]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "words": self.words,
            "texts": self.texts,
            "frequency": self.frequency,
            "label": self.label,
            "purity": self.purity,
            "label_mix": [[lab, share] for lab, share in self.label_mix],
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Concept:
        return cls(
            id=int(doc["id"]),
            name=str(doc["name"]),
            words=[str(w) for w in doc["words"]],
            texts=[str(t) for t in doc["texts"]],
            frequency=float(doc["frequency"]),
            label=doc.get("label"),
            purity=None if doc.get("purity") is None else float(doc["purity"]),
            label_mix=[(str(a), float(b)) for a, b in doc.get("label_mix", [])],
        )


def _sparse_codes(codes: SparseCodes) -> Any:
    """codes as a scipy CSR matrix (n, n_atoms), non-negative activations only."""
    from scipy import sparse

    n, k = codes.index.shape
    val = np.maximum(codes.value, 0).ravel()
    rows = np.repeat(np.arange(n), k)
    return sparse.csr_matrix((val, (rows, codes.index.ravel())), shape=(n, codes.n_atoms))


def atom_label_mass(codes: SparseCodes, labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(classes, mass): ``mass[a, c]`` = the activation of atom ``a`` summed over the rows
    labelled ``classes[c]`` (non-negative activations)."""
    from scipy import sparse

    classes, y = np.unique(np.asarray(labels, dtype=object).astype(str), return_inverse=True)
    onehot = sparse.csr_matrix(
        (np.ones(len(y), np.float32), (np.arange(len(y)), y)), shape=(len(y), len(classes))
    )
    mass = np.asarray((_sparse_codes(codes).T @ onehot).todense(), dtype=np.float64)
    return classes, mass


def name_concepts(
    codes: SparseCodes,
    texts: Sequence[str],
    labels: Sequence[str] | None = None,
    *,
    ignore_labels: Sequence[str] = (),
) -> list[Concept]:
    """A :class:`Concept` per atom from the ``codes`` of ``texts`` (and their ``labels``;
    rows labelled with one of ``ignore_labels``, e.g. out of scope, count for words and texts
    but not for purity)."""
    from sklearn.feature_extraction.text import CountVectorizer

    texts = [str(t) for t in texts]
    Z = _sparse_codes(codes).tocsc()
    n_atoms = codes.n_atoms
    fired = np.diff(Z.indptr)  # rows each atom is active on
    T, vocab = None, np.asarray([], dtype=object)
    # a word counts once per text, and only when it is in a few texts (typos and one-off
    # names would otherwise outscore every shared word of an atom)
    for min_df in (3, 1):
        vec = CountVectorizer(
            stop_words="english",
            token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z']+\b",
            binary=True,
            min_df=min(min_df, max(1, len(texts))),
        )
        try:
            T = vec.fit_transform(texts)
            vocab = np.asarray(vec.get_feature_names_out(), dtype=object)
            break
        except ValueError:  # no word in enough texts (or none at all)
            continue
    words: list[list[str]] = [[] for _ in range(n_atoms)]
    if T is not None and len(vocab):
        tf = np.asarray((Z.T @ T).todense(), dtype=np.float64)  # (atoms, vocab)
        tf_norm = tf / np.maximum(tf.sum(axis=1, keepdims=True), 1e-12)
        avg = tf.sum() / max(1, int((tf.sum(axis=1) > 0).sum()))
        idf = np.log1p(avg / np.maximum(tf.sum(axis=0), 1e-12))
        score = tf_norm * idf[None, :]
        top = np.argsort(-score, axis=1, kind="stable")[:, :N_WORDS]
        for a in range(n_atoms):
            words[a] = [str(vocab[j]) for j in top[a] if score[a, j] > 0]
    mass = classes = None
    if labels is not None:
        lab = np.asarray(labels, dtype=object).astype(str)
        keep = ~np.isin(lab, [str(x) for x in ignore_labels])
        if keep.any():
            sub = SparseCodes(codes.index[keep], codes.value[keep], n_atoms)
            classes, mass = atom_label_mass(sub, lab[keep])
    out = []
    for a in range(n_atoms):
        lo, hi = Z.indptr[a], Z.indptr[a + 1]
        rows, vals = Z.indices[lo:hi], Z.data[lo:hi]
        order = rows[np.argsort(-vals, kind="stable")][:N_TEXTS]
        label = purity = None
        mix: list[tuple[str, float]] = []
        if mass is not None and mass[a].sum() > 0:
            share = mass[a] / mass[a].sum()
            best = np.argsort(-share, kind="stable")[:3]
            mix = [(str(classes[c]), round(float(share[c]), 4)) for c in best if share[c] > 0]
            label, purity = mix[0][0], mix[0][1]
        name = " · ".join(words[a][:3]) if words[a] else (label or f"concept {a}")
        out.append(
            Concept(
                id=a,
                name=name,
                words=words[a],
                texts=[texts[i] for i in order],
                frequency=round(float(fired[a] / max(1, len(texts))), 6),
                label=label,
                purity=None if purity is None else round(purity, 4),
                label_mix=mix,
            )
        )
    return out


def concepts_csv(concepts: Sequence[Concept]) -> str:
    """concepts.csv: id, name, top words, central texts, frequency, purity, label mix."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(
        ["id", "name", "top_words", "central_texts", "frequency", "label", "purity", "label_mix"]
    )
    for c in concepts:
        w.writerow(
            [
                c.id,
                c.name,
                " ".join(c.words),
                " | ".join(c.texts),
                c.frequency,
                c.label or "",
                "" if c.purity is None else c.purity,
                "; ".join(f"{lab}={share:.2f}" for lab, share in c.label_mix),
            ]
        )
    return buf.getvalue()
