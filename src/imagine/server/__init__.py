"""`imagine serve`: an OpenAI-compatible HTTP server over the one request path.

Layout (vLLM's entrypoints split): `routes/` are thin FastAPI handlers, `protocol/` the pydantic wire
models, `serving/` the code that turns a wire request into `Client.respond` and its events back into the
wire format. `deps` holds what every request passes through (Host check, body cap, API key, the
per-request Client), `errors` the one OpenAI-shaped error body. FastAPI is imported only here, so the CLI
stays fast; `keys` and `settings` import nothing heavy (the `imagine keys` command uses them).
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:  # lazy: `imagine keys` imports imagine.server.keys without FastAPI
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(name)
