"""``GET /`` (the playground), ``/healthz``, ``/readyz`` and ``/metrics``."""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from prometheus_client import generate_latest

from embedlab.serve.playground import PLAYGROUND_HTML
from embedlab.serve.state import ServiceState

__all__ = ["health_router"]


def health_router(state: ServiceState) -> APIRouter:
    router = APIRouter()
    reg, cfg = state.reg, state.cfg

    @router.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def playground() -> HTMLResponse:
        """The playground page: classify a text, see its top classes, novelty and neighbours."""
        return HTMLResponse(
            PLAYGROUND_HTML,
            headers={
                "Content-Security-Policy": "default-src 'self'; style-src 'unsafe-inline'; "
                "script-src 'unsafe-inline'; connect-src 'self'",
                "X-Content-Type-Options": "nosniff",
            },
        )

    @router.get("/healthz")
    async def healthz() -> dict:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @router.get("/readyz", responses={503: {"description": "a served directory moved or vanished"}})
    async def readyz() -> Any:
        """Readiness: every model and index is loaded and its directory is where it was
        served from (503, naming them, when one moved or vanished: it answers from memory,
        but no change to it can be saved and no new version can be loaded)."""
        body = {
            "status": "ready",
            "models": sorted(reg.models),
            "indexes": sorted(reg.indexes),
            "encoders": sorted(reg.embedders),
        }
        missing = reg.missing()
        if missing:
            body.update(status="degraded", missing=missing)
            return JSONResponse(body, status_code=503)
        return body

    @router.get("/metrics", response_class=PlainTextResponse)
    async def prometheus(request: Request) -> PlainTextResponse:
        """Prometheus metrics: requests, latency, batch sizes, queue depth, errors, reloads,
        and per model the out-of-scope rate and novelty-score quantiles over the recent
        window. With API keys it needs a key (they name every model), unless the server was
        started with --public-metrics."""
        if state.keys is not None and not cfg.public_metrics:
            state.authorise(request)
        state.metrics.refresh_model_health()
        return PlainTextResponse(generate_latest(state.metrics.registry).decode("utf-8"))

    return router
