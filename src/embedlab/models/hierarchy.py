"""Label hierarchies: child → parent maps of any depth, read from CSV or JSON; every level of
a prediction, and scores per level.

Labels of rows are the leaves (the finest level). Levels are counted from the top: level 1
holds the roots (labels with no parent), level 2 their children, and so on; the finest
level is the label itself. A leaf that sits higher than the deepest one keeps its own name at
the levels below it, so every row has a value at every level. Predictions at a coarse level
come from the predicted leaf mapped up its path, so the levels always agree.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embedlab.core.errors import DataFormatError, ValidationError

__all__ = ["Hierarchy", "evaluate_levels", "read_hierarchy"]


@dataclass(frozen=True)
class Hierarchy:
    """A forest of labels: ``parent[child]``. Build with :meth:`from_parents`,
    :meth:`from_children` or :func:`read_hierarchy` (they check it)."""

    parent: Mapping[str, str]

    # ------------------------------------------------------------ building
    @classmethod
    def from_parents(cls, pairs: Mapping[str, str] | Sequence[tuple[str, str]]) -> Hierarchy:
        """From child → parent pairs; a child listed twice with different parents, a child
        that is its own parent, or a cycle is a ValidationError naming the labels."""
        items = list(pairs.items()) if isinstance(pairs, Mapping) else list(pairs)
        parent: dict[str, str] = {}
        for i, pair in enumerate(items):  # a loop over hierarchy edges, parsed once
            if len(pair) != 2:
                raise ValidationError(f"hierarchy entry {i + 1} is not a (child, parent) pair")
            child, par = (str(v).strip() for v in pair)
            if not child or not par:
                raise ValidationError(f"hierarchy entry {i + 1} has an empty child or parent")
            if child == par:
                raise ValidationError(f"hierarchy: {child!r} is its own parent")
            if parent.get(child, par) != par:
                raise ValidationError(
                    f"hierarchy: {child!r} has two parents, {parent[child]!r} and {par!r}"
                )
            parent[child] = par
        h = cls(parent)
        h._check_acyclic()
        return h

    @classmethod
    def from_children(cls, tree: Mapping[str, Any]) -> Hierarchy:
        """From a nested mapping parent → children, children being a list of labels or a
        mapping of the same form (e.g. CLINC150's ``domains.json``: domain → intents)."""
        pairs: list[tuple[str, str]] = []

        def walk(node: Mapping[str, Any]) -> None:
            for par, kids in node.items():
                if isinstance(kids, Mapping):
                    pairs.extend((str(k), str(par)) for k in kids)
                    walk(kids)
                elif isinstance(kids, (list, tuple)):
                    pairs.extend((str(k), str(par)) for k in kids)
                else:
                    raise ValidationError(
                        f"hierarchy: children of {par!r} must be a list or a mapping"
                    )

        walk(tree)
        return cls.from_parents(pairs)

    def _check_acyclic(self) -> None:
        for start in self.parent:  # walk up from each label; depth is bounded by the labels
            seen = [start]
            node = start
            while node in self.parent:
                node = self.parent[node]
                if node in seen:
                    cycle = " → ".join([*seen[seen.index(node) :], node])
                    raise ValidationError(f"hierarchy has a cycle: {cycle}")
                seen.append(node)

    # ------------------------------------------------------------ queries
    @property
    def parents(self) -> set[str]:
        """Labels that have children (inner nodes)."""
        return set(self.parent.values())

    def path(self, label: str) -> list[str]:
        """From the root down to ``label`` (``[label]`` for a label outside the hierarchy)."""
        out = [label]
        while out[-1] in self.parent:
            out.append(self.parent[out[-1]])
        return out[::-1]

    @property
    def depth(self) -> int:
        """Number of levels, the finest included."""
        leaves = set(self.parent) - self.parents
        return max((len(self.path(c)) for c in leaves), default=1)

    def level_names(self) -> list[str]:
        """Column names, coarsest first: ``level1`` … ``level{depth-1}``, then ``label``."""
        return [f"level{i}" for i in range(1, self.depth)] + ["label"]

    def at_level(
        self, labels: Sequence[str], level: int, *, keep: Sequence[str] = ()
    ) -> np.ndarray:
        """Each label's ancestor at ``level`` (1 = roots; ``depth`` = the label itself); a
        label with a shorter path keeps its deepest ancestor. Labels in ``keep`` (e.g. the
        out-of-scope label) stay as they are."""
        keep = set(keep)

        def ancestor(lab: str) -> str:
            p = self.path(lab)
            return lab if lab in keep else p[min(level, len(p)) - 1]

        return _map_distinct(labels, ancestor)

    def coarser_levels(self, labels: Sequence[str], keep: Sequence[str] = ()) -> dict:
        """Level name → each label's ancestor there, for every level above the leaves."""
        return {
            name: self.at_level(labels, i, keep=keep)
            for i, name in enumerate(self.level_names()[:-1], start=1)
        }

    def check_labels(
        self, labels: Sequence[str], *, ignore: Sequence[str] = (), complete: bool = False
    ) -> None:
        """ValidationError when a data label is an inner node of the hierarchy (rows are
        labelled with leaves) or is missing from it; with ``complete`` (the labels a model
        is fitted on), also when a child of the hierarchy is no label (a misspelling)."""
        present = sorted(set(map(str, labels)) - set(ignore))
        inner = [lab for lab in present if lab in self.parents]
        if inner:
            raise ValidationError(
                f"{len(inner)} label(s) of the data are parents in the hierarchy: "
                f"{inner[:10]}; rows must carry the finest labels (a label cannot be both a "
                "class and a parent)"
            )
        missing = [lab for lab in present if lab not in self.parent]
        if missing:
            raise ValidationError(
                f"the hierarchy misses {len(missing)} label(s) of the data: {missing[:10]}"
                f"{' ...' if len(missing) > 10 else ''}; give each a parent"
            )
        strays = sorted(set(self.parent) - self.parents - set(present) - set(ignore))
        if complete and strays:
            raise ValidationError(
                f"{len(strays)} child(ren) in the hierarchy are not classes of the data: "
                f"{strays[:10]}{' ...' if len(strays) > 10 else ''}; every child must be a "
                "label of some rows (or the parent of one): remove those rows of the "
                "hierarchy, or fix their spelling"
            )

    def to_json(self) -> dict[str, str]:
        return dict(sorted(self.parent.items()))


def _map_distinct(labels: Sequence[str], fn: Any) -> np.ndarray:
    """``fn`` of each label as an object array, computed once per distinct label."""
    arr = np.asarray(labels, dtype=object)
    if not len(arr):
        return arr
    distinct, inverse = np.unique(arr, return_inverse=True)
    return np.asarray([fn(v) for v in distinct], dtype=object)[inverse]


def read_hierarchy(path: str | os.PathLike) -> Hierarchy:
    """A hierarchy file: CSV / TSV with columns ``child,parent`` (a header row), or JSON —
    either ``{"child": "parent", ...}`` or nested ``{"parent": ["child", ...]}`` /
    ``{"parent": {"child": [...]}}``."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: no such hierarchy file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            doc = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(doc, dict) or not doc:
                raise DataFormatError(f"{path}: a hierarchy JSON must be a non-empty object")
            if all(isinstance(v, str) for v in doc.values()):
                return Hierarchy.from_parents(doc)
            return Hierarchy.from_children(doc)
        if suffix in (".csv", ".tsv"):
            with open(path, encoding="utf-8", newline="") as fh:
                rows = list(csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ","))
            if not rows or not {"child", "parent"} <= set(rows[0]):
                raise DataFormatError(
                    f"{path}: a hierarchy CSV needs the columns child,parent (a header row)"
                )
            return Hierarchy.from_parents([(r["child"] or "", r["parent"] or "") for r in rows])
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"{path}: not valid JSON ({exc})") from None
    except ValidationError as exc:
        raise ValidationError(f"{path}: {exc}") from None
    raise DataFormatError(f"{path}: a hierarchy is a .csv, .tsv or .json file")


def evaluate_levels(
    y_true: Sequence[str], y_pred: Sequence[str], hierarchy: Hierarchy, *, oos_label: str = "oos"
) -> dict[str, Any]:
    """Accuracy at every level (coarsest first; the out-of-scope label stays itself at every
    level), and among rows whose leaf is wrong, how many still have the right parent
    (the leaf's immediate parent; ``wrong_leaf_right_parent``: count and share of the wrong
    leaves; a row predicted or labelled out of scope has no parent)."""
    yt = np.asarray([str(v) for v in y_true], dtype=object)
    yp = np.asarray([str(v) for v in y_pred], dtype=object)
    names = hierarchy.level_names()
    levels = {}
    for i, name in enumerate(names, start=1):
        t = hierarchy.at_level(yt, i, keep=[oos_label])
        p = hierarchy.at_level(yp, i, keep=[oos_label])
        levels[name] = float((t == p).mean()) if len(t) else None
    wrong = yt != yp
    up = hierarchy.parent
    parent_t = _map_distinct(yt, lambda v: up.get(v, v))  # the immediate parent
    parent_p = _map_distinct(yp, lambda v: up.get(v, v))
    right_parent = wrong & (parent_t == parent_p) & (yt != oos_label) & (yp != oos_label)
    return {
        "accuracy_by_level": levels,
        "wrong_leaf": int(wrong.sum()),
        "wrong_leaf_right_parent": int(right_parent.sum()),
        "wrong_leaf_right_parent_share": float(right_parent.sum() / wrong.sum())
        if wrong.any()
        else None,
    }
