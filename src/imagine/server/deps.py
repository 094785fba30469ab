"""What every request passes through: the Host check and body cap (one ASGI middleware, before any
parsing), the API key, and the per-request Client.

The Host check stops DNS rebinding: a web page on evil.example whose name re-resolves to 127.0.0.1 still
sends `Host: evil.example`, so a loopback-bound server answers only to its own names. The body is read
up to the cap and no further (a `Content-Length` above it is refused unread), so a huge upload costs
nothing. The per-request Client shares the server's settings, engines, router and log, and carries the
key's policy (local_only), so that policy holds on the one request path like any other."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, MutableMapping

from fastapi import Request

from ..client import Client
from ..router import Policy
from .errors import ApiError, error_body
from .keys import ApiKey, KeyStore
from .settings import ServerSettings, is_loopback

__all__ = ["Caller", "Guard", "authorize", "caller", "presented_key"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_LOCAL_NAMES = {"localhost", "127.0.0.1", "::1"}


def allowed_hosts(settings: ServerSettings) -> set[str] | None:
    """Host names the server answers to; None = any (a public bind behind keys, with no list given)."""
    names = {h.lower().strip("[]") for h in settings.allowed_hosts}
    if is_loopback(settings.host):
        return names | _LOCAL_NAMES | {settings.host.lower().strip("[]")}
    if not names or settings.host in ("0.0.0.0", "::"):
        return None if not names else names | _LOCAL_NAMES
    return names | _LOCAL_NAMES | {settings.host.lower().strip("[]")}


def host_name(header: str) -> str:
    """'example.com:8000' -> 'example.com'; '[::1]:8000' -> '::1'."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class Guard:
    """ASGI middleware: refuse a foreign Host (421) and a body over the cap (413) before the app runs."""

    def __init__(self, app: ASGIApp, settings: ServerSettings) -> None:
        self.app, self.max_body = app, settings.max_body_bytes
        self.hosts = allowed_hosts(settings)
        self.origins = {o.rstrip("/").lower() for o in settings.cors_origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.hosts is not None and host_name(headers.get("host", "")) not in self.hosts:
            await _reply(send, 421, f"host {headers.get('host', '')!r} is not served here", "host_not_allowed",
                         "start the server with --allow-host NAME to serve that name")
            return
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await _reply(send, 413, f"request body of {length} bytes is over the server's limit of "
                                    f"{self.max_body} bytes", "request_too_large", "--max-body-mb raises it")
            return
        if scope.get("method") in ("GET", "HEAD", "OPTIONS", "DELETE") and length is None:
            await self.app(scope, receive, send)
            return
        body, more = bytearray(), True
        while more:  # chunked uploads too: read at most the cap, then refuse
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body:
                await _reply(send, 413, f"request body is over the server's limit of {self.max_body} bytes",
                             "request_too_large", "--max-body-mb raises it")
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()  # after the body: the disconnect a streaming response listens for

        await self.app(scope, replay, send)


    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A WebSocket gets the Host check too, and an Origin check: browsers let any page open a socket
        to 127.0.0.1 (no CORS for WebSockets), so a page's socket is accepted only from this server's own
        names or a configured CORS origin. Refused before the handshake (HTTP 403)."""
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host_ok = self.hosts is None or host_name(headers.get("host", "")) in self.hosts
        origin = headers.get("origin", "").rstrip("/").lower()
        origin_ok = not origin or origin in self.origins or (
            "://" in origin and (self.hosts is None or host_name(origin.split("://", 1)[1]) in self.hosts))
        if not (host_ok and origin_ok):
            message = await receive()  # websocket.connect
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.close", "code": 1008,
                            "reason": "host not served here" if not host_ok else "origin not allowed"})
            return
        await self.app(scope, receive, send)


async def _reply(send: Send, status: int, message: str, code: str, hint: str) -> None:
    body = json.dumps(error_body(f"{message} ({hint})", "invalid_request_error", None, code)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


@dataclass
class Caller:
    """Who is asking: the request's Client (with the key's policy) and the key, when keys are in use."""

    client: Client
    key: ApiKey | None
    keys: KeyStore

    def budget_left(self) -> float | None:
        return self.keys.budget_left(self.key) if self.key is not None else None

    def policy(self, requested: str | None, max_cost: float | None) -> Policy | None:
        """The request's policy with the key's added: a local_only key stays local whatever the request
        says, and a key's daily budget caps each request's cost at what is left of it."""
        words = [w for w in (requested or "").split(",") if w.strip()]
        if self.key is not None and self.key.local_only and "local_only" not in words:
            words.append("local_only")
        left = self.budget_left()
        if left is not None:
            if left <= 0:
                raise ApiError(429, "this API key has spent its daily budget", type="insufficient_quota",
                               code="budget_exceeded")
            max_cost = left if max_cost is None else min(max_cost, left)
        if not words and max_cost is None:
            return None
        return Policy.parse(",".join(words), max_cost=max_cost,
                            max_cost_per_day=self.client.settings.max_cost_per_day)


def presented_key(headers: Any) -> str | None:
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return headers.get("x-api-key") or headers.get("api-key")


async def caller(request: Request) -> Caller:
    """FastAPI dependency: check the key (when any exist) and build the request's Client. Async on
    purpose: a sync dependency runs in a worker thread, two thread hops on every request for work that
    takes microseconds (a stat of the key file, a hash, a small object)."""
    return authorize(request.app.state, presented_key(request.headers))


def authorize(state: Any, presented: str | None) -> Caller:
    """The Caller for a presented key (None: none sent); raises the 401 ApiError when keys exist and this
    one is missing, wrong or revoked. HTTP routes and the realtime WebSocket share it."""
    keys: KeyStore = state.keys
    key = None
    if keys.active():
        key = keys.check(presented)
        if key is None:
            what = "no API key given" if not presented else "the API key is wrong or revoked"
            raise ApiError(401, f"{what} (send it as `Authorization: Bearer KEY`; `imagine keys create` makes one)",
                           code="invalid_api_key", headers={"www-authenticate": "Bearer"})
    base: Client = state.client
    policy = "local_only" if key is not None and key.local_only else base.policy
    client = Client(settings=base.settings, registry=base.registry, router=base.router, store=base.store,
                    policy=policy, log_extra={"api_key": key.id} if key is not None else None)
    return Caller(client, key, keys)
