"""What a service serves and its limits: the `embedlab serve` options as one object."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["ServeConfig"]


@dataclass
class ServeConfig:
    """What a service serves and its limits (the `embedlab serve` options)."""

    paths: Sequence[str] = ()
    keys_file: str | None = None
    max_body_bytes: int = 1_000_000
    max_texts: int = 256
    max_chars: int = 10_000
    max_batch_rows: int = 64
    max_wait_ms: float = 5.0
    max_queue_rows: int = 4096
    max_batch_tokens: int | None = 16_384
    encoder_calls: int | None = None  # encoder calls at once (default: cores, at most 4)
    batching: bool = True
    health_window: int = 1000
    cors_origins: list[str] = field(default_factory=list)
    backend: str | None = None
    watch: bool = False
    watch_interval: float = 2.0
    read_only: bool = False
    signing_key_file: str | None = None  # only bundles signed with this key are served
    public_metrics: bool = False  # with keys: /metrics answers without one
    query_maps: dict[str, str] = field(default_factory=dict)  # index name -> map directory
