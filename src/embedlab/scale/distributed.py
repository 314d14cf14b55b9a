"""Encode and predict on Ray (``--ray``): the same jobs as :func:`embedlab.scale.encoding.
encode_file_sharded` and :func:`embedlab.scale.predict_stream.predict_file`, with the heavy step run
as a Ray Data pipeline — work items → ``map_batches`` over a pool of actors that each load
the encoder (or the model) once → each item written as its shard or piece.

The workers live beside their jobs (:class:`embedlab.scale.encoding.EncodeWorker`,
:class:`embedlab.scale.predict_stream.PredictWorker`); this module only runs items on Ray.
The driver reads the input chunk by chunk (memory bounded by a chunk) and writes each chunk
to the job's work folder as an input piece; the actors read their piece, compute, and write
their shard into the same work folder in one step (a retried item rewrites the same shard,
so a worker killed midway loses nothing and duplicates nothing: Ray restarts the actor and
retries the item). The driver then publishes the output exactly as the single-machine job
does, so both give the same result, and a job started on one can resume on the other.

Without an address Ray runs as a local runtime on 127.0.0.1, started and stopped here; with
one (``host:6379``, ``ray://host:10001`` or ``auto``), an existing cluster — whose workers
must see the work folder (shared storage at the same path) and have embedlab installed. A
cluster started with token authentication (Ray's default for ``ray start`` since 2.59)
wants ``RAY_AUTH_MODE=token`` and its token in this process's environment, as Ray's own
tools do. Needs the ``ray`` extra.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from embedlab.core.errors import EmbedlabError
from embedlab.store.atomic import atomic_write_bytes

__all__ = ["RayOptions", "check", "item_of", "ray_session", "run_items", "write_input_piece"]

#: Actor restarts and item retries after a worker dies.
RETRIES = 3
#: Ray's switch for token authentication (an environment variable, by Ray's design).
AUTH_MODE = "RAY_AUTH_MODE"


@dataclass
class RayOptions:
    """Where and how wide: ``address`` (None: a local runtime on 127.0.0.1; ``HOST:PORT``: a
    cluster's head; ``ray://HOST:PORT``: its Ray Client server; ``auto``: the cluster
    running on this machine), ``actors`` (encoder / model actors, one CPU each)."""

    address: str | None = None
    actors: int = 2

    def __post_init__(self) -> None:
        if self.actors < 1:
            raise EmbedlabError(f"Ray actors must be at least 1, got {self.actors}")
        if self.address is not None and self.address != "auto":
            _host_port(self.address)


def _host_port(address: str) -> tuple[str, int]:
    """The host and port of a cluster address, or a clear error."""
    rest = address.removeprefix("ray://")
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in rest:
        raise EmbedlabError(
            f"Ray address {address!r} is not one: give HOST:PORT (a cluster's head, e.g. "
            "10.0.0.5:6379), ray://HOST:PORT (its Ray Client server, e.g. port 10001) or auto"
        )
    return host.strip("[]"), int(port)


@contextlib.contextmanager
def ray_session(options: RayOptions) -> Iterator[Any]:
    """Ray, connected: the running session if there is one, else a local runtime on
    loopback (or the cluster at ``options.address``), shut down on exit if started here."""
    ray = _import_ray()
    if ray.is_initialized():
        yield ray
        return
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
    # Ray switches token authentication on for the runtimes it starts by setting this
    # process's RAY_AUTH_MODE; it is put back as it was when the session ends.
    auth_mode = os.environ.get(AUTH_MODE)
    try:
        if options.address:
            _join(ray, options.address, quiet)
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
    finally:
        if auth_mode is None:
            os.environ.pop(AUTH_MODE, None)
        else:
            os.environ[AUTH_MODE] = auth_mode


def check(options: RayOptions) -> None:
    """Fail fast, before any input is read: the ``ray`` extra is installed, and the cluster
    at ``options.address`` (if any) answers and lets this process in."""
    _import_ray()
    if options.address and options.address != "auto":
        _reach(options.address)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise EmbedlabError(
            f"--ray needs the 'ray' extra ({exc.name} is missing): pip install 'embedlab[ray]'"
        ) from None
    return ray


def _reach(address: str) -> None:
    """The usual failures to join a cluster, said plainly and at once (Ray itself retries
    for minutes): nothing listening at ``address``, or a head that wants a token."""
    host, port = _host_port(address)
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as exc:
        raise EmbedlabError(
            f"no Ray cluster answers at {address} ({exc.strerror or exc}): start one "
            "(ray start --head) or leave out --ray-address for a local runtime"
        ) from None
    if not address.startswith("ray://"):
        _check_token(address)


def _join(ray: Any, address: str, quiet: dict[str, Any]) -> None:
    """Connect to the cluster at ``address``, its usual failures said plainly."""
    if address != "auto":
        _reach(address)
    try:
        ray.init(address=address, **quiet)
    except ConnectionError as exc:
        raise EmbedlabError(f"could not join the Ray cluster at {address}: {exc}") from None


def _check_token(address: str) -> None:
    """Ask the cluster's head whether this process may talk to it; a clear error when it
    wants a token this process does not give."""
    try:
        from ray._raylet import GcsClient  # what `ray status` asks with
        from ray.exceptions import AuthenticationError
    except ImportError:  # another Ray: its own error will do
        return
    try:
        GcsClient(address=address)
    except AuthenticationError:
        given = os.environ.get(AUTH_MODE, "").lower() == "token"
        raise EmbedlabError(
            f"the Ray cluster at {address} refused "
            + (
                "this token: give the cluster's (ray get-auth-token on its head)"
                if given
                else "to talk without its token: run with RAY_AUTH_MODE=token"
            )
            + " and the token in ~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN "
            "(see https://docs.ray.io/en/latest/ray-security/token-auth.html)"
        ) from None
    except Exception:  # anything else is for ray.init to report
        return


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
