"""Which given labels look wrong: confident learning (``cleanlab``) on out-of-fold
probabilities from embedlab's own heads.

Each row's probabilities come from a head that never saw it (stratified k-fold); cleanlab
estimates the joint distribution of given and true labels from them and flags the rows
whose given label that distribution does not support, ranked by self-confidence (the
probability of the given label). Rows labelled out of scope are not label errors: they are
left out of the folds and never flagged. Each suspect carries its evidence: the probability
of the given label, the suggested label and its probability, and how many of its nearest
neighbours carry the suggested label.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from embedlab.core.errors import ValidationError
from embedlab.core.validation import check_labels, check_vectors
from embedlab.core.vectors import top_k_cosine, unit_rows

__all__ = ["FILTERS", "LabelIssues", "label_issues", "out_of_fold_proba"]

#: cleanlab's ways to decide which rows are issues (``find_label_issues(filter_by=...)``)
FILTERS = (
    "prune_by_noise_rate",
    "prune_by_class",
    "both",
    "confident_learning",
    "predicted_neq_given",
)


@dataclass
class LabelIssues:
    """Rows whose given label looks wrong, most suspicious first.

    ``rows``: their positions; ``given`` / ``suggested`` labels; ``p_given`` / ``p_suggested``
    (out-of-fold probabilities); ``neighbours_agree``: the share of the row's 10 nearest rows
    labelled ``suggested``. ``ranking``: every checked row by label quality, worst first
    (for "the next 100 to review"); ``quality``: each checked row's self-confidence (NaN for
    rows not checked); ``notes``: what was left out and why."""

    rows: np.ndarray
    given: np.ndarray
    suggested: np.ndarray
    p_given: np.ndarray
    p_suggested: np.ndarray
    neighbours_agree: np.ndarray
    ranking: np.ndarray
    quality: np.ndarray
    checked: int
    of: int
    head: str
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def to_table(self, ids: Any = None, texts: Any = None) -> pa.Table:
        """suspects.csv: rank, row (1-based), id, text (when given), given label, suggested
        label, p_given, p_suggested, neighbours_agree."""
        cols: dict[str, Any] = {
            "rank": np.arange(1, len(self) + 1),
            "row": self.rows + 1,
        }
        if ids is not None:
            cols["id"] = [str(ids[r]) for r in self.rows]
        if texts is not None:
            cols["text"] = [str(texts[r]) for r in self.rows]
        cols.update(
            given_label=[str(v) for v in self.given],
            suggested_label=[str(v) for v in self.suggested],
            p_given=np.round(self.p_given.astype(np.float64), 4),
            p_suggested=np.round(self.p_suggested.astype(np.float64), 4),
            neighbours_agree=np.round(self.neighbours_agree.astype(np.float64), 2),
        )
        return pa.table(cols)

    def summary(self) -> dict[str, Any]:
        """JSON-able: counts, the head, notes and the first 20 suspects."""
        return {
            "suspects": len(self),
            "checked": self.checked,
            "of": self.of,
            "head": self.head,
            "notes": self.notes,
            "rows": self.to_table().slice(0, 20).to_pylist(),
        }


def out_of_fold_proba(
    X: np.ndarray, y_idx: np.ndarray, n_classes: int, *, head: str, folds: int, seed: int
) -> np.ndarray:
    """(n, n_classes) probabilities, each row's from a ``head`` fitted without it
    (stratified ``folds``-fold; every class in every training part)."""
    from sklearn.model_selection import StratifiedKFold

    from embedlab.heads.registry import make_head

    P = np.zeros((len(X), n_classes), dtype=np.float32)
    split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in split.split(X, y_idx):
        h = make_head(head)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            h.fit(X[train], y_idx[train])
        P[np.ix_(test, np.asarray(h.classes_, dtype=np.int64))] = h.predict_proba(X[test])
    return P


def label_issues(
    X: Any,
    labels: Any,
    *,
    head: str = "linear",
    folds: int = 5,
    oos_label: str | None = "oos",
    filter_by: str = "prune_by_noise_rate",
    neighbours: int = 10,
    seed: int = 0,
) -> LabelIssues:
    """Rows of ``X`` whose ``labels`` look wrong (:class:`LabelIssues`).

    ``head``: the embedlab head behind the out-of-fold probabilities (``linear``,
    ``prototype``, ``gaussian``...); ``folds``: cross-fitting folds (fewer when the smallest
    class is smaller; classes with one row cannot be checked and are said so);
    ``oos_label``: rows with this label are out of scope, never label errors;
    ``filter_by``: cleanlab's rule (one of :data:`FILTERS`). Seeded."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    X = check_vectors(X, name="X")
    y = check_labels(labels, len(X))
    if filter_by not in FILTERS:
        raise ValidationError(f"filter_by must be one of {', '.join(FILTERS)}, not {filter_by!r}")
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ValidationError(f"folds must be an integer ≥ 2, not {folds!r}")
    notes = []
    keep = np.ones(len(y), dtype=bool)
    if oos_label is not None:
        keep &= y != oos_label
        if (~keep).any():
            notes.append(
                f"{int((~keep).sum())} rows labelled {oos_label!r} (out of scope) left out"
            )
    classes, counts = np.unique(y[keep], return_counts=True)
    lonely = classes[counts < 2]
    if len(lonely):
        keep &= ~np.isin(y, lonely)
        notes.append(
            f"{len(lonely)} classes with a single row cannot be checked (no row of theirs to "
            f"learn from): {', '.join(map(str, lonely[:5]))}{'…' if len(lonely) > 5 else ''}"
        )
    rows = np.flatnonzero(keep)
    classes, y_idx = np.unique(y[rows], return_inverse=True)
    if len(classes) < 2:
        raise ValidationError(
            "label issues need at least two classes with two or more rows each "
            f"(found {len(classes)})"
        )
    k_folds = int(min(folds, np.bincount(y_idx).min()))
    if k_folds < folds:
        notes.append(f"{k_folds} folds (the smallest class has {k_folds} rows)")
    U = unit_rows(X[rows])
    P = out_of_fold_proba(U, y_idx, len(classes), head=head, folds=k_folds, seed=seed)
    P = np.clip(P, 1e-7, None)
    P /= P.sum(axis=1, keepdims=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flagged = find_label_issues(
            labels=y_idx,
            pred_probs=P,
            filter_by=filter_by,
            return_indices_ranked_by="self_confidence",
        )
        quality = get_label_quality_scores(y_idx, P, method="self_confidence")
    flagged = np.asarray(flagged, dtype=np.int64)
    sugg = np.argmax(P[flagged], axis=1)
    agree = np.zeros(len(flagged), dtype=np.float32)
    if len(flagged):
        k = min(neighbours + 1, len(U))
        idx, _ = top_k_cosine(U[flagged], U, k)
        nb = np.where(idx[:, :1] == flagged[:, None], idx[:, 1:], idx[:, :-1])  # not itself
        agree = (y_idx[nb] == sugg[:, None]).mean(axis=1).astype(np.float32)
    q_all = np.full(len(y), np.nan, dtype=np.float32)
    q_all[rows] = quality
    return LabelIssues(
        rows=rows[flagged],
        given=y[rows[flagged]],
        suggested=classes[sugg],
        p_given=P[flagged, y_idx[flagged]],
        p_suggested=P[flagged, sugg],
        neighbours_agree=agree,
        ranking=rows[np.argsort(quality, kind="stable")],
        quality=q_all,
        checked=len(rows),
        of=len(y),
        head=head,
        notes=notes,
    )
