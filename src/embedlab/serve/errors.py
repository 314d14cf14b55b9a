"""The service's errors: one JSON shape (``{"error": {"message", "type"}}``, never a stack
trace or a file path), the statuses each endpoint documents, and the handlers that turn
FastAPI's own errors into that shape."""

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from embedlab.serve.config import ServeConfig

__all__ = [
    "TEXT_ERRORS",
    "ApiError",
    "ErrorBody",
    "documented",
    "error_response",
    "install_error_handlers",
]


class ErrorDetail(BaseModel):
    message: str
    type: str


class ErrorBody(BaseModel):
    """Every error response: ``{"error": {"message", "type"}}``."""

    error: ErrorDetail


def documented(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error statuses an endpoint can answer."""
    what = {
        401: "no API key, or an unknown or revoked one (when the server uses keys)",
        403: "the key may not use this model (or may not change it)",
        404: "no served model (or index) of that name",
        409: "the model cannot take these classes (one is known already, or the model takes "
        "none: no kept training rows), one text comes with two labels, the "
        "server is read-only, or another writer saved a newer version of the model first "
        "(nothing was saved)",
        413: "the request body is over --max-body-bytes",
        422: "an invalid request, or a limit (--max-texts, --max-chars) exceeded",
        429: "rate limit of the key, or the encoder queue is full (see Retry-After)",
        503: "the model's directory moved or vanished since it was loaded (nothing was saved)",
    }
    return {c: {"model": ErrorBody, "description": what[c]} for c in codes}


TEXT_ERRORS = documented(401, 403, 404, 413, 422, 429)


class ApiError(Exception):
    """An answer with an error status: ``{"error": {"message", "type"}}``."""

    def __init__(self, status: int, kind: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.kind, self.message, self.headers = status, kind, message, headers


def error_response(
    status: int, kind: str, message: str, headers: dict | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": kind}}, status_code=status, headers=headers
    )


def say_invalid(e: dict, cfg: ServeConfig) -> str:
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


def install_error_handlers(app: FastAPI, metrics: Any, cfg: ServeConfig) -> None:
    """Answer :class:`ApiError`, HTTP errors and invalid requests in the one JSON shape,
    counting each kind in ``metrics``."""

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        metrics.errors.labels(exc.kind).inc()
        return error_response(exc.status, exc.kind, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # a body that does not parse: an invalid request
            metrics.errors.labels("invalid_request").inc()
            if isinstance(exc.__cause__, RecursionError):
                return error_response(
                    422, "invalid_request", "the request body is nested too deeply"
                )
            return error_response(
                422, "invalid_request", "the request body is not valid UTF-8 JSON"
            )
        metrics.errors.labels("http").inc()
        return error_response(exc.status_code, "http_error", str(exc.detail), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        metrics.errors.labels("invalid_request").inc()
        errors = list(exc.errors())
        # a union (one text | a list of them) reports every branch: keep the specific ones
        specific = [e for e in errors if not str(e.get("type", "")).endswith("_type")] or errors
        return error_response(
            422, "invalid_request", "; ".join(say_invalid(e, cfg) for e in specific[:5])
        )
