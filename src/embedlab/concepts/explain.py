"""Why a model said what it said, in concepts: the signed contribution of each active atom
of a row to the predicted class's margin over the runner-up, and to its novelty score.

Every row is decomposed by the dictionary as ``u = b + Σ_j z_j·D_j + r`` (``u`` the row at
unit length, ``r`` what the dictionary leaves). For heads whose scores are linear in the row
(linear, prototype with one prototype per class, Gaussian with a shared covariance) the
margin splits exactly: ``margin = bias + Σ_j contribution_j + residual`` with
``contribution_j = s·z_j·(a_c − a_c')·D_j`` (``s`` the row's length when the head does not
normalise rows, else 1). For other heads and for the novelty score, a contribution is what
removing the atom changes (``f(x) − f(x − s·z_j·D_j)``); those do not add up exactly, and
the residual then states what they leave. Never an n × k × d tensor: rows are taken a
chunk at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from embedlab.concepts.dictionary import ConceptDictionary, SparseCodes
from embedlab.core.vectors import unit_rows

__all__ = ["Explanations", "explain_rows", "linear_form"]

_CHUNK = 256


@dataclass(frozen=True)
class Explanations:
    """Concept contributions for ``n`` rows, ``k`` active atoms each (sorted by |label
    contribution|, largest first).

    ``atoms`` (n, k) int32: atom ids (−1: no atom); ``activation`` (n, k);
    ``label_contribution`` (n, k): to the margin of the predicted class over the runner-up;
    ``label_bias`` / ``label_residual`` (n,): the parts of the margin not due to an atom
    (exact when ``label_exact``); ``novelty_contribution`` (n, k): to the novelty score
    (higher = more unusual), by removal; ``novelty_residual`` (n,): the score minus the
    sum of those contributions. ``names``: atom id →
    name. ``predicted`` / ``runner_up`` (n,): the classes the margin is between."""

    atoms: np.ndarray
    activation: np.ndarray
    label_contribution: np.ndarray
    label_bias: np.ndarray
    label_residual: np.ndarray
    label_exact: bool
    novelty_contribution: np.ndarray
    novelty_residual: np.ndarray
    predicted: np.ndarray
    runner_up: np.ndarray
    margin: np.ndarray
    names: Sequence[str]

    def __len__(self) -> int:
        return len(self.atoms)

    def row(self, i: int, top: int = 3) -> dict[str, Any]:
        """Row ``i`` as JSON: its ``top`` concepts for the label and for the novelty score."""

        def items(values: np.ndarray, order: np.ndarray) -> list[dict[str, Any]]:
            out = []
            for j in order[:top]:
                a = int(self.atoms[i, j])
                if a < 0:
                    continue
                out.append(
                    {
                        "concept": a,
                        "name": self.names[a],
                        "activation": round(float(self.activation[i, j]), 5),
                        "contribution": round(float(values[i, j]), 5),
                    }
                )
            return out

        lab = np.argsort(-np.abs(self.label_contribution[i]), kind="stable")
        nov = np.argsort(-self.novelty_contribution[i], kind="stable")
        return {
            "label": {
                "class": str(self.predicted[i]),
                "versus": str(self.runner_up[i]),
                "margin": round(float(self.margin[i]), 5),
                "bias": round(float(self.label_bias[i]), 5),
                "residual": round(float(self.label_residual[i]), 5),
                "exact": self.label_exact,
                "concepts": items(self.label_contribution, lab),
            },
            "novelty": {
                "residual": round(float(self.novelty_residual[i]), 5),
                "concepts": items(self.novelty_contribution, nov),
            },
        }

    def rows(self, top: int = 3) -> list[dict[str, Any]]:
        return [self.row(i, top) for i in range(len(self))]


def linear_form(head: Any) -> tuple[np.ndarray, np.ndarray, bool] | None:
    """(A (classes, d), beta (classes,), normalise) such that the head ranks classes by
    ``A @ x' + beta`` with ``x'`` the row (at unit length when ``normalise``); None for
    heads whose scores are not linear in the row."""
    name = type(head).__name__
    if name == "LinearClassifier":
        return head.coef_, head.intercept_, bool(head.normalize)
    if name == "PrototypeClassifier" and len(head.prototypes_) == len(head.classes_):
        order = np.argsort(head.prototype_class_, kind="stable")
        A = unit_rows(head.prototypes_[order]) / float(head.temperature)
        return A.astype(np.float32), np.zeros(len(A), np.float32), True
    if name == "GaussianClassifier" and head.covariance == "shared":
        PM = (head.means_ @ head.precision_).astype(np.float32)
        mpm = np.einsum("kd,kd->k", PM, head.means_).astype(np.float32)
        return PM, -0.5 * mpm, bool(head.normalize)
    return None


def explain_rows(
    X: np.ndarray,
    *,
    dictionary: ConceptDictionary,
    names: Sequence[str],
    head: Any,
    detector: Any,
) -> Explanations:
    """Concept contributions for the feature rows ``X`` (what ``head`` and ``detector``
    see) under ``dictionary``."""
    X = np.asarray(X, dtype=np.float32)
    n, k = len(X), dictionary.k
    norms = np.linalg.norm(X, axis=1).astype(np.float32)
    codes = dictionary.codes(X)
    U = unit_rows(X)
    recon = dictionary.decode(codes)
    form = linear_form(head)
    scale = norms if (form is None or not form[2]) else np.ones(n, np.float32)
    D, b = dictionary.decoder_, dictionary.bias_

    lab_c = np.zeros((n, k), np.float32)
    lab_bias = np.zeros(n, np.float32)
    lab_res = np.zeros(n, np.float32)
    nov_c = np.zeros((n, k), np.float32)
    nov_res = np.zeros(n, np.float32)
    pred = np.zeros(n, np.int64)
    second = np.zeros(n, np.int64)
    margin = np.zeros(n, np.float32)
    P = None if form is None else (form[0] @ D.T).astype(np.float32)  # (classes, atoms)
    for s in range(0, n, _CHUNK):
        sl = slice(s, min(n, s + _CHUNK))
        idx, val = codes.index[sl], codes.value[sl]
        scores = _ranking_scores(head, X[sl])
        top2 = np.argsort(-scores, axis=1, kind="stable")[:, :2]
        c1, c2 = top2[:, 0], top2[:, 1] if scores.shape[1] > 1 else top2[:, 0]
        rows = np.arange(len(c1))
        pred[sl], second[sl] = c1, c2
        m = scores[rows, c1] - scores[rows, c2]
        margin[sl] = m
        sc = scale[sl]
        if form is not None:
            A, beta, _ = form
            diff_atoms = np.take_along_axis(P[c1] - P[c2], idx.astype(np.int64), axis=1)
            lab_c[sl] = sc[:, None] * val * diff_atoms
            dA = A[c1] - A[c2]  # (chunk, d)
            lab_bias[sl] = (beta[c1] - beta[c2]) + sc * (dA @ b)
            r = U[sl] - recon[sl]
            lab_res[sl] = sc * np.einsum("nd,nd->n", dA, r)
        else:
            lab_c[sl] = _removal(
                lambda Z, c1=c1, c2=c2: _margin_of(head, Z, c1, c2), X[sl], idx, val, sc, D
            )
            lab_bias[sl] = 0.0
            lab_res[sl] = m - lab_c[sl].sum(1)
        nov = detector.decision_function(X[sl])
        nov_c[sl] = _removal(detector.decision_function, X[sl], idx, val, sc, D)
        nov_res[sl] = nov - nov_c[sl].sum(1)
    classes = np.asarray(head.classes_)
    atoms = np.where(codes.active(), codes.index, -1).astype(np.int32)
    return Explanations(
        atoms=atoms,
        activation=codes.value,
        label_contribution=lab_c,
        label_bias=lab_bias,
        label_residual=lab_res,
        label_exact=form is not None,
        novelty_contribution=nov_c,
        novelty_residual=nov_res,
        predicted=classes[pred],
        runner_up=classes[second],
        margin=margin,
        names=list(names),
    )


def _ranking_scores(head: Any, X: np.ndarray) -> np.ndarray:
    if hasattr(head, "_ranking_scores"):
        return np.asarray(head._ranking_scores(X), dtype=np.float32)
    return np.asarray(head.class_scores(X), dtype=np.float32)


def _margin_of(head: Any, Z: np.ndarray, c1: np.ndarray, c2: np.ndarray) -> np.ndarray:
    """Margin of class c1 over c2 for rows Z, which come in groups of len(Z)/len(c1)."""
    reps = len(Z) // len(c1)
    s = _ranking_scores(head, Z)
    r = np.arange(len(Z))
    return s[r, np.repeat(c1, reps)] - s[r, np.repeat(c2, reps)]


def _removal(
    f: Any, X: np.ndarray, idx: np.ndarray, val: np.ndarray, scale: np.ndarray, D: np.ndarray
) -> np.ndarray:
    """f(x) − f(x − s·z_j·D_j) for each row's k atoms (one chunk of rows)."""
    n, k = idx.shape
    base = np.asarray(f(X), dtype=np.float32)
    # each row k times, each time without one atom's part: (chunk·k, d), a chunk at a time
    part = (scale[:, None] * val)[:, :, None] * D[idx]
    moved = (X[:, None, :] - part).reshape(n * k, -1)
    out = np.asarray(f(moved), dtype=np.float32).reshape(n, k)
    return np.where(val != 0, base[:, None] - out, 0.0).astype(np.float32)


def concept_counts(codes: SparseCodes) -> np.ndarray:
    """How many rows each atom is active on, (n_atoms,) int64."""
    return codes.counts()
