"""The service's FastAPI app: endpoints, API keys, limits, errors and metrics.

Endpoints (versioned under ``/v1``): ``POST /v1/embeddings`` (OpenAI-compatible),
``POST /v1/classify``, ``POST /v1/detect``, ``GET /v1/models``; ``GET /healthz``,
``GET /readyz``, ``GET /metrics`` (Prometheus text, from a registry of this app's own —
nothing process-global). Errors are JSON ``{"error": {"message", "type"}}`` and never carry
a stack trace or a file path.
"""

import base64
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.exceptions import HTTPException as StarletteHTTPException

from embedlab import __version__
from embedlab.serve.batching import MicroBatcher, QueueFull
from embedlab.serve.keys import KeyStore, RateLimiter
from embedlab.serve.registry import Registry

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
    batching: bool = True
    health_window: int = 1000
    cors_origins: list[str] = field(default_factory=list)
    backend: str | None = None


def request_models(cfg: ServeConfig, names: Sequence[str], max_dim: int) -> tuple[type, type]:
    """The request bodies, with the service's limits in their schema (so /openapi.json says
    what is accepted): non-blank texts of at most ``max_chars``, at most ``max_texts`` of
    them, ``dimensions`` up to the widest served encoder; served model names listed."""
    text = Annotated[str, StringConstraints(min_length=1, max_length=cfg.max_chars, pattern=r"\S")]
    texts = Annotated[list[text], Field(min_length=1, max_length=cfg.max_texts)]
    name = Annotated[str, StringConstraints(min_length=1), Field(examples=list(names)[:3])]
    served = {"enum": sorted(names)}  # in the schema only: an unknown name gets 404

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

    return EmbeddingsRequest, TextsRequest


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
        403: "the key may not use this model",
        404: "no served model of that name",
        413: "the request body is over --max-body-bytes",
        422: "an invalid request, or a limit (--max-texts, --max-chars) exceeded",
        429: "rate limit of the key, or the encoder queue is full (see Retry-After)",
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
        self.window = window
        self._recent: dict[str, deque] = {}

    def observe_model(self, model: str, novelty: np.ndarray, oos: np.ndarray) -> None:
        recent = self._recent.setdefault(model, deque(maxlen=self.window))
        recent.extend(zip(novelty.tolist(), oos.tolist(), strict=True))
        values = np.asarray([v for v, _ in recent], dtype=np.float64)
        finite = values[np.isfinite(values)]
        self.oos_rate.labels(model).set(float(np.mean([o for _, o in recent])))
        if finite.size:
            for q in (0.5, 0.9, 0.99):
                self.novelty.labels(model, str(q)).set(float(np.quantile(finite, q)))


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


def create_app(config: ServeConfig, registry: Registry | None = None) -> FastAPI:
    """The service for ``config.paths`` (or an already loaded ``registry``)."""
    cfg = config
    reg = registry if registry is not None else Registry(list(cfg.paths), backend=cfg.backend)
    EmbeddingsRequest, TextsRequest = request_models(
        cfg, list(reg.models), max(int(e.dim) for e in reg.encoders.values())
    )
    keys = KeyStore(cfg.keys_file) if cfg.keys_file else None
    limiter = RateLimiter()
    metrics = _Metrics(cfg.health_window)

    def on_batch(rows: int, _secs: float) -> None:
        metrics.batch_rows.observe(rows)

    batchers = {
        key: MicroBatcher(
            lambda texts, enc=enc: enc.encode(texts, progress=False),
            max_rows=cfg.max_batch_rows,
            max_wait_ms=cfg.max_wait_ms,
            max_queue_rows=cfg.max_queue_rows,
            enabled=cfg.batching,
            on_batch=on_batch,
        )
        for key, enc in reg.encoders.items()
    }
    app = FastAPI(
        title="embedlab",
        version=__version__,
        description="Encode, classify and detect out-of-scope texts with embedlab models.",
    )
    app.state.registry, app.state.config, app.state.metrics = reg, cfg, metrics
    if cfg.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware, allow_origins=cfg.cors_origins, allow_methods=["*"], allow_headers=["*"]
        )
    app.add_middleware(_BodyLimit, limit=cfg.max_body_bytes)

    @app.middleware("http")
    async def observe(request: Request, call_next: Any) -> Any:
        t0 = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception:  # never leak a stack trace or a path to the client
            log.exception("unhandled error on %s", request.url.path)
            metrics.errors.labels("internal").inc()
            response = _error(500, "internal_error", "internal error (see the server log)")
        endpoint = request.scope.get("route").path if request.scope.get("route") else "other"
        metrics.requests.labels(endpoint, str(response.status_code)).inc()
        metrics.latency.labels(endpoint).observe(time.perf_counter() - t0)
        metrics.queue.set(sum(b.queued_rows for b in batchers.values()))
        return response

    @app.exception_handler(_ApiError)
    async def api_error(_request: Request, exc: _ApiError) -> JSONResponse:
        metrics.errors.labels(exc.kind).inc()
        return _error(exc.status, exc.kind, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # a body that does not parse: an invalid request
            metrics.errors.labels("invalid_request").inc()
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

    def authorise(request: Request, models: list[str]) -> None:
        if keys is None:
            return
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else None
        token = token or request.headers.get("x-api-key")
        key = keys.check(token)
        if key is None:
            raise _ApiError(
                401,
                "unauthorized",
                "a valid API key is needed (Authorization: Bearer <key>)",
                {"WWW-Authenticate": "Bearer"},
            )
        denied = [m for m in models if not key.allows(m)]
        if denied:
            raise _ApiError(403, "forbidden", f"this key may not use model {denied[0]!r}")
        wait = limiter.allow(key.id, key.rate_per_minute)
        if wait:
            raise _ApiError(
                429,
                "rate_limited",
                f"this key's limit of {key.rate_per_minute} requests a minute is reached",
                {"Retry-After": str(max(1, round(wait)))},
            )

    def check_served(names: list[str]) -> None:
        unknown = [n for n in names if n not in reg.models]
        if unknown:
            raise _ApiError(
                404,
                "model_not_found",
                f"no served model {unknown[0]!r}; served: {sorted(reg.models)}",
            )

    def model_names(req: TextsRequest) -> list[str]:
        names = ([req.model] if req.model else []) + list(req.models or [])
        if not names:
            raise _ApiError(422, "invalid_request", "name a model (model) or models (models)")
        check_served(names)
        return list(dict.fromkeys(names))

    async def encode(key: str, texts: list[str]) -> np.ndarray:
        try:
            return await batchers[key].encode(texts)
        except QueueFull as exc:
            raise _ApiError(
                429,
                "overloaded",
                "the service is at capacity; retry shortly",
                {"Retry-After": str(max(1, round(exc.retry_after)))},
            ) from None

    async def details(names: list[str], texts: list[str], top_k: int) -> dict[str, dict]:
        by_encoder: dict[str, np.ndarray] = {}
        out = {}
        for name in names:  # a loop over requested models; texts encoded once per encoder
            served = reg.get(name)
            if served.encoder_key not in by_encoder:
                by_encoder[served.encoder_key] = await encode(served.encoder_key, texts)
            d = served.pipeline.details_from_vectors(by_encoder[served.encoder_key], top_k=top_k)
            metrics.observe_model(name, np.asarray(d["score"]), np.asarray(d["out_of_scope"]))
            out[name] = d
        return out

    @app.get("/healthz")
    async def healthz() -> dict:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> dict:
        """Readiness: every model is loaded."""
        return {"status": "ready", "models": sorted(reg.models)}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus() -> PlainTextResponse:
        """Prometheus metrics: requests, latency, batch sizes, queue depth, errors, and per
        model the out-of-scope rate and novelty-score quantiles over the recent window."""
        return PlainTextResponse(generate_latest(metrics.registry).decode("utf-8"))

    @app.get("/v1/models", responses=_documented(401))
    async def list_models(request: Request) -> dict:
        """The served models (OpenAI's list shape, with version, encoder, classes, threshold)."""
        authorise(request, [])
        return {"object": "list", "data": [m.describe() for m in reg.models.values()]}

    @app.post("/v1/embeddings", responses=_TEXT_ERRORS)
    async def embeddings(req: EmbeddingsRequest, request: Request) -> dict:
        """OpenAI-compatible embeddings from a served model's encoder (``model`` = a served
        model's id); ``dimensions`` keeps the first d and renormalises (Matryoshka)."""
        check_served([req.model])
        authorise(request, [req.model])
        texts = _texts(req.input)
        served = reg.get(req.model)
        X = await encode(served.encoder_key, texts)
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

    def rows(d: dict[str, np.ndarray], top_k: int, levels: list[str]) -> list[dict]:
        n = len(d["label"])
        k = len([c for c in d if c.startswith("top") and c.endswith("_label")])
        out = []
        for i in range(n):  # building the JSON rows of a response
            top = [
                {"label": str(d[f"top{j}_label"][i]), "score": float(d[f"top{j}_prob"][i])}
                for j in range(1, min(k, top_k) + 1)
            ]
            row = {
                "label": str(d["label"][i]),
                "score": top[0]["score"] if top else None,
                "top": top,
                "out_of_scope": bool(d["out_of_scope"][i]),
                "novelty": float(d["score"][i]),
            }
            if levels:
                row["levels"] = {lv: str(d[f"label_{lv}"][i]) for lv in levels}
            out.append(row)
        return out

    @app.post("/v1/classify", responses=_TEXT_ERRORS)
    async def classify(req: TextsRequest, request: Request) -> dict:
        """Labels (or the out-of-scope label) for texts, in input order; the same labels as
        `embedlab predict`. ``models``: several models, texts encoded once per encoder."""
        names = model_names(req)
        authorise(request, names)
        texts = _texts(req.input)
        found = await details(names, texts, req.top_k)
        results = []
        for name in names:
            pipe = reg.get(name).pipeline
            levels = pipe.hierarchy.level_names()[:-1] if pipe.hierarchy is not None else []
            results.append({"model": name, "data": rows(found[name], req.top_k, levels)})
        if len(results) == 1:
            return {"object": "list", **results[0]}
        return {"object": "list", "results": results}

    @app.post("/v1/detect", responses=_TEXT_ERRORS)
    async def detect(req: TextsRequest, request: Request) -> dict:
        """Out-of-scope decisions: novelty score (higher = more novel) against the threshold."""
        names = model_names(req)
        authorise(request, names)
        texts = _texts(req.input)
        found = await details(names, texts, 1)
        results = []
        for name in names:
            thr = reg.get(name).threshold
            d = found[name]
            results.append(
                {
                    "model": name,
                    "data": [
                        {"out_of_scope": bool(o), "novelty": float(s), "threshold": thr}
                        for o, s in zip(d["out_of_scope"], d["score"], strict=True)
                    ],
                }
            )
        if len(results) == 1:
            return {"object": "list", **results[0]}
        return {"object": "list", "results": results}

    return app
