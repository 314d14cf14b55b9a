"""The service's FastAPI app: endpoints, API keys, limits, errors and metrics.

Endpoints (versioned under ``/v1``): ``POST /v1/embeddings`` (OpenAI-compatible),
``POST /v1/classify``, ``POST /v1/detect``, ``POST /v1/search``, ``GET /v1/models``,
``GET /v1/indexes``, ``POST /v1/models/{name}/classes``; ``GET /`` (the playground page),
``GET /healthz``, ``GET /readyz``, ``GET /metrics`` (Prometheus text, from a registry of
this app's own — nothing process-global). Errors are JSON ``{"error": {"message", "type"}}``
and never carry a stack trace or a file path. With ``watch``, a new version of a served
directory is loaded beside the old one and swapped in; a broken one is refused.
"""

import asyncio
import base64
import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import FastAPI, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.exceptions import HTTPException as StarletteHTTPException

from embedlab import __version__
from embedlab.encoders.onnx_backend import physical_cores
from embedlab.errors import DataFormatError, RefusedOverwrite, ValidationError, VersionConflict
from embedlab.predictions import Predictions
from embedlab.serve.batching import MicroBatcher, QueueFull
from embedlab.serve.keys import ApiKey, KeyStore, RateLimiter
from embedlab.serve.playground import PLAYGROUND_HTML
from embedlab.serve.registry import (
    Registry,
    ServedIndex,
    ServedModel,
    describe_file,
    stamp_of,
)

__all__ = ["ServeConfig", "create_app"]

log = logging.getLogger("embedlab")


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


def request_models(
    cfg: ServeConfig, names: Sequence[str], max_dim: int, index_names: Sequence[str] = ()
) -> tuple[type, type, type, type]:
    """The request bodies, with the service's limits in their schema (so /openapi.json says
    what is accepted): non-blank texts of at most ``max_chars``, at most ``max_texts`` of
    them, ``dimensions`` up to the widest served encoder; served model and index names listed.
    """
    text = Annotated[str, StringConstraints(min_length=1, max_length=cfg.max_chars, pattern=r"\S")]
    texts = Annotated[list[text], Field(min_length=1, max_length=cfg.max_texts)]
    public = not cfg.keys_file  # with API keys the public schema does not list what is served
    shown = sorted(names)[:3] if public else ["my-model"]
    name = Annotated[str, StringConstraints(min_length=1), Field(examples=shown)]
    label = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"\S")]
    # in the schema only (an unknown name gets 404); an empty enum is not valid JSON Schema
    served = {"enum": sorted(names)} if names and public else {}
    served_index = {"enum": sorted(index_names)} if index_names and public else {}

    class EmbeddingsRequest(BaseModel):
        """OpenAI's embeddings request (``model``: a served model's id)."""

        input: text | texts
        model: Annotated[name, Field(json_schema_extra=served)]
        dimensions: int | None = Field(default=None, ge=1, le=max_dim)
        encoding_format: Literal["float", "base64"] = "float"
        user: str | None = None

    class TextsRequest(BaseModel):
        """Texts for one model (``model``) or several (``models``, with ``model`` if given
        too: encoded once per encoder); at least one of the two is required."""

        model_config = ConfigDict(
            json_schema_extra={"anyOf": [{"required": ["model"]}, {"required": ["models"]}]}
        )
        input: text | texts
        # not nullable: leaving a field out says "none" (defaults are not validated)
        model: Annotated[name, Field(json_schema_extra=served)] = None
        models: Annotated[
            list[Annotated[name, Field(json_schema_extra=served)]], Field(min_length=1)
        ] = None
        top_k: int = Field(default=3, ge=1, le=50)

    class SearchRequest(BaseModel):
        """Query texts for a served index: the ``k`` nearest stored items of each, only
        those with one of ``labels`` when given."""

        input: text | texts
        index: Annotated[
            str, StringConstraints(min_length=1), Field(json_schema_extra=served_index)
        ]
        k: int = Field(default=10, ge=1, le=100)
        labels: Annotated[list[label], Field(min_length=1, max_length=1000)] = None

    from embedlab.readers import MISSING_LABEL_PATTERN

    # a class name: not a spelling of "missing" (NaN, NA, null: refused in files too)
    class_label = Annotated[
        label, Field(json_schema_extra={"not": {"pattern": MISSING_LABEL_PATTERN}})
    ]
    one_text, one_label = text, class_label  # (a field may not be annotated with its own name)

    class Example(BaseModel):
        """One labelled example."""

        text: one_text
        label: one_label

    class ClassesRequest(BaseModel):
        """Labelled examples of the classes to add (every label new to the model)."""

        examples: Annotated[list[Example], Field(min_length=1, max_length=cfg.max_texts)]
        parents: Annotated[dict[one_label, one_label], Field(max_length=1000)] = Field(
            default_factory=dict,
            description="new class -> its parent, for a model with a hierarchy (required "
            "there for each new class)",
        )

    return EmbeddingsRequest, TextsRequest, SearchRequest, ClassesRequest


class ErrorDetail(BaseModel):
    message: str
    type: str


class ErrorBody(BaseModel):
    """Every error response: ``{"error": {"message", "type"}}``."""

    error: ErrorDetail


def _documented(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error statuses an endpoint can answer."""
    what = {
        401: "no API key, or an unknown or revoked one (when the server uses keys)",
        403: "the key may not use this model (or may not change it)",
        404: "no served model (or index) of that name",
        409: "the model cannot take these classes (one is known already, or the model takes "
        "none: multi-label, no kept training rows), one text comes with two labels, the "
        "server is read-only, or another writer saved a newer version of the model first "
        "(nothing was saved)",
        413: "the request body is over --max-body-bytes",
        422: "an invalid request, or a limit (--max-texts, --max-chars) exceeded",
        429: "rate limit of the key, or the encoder queue is full (see Retry-After)",
        503: "the model's directory moved or vanished since it was loaded (nothing was saved)",
    }
    return {c: {"model": ErrorBody, "description": what[c]} for c in codes}


_TEXT_ERRORS = _documented(401, 403, 404, 413, 422, 429)


class _ApiError(Exception):
    def __init__(self, status: int, kind: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.kind, self.message, self.headers = status, kind, message, headers


def _error(status: int, kind: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": kind}}, status_code=status, headers=headers
    )


class _BodyLimit:
    """ASGI middleware: 413 for a body over ``limit`` bytes (declared or streamed)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        too_big = _error(
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
                raise _ApiError(413, "request_too_large", "body over the limit")
            return message

        try:
            await self.app(scope, counted, send)
        except _ApiError:
            await too_big(scope, receive, send)


class _Observe:
    """ASGI middleware: count and time every request by route and status, and answer an
    unhandled error with a bare 500 (the trace goes to the server log, never to the client).
    """

    def __init__(self, app: Any, metrics: "_Metrics", queued: Any) -> None:
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
                response = _error(500, "internal_error", "internal error (see the server log)")
                await response(scope, receive, send)
        route = scope.get("route")
        endpoint = route.path if route is not None else "other"
        self.metrics.requests.labels(endpoint, str(status)).inc()
        self.metrics.latency.labels(endpoint).observe(time.perf_counter() - t0)
        self.metrics.queue.set(self.queued())


class _Metrics:
    """This app's Prometheus metrics, in a registry of its own."""

    def __init__(self, window: int) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "embedlab_requests",
            "Requests by endpoint and status",
            ["endpoint", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "embedlab_request_seconds",
            "Request latency",
            ["endpoint"],
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.batch_rows = Histogram(
            "embedlab_batch_rows",
            "Rows per encoder call",
            registry=r,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
        )
        self.queue = Gauge("embedlab_queue_rows", "Rows waiting for the encoder", registry=r)
        self.errors = Counter("embedlab_errors", "Errors by kind", ["kind"], registry=r)
        self.oos_rate = Gauge(
            "embedlab_model_oos_rate",
            "Out-of-scope share over the recent window",
            ["model"],
            registry=r,
        )
        self.novelty = Gauge(
            "embedlab_model_novelty_quantile",
            "Novelty-score quantiles over the recent window",
            ["model", "quantile"],
            registry=r,
        )
        self.reloads = Counter(
            "embedlab_reloads",
            "Versions of served directories loaded (ok) or refused (refused)",
            ["name", "outcome"],
            registry=r,
        )
        self.window = window
        self._recent: dict[str, deque] = {}

    def observe_model(self, model: str, novelty: np.ndarray, oos: np.ndarray) -> None:
        """Remember a request's novelty scores and decisions (the window's last rows)."""
        recent = self._recent.setdefault(model, deque(maxlen=self.window))
        recent.extend(zip(novelty.tolist(), oos.tolist(), strict=True))

    def refresh_model_health(self) -> None:
        """Set the model-health gauges from the windows (when /metrics is read, not on every
        request)."""
        for model, recent in list(self._recent.items()):
            if not recent:
                continue
            values, oos = np.asarray(list(recent), dtype=np.float64).T
            self.oos_rate.labels(model).set(float(oos.mean()))
            finite = values[np.isfinite(values)]
            if finite.size:
                qs = (0.5, 0.9, 0.99)
                for q, v in zip(qs, np.quantile(finite, qs), strict=True):
                    self.novelty.labels(model, str(q)).set(float(v))


def _texts(value: str | list[str]) -> list[str]:
    """The request's texts as a list (the request schema already checked them: non-blank,
    --max-chars each, at most --max-texts)."""
    return [value] if isinstance(value, str) else list(value)


def _say(e: dict, cfg: ServeConfig) -> str:
    """One validation error in words, naming the limit it hit."""
    where = ""
    for part in e.get("loc", ()):
        if isinstance(part, int):
            where += f"[{part}]"
        elif part != "body" and "[" not in str(part) and part not in ("str", "int"):
            where += ("." if where else "") + str(part)
    where = where or "body"
    kind = e.get("type")
    if kind == "too_long" and where == "input":
        return f"input holds too many texts; the limit is {cfg.max_texts} (--max-texts)"
    if kind == "string_too_long" and where.startswith("input"):
        return f"{where} has too many characters; the limit is {cfg.max_chars} (--max-chars)"
    if kind in ("string_too_short", "string_pattern_mismatch") and where.startswith("input"):
        return f"{where} is empty"
    if kind == "too_short" and where == "input":
        return "input holds no text"
    return f"{where}: {e.get('msg')}"


def _token_cost(max_len: int) -> Any:
    """An estimate of a text's tokens for the batch token budget (about 4 characters a token,
    capped at the encoder's sequence length), without tokenizing on the event loop."""
    return lambda text: min(max_len, len(text) // 4 + 2)


def create_app(config: ServeConfig, registry: Registry | None = None) -> FastAPI:
    """The service for ``config.paths`` (or an already loaded ``registry``)."""
    cfg = config
    signing_key = None
    if cfg.signing_key_file:
        from embedlab.signing import load_key

        signing_key = load_key(cfg.signing_key_file)
    reg = (
        registry
        if registry is not None
        else Registry(list(cfg.paths), backend=cfg.backend, key=signing_key)
    )
    EmbeddingsRequest, TextsRequest, SearchRequest, ClassesRequest = request_models(
        cfg,
        list(reg.models),
        max(int(e.dim) for e in reg.encoders.values()),
        list(reg.indexes),
    )
    served_names = {"enum": sorted(reg.models)} if reg.models and not cfg.keys_file else {}
    keys = KeyStore(cfg.keys_file) if cfg.keys_file else None
    limiter = RateLimiter()
    metrics = _Metrics(cfg.health_window)
    locks: dict[str, asyncio.Lock] = {}  # one per served name: changes and reloads queue up
    refused: dict[str, str] = {}  # name -> stamp of a version that failed to load

    def on_batch(rows: int, _secs: float) -> None:
        metrics.batch_rows.observe(rows)

    batchers: dict[str, MicroBatcher] = {}

    def batcher(key: str, enc: Any) -> MicroBatcher:
        """The micro-batcher of encoder ``enc`` (made on first use: a reloaded model may
        bring a new encoder)."""
        if key not in batchers:
            batchers[key] = MicroBatcher(
                lambda texts, enc=enc: enc.encode(texts, progress=False),
                max_rows=cfg.max_batch_rows,
                max_wait_ms=cfg.max_wait_ms,
                max_queue_rows=cfg.max_queue_rows,
                max_tokens=cfg.max_batch_tokens,
                cost=_token_cost(int(getattr(enc, "max_seq_length", None) or 512)),
                concurrency=cfg.encoder_calls or min(4, physical_cores()),
                enabled=cfg.batching,
                on_batch=on_batch,
            )
        return batchers[key]

    for key, enc in reg.encoders.items():
        batcher(key, enc)

    async def reload_changed() -> list[tuple[str, str]]:
        """Load every served directory that holds a new version and swap it in; a version
        that fails to load is refused (logged, counted) and the old one keeps serving.
        Returns (name, "ok" | "refused") per version tried."""
        outcomes = []
        for entry in reg.changed():
            lock = locks.setdefault(entry.name, asyncio.Lock())
            async with lock:
                current = reg.models.get(entry.name) or reg.indexes.get(entry.name)
                stamp = stamp_of(entry.path)
                seen = (current.stamp, refused.get(entry.name)) if current else ()
                if current is None or stamp is None or stamp in seen:
                    continue
                try:
                    new = await asyncio.to_thread(reg.load_entry, entry.path, entry.name)
                except Exception as exc:  # a broken version: keep serving the old one
                    refused[entry.name] = stamp
                    metrics.reloads.labels(entry.name, "refused").inc()
                    metrics.errors.labels("reload_refused").inc()
                    log.error("not serving the new version of %s: %s", entry.name, exc)
                    outcomes.append((entry.name, "refused"))
                    continue
                if isinstance(new, ServedIndex):
                    await asyncio.to_thread(_warm_index, new)
                reg.swap(new)
                for key in [k for k in batchers if k not in reg.encoders]:
                    del batchers[key]  # its encoder is no longer served
                batcher(new.encoder_key, _encoder_of(new))
                refused.pop(entry.name, None)
                metrics.reloads.labels(entry.name, "ok").inc()
                log.warning("now serving a new version of %s", entry.name)
                outcomes.append((entry.name, "ok"))
        return outcomes

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> Any:
        async def watch() -> None:
            while True:
                await asyncio.sleep(cfg.watch_interval)
                try:
                    await reload_changed()
                except Exception:  # the watcher must outlive any one bad look
                    log.exception("watching the served directories failed")

        task = asyncio.get_running_loop().create_task(watch()) if cfg.watch else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    for served_index in reg.indexes.values():
        _warm_index(served_index)
    app = FastAPI(
        title="embedlab",
        version=__version__,
        description="Encode, classify, detect out-of-scope texts and search with embedlab "
        "models and indexes.",
        lifespan=lifespan,
    )
    app.state.registry, app.state.config, app.state.metrics = reg, cfg, metrics
    app.state.reload_changed = reload_changed
    if cfg.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware, allow_origins=cfg.cors_origins, allow_methods=["*"], allow_headers=["*"]
        )
    app.add_middleware(_BodyLimit, limit=cfg.max_body_bytes)

    app.add_middleware(
        _Observe,
        metrics=metrics,
        queued=lambda: sum(b.queued_rows for b in batchers.values()),
    )

    @app.exception_handler(_ApiError)
    async def api_error(_request: Request, exc: _ApiError) -> JSONResponse:
        metrics.errors.labels(exc.kind).inc()
        return _error(exc.status, exc.kind, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # a body that does not parse: an invalid request
            metrics.errors.labels("invalid_request").inc()
            if isinstance(exc.__cause__, RecursionError):
                return _error(422, "invalid_request", "the request body is nested too deeply")
            return _error(422, "invalid_request", "the request body is not valid UTF-8 JSON")
        metrics.errors.labels("http").inc()
        return _error(exc.status_code, "http_error", str(exc.detail), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        metrics.errors.labels("invalid_request").inc()
        errors = list(exc.errors())
        # a union (one text | a list of them) reports every branch: keep the specific ones
        specific = [e for e in errors if not str(e.get("type", "")).endswith("_type")] or errors
        return _error(422, "invalid_request", "; ".join(_say(e, cfg) for e in specific[:5]))

    def authorise(
        request: Request,
        names: Sequence[str] = (),
        *,
        pool: str = "model",
        write: bool = False,
    ) -> ApiKey | None:
        """The request's key (None: the server uses none), in this order: 401 without a
        valid key; 404 for a name not served (listing only the names the key may use); 403
        for a name the key may not use, or a change by a key without write access; 429 over
        the key's rate."""
        key = None
        if keys is not None:
            header = request.headers.get("authorization", "")
            token = header[7:].strip() if header.lower().startswith("bearer ") else None
            try:
                key = keys.check(token or request.headers.get("x-api-key"))
            except DataFormatError as exc:  # fail closed, and say why in the log
                log.error("refusing requests: the keys file cannot be read: %s", exc)
                raise _ApiError(
                    503,
                    "keys_unreadable",
                    "keys file unreadable: the server refuses requests "
                    "until it is repaired (its log says why)",
                ) from None
            if key is None:
                raise _ApiError(
                    401,
                    "unauthorized",
                    "a valid API key is needed (Authorization: Bearer <key>)",
                    {"WWW-Authenticate": "Bearer"},
                )
        served = reg.models if pool == "model" else reg.indexes
        # a name the key may not use is answered as one not served: 404 vs 403 would tell
        # a key holder which names exist
        unknown = [n for n in names if n not in served or (key is not None and not key.allows(n))]
        if unknown:
            visible = sorted(n for n in served if key is None or key.allows(n))
            raise _ApiError(
                404,
                f"{pool}_not_found",
                f"no served {pool} {unknown[0]!r} for this key; served: {visible}"
                if key is not None
                else f"no served {pool} {unknown[0]!r}; served: {visible}",
            )
        if key is None:
            return None
        if write and not key.write:
            raise _ApiError(
                403,
                "forbidden",
                "this key may not change models (create one with `embedlab keys create --write`)",
            )
        wait = limiter.allow(key.id, key.rate_per_minute)
        if wait:
            raise _ApiError(
                429,
                "rate_limited",
                f"this key's limit of {key.rate_per_minute} requests a minute is reached",
                {"Retry-After": str(max(1, round(wait)))},
            )
        return key

    def _listing(request: Request, served: Iterable[Any]) -> dict:
        """The served models or indexes the request's key may use, in OpenAI's list shape."""
        key = authorise(request)
        shown = [x for x in served if key is None or key.allows(x.name)]
        return {"object": "list", "data": [x.describe() for x in shown]}

    def served_models(request: Request, names: list[str]) -> dict[str, ServedModel]:
        """The served models, after :func:`authorise` (each read once: a swap during the
        request does not mix versions)."""
        authorise(request, names)
        return {n: reg.models[n] for n in names}

    def model_names(req: Any) -> list[str]:
        names = ([req.model] if req.model else []) + list(req.models or [])
        if not names:
            raise _ApiError(422, "invalid_request", "name a model (model) or models (models)")
        return list(dict.fromkeys(names))

    async def encode(entry: ServedModel | ServedIndex, texts: list[str]) -> np.ndarray:
        """The texts' vectors from the entry's encoder, through its micro-batcher (an entry
        swapped out meanwhile still encodes with its own encoder)."""
        try:
            return await batcher(entry.encoder_key, _encoder_of(entry)).encode(texts)
        except QueueFull as exc:
            raise _ApiError(
                429,
                "overloaded",
                "the service is at capacity; retry shortly",
                {"Retry-After": str(max(1, round(exc.retry_after)))},
            ) from None

    async def details(
        served: dict[str, ServedModel], texts: list[str], top_k: int
    ) -> dict[str, Predictions]:
        by_encoder: dict[str, np.ndarray] = {}
        out = {}
        for name, model in served.items():  # requested models; texts encoded once per encoder
            if model.encoder_key not in by_encoder:
                by_encoder[model.encoder_key] = await encode(model, texts)
            found = model.pipeline.details_from_vectors(by_encoder[model.encoder_key], top_k=top_k)
            metrics.observe_model(name, found.novelty, found.out_of_scope)
            out[name] = found
        return out

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
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

    @app.get("/healthz")
    async def healthz() -> dict:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"description": "a served directory moved or vanished"}})
    async def readyz() -> Any:
        """Readiness: every model and index is loaded and its directory is where it was
        served from (503, naming them, when one moved or vanished: it answers from memory,
        but no change to it can be saved and no new version can be loaded)."""
        body = {"status": "ready", "models": sorted(reg.models), "indexes": sorted(reg.indexes)}
        missing = reg.missing()
        if missing:
            body.update(status="degraded", missing=missing)
            return JSONResponse(body, status_code=503)
        return body

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus(request: Request) -> PlainTextResponse:
        """Prometheus metrics: requests, latency, batch sizes, queue depth, errors, reloads,
        and per model the out-of-scope rate and novelty-score quantiles over the recent
        window. With API keys it needs a key (they name every model), unless the server was
        started with --public-metrics."""
        if keys is not None and not cfg.public_metrics:
            authorise(request)
        metrics.refresh_model_health()
        return PlainTextResponse(generate_latest(metrics.registry).decode("utf-8"))

    @app.get("/v1/models", responses=_documented(401))
    async def list_models(request: Request) -> dict:
        """The served models (OpenAI's list shape, with version, encoder, classes, threshold)
        that the request's key may use."""
        return _listing(request, reg.models.values())

    @app.get("/v1/indexes", responses=_documented(401))
    async def list_indexes(request: Request) -> dict:
        """The served search indexes (size, spec, encoder, the labels a search can filter by)
        that the request's key may use."""
        return _listing(request, reg.indexes.values())

    @app.post("/v1/embeddings", responses=_TEXT_ERRORS)
    async def embeddings(req: EmbeddingsRequest, request: Request) -> dict:
        """OpenAI-compatible embeddings from a served model's encoder (``model`` = a served
        model's id); ``dimensions`` keeps the first d and renormalises (Matryoshka)."""
        served = served_models(request, [req.model])[req.model]
        texts = _texts(req.input)
        X = await encode(served, texts)
        if req.dimensions is not None:
            if req.dimensions > X.shape[1]:
                raise _ApiError(
                    422,
                    "invalid_request",
                    f"dimensions {req.dimensions} is more than the model's {X.shape[1]}",
                )
            X = X[:, : req.dimensions]
        X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
        X = X.astype(np.float32)
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": base64.b64encode(row.tobytes()).decode("ascii")
                if req.encoding_format == "base64"
                else row.tolist(),
            }
            for i, row in enumerate(X)
        ]
        words = sum(len(t.split()) for t in texts)  # whitespace words, not model tokens
        return {
            "object": "list",
            "data": data,
            "model": req.model,
            "usage": {"prompt_tokens": words, "total_tokens": words},
        }

    @app.post("/v1/classify", responses=_TEXT_ERRORS)
    async def classify(req: TextsRequest, request: Request) -> dict:
        """Labels (or the out-of-scope label) for texts, in input order; the same labels as
        `embedlab predict`. ``models``: several models, texts encoded once per encoder."""
        served = served_models(request, model_names(req))
        found = await details(served, _texts(req.input), req.top_k)
        results = [
            {
                "model": name,
                "version": model.version,
                "threshold": model.threshold,
                "data": found[name].to_rows(req.top_k),
            }
            for name, model in served.items()
        ]
        if len(results) == 1:
            return {"object": "list", **results[0]}
        return {"object": "list", "results": results}

    @app.post("/v1/detect", responses=_TEXT_ERRORS)
    async def detect(req: TextsRequest, request: Request) -> dict:
        """Out-of-scope decisions: novelty score (higher = more novel) against the threshold."""
        served = served_models(request, model_names(req))
        found = await details(served, _texts(req.input), 1)
        results = []
        for name, model in served.items():
            thr = model.threshold
            d = found[name]
            results.append(
                {
                    "model": name,
                    "version": model.version,
                    "data": [
                        {"out_of_scope": bool(o), "novelty": float(s), "threshold": thr}
                        for o, s in zip(d.out_of_scope.tolist(), d.novelty.tolist(), strict=True)
                    ],
                }
            )
        if len(results) == 1:
            return {"object": "list", **results[0]}
        return {"object": "list", "results": results}

    @app.post("/v1/search", responses=_TEXT_ERRORS)
    async def search(req: SearchRequest, request: Request) -> dict:
        """The ``k`` nearest stored items of each text in a served index (cosine score, id
        and the stored label and text), only items with one of ``labels`` when given."""
        authorise(request, [req.index], pool="index")
        served = reg.indexes[req.index]
        allow = None
        if req.labels:
            if served.labels is None:
                raise _ApiError(
                    422, "invalid_request", f"index {req.index!r} keeps no labels to filter by"
                )
            allow = np.isin(served.labels, np.asarray(req.labels, dtype=object))
        texts = _texts(req.input)
        Q = await encode(served, texts)
        index = served.index
        ids, scores = await asyncio.to_thread(index.search, Q, req.k, allow=allow)
        hits = index.hits(ids, scores)
        return {
            "object": "list",
            "index": req.index,
            "data": [{"index": i, "hits": h} for i, h in enumerate(hits)],
        }

    @app.post(
        "/v1/models/{name}/classes", responses=_documented(401, 403, 404, 409, 413, 422, 429, 503)
    )
    async def add_classes(
        name: Annotated[str, PathParam(json_schema_extra=served_names)],
        req: ClassesRequest,
        request: Request,
    ) -> dict:
        """Add classes from labelled examples at run time: a new version of the model (head
        updated in closed form, out-of-scope threshold recalibrated), written to its
        directory atomically and swapped in; requests in flight finish on the old version."""
        authorise(request, [name], write=True)
        if cfg.read_only:
            raise _ApiError(409, "read_only", "this server was started with --read-only")
        lock = locks.setdefault(name, asyncio.Lock())
        async with lock:
            model = reg.models[name]
            why = model.pipeline.class_change_refusal
            if why is not None:
                raise _ApiError(
                    409, "unsupported", f"model {name!r} cannot take new classes: {why}"
                )
            texts = [e.text for e in req.examples]
            labels = [e.label for e in req.examples]
            _check_examples(texts, labels)
            X = await encode(model, texts)
            try:
                child = await asyncio.to_thread(
                    model.pipeline.add_classes,
                    texts,
                    labels,
                    vectors=X,
                    progress=False,
                    parents=req.parents or None,
                )
            except ValidationError as exc:  # a label the model knows already...: no paths
                raise _ApiError(409, "conflict", str(exc)) from None
            if describe_file(model.path) is None:
                raise _ApiError(
                    503,
                    "directory_missing",
                    f"model {name!r}'s directory {model.path} moved or vanished since it was "
                    "loaded: the change was not saved (restart the server on the new path)",
                )
            try:
                await asyncio.to_thread(
                    child.save,
                    model.path,
                    overwrite=True,
                    expect_stamp=model.stamp,
                    sign=signing_key,
                )
            except VersionConflict as exc:
                raise _ApiError(
                    409,
                    "version_conflict",
                    f"model {name!r} was changed on disk by another writer since version "
                    f"{model.version} was loaded; the change was not saved ({exc})",
                ) from None
            except RefusedOverwrite as exc:
                raise _ApiError(409, "conflict", f"the change was not saved: {exc}") from None
            new = ServedModel(name, model.path, child, model.encoder_key, child.source_stamp)
            reg.swap(new)
            metrics.reloads.labels(name, "ok").inc()
        added = sorted(set(labels) - {str(child.oos_label)})
        return {
            "object": "model",
            "id": name,
            "version": new.version,
            "added": added,
            "classes": [str(c) for c in child.classes_],
            "threshold": new.threshold,
        }

    return app


def _check_examples(texts: list[str], labels: list[str]) -> None:
    """422 for a label that spells "missing" (NaN, NA, null: refused as the command line
    refuses them in files; the schema says so too), 409 for one text given two labels."""
    from embedlab.readers import is_missing_value

    for i, label in enumerate(labels):
        if is_missing_value(label):
            raise _ApiError(
                422,
                "invalid_request",
                f"examples[{i}].label is {label!r}, a spelling of a missing label: give every "
                "example the name of its class",
            )
    seen: dict[str, str] = {}
    for i, (text, label) in enumerate(zip(texts, labels, strict=True)):
        key = text.strip()
        if seen.setdefault(key, label) != label:
            raise _ApiError(
                409,
                "conflicting_labels",
                f"examples[{i}]: the text {text[:80]!r} comes with two labels "
                f"({seen[key]!r} and {label!r}) in this request: give each text one label",
            )


def _encoder_of(entry: ServedModel | ServedIndex) -> Any:
    return entry.pipeline.encoder_ if isinstance(entry, ServedModel) else entry.encoder


def _warm_index(served: ServedIndex) -> None:
    """Build an index's lazily made search structures before requests share it."""
    if len(served.index):
        served.index.search(np.ones((1, served.index.dim), dtype=np.float32), 1)
