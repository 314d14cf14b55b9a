"""What a model says about each input: one typed result for every label structure.

One vocabulary everywhere (Python attributes, CSV / Parquet columns, JSON fields, the
report): ``confidence`` is the head's top-1 probability (multi-label: the best label's own
score in [0, 1]), ``novelty`` how unusual an input is (higher = more unusual; above the
model's threshold it is out of scope), ``p_value`` its conformal p-value (the column
``oos_pvalue``: small = unusual; an in-scope input gets p ≤ t with probability ≤ t), and a
prediction set the labels that hold the true one with a chosen probability.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

__all__ = ["Predictions"]


@dataclass(frozen=True, eq=False)
class Predictions:
    """Predictions for ``n`` inputs, as arrays.

    ``labels`` (n,): the label of each input — one of the model's classes or its
    out-of-scope label; multi-label: the predicted labels joined by the model's separator
    (the out-of-scope label for none), each set also in ``label_sets``.
    ``confidence`` (n,) float32, ``novelty`` (n,) float32, ``out_of_scope`` (n,) bool.
    ``top_labels`` / ``top_confidences`` (n, k): the head's k best classes, best first.
    ``levels``: a hierarchy's coarser levels, level name → (n,) labels (top level first).
    ``p_value`` (n,) float64 or None: the conformal p-value of each input being in scope.
    ``prediction_sets`` (with ``sets_level``): per input the labels of its conformal
    prediction set (best first), which holds the true label with probability ≥ the level.
    ``p_score`` (n,) or None: the score ``p_value`` ranks among the model's calibration
    scores (higher = more unusual; :meth:`~embedlab.models.openset.OpenSetClassifier.p_reference`
    gives those) — what a drift monitor bets on. Not an output column.
    """

    labels: np.ndarray
    confidence: np.ndarray
    novelty: np.ndarray
    out_of_scope: np.ndarray
    top_labels: np.ndarray
    top_confidences: np.ndarray
    levels: Mapping[str, np.ndarray] = field(default_factory=dict)
    label_sets: tuple[tuple[str, ...], ...] | None = None
    p_value: np.ndarray | None = None
    prediction_sets: tuple[tuple[str, ...], ...] | None = None
    sets_level: float | None = None
    p_score: np.ndarray | None = None
    #: concept explanations (:class:`~embedlab.concepts.explain.Explanations`), when asked
    explanations: Any = None

    def __post_init__(self) -> None:
        n = len(self.labels)
        for name in ("confidence", "novelty", "out_of_scope"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Predictions.{name} has {len(getattr(self, name))} rows, not {n}")
        if self.top_labels.shape != self.top_confidences.shape or len(self.top_labels) != n:
            raise ValueError("Predictions.top_labels and top_confidences must both be (n, k)")
        for name in ("label_sets", "prediction_sets", "p_value", "p_score"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"Predictions.{name} has {len(value)} rows, not {n}")

    @classmethod
    def from_scores(
        cls,
        classes: np.ndarray,
        proba: np.ndarray,
        novelty: np.ndarray,
        out_of_scope: np.ndarray,
        top_k: int,
        *,
        oos_label: str = "",
        labels: np.ndarray | None = None,
        label_sets: tuple[tuple[str, ...], ...] | None = None,
        p_value: np.ndarray | None = None,
        p_score: np.ndarray | None = None,
    ) -> Predictions:
        """Predictions from per-class probabilities (n, C): the top-k classes ranked by
        probability (ties: the earlier class first), the top-1 probability as confidence.
        ``labels`` default: the top class, ``oos_label`` where ``out_of_scope``."""
        k = max(1, min(int(top_k), proba.shape[1]))
        order = np.argsort(-proba, axis=1, kind="stable")[:, :k]
        top_conf = np.take_along_axis(proba, order, axis=1).astype(np.float32)
        top_labels = np.asarray(classes, dtype=object)[order]
        out_of_scope = np.asarray(out_of_scope, dtype=bool)
        if labels is None:
            labels = top_labels[:, 0].copy()
            labels[out_of_scope] = str(oos_label)
        return cls(
            labels=np.asarray(labels, dtype=object),
            confidence=top_conf[:, 0].copy(),
            novelty=np.asarray(novelty, dtype=np.float32),
            out_of_scope=out_of_scope,
            top_labels=top_labels,
            top_confidences=top_conf,
            label_sets=label_sets,
            p_value=None if p_value is None else np.asarray(p_value, dtype=np.float64),
            p_score=None if p_score is None else np.asarray(p_score, dtype=np.float64),
        )

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def top_k(self) -> int:
        """How many ranked classes each input carries."""
        return int(self.top_labels.shape[1])

    @property
    def multi_label(self) -> bool:
        return self.label_sets is not None

    @property
    def n_labels(self) -> np.ndarray:
        """Multi-label: how many labels each input got (0: none, out of scope)."""
        if self.label_sets is None:
            raise AttributeError("n_labels is defined for multi-label predictions only")
        return np.fromiter(map(len, self.label_sets), dtype=np.int64, count=len(self))

    def with_levels(self, levels: Mapping[str, np.ndarray]) -> Predictions:
        """The same predictions with a hierarchy's coarser levels attached."""
        return replace(self, levels=dict(levels))

    def with_explanations(self, explanations: Any) -> Predictions:
        """The same predictions with concept explanations attached."""
        return replace(self, explanations=explanations)

    def explain(self, top: int = 3) -> list[dict[str, Any]]:
        """Per input, the ``top`` concepts behind its label (signed contributions to the
        margin over the runner-up, with the bias and residual that complete it) and behind
        its novelty score. Predictions made with ``explain=True`` only."""
        if self.explanations is None:
            from embedlab.core.errors import ValidationError

            raise ValidationError(
                "these predictions carry no explanations: predict with explain=True "
                "(the model needs concepts: embedlab concepts MODEL --in-place)"
            )
        return self.explanations.rows(top)

    def with_sets(self, sets: tuple[tuple[str, ...], ...], level: float) -> Predictions:
        """The same predictions with conformal prediction sets at coverage ``level``."""
        return replace(self, prediction_sets=tuple(sets), sets_level=float(level))

    @property
    def set_size(self) -> np.ndarray:
        """How many labels each prediction set holds."""
        if self.prediction_sets is None:
            raise AttributeError("no prediction sets: predict with sets=<coverage>")
        return np.fromiter(map(len, self.prediction_sets), dtype=np.int64, count=len(self))

    def columns(self) -> dict[str, np.ndarray]:
        """The output columns in order: ``label``, ``label_<level>`` per coarser level,
        ``n_labels`` (multi-label), ``confidence``, ``novelty``, ``out_of_scope``,
        ``oos_pvalue`` (when known), ``prediction_set`` (labels joined by ``|``) and
        ``set_size`` (with sets), then ``top{j}_label`` / ``top{j}_confidence`` for
        j = 1..k, then ``concepts`` / ``novelty_concepts`` / ``explanation`` when
        explained."""
        out: dict[str, np.ndarray] = {"label": self.labels}
        out.update({f"label_{name}": v for name, v in self.levels.items()})
        if self.label_sets is not None:
            out["n_labels"] = self.n_labels
        out.update(confidence=self.confidence, novelty=self.novelty, out_of_scope=self.out_of_scope)
        if self.p_value is not None:
            out["oos_pvalue"] = self.p_value
        if self.prediction_sets is not None:
            out["prediction_set"] = np.asarray(
                ["|".join(s) for s in self.prediction_sets], dtype=object
            )
            out["set_size"] = self.set_size
        for j in range(self.top_k):  # one pair of columns per rank
            out[f"top{j + 1}_label"] = self.top_labels[:, j]
            out[f"top{j + 1}_confidence"] = self.top_confidences[:, j]
        if self.explanations is not None:
            out.update(_explanation_columns(self.explanations.rows(3)))
        return out

    def to_table(self) -> Any:
        """The columns of :meth:`columns` as a pyarrow Table (labels as strings)."""
        import pyarrow as pa

        arrays = {
            name: pa.array(v, type=pa.string()) if v.dtype == object else pa.array(v)
            for name, v in self.columns().items()
        }
        return pa.table(arrays)

    def to_rows(self, top_k: int | None = None) -> list[dict[str, Any]]:
        """One JSON-ready dict per input: ``label``, ``confidence``, ``novelty``,
        ``out_of_scope``, ``top`` (a list of ``{"label", "confidence"}``, at most ``top_k``),
        ``levels`` (level → label) with a hierarchy, ``labels`` (the set) for multi-label,
        ``p_value`` when known, ``set`` (the prediction set) with sets and ``explanation``
        (:meth:`explain`) when explained."""
        k = self.top_k if top_k is None else max(0, min(int(top_k), self.top_k))
        labels = self.labels.astype(str).tolist()
        conf = self.confidence.astype(float).tolist()
        novelty = self.novelty.astype(float).tolist()
        oos = self.out_of_scope.astype(bool).tolist()
        top_l = self.top_labels[:, :k].astype(str).tolist()
        top_c = self.top_confidences[:, :k].astype(float).tolist()
        levels = {name: v.astype(str).tolist() for name, v in self.levels.items()}
        p = None if self.p_value is None else self.p_value.astype(float).tolist()
        explained = None if self.explanations is None else self.explanations.rows(3)
        rows = []
        for i in range(len(labels)):  # building the JSON rows of a response
            row: dict[str, Any] = {
                "label": labels[i],
                "confidence": conf[i],
                "novelty": novelty[i],
                "out_of_scope": oos[i],
                "top": [
                    {"label": lab, "confidence": c}
                    for lab, c in zip(top_l[i], top_c[i], strict=True)
                ],
            }
            if levels:
                row["levels"] = {name: v[i] for name, v in levels.items()}
            if self.label_sets is not None:
                row["labels"] = list(self.label_sets[i])
            if p is not None:
                row["p_value"] = p[i]
            if self.prediction_sets is not None:
                row["set"] = list(self.prediction_sets[i])
            if explained is not None:
                row["explanation"] = explained[i]
            rows.append(row)
        return rows


def _explanation_columns(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """``concepts`` (the top concepts behind the label, "name (+contribution)" joined by
    " | "), ``novelty_concepts`` (the same for the novelty score) and ``explanation`` (the
    whole explanation as JSON)."""
    import json

    def say(items: list[dict[str, Any]]) -> str:
        return " | ".join(f"{c['name']} ({c['contribution']:+.3g})" for c in items)

    return {
        "concepts": np.asarray([say(r["label"]["concepts"]) for r in rows], dtype=object),
        "novelty_concepts": np.asarray([say(r["novelty"]["concepts"]) for r in rows], dtype=object),
        "explanation": np.asarray([json.dumps(r) for r in rows], dtype=object),
    }
