"""Encode and predict on Ray (``--ray``): the same jobs as :func:`embedlab.encoding.
encode_file_sharded` and :func:`embedlab.prediction.predict_file`, with the heavy step run
as a Ray Data pipeline — work items → ``map_batches`` over a pool of actors that each load
the encoder (or the model) once → each item written as its shard or piece.

The workers live beside their jobs (:class:`embedlab.encoding.EncodeWorker`,
:class:`embedlab.prediction.PredictWorker`); this module only runs items on Ray. The driver
reads the input chunk by chunk (memory bounded by a chunk) and writes each chunk
to the job's work folder as an input piece; the actors read their piece, compute, and write
their shard into the same work folder in one step (a retried item rewrites the same shard,
so a worker killed midway loses nothing and duplicates nothing: Ray restarts the actor and
retries the item). The driver then publishes the output exactly as the single-machine job
does, so both give the same result, and a job started on one can resume on the other.

Without an address Ray runs as a local runtime on 127.0.0.1, started and stopped here; with
one (``ray://host:10001`` or ``host:6379``), an existing cluster — whose workers must see
the work folder (shared storage) and have embedlab installed. Needs the ``ray`` extra.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from embedlab.atomic import atomic_write_bytes
from embedlab.errors import EmbedlabError

__all__ = ["RayOptions", "item_of", "ray_session", "run_items", "write_input_piece"]

#: Actor restarts and item retries after a worker dies.
RETRIES = 3


@dataclass
class RayOptions:
    """Where and how wide: ``address`` (None: a local runtime on 127.0.0.1), ``actors``
    (encoder / model actors, one CPU each)."""

    address: str | None = None
    actors: int = 2


@contextlib.contextmanager
def ray_session(options: RayOptions) -> Iterator[Any]:
    """Ray, connected: the running session if there is one, else a local runtime on
    loopback (or the cluster at ``options.address``), shut down on exit if started here."""
    try:
        import ray
    except ImportError as exc:
        raise EmbedlabError(
            f"--ray needs the 'ray' extra ({exc.name} is missing): pip install 'embedlab[ray]'"
        ) from None
    if ray.is_initialized():
        yield ray
        return
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
    if options.address:
        ray.init(address=options.address, **quiet)
    else:
        ray.init(
            num_cpus=max(options.actors, 1),
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            **quiet,
        )
    try:
        yield ray
    finally:
        ray.shutdown()


def run_items(
    items: Sequence[dict[str, Any]],
    worker: type,
    kwargs: dict[str, Any],
    options: RayOptions,
) -> list[dict[str, Any]]:
    """Run ``worker`` (a callable class: constructed once per actor with ``kwargs``, called
    with a batch of one item) over ``items`` as a Ray Data pipeline; its results."""
    if not items:
        return []
    quiet = logging.getLogger("ray.data")  # its executor's INFO summary; restored below
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        return _run(items, worker, kwargs, options)
    finally:
        quiet.setLevel(level)


def _run(
    items: Sequence[dict[str, Any]], worker: type, kwargs: dict[str, Any], options: RayOptions
) -> list[dict[str, Any]]:
    with ray_session(options) as ray:
        import ray.data

        ds = ray.data.from_items(list(items), override_num_blocks=len(items))
        out = ds.map_batches(
            worker,
            fn_constructor_kwargs=kwargs,
            batch_size=1,
            concurrency=max(1, options.actors),
            num_cpus=1,
            max_restarts=RETRIES,
            max_task_retries=RETRIES,
        )
        return out.take_all()


def item_of(batch: dict[str, np.ndarray]) -> dict[str, Any]:
    """The one work item of a batch of one (``batch_size=1``), as plain Python values."""
    return {k: (v[0].item() if hasattr(v[0], "item") else v[0]) for k, v in batch.items()}


def write_input_piece(folder: Path, i: int, table: pa.Table) -> Path:
    """An input chunk for the workers, written in one step under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{i:05d}.parquet"
    if not path.exists():
        buf = io.BytesIO()  # the chunk is in memory already
        pq.write_table(table, buf, compression="none")
        atomic_write_bytes(path, buf.getvalue())
    return path
