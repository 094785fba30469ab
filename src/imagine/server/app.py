"""The FastAPI app: `create_app(client)` wires the guard, the error shape, CORS (only when asked) and the
routes; `run` starts uvicorn the way `imagine serve` does.

Safe by default: a bind that other machines can reach is refused unless API keys exist, a loopback bind
answers only to its own host names, and bodies are capped before they are parsed."""

from __future__ import annotations

import os
from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi.routing import APIRoute

from ..client import Client
from ..errors import ConfigError
from . import errors
from .deps import Guard
from .fastpath import FastPath
from .keys import KeyStore
from .metrics import Metrics, MetricsMiddleware
from .routes import chat, health, metrics as metrics_route, models
from .routes import audio, embeddings, images
from .routes import realtime as realtime_route
from .routes import responses as responses_route
from .serving.admission import Admission
from .settings import ENV_VAR, ServerSettings, is_loopback

__all__ = ["ROUTERS", "app_from_env", "create_app", "check_bind", "run"]

ROUTERS = [health.router, models.router, chat.router, metrics_route.router]
ROUTERS += [embeddings.router, audio.router, images.router]  # media endpoints
ROUTERS += [responses_route.router]  # the Responses API
ROUTERS += [realtime_route.router]  # the Realtime API (WebSocket): voice in, voice out
FAST_ROUTES = ("/v1/chat/completions", "/v1/responses")  # answered by fastpath.py for valid JSON bodies


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
    app.state.metrics = metrics = Metrics()
    app.state.admission = Admission(settings, metrics)  # local models: slots and a bounded fair queue
    metrics.depth = app.state.admission.depth
    client.store.write_in_background()  # the log row of each request is written off the event loop
    errors.install(app)
    for router in ROUTERS:
        app.include_router(router)
    fast = {r.path: r for router in ROUTERS for r in router.routes
            if isinstance(r, APIRoute) and r.path in FAST_ROUTES and "POST" in (r.methods or ())}
    app.add_middleware(FastPath, routes=fast)  # innermost: after the Guard, CORS and metrics, like a route
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["authorization", "content-type"], expose_headers=["x-imagine-log-id"])
    app.add_middleware(Guard, settings=settings)
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # added last: runs first, counts refusals too
    return app


def app_from_env() -> FastAPI:
    """The app factory each uvicorn worker calls (`--workers N`): settings come through the environment."""
    return freeze_startup_objects(create_app(settings=ServerSettings.from_env()))


def run(settings: ServerSettings, workers: int = 1, log_level: str = "info", *,
        factory: str = "imagine.server.app:app_from_env", on_started: Any = None) -> None:
    """Start uvicorn in this process (one worker) or its worker processes; returns when it stops.
    `factory` ("module:function", called with no arguments in each worker) builds the app: a layer above
    the server (the studio) passes its own, which builds this app and adds to it. `on_started` is called
    once the server listens (one worker only: `imagine studio` opens the browser then)."""
    import uvicorn
    from importlib import import_module

    check_bind(settings, KeyStore(Client().settings.home))
    common: dict[str, Any] = {"host": settings.host, "port": settings.port, "log_level": log_level,
                              "server_header": False, "forwarded_allow_ips": None}
    os.environ[ENV_VAR] = settings.to_env()
    if workers > 1:
        uvicorn.run(factory, factory=True, workers=workers, **common)
    else:
        module, _, name = factory.partition(":")
        serve_on_imagine_loop(uvicorn.Config(getattr(import_module(module), name)(), **common), on_started)


T = TypeVar("T")


def freeze_startup_objects(app: T) -> T:
    """`app`, once everything alive after building it (FastAPI, the imports, Gradio's large module graph
    when the studio is mounted) is moved out of the garbage collector's view: it is never garbage, and
    every full collection walked all of it, a pause that showed as the p99 of bench/server_overhead.py.
    A factory calls this last, once; engines load later, on their first request."""
    import gc

    gc.collect()
    gc.freeze()
    return app


def serve_on_imagine_loop(config: Any, on_started: Any = None) -> None:
    """Run one uvicorn server on imagine's own loop (`_bridge`), where the engines and their connection
    pools live: every event of every request then stays on one loop, instead of crossing threads once per
    event (a wake-up of the other loop each time, the largest cost left in bench/server_overhead.py).
    Engines keep blocking work in threads, so the loop stays free to answer. SIGINT and SIGTERM ask
    uvicorn to stop gracefully; this thread waits for it (and the log writer flushes at exit)."""
    import asyncio
    import signal
    import threading
    import time

    import uvicorn

    from .._bridge import bridge_loop

    server = uvicorn.Server(config)
    future = asyncio.run_coroutine_threadsafe(server.serve(), bridge_loop())

    if on_started is not None:
        def announce() -> None:
            while not server.started and not future.done():
                time.sleep(0.05)
            if server.started:
                on_started()

        threading.Thread(target=announce, name="imagine-started", daemon=True).start()

    def stop(signum: int, frame: Any) -> None:
        server.force_exit = server.should_exit  # a second signal: stop now, like uvicorn does
        server.should_exit = True

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, stop)
    future.result()
