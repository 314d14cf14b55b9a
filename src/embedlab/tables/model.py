"""TableModel: a record's label from its text's frozen embedding, learned tables for its
categorical columns and its numeric columns, trained as one network under a byte budget.

Stages, in the order data flows: the encoder (optional: a purely tabular model has no
text), the columns (keys, vocabularies, numeric scaling: :mod:`embedlab.tables.columns`),
the tables (:mod:`embedlab.tables.layout`, sized before training) and the head (linear or
one hidden layer), trained together with Adam (tables with sparse gradients). Training
stops on a held-out tenth's log-loss (its best epoch is kept): the data, options and seed
decide the model, never the clock. Saved as ``tables.json`` + ``arrays.safetensors``;
loading never unpickles.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator

from embedlab.core.errors import ValidationError
from embedlab.core.progress import progress_bar
from embedlab.models.predictions import Predictions
from embedlab.tables.columns import (
    CategoricalStats,
    NumericScaler,
    TablesWarning,
    column_keys,
    column_values,
    label_strings,
    no_text,
    parse_bytes,
    row_count,
)
from embedlab.tables.layout import Lookup, lay_out
from embedlab.tables.network import RecordNet

__all__ = ["TableModel", "check_table_options"]

log = logging.getLogger("embedlab")
_CHUNK = 65536


#: option → the capability (embedlab.models.capabilities) a table model refuses with it
_OPTION_CAPABILITY = {
    "adapt": "fit --adapt",
    "unlabeled": "fit --unlabeled",
    "fdr": "p-values, --fdr",
    "sets": "--sets",
    "explain": "concepts, --explain",
    "ray": "streaming / Ray predict",
    "drift": "drift alarm",
}


def check_table_options(**given: Any) -> None:
    """ValidationError naming every option given (truthy) that a table model does not
    take, each with why (the "records" column of the structure × capability table)."""
    from embedlab.models.capabilities import TABLE

    unknown = sorted(set(given) - set(_OPTION_CAPABILITY))
    if unknown:
        raise ValueError(f"no table-model rule for {unknown}")
    refused = [
        f"--{k.replace('_', '-')}: {TABLE['records'][_OPTION_CAPABILITY[k]]}"
        for k, v in given.items()
        if v not in (None, False)
    ]
    if refused:
        raise ValidationError("a table model does not take " + "; ".join(refused))


class TableModel(BaseEstimator):
    """Records in (a text column, categorical and numeric columns), labels out.

    Parameters
    ----------
    cat_cols, num_cols : sequence of str
        Categorical columns (learned tables) and numeric columns (standardised).
    text_col : str, optional
        The text column, encoded by ``encoder`` (default: the packaged all-MiniLM-L6-v2);
        an empty or missing text reads as a zero vector with a "no text" flag.
    tables : "auto", "full", "hash", "qr", "mixed" or "unified"
        Table kind (:mod:`embedlab.tables.layout`); ``auto``: full when it fits the budget,
        else quotient–remainder.
    budget : int or str, optional
        Bytes for all tables together ("2MB"); None: full tables' size.
    dim : int, default 16
        Width of each column's embedding.
    head : "mlp" or "linear"
        One hidden layer of ``hidden`` units (learns interactions between columns), or none.
    epochs, batch_size, lr, patience : training (the best epoch on a held-out tenth is kept).
    """

    def __init__(
        self,
        cat_cols: Sequence[str] = (),
        num_cols: Sequence[str] = (),
        text_col: str | None = None,
        encoder: Any = None,
        tables: str = "auto",
        budget: int | str | None = None,
        dim: int = 16,
        head: str = "mlp",
        hidden: int = 256,
        depth: int = 1,
        epochs: int = 20,
        batch_size: int = 1024,
        lr: float = 2e-3,
        table_lr: float = 1e-2,
        patience: int = 3,
        table_l2: float = 0.0,
        column_dropout: float = 0.0,
        select_columns: bool = False,
        min_count: int = 2,
        probes: int = 2,
        seed: int = 0,
    ) -> None:
        self.cat_cols = cat_cols
        self.num_cols = num_cols
        self.text_col = text_col
        self.encoder = encoder
        self.tables = tables
        self.budget = budget
        self.dim = dim
        self.head = head
        self.hidden = hidden
        self.depth = depth
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.table_lr = table_lr
        self.patience = patience
        self.table_l2 = table_l2
        self.column_dropout = column_dropout
        self.select_columns = select_columns
        self.min_count = min_count
        self.probes = probes
        self.seed = seed
        self.info: dict[str, Any] = {}

    # ------------------------------------------------------------------ checks
    def _check_options(self) -> None:
        if self.head not in ("mlp", "linear"):
            raise ValidationError(f"head must be 'mlp' or 'linear', not {self.head!r}")
        cols = [*self.cat_cols, *self.num_cols, *([self.text_col] if self.text_col else [])]
        if not cols:
            raise ValidationError("a table model needs a text column, --cat-cols or --num-cols")
        dup = sorted({c for c in cols if cols.count(c) > 1})
        if dup:
            raise ValidationError(f"columns named twice (text / categorical / numeric): {dup}")
        for name, v, lo in (("epochs", self.epochs, 1), ("batch_size", self.batch_size, 8)):
            if int(v) < lo:
                raise ValidationError(f"{name} must be at least {lo}, not {v}")

    def _text_encoder(self) -> Any:
        if self.encoder is None:
            from embedlab.encoders import SentenceTransformerEncoder

            self.encoder = SentenceTransformerEncoder()
        return self.encoder

    def text_vectors(self, data: Any, *, progress: bool | None = None) -> np.ndarray | None:
        """The text column's vectors (zeros where a row has no text), encoded once, for
        the ``vectors=`` of fit / predict / evaluate; None for a model without text."""
        if not self.text_col:
            return None
        texts = column_values(data, self.text_col)
        return self._text_vectors({self.text_col: texts}, None, progress)[:, :-1]

    def _text_vectors(
        self, data: Any, vectors: np.ndarray | None, progress: bool | None
    ) -> np.ndarray | None:
        """(n, D + 1): the text's vector (zeros without text) and a 0/1 "no text" flag."""
        if not self.text_col:
            return None
        texts = column_values(data, self.text_col)
        empty = no_text(texts)
        if vectors is None:
            enc = self._text_encoder()
            vecs = np.zeros((len(texts), enc.dim), np.float32)
            if (~empty).any():
                vecs[~empty] = enc.encode([str(t) for t in texts[~empty]], progress=progress)
        else:
            vecs = np.asarray(vectors, np.float32)
            if vecs.ndim != 2 or len(vecs) != len(texts) or not np.isfinite(vecs).all():
                raise ValidationError(
                    f"vectors must be finite, 2-D and one per row ({len(texts)}), "
                    f"not shape {vecs.shape}"
                )
            vecs = vecs.copy()
            vecs[empty] = 0.0
        if hasattr(self, "text_dim_") and vecs.shape[1] != self.text_dim_:
            raise ValidationError(
                f"text vectors are {vecs.shape[1]}-d; this model was fitted on {self.text_dim_}-d"
            )
        return np.hstack([vecs, empty[:, None].astype(np.float32)])

    # ---------------------------------------------------------------- features
    def _column_indices(
        self, data: Any, unseen: dict[str, int] | None = None
    ) -> list[list[np.ndarray]]:
        """Each column's row indices; ``unseen`` (if given) gets, per vocabulary column, how
        many values had no row of their own (never seen, or too rare at fit)."""
        out = []
        for col, lookup in zip(self.layout_.columns, self.lookups_, strict=True):
            keys = column_keys(column_values(data, col.name), col.name)
            if unseen is not None and col.vocabulary:
                unseen[col.name] = int((~lookup.known(keys)).sum())
            out.append(lookup.indices(keys, self.layout_.shared_rows))
        return out

    # --------------------------------------------------------------------- fit
    def fit(
        self,
        data: Any,
        y: Sequence[Any],
        *,
        vectors: np.ndarray | None = None,
        progress: bool | None = None,
    ) -> TableModel:
        """Fit on ``data`` (a pyarrow / pandas table or a mapping of columns) and labels
        ``y`` (two or more classes). ``vectors``: the text column's vectors when already
        encoded (else the encoder encodes it). With ``select_columns``, columns whose
        removal lowers the held-out log-loss are left out (``info["column_selection"]``)."""
        self._check_options()
        if not self.select_columns:
            return self._fit(data, y, vectors, progress)
        return self._fit_selecting(data, y, vectors, progress)

    def _fit_selecting(self, data: Any, y: Any, vectors: Any, progress: Any) -> TableModel:
        """Fit with every column, then without each categorical / numeric column in turn
        (same seed, same held-out tenth); refit without those whose absence lowered the
        held-out log-loss, and keep that model if it is better still."""
        if vectors is None:
            vectors = self.text_vectors(data, progress=progress)
        base = self.get_params()
        base.update(select_columns=False, encoder=self.encoder)
        make = lambda **kw: type(self)(**{**base, **kw})  # noqa: E731
        full = make()._fit(data, y, vectors, progress)
        ref = full.info["validation_log_loss"]
        without: dict[str, float] = {}
        for col in [*self.cat_cols, *self.num_cols]:
            m = make(cat_cols=[c for c in self.cat_cols if c != col],
                     num_cols=[c for c in self.num_cols if c != col])  # fmt: skip
            if not (m.cat_cols or m.num_cols or m.text_col):
                continue
            without[col] = m._fit(data, y, vectors, False).info["validation_log_loss"] - ref
        drop = [c for c, delta in without.items() if delta < 0]
        best = full
        if drop:
            m = make(cat_cols=[c for c in self.cat_cols if c not in drop],
                     num_cols=[c for c in self.num_cols if c not in drop])  # fmt: skip
            if m.cat_cols or m.num_cols or m.text_col:
                m._fit(data, y, vectors, False)
                if m.info["validation_log_loss"] < ref:
                    best = m
        kept = {k: v for k, v in best.__dict__.items() if k.endswith("_") or k == "info"}
        self.__dict__.update(kept)
        self.info["column_selection"] = {
            "held_out_log_loss_change_without": {k: round(v, 6) for k, v in without.items()},
            "left_out": [c for c in drop if best is not full],
            "all_columns_log_loss": ref,
        }
        return self

    @property
    def numeric_columns_(self) -> list[str]:
        """The numeric columns the fitted model reads (after any selection)."""
        return [] if self.scaler_ is None else list(self.scaler_.columns)

    @property
    def input_columns_(self) -> list[str]:
        """Every column the fitted model reads: the text, then categorical, then numeric."""
        cats = [c.name for c in self.layout_.columns]
        return ([self.text_col] if self.text_col else []) + cats + self.numeric_columns_

    def _fit(self, data: Any, y: Any, vectors: Any, progress: Any) -> TableModel:
        n = row_count(data)
        y = label_strings(y)
        if len(y) != n:
            raise ValidationError(f"{len(y)} labels for {n} rows")
        if n < 10:
            raise ValidationError(f"a table model needs at least 10 rows, got {n}")
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValidationError(f"the target has one class only ({self.classes_[0]!r})")
        target = np.searchsorted(self.classes_, y)
        budget = None if self.budget in (None, "", 0) else parse_bytes(self.budget)
        stats, kept_cols, keys = [], [], []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", TablesWarning)
            for c in self.cat_cols:
                s, k = CategoricalStats.of(column_values(data, c), c)
                if s.distinct + (s.missing > 0) < 2:
                    warnings.warn(
                        f"categorical column {c!r} has one value only "
                        f"({(s.top_values or ('missing',))[0]!r}) in the training data: left "
                        "out (it cannot tell rows apart)",
                        TablesWarning,
                        stacklevel=2,
                    )
                    continue
                stats.append(s)
                kept_cols.append(c)
                keys.append(k)
        notes = [str(w.message) for w in caught]
        for w in caught:
            warnings.warn(w.message, TablesWarning, stacklevel=2)
        self.layout_ = lay_out(
            stats,
            kind=self.tables,
            budget=budget,
            dim=int(self.dim),
            probes=int(self.probes),
            min_count=int(self.min_count),
            seed=int(self.seed),
        )
        self.lookups_ = [
            Lookup.fitted(c, s) for c, s in zip(self.layout_.columns, stats, strict=True)
        ]
        indices = [
            lk.indices(k, self.layout_.shared_rows)
            for lk, k in zip(self.lookups_, keys, strict=True)
        ]
        del keys
        self.scaler_ = NumericScaler(self.num_cols).fit(data) if self.num_cols else None
        nums = (
            self.scaler_.transform(data)[0]
            if self.scaler_ is not None
            else np.zeros((n, 0), np.float32)
        )
        text = self._text_vectors(data, vectors, progress)
        self.text_dim_ = 0 if text is None else text.shape[1] - 1
        self.net_ = RecordNet(
            self.layout_,
            text_dim=0 if text is None else text.shape[1],
            num_dim=nums.shape[1],
            n_classes=len(self.classes_),
            hidden=int(self.hidden) if self.head == "mlp" else 0,
            seed=int(self.seed),
            depth=int(self.depth),
        )
        history = self._train(text, indices, nums, target, progress)
        self.info = {
            "rows": n,
            "classes": len(self.classes_),
            "layout": self.layout_.describe(),
            "table_bytes": self.layout_.bytes,
            "full_table_bytes": self.layout_.full_bytes,
            "budget": budget,
            "kind": self.layout_.kind,
            "notes": notes,
            **history,
        }
        return self

    def _batches(self, text, indices, nums, rows: np.ndarray):
        t = None if text is None else torch.from_numpy(text[rows])
        idx = [[torch.from_numpy(a[rows]) for a in col] for col in indices]
        return t, idx, torch.from_numpy(nums[rows])

    def _train(self, text, indices, nums, target, progress) -> dict[str, Any]:
        n = len(target)
        rng = np.random.default_rng(int(self.seed))
        order = rng.permutation(n)
        n_val = max(round(0.1 * n), 1)
        val, train = np.sort(order[:n_val]), order[n_val:]
        y = torch.from_numpy(target.astype(np.int64))
        net = self.net_
        dense = torch.optim.AdamW(net.dense_parameters(), lr=float(self.lr), weight_decay=1e-4)
        sparse_params = net.sparse_parameters()
        sparse = (
            torch.optim.SparseAdam(sparse_params, lr=float(self.table_lr))
            if sparse_params
            else None
        )
        # small data: smaller batches, so that an epoch still takes about 64 steps
        bs = int(min(max(len(train) // 64, 32), int(self.batch_size)))
        gen = torch.Generator().manual_seed(int(self.seed) + 1)  # column dropout's draws
        n_cols = len(self.layout_.columns)
        steps = (len(train) + bs - 1) // bs
        best, best_state, best_epoch, bad, losses = np.inf, None, 0, 0, []
        with progress_bar(
            steps * int(self.epochs), "training tables", enabled=bool(progress)
        ) as adv:
            for epoch in range(int(self.epochs)):
                net.train()
                perm = train[rng.permutation(len(train))]
                for s in range(steps):
                    rows = perm[s * bs : (s + 1) * bs]
                    t, idx, x = self._batches(text, indices, nums, rows)
                    keep = None
                    if float(self.column_dropout) > 0 and n_cols:
                        p = float(self.column_dropout)
                        keep = (torch.rand((len(rows), n_cols), generator=gen) >= p).float() / (
                            1 - p
                        )
                    if float(self.table_l2) > 0:
                        logits, penalty = net(t, idx, x, penalty=float(self.table_l2), keep=keep)
                        loss = F.cross_entropy(logits, y[rows]) + penalty
                    else:
                        loss = F.cross_entropy(net(t, idx, x, keep=keep), y[rows])
                    dense.zero_grad(set_to_none=True)
                    if sparse is not None:
                        sparse.zero_grad(set_to_none=True)
                    loss.backward()
                    dense.step()
                    if sparse is not None:
                        sparse.step()
                    adv(1)
                v = self._loss(text, indices, nums, y, val)
                losses.append(round(v, 6))
                if v < best - 1e-5:
                    best, best_epoch, bad = v, epoch + 1, 0
                    best_state = copy.deepcopy(net.state_dict())
                else:
                    bad += 1
                    if bad >= int(self.patience):
                        adv(steps * (int(self.epochs) - epoch - 1))
                        break
        if best_state is not None:
            net.load_state_dict(best_state)
        net.eval()
        return {
            "epochs_run": len(losses),
            "best_epoch": best_epoch,
            "validation_log_loss": float(best),
            "validation_curve": losses,
        }

    @torch.no_grad()
    def _loss(self, text, indices, nums, y, rows) -> float:
        self.net_.eval()
        total = 0.0
        for s in range(0, len(rows), _CHUNK):
            r = rows[s : s + _CHUNK]
            t, idx, x = self._batches(text, indices, nums, r)
            total += float(F.cross_entropy(self.net_(t, idx, x), y[r], reduction="sum"))
        return total / max(len(rows), 1)

    # ----------------------------------------------------------------- predict
    def _check_fitted(self) -> None:
        if not hasattr(self, "net_"):
            raise ValidationError("this table model is not fitted yet: call fit() or load()")

    @torch.no_grad()
    def predict_proba(
        self,
        data: Any,
        *,
        vectors: np.ndarray | None = None,
        progress: bool | None = None,
        counts: dict[str, Any] | None = None,
    ) -> np.ndarray:
        """(n, classes) float32 probabilities, in ``classes_`` order. Values the fit never
        saw read the shared row; ``counts`` (a dict, if given) receives ``unseen`` (column →
        values without a row of their own) and ``numeric_filled`` (missing numbers read as
        the mean). Thread-safe: nothing of the model changes."""
        self._check_fitted()
        n = row_count(data)
        text = self._text_vectors(data, vectors, progress)
        unseen: dict[str, int] = {}
        indices = self._column_indices(data, unseen)
        if self.scaler_ is not None:
            nums, filled = self.scaler_.transform(data)
        else:
            nums, filled = np.zeros((n, 0), np.float32), 0
        if counts is not None:
            counts.update(unseen=unseen, numeric_filled=int(filled))
        out = np.empty((n, len(self.classes_)), np.float32)
        for s in range(0, n, _CHUNK):  # the net is in eval mode since fit / load
            rows = np.arange(s, min(s + _CHUNK, n))
            t, idx, x = self._batches(text, indices, nums, rows)
            out[rows] = torch.softmax(self.net_(t, idx, x), dim=1).numpy()
        return out

    def predict(self, data: Any, *, vectors: np.ndarray | None = None) -> np.ndarray:
        p = self.predict_proba(data, vectors=vectors)
        return self.classes_[p.argmax(axis=1)]

    def predict_details(
        self, data: Any, *, top_k: int = 3, vectors: np.ndarray | None = None,
        progress: bool | None = None, counts: dict[str, Any] | None = None,
    ) -> Predictions:  # fmt: skip
        """:class:`~embedlab.models.predictions.Predictions`: label, confidence and the best
        ``top_k`` classes. A table model has no out-of-scope detector: ``novelty`` is NaN
        and nothing is rejected. ``counts``: as :meth:`predict_proba`."""
        p = self.predict_proba(data, vectors=vectors, progress=progress, counts=counts)
        k = max(1, min(int(top_k), len(self.classes_)))
        top = np.argsort(-p, axis=1, kind="stable")[:, :k]
        n = len(p)
        return Predictions(
            labels=self.classes_[top[:, 0]],
            confidence=p[np.arange(n), top[:, 0]].astype(np.float32),
            novelty=np.full(n, np.nan, np.float32),
            out_of_scope=np.zeros(n, dtype=bool),
            top_labels=self.classes_[top],
            top_confidences=np.take_along_axis(p, top, axis=1).astype(np.float32),
        )

    def evaluate(
        self, data: Any, y: Sequence[Any], *, vectors: np.ndarray | None = None
    ) -> dict[str, Any]:
        """accuracy, log-loss, macro-F1 and (two classes) ROC AUC of the second class."""
        from sklearn.metrics import f1_score, log_loss, roc_auc_score

        counts: dict[str, Any] = {}
        p = self.predict_proba(data, vectors=vectors, counts=counts)
        y = label_strings(y)
        if len(y) != len(p):
            raise ValidationError(f"{len(y)} labels for {len(p)} rows")
        unknown = sorted(set(y) - set(self.classes_))
        if unknown:
            raise ValidationError(f"labels the model does not know: {unknown[:5]}")
        pred = self.classes_[p.argmax(axis=1)]
        idx = np.searchsorted(self.classes_, y)
        out: dict[str, Any] = {
            "rows": len(y),
            "accuracy": float((pred == y).mean()),
            "macro_f1": float(f1_score(y, pred, average="macro")),
            "log_loss": float(log_loss(idx, np.clip(p, 1e-7, 1), labels=range(len(self.classes_)))),
            "unseen_values": counts["unseen"],
            "numeric_values_filled": counts["numeric_filled"],
        }
        if len(self.classes_) == 2 and len(set(idx)) == 2:
            out["auc"] = float(roc_auc_score(idx, p[:, 1]))
            out["positive_class"] = str(self.classes_[1])
        return out

    # ------------------------------------------------------------------ bundle
    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the model as ``tables.json`` + ``arrays.safetensors``, atomically (see
        :mod:`embedlab.tables.model_store`); an existing directory only with ``overwrite``."""
        from embedlab.tables.model_store import save_table_model

        self._check_fitted()
        return save_table_model(self, Path(path), overwrite=overwrite)

    @classmethod
    def load(
        cls, path: str | Path, *, cache: bool = True, backend: str | None = None
    ) -> TableModel:
        """Read a saved table model; StoreError for anything missing, edited or damaged."""
        from embedlab.tables.model_store import load_table_model

        return load_table_model(cls, Path(path), cache=cache, backend=backend)
