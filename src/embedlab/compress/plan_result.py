"""What the budget planner measured: one row per (layer, dim, storage) configuration, and
the plan (rows, Pareto front, the recommendation, CSV / JSON / plot files)."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["PQ_SUBVECTOR_DIMS", "RESCORE", "Plan", "PlanRow"]

RESCORE = 10  # binary retrieval shortlist = RESCORE · k
PQ_SUBVECTOR_DIMS = 8  # pq: one byte per 8 dimensions


@dataclass
class PlanRow:
    """One measured configuration."""

    layer: int
    dim: int
    storage: str
    bytes_per_vector: float
    quality: float
    metrics: dict[str, float]
    encode_ms: float  # per text, at this layer
    query_ms: float  # per query: search (retrieve), head + detector (classify), cosine (sts)
    transform: str  # spec for `embedlab fit --transform`
    index: str | None  # spec for `embedlab index --spec` (retrieve)
    pareto: bool = False
    feasible: bool = True
    student: str = ""  # a distilled student's directory (empty: the planner's encoder)
    encoder_mb: float | None = None  # the encoder's size on disk

    @property
    def total_ms(self) -> float:
        return self.encode_ms + self.query_ms

    @property
    def name(self) -> str:
        if self.student:
            return f"student {Path(self.student).name}, dim {self.dim}, {self.storage}"
        return f"layer {self.layer}, dim {self.dim}, {self.storage}"


@dataclass
class Plan:
    """The measured grid, its Pareto front and the recommendation."""

    task: str
    metric: str
    rows: list[PlanRow]
    tolerance: float
    max_bytes: float | None
    max_ms: float | None
    data: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def best(self) -> PlanRow | None:
        """Highest quality among the configurations that meet the limits."""
        ok = [r for r in self.rows if r.feasible]
        return max(ok, key=lambda r: (r.quality, -r.bytes_per_vector, -r.total_ms), default=None)

    @property
    def recommended(self) -> PlanRow | None:
        """Fewest bytes (then fastest) among feasible rows within ``tolerance`` of the best."""
        best = self.best
        if best is None:
            return None
        floor = best.quality - self.tolerance * abs(best.quality)
        ok = [r for r in self.rows if r.feasible and r.quality >= floor]
        return min(ok, key=lambda r: (r.bytes_per_vector, r.total_ms, -r.quality))

    def next_command(self) -> str | None:
        """The command that uses the recommended choice on the user's data (None without a
        recommendation)."""
        rec = self.recommended
        if rec is None:
            return None
        if rec.student:
            return self._student_command(rec)
        if self.task == "retrieve":
            return (
                f"embedlab encode DATA -o space/ --layer {rec.layer} --dim {rec.dim} && "
                f"embedlab index space/ -o index/ --spec {rec.index}"
            )
        if self.task == "classify":
            return f"embedlab fit DATA -o model/ --transform {rec.transform}"
        encode = f"embedlab encode DATA -o space/ --layer {rec.layer} --dim {rec.dim}"
        if rec.storage == "float32":
            return encode
        spec = {"int8": "sq8", "binary": f"binary,rescore{RESCORE}"}.get(
            rec.storage, f"pq{rec.dim // PQ_SUBVECTOR_DIMS}"
        )  # the stored form the plan measured, kept by an index of the vectors
        return f"{encode} && embedlab index space/ -o index/ --spec {spec}"

    def _student_command(self, rec: PlanRow) -> str:
        """The next command for a recommended student row."""
        enc = f"--encoder {rec.student}"
        if self.task == "classify":
            return f"embedlab fit DATA -o model/ {enc} --transform {rec.transform}"
        encode = f"embedlab encode DATA -o space/ {enc}"
        if self.task == "retrieve":
            return f"{encode} && embedlab index space/ -o index/ --spec {rec.index}"
        return encode

    @property
    def reference(self) -> PlanRow:
        """Full model, all dimensions, float32: what every ratio is relative to."""
        own = [r for r in self.rows if not r.student]
        top_layer = max(r.layer for r in own)
        full = [r for r in own if r.layer == top_layer and r.storage == "float32"]
        return max(full, key=lambda r: r.dim)

    def table(self) -> list[dict[str, Any]]:
        """One flat dict per row (what the CSV holds), best quality first."""
        ref = self.reference
        out = []
        for r in sorted(self.rows, key=lambda r: (-r.quality, r.bytes_per_vector)):
            out.append(
                {
                    "encoder": r.student or "(planner's)",
                    "layer": r.layer,
                    "dim": r.dim,
                    "storage": r.storage,
                    "bytes_per_vector": r.bytes_per_vector,
                    "compression": ref.bytes_per_vector / r.bytes_per_vector,
                    self.metric: r.quality,
                    "quality_kept": r.quality / ref.quality if ref.quality else math.nan,
                    **{k: v for k, v in r.metrics.items() if k != self.metric},
                    "encode_ms": r.encode_ms,
                    "query_ms": r.query_ms,
                    "encoder_mb": r.encoder_mb,
                    "pareto": r.pareto,
                    "feasible": r.feasible,
                    "transform": r.transform,
                    "index": r.index or "",
                }
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        pick = lambda r: None if r is None else {**asdict(r), "name": r.name}  # noqa: E731
        return {
            "task": self.task,
            "metric": self.metric,
            "tolerance": self.tolerance,
            "max_bytes": self.max_bytes,
            "max_ms": self.max_ms,
            "data": self.data,
            "seconds": round(self.seconds, 2),
            "recommended": pick(self.recommended),
            "best": pick(self.best),
            "reference": pick(self.reference),
            "rows": self.table(),
        }

    def save(self, directory: str | os.PathLike, *, plot: bool = True) -> dict[str, Path]:
        """Write ``plan.csv``, ``plan.json`` and (``plot``) ``plan.png`` into ``directory``."""
        import pyarrow as pa

        from embedlab.data.readers import write_table
        from embedlab.store.atomic import atomic_write_bytes

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"csv": out / "plan.csv", "json": out / "plan.json"}
        write_table(pa.Table.from_pylist(self.table()), paths["csv"])
        atomic_write_bytes(
            paths["json"], json.dumps(self.to_dict(), indent=1, default=float).encode()
        )
        if plot:
            paths["plot"] = out / "plan.png"
            from embedlab.compress.plan_plot import plot_plan

            plot_plan(self, paths["plot"])
        return paths


# --------------------------------------------------------------------------- planning
