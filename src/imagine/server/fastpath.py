"""A plain-ASGI fast path for the hot JSON routes (`POST /v1/chat/completions`, `POST /v1/responses`).

FastAPI's routing, dependency solving, request wrappers and exception middleware cost about a quarter of
a relayed chat request's CPU in bench/server_overhead.py. For a valid request none of it decides
anything: the body is one JSON object for one pydantic model, the dependency is `caller`, and the route
function returns a Response. So this middleware, inside the Guard (Host check, body cap), CORS and the
metrics, parses and validates the body itself and calls the same route function with the same
arguments. Anything else takes the FastAPI route unchanged: another path or method, a body that is not
JSON or does not validate (FastAPI then writes the 400 exactly as always), so the two cannot disagree.
Errors raised before the answer starts get the same handlers' bodies (errors.response_for); unexpected
ones propagate to Starlette's ServerErrorMiddleware as they would from a route."""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

from fastapi import Request
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from ..errors import ImagineError
from .deps import ASGIApp, Caller, Message, Receive, Scope, Send, caller
from .errors import ApiError, response_for

__all__ = ["FastPath"]

Handler = Callable[[Any, Request, Caller], Awaitable[Any]]


def _is_json(content_type: bytes | None) -> bool:
    """What FastAPI parses as JSON: no Content-Type at all, or application/json or application/*+json."""
    if content_type is None:
        return True
    kind = content_type.split(b";", 1)[0].strip().lower()
    return kind == b"application/json" or (kind.startswith(b"application/") and kind.endswith(b"+json"))


class FastPath:
    """ASGI middleware: the routes in `routes` (path -> APIRoute) answered without FastAPI's machinery for
    valid POST bodies. The route's endpoint must take (body, request, who) like the chat route does."""

    def __init__(self, app: ASGIApp, routes: dict[str, APIRoute]) -> None:
        self.app = app
        self.routes: dict[str, tuple[APIRoute, type[BaseModel], Handler]] = {}
        for path, route in routes.items():
            model = route.body_field.field_info.annotation if route.body_field is not None else None
            if isinstance(model, type) and issubclass(model, BaseModel):
                self.routes[path] = (route, model, route.endpoint)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self.routes.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if found is None:
            await self.app(scope, receive, send)
            return
        route, model, endpoint = found
        chunks: list[bytes] = []
        while True:  # the Guard has read (and capped) the body already: this is one message
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left before sending its body
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        content_type = next((v for k, v in scope["headers"] if k == b"content-type"), None)
        parsed = None
        if body and _is_json(content_type):
            try:
                parsed = model.model_validate(json.loads(body))
            except (ValueError, ValidationError):  # FastAPI says what is wrong, in its usual words
                parsed = None
        if parsed is None:
            await self.app(scope, _replay(body, receive), send)
            return
        scope["route"] = route  # what the metrics label the request with, as the router would set it
        request = Request(scope, receive)
        try:
            response = await endpoint(parsed, request, await caller(request))
        except (ApiError, ImagineError) as exc:
            response = response_for(exc)
        await response(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """`receive` that gives the body once more, then what the client sends next (its disconnect)."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
