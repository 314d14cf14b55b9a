"""The torch side: the tables of a :class:`~embedlab.tables.layout.TableLayout` as sparse
embedding parameters, and the network that reads [text vector, tables, numeric columns]."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from embedlab.tables.layout import TableLayout

__all__ = ["RecordNet"]


def _normal(shape: tuple[int, ...], std: float, gen: torch.Generator, mean: float = 0.0):
    return nn.Parameter(torch.randn(shape, generator=gen) * std + mean)


class RecordNet(nn.Module):
    """Logits from a record. Tables are read with sparse gradients (only the rows a batch
    touches are updated); the head is linear or one hidden layer (``hidden`` > 0)."""

    def __init__(
        self,
        layout: TableLayout,
        text_dim: int,
        num_dim: int,
        n_classes: int,
        hidden: int,
        seed: int,
        depth: int = 1,
    ) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.layout = layout
        std = 1.0 / math.sqrt(layout.dim)
        self.tables = nn.ParameterList()
        self.projections = nn.ParameterList()
        self._where: list[list[int]] = []  # per column: indices into self.tables
        self._proj: list[list[int]] = []
        for c in layout.columns:
            mine, proj = [], []
            if c.kind in ("full", "hash"):
                mine.append(self._add(_normal((c.rows, c.dim), std, gen)))
            elif c.kind == "qr":
                mine.append(self._add(_normal((c.q, c.dim), 0.1, gen, mean=1.0)))
                mine.append(self._add(_normal((c.m, c.dim), std, gen)))
            elif c.kind == "mixed":
                for i, (n, w) in enumerate(c.blocks):
                    mine.append(self._add(_normal((n + (2 if i == 0 else 0), w), std, gen)))
                    if w != c.dim:
                        self.projections.append(_normal((w, c.dim), 1 / math.sqrt(w), gen))
                        proj.append(len(self.projections) - 1)
                    else:
                        proj.append(-1)
            self._where.append(mine)
            self._proj.append(proj)
        self.shared = (
            _normal((layout.shared_rows, layout.shared_width), std, gen)
            if layout.shared_rows
            else None
        )
        width = text_dim + layout.width + num_dim
        self.input_width = width
        self.hidden = nn.ModuleList()
        for _ in range(depth if hidden > 0 else 0):
            self.hidden.append(nn.Linear(width, hidden))
            width = hidden
        self.out = nn.Linear(width, n_classes)
        # wide & deep: a linear path from the input beside the hidden layers
        self.wide = nn.Linear(self.input_width, n_classes, bias=False) if len(self.hidden) else None
        with torch.no_grad():
            if self.wide is not None:
                self.wide.weight.zero_()
            for lin in (*self.hidden, self.out):
                bound = 1 / math.sqrt(lin.in_features)
                lin.weight.copy_(torch.rand(lin.weight.shape, generator=gen) * 2 * bound - bound)
                lin.bias.zero_()

    def _add(self, p: nn.Parameter) -> int:
        self.tables.append(p)
        return len(self.tables) - 1

    def sparse_parameters(self) -> list[nn.Parameter]:
        return [*self.tables, *([self.shared] if self.shared is not None else [])]

    def dense_parameters(self) -> list[nn.Parameter]:
        sparse = {id(p) for p in self.sparse_parameters()}
        return [p for p in self.parameters() if id(p) not in sparse]

    def embed_columns(self, indices: list[list[torch.Tensor]], n: int) -> torch.Tensor:
        """(n, Σ dim): every column's embedding, in layout order."""
        outs = []
        for c, where, proj, idx in zip(
            self.layout.columns, self._where, self._proj, indices, strict=True
        ):
            if c.kind in ("full", "hash"):
                outs.append(F.embedding(idx[0], self.tables[where[0]], sparse=True))
            elif c.kind == "qr":
                q = F.embedding(idx[0], self.tables[where[0]], sparse=True)
                r = F.embedding(idx[1], self.tables[where[1]], sparse=True)
                outs.append(q * r)
            elif c.kind == "mixed":
                outs.append(self._mixed(c.dim, where, proj, idx[0], idx[1]))
            else:
                outs.append(
                    torch.cat([F.embedding(i, self.shared, sparse=True) for i in idx], dim=1)
                )
        if not outs:
            return torch.zeros((n, 0))
        return torch.cat(outs, dim=1)

    def _mixed(self, dim: int, where, proj, block: torch.Tensor, within: torch.Tensor):
        n = len(block)
        order = torch.argsort(block, stable=True)
        counts = torch.bincount(block, minlength=len(where)).tolist()
        parts, start = [], 0
        for b, cnt in enumerate(counts):
            rows = order[start : start + cnt]
            start += cnt
            e = F.embedding(within[rows], self.tables[where[b]], sparse=True)
            if proj[b] >= 0:
                e = e @ self.projections[proj[b]]
            parts.append(e)
        stacked = torch.cat(parts, dim=0) if parts else torch.zeros((0, dim))
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(n)
        return stacked[inverse]

    def forward(
        self,
        text: torch.Tensor | None,
        indices: list[list[torch.Tensor]],
        nums: torch.Tensor,
        penalty: float = 0.0,
        keep: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits; with ``penalty`` > 0 also ``penalty`` × the mean squared norm of the
        table rows read (an L2 penalty on the rows a batch touches, for training).
        ``keep`` (n, columns) 0/1, training only: each column's embedding is dropped
        where 0 (column dropout, the kept ones scaled up to keep the mean)."""
        parts = [] if text is None else [text]
        emb = self.embed_columns(indices, len(nums))
        if keep is not None and emb.shape[1]:
            widths = [c.dim for c in self.layout.columns]
            emb = emb * torch.repeat_interleave(keep, torch.tensor(widths), dim=1)
        parts.append(emb)
        parts.append(nums)
        x = torch.cat(parts, dim=1)
        h = x
        for layer in self.hidden:
            h = F.relu(layer(h))
        out = self.out(h)
        out = out if self.wide is None else out + self.wide(x)
        if penalty > 0:
            return out, penalty * emb.pow(2).sum(dim=1).mean()
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        """Every parameter as float32 numpy, by name (for safetensors)."""
        return {
            k: v.detach().cpu().numpy().astype(np.float32) for k, v in self.state_dict().items()
        }
