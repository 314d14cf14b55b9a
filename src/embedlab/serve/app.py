"""The service's FastAPI app, put together from its parts.

Endpoints (versioned under ``/v1``): ``POST /v1/embeddings`` (OpenAI-compatible),
``POST /v1/classify``, ``POST /v1/detect``, ``POST /v1/search``, ``GET /v1/models``,
``GET /v1/indexes``, ``POST /v1/models/{name}/classes``; ``GET /`` (the playground page),
``GET /healthz``, ``GET /readyz``, ``GET /metrics`` (Prometheus text, from a registry of
this app's own — nothing process-global). Errors are JSON ``{"error": {"message", "type"}}``
and never carry a stack trace or a file path. With ``watch``, a new version of a served
directory is loaded beside the old one and swapped in; a broken one is refused.

Where things are: :mod:`~embedlab.serve.config` (the options), :mod:`~embedlab.serve.state`
(what the routers share: registry, keys, batchers, reloads), :mod:`~embedlab.serve.routers`
(one router per concern), :mod:`~embedlab.serve.schemas` (request bodies),
:mod:`~embedlab.serve.errors`, :mod:`~embedlab.serve.middleware`,
:mod:`~embedlab.serve.metrics`.
"""

import asyncio
import contextlib
import logging
from typing import Any

from fastapi import FastAPI

from embedlab import __version__
from embedlab.serve.config import ServeConfig
from embedlab.serve.errors import install_error_handlers
from embedlab.serve.middleware import BodyLimit, Observe
from embedlab.serve.registry import Registry
from embedlab.serve.routers.classify import classify_router
from embedlab.serve.routers.embeddings import embeddings_router
from embedlab.serve.routers.health import health_router
from embedlab.serve.routers.labeling import labeling_router
from embedlab.serve.routers.models import models_router
from embedlab.serve.routers.records import records_router
from embedlab.serve.routers.search import search_router
from embedlab.serve.schemas import request_models
from embedlab.serve.state import ServiceState, warm_index

__all__ = ["ServeConfig", "create_app"]

log = logging.getLogger("embedlab")


def _lifespan(state: ServiceState) -> Any:
    """With ``watch``: look for new versions of the served directories every interval."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> Any:
        async def watch() -> None:
            while True:
                await asyncio.sleep(state.cfg.watch_interval)
                try:
                    await state.reload_changed()
                except Exception:  # the watcher must outlive any one bad look
                    log.exception("watching the served directories failed")

        loop = asyncio.get_running_loop()
        task = loop.create_task(watch()) if state.cfg.watch else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    return lifespan


def create_app(config: ServeConfig, registry: Registry | None = None) -> FastAPI:
    """The service for ``config.paths`` (or an already loaded ``registry``)."""
    cfg = config
    signing_key = None
    if cfg.signing_key_file:
        from embedlab.store.signing import load_key

        signing_key = load_key(cfg.signing_key_file)
    if registry is None:
        registry = Registry(
            list(cfg.paths), backend=cfg.backend, key=signing_key, query_maps=cfg.query_maps
        )
    state = ServiceState(cfg, registry, signing_key)
    requests = request_models(
        cfg,
        list(registry.models),
        max((int(e.dim) for e in registry.encoders.values()), default=1),
        list(registry.indexes),
        list(registry.embedders),
    )
    for served_index in registry.indexes.values():
        warm_index(served_index)
    app = FastAPI(
        title="embedlab",
        version=__version__,
        description="Encode, classify, detect out-of-scope texts and search with embedlab "
        "models and indexes.",
        lifespan=_lifespan(state),
    )
    app.state.service = state
    app.state.registry, app.state.config, app.state.metrics = registry, cfg, state.metrics
    app.state.reload_changed = state.reload_changed
    if cfg.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware, allow_origins=cfg.cors_origins, allow_methods=["*"], allow_headers=["*"]
        )
    app.add_middleware(BodyLimit, limit=cfg.max_body_bytes)
    app.add_middleware(Observe, metrics=state.metrics, queued=state.queued_rows)
    install_error_handlers(app, state.metrics, cfg)
    app.include_router(health_router(state))
    app.include_router(models_router(state, requests))
    app.include_router(labeling_router(state, requests))
    app.include_router(search_router(state, requests))
    app.include_router(embeddings_router(state, requests))
    app.include_router(classify_router(state, requests))
    app.include_router(records_router(state, requests))
    return app
