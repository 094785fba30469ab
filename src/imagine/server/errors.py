"""Every failure as OpenAI's error body, `{"error": {"message", "type", "param", "code"}}`, with the
status OpenAI would use, so SDKs raise their usual exception (NotFoundError, AuthenticationError, ...).

imagine's own errors already say what went wrong and how to fix it; here they only get a status. Bad
request bodies (FastAPI's validation) name the field as `param`. Anything unexpected is a 500 with a
short message and no traceback."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import errors as E

__all__ = ["ApiError", "error_body", "install", "response_for", "status_of"]

log = logging.getLogger("imagine.server")


class ApiError(Exception):
    """An error the server itself raises (auth, limits, unsupported fields), already in wire terms."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}


def error_body(message: str, type: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


# (class, status, type, code), most specific first
_MAP: list[tuple[type[E.ImagineError], int, str, str | None]] = [
    (E.LimitExceeded, 413, "invalid_request_error", "request_too_large"),
    (E.InputError, 400, "invalid_request_error", None),
    (E.OptionsError, 400, "invalid_request_error", "invalid_option"),
    (E.SchemaError, 400, "invalid_request_error", "schema_error"),
    (E.EngineNotFound, 404, "invalid_request_error", "model_not_found"),
    (E.EngineUnavailable, 503, "server_error", "engine_unavailable"),
    (E.BudgetExceeded, 402, "insufficient_quota", "budget_exceeded"),
    (E.RateLimited, 429, "rate_limit_error", "rate_limited"),
    (E.UpstreamTimeout, 504, "server_error", "upstream_timeout"),
    (E.Refused, 400, "invalid_request_error", "refused"),
    (E.UpstreamError, 502, "server_error", "upstream_error"),
]


def status_of(exc: E.ImagineError) -> tuple[int, str, str | None]:
    for cls, status, kind, code in _MAP:
        if isinstance(exc, cls):
            return status, kind, code
    return 500, "server_error", type(exc).__name__  # ConfigError, StoreError: the server's own set-up


def imagine_error_response(exc: E.ImagineError, param: str | None = None) -> JSONResponse:
    status, kind, code = status_of(exc)
    headers = {}
    if isinstance(exc, E.RateLimited) and exc.retry_after:
        headers["retry-after"] = str(max(1, round(exc.retry_after)))
    return JSONResponse(error_body(str(exc), kind, param, code), status_code=status, headers=headers)


def response_for(exc: ApiError | E.ImagineError) -> JSONResponse:
    """The error answer for an ApiError or an imagine error (what the handlers below send)."""
    if isinstance(exc, ApiError):
        return JSONResponse(error_body(exc.message, exc.type, exc.param, exc.code), status_code=exc.status,
                            headers=exc.headers)
    return imagine_error_response(exc)


def _loc(loc: tuple[Any, ...] | list[Any]) -> str:
    """('body', 'messages', 0, 'content') -> 'messages[0].content'."""
    out = ""
    for item in loc:
        if item in ("body", "query", "path", "header") and not out:
            continue
        out += f"[{item}]" if isinstance(item, int) else (f".{item}" if out else str(item))
    return out


def validation_message(errors: list[Any]) -> tuple[str, str | None]:
    first = errors[0] if errors else {}
    param = _loc(first.get("loc", ())) or None
    if first.get("type") == "json_invalid":
        return f"the request body is not valid JSON: {first.get('ctx', {}).get('error', first.get('msg'))}", None
    if first.get("type") == "missing":
        return f"{param} is required", param
    message = f"{param}: {first.get('msg')}" if param else str(first.get("msg", "invalid request"))
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return message, param


def install(app: FastAPI) -> None:
    """Register the handlers that give every error the one shape."""

    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> JSONResponse:
        return response_for(exc)

    @app.exception_handler(E.ImagineError)
    async def _imagine(request: Request, exc: E.ImagineError) -> JSONResponse:
        return imagine_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = validation_message(list(exc.errors()))
        return JSONResponse(error_body(message, "invalid_request_error", param, "invalid_request"), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        message = f"no route {request.method} {request.url.path}" if exc.status_code in (404, 405) else str(exc.detail)
        return JSONResponse(error_body(message, "invalid_request_error", None, code), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body(f"internal error ({type(exc).__name__}); see the server log", "server_error",
                                       None, "internal_error"), status_code=500)
