"""The FastAPI app: `create_app(client)` wires the guard, the error shape, CORS (only when asked) and the
routes; `run` starts uvicorn the way `imagine serve` does.

Safe by default: a bind that other machines can reach is refused unless API keys exist, a loopback bind
answers only to its own host names, and bodies are capped before they are parsed."""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI

from ..client import Client
from ..errors import ConfigError
from . import errors
from .deps import Guard
from .keys import KeyStore
from .routes import chat, health, models
from .routes import responses as responses_route
from .settings import ENV_VAR, ServerSettings, is_loopback

__all__ = ["ROUTERS", "app_from_env", "create_app", "check_bind", "run"]

ROUTERS = [health.router, models.router, chat.router]
ROUTERS += [responses_route.router]  # the Responses API


def check_bind(settings: ServerSettings, keys: KeyStore) -> None:
    """A bind other machines can reach needs API keys: refuse to start without any."""
    if not is_loopback(settings.host) and not keys.active():
        raise ConfigError(f"refusing to serve on {settings.host} without API keys: anyone who can reach it "
                          "could use your models and budget",
                          hint="create one with `imagine keys create`, or bind 127.0.0.1")


def create_app(client: Client | None = None, *, settings: ServerSettings | None = None) -> FastAPI:
    """The server for `client` (default: a Client on IMAGINE_HOME). Every request runs on a Client that
    shares its settings, engines, router and log."""
    client = client or Client()
    settings = settings or ServerSettings()
    keys = KeyStore(client.settings.home)
    check_bind(settings, keys)
    from .. import __version__

    app = FastAPI(title="imagine", version=str(__version__),
                  description="OpenAI-compatible API over imagine's engines, local and cloud.")
    app.state.client, app.state.settings, app.state.keys = client, settings, keys
    errors.install(app)
    for router in ROUTERS:
        app.include_router(router)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["authorization", "content-type"], expose_headers=["x-imagine-log-id"])
    app.add_middleware(Guard, settings=settings)  # added last: runs first
    return app


def app_from_env() -> FastAPI:
    """The app factory each uvicorn worker calls (`--workers N`): settings come through the environment."""
    return create_app(settings=ServerSettings.from_env())


def run(settings: ServerSettings, workers: int = 1, log_level: str = "info") -> None:
    """Start uvicorn in this process (one worker) or its worker processes; returns when it stops."""
    import uvicorn

    check_bind(settings, KeyStore(Client().settings.home))
    common: dict[str, Any] = {"host": settings.host, "port": settings.port, "log_level": log_level,
                              "server_header": False, "forwarded_allow_ips": None}
    if workers > 1:
        os.environ[ENV_VAR] = settings.to_env()
        uvicorn.run("imagine.server.app:app_from_env", factory=True, workers=workers, **common)
    else:
        uvicorn.run(create_app(settings=settings), **common)
