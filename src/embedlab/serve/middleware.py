"""ASGI middleware of the service: the body-size limit, and the count, timing and
last-resort error answer of every request."""

import logging
import time
from typing import Any

from embedlab.serve.errors import ApiError, error_response
from embedlab.serve.metrics import Metrics

__all__ = ["BodyLimit", "Observe"]

log = logging.getLogger("embedlab")


class BodyLimit:
    """ASGI middleware: 413 for a body over ``limit`` bytes (declared or streamed)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        too_big = error_response(
            413, "request_too_large", f"the request body is over the limit of {self.limit} bytes"
        )
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await too_big(scope, receive, send)
            return
        seen = 0

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise ApiError(413, "request_too_large", "body over the limit")
            return message

        try:
            await self.app(scope, counted, send)
        except ApiError:
            await too_big(scope, receive, send)


class Observe:
    """ASGI middleware: count and time every request by route and status, and answer an
    unhandled error with a bare 500 (the trace goes to the server log, never to the client).
    """

    def __init__(self, app: Any, metrics: Metrics, queued: Any) -> None:
        self.app, self.metrics, self.queued = app, metrics, queued

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500
        started = False

        async def sending(message: dict) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = int(message["status"]), True
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:  # never leak a stack trace or a path to the client
            log.exception("unhandled error on %s", scope.get("path"))
            self.metrics.errors.labels("internal").inc()
            status = 500
            if not started:
                response = error_response(
                    500, "internal_error", "internal error (see the server log)"
                )
                await response(scope, receive, send)
        route = scope.get("route")
        endpoint = route.path if route is not None else "other"
        self.metrics.requests.labels(endpoint, str(status)).inc()
        self.metrics.latency.labels(endpoint).observe(time.perf_counter() - t0)
        self.metrics.queue.set(self.queued())
