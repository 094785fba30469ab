"""Mount the studio's Gradio Blocks on the server's FastAPI app: same process, same Client, same Guard.

The server's middleware wraps the mounted app too, so the studio gets the Host check (DNS rebinding) and
the body cap like every API route. When API keys exist, the studio asks for one at a login form (any user
name, the key as the password): a browser cannot send `Authorization` headers on page loads."""

from __future__ import annotations

import os
from typing import Any

from ..errors import EngineUnavailable

__all__ = ["STUDIO_PATH", "app_from_env", "gradio_missing", "mount"]

STUDIO_PATH = "/studio"


def gradio_missing() -> str | None:
    """Why the studio cannot be served here (None when it can)."""
    try:
        import gradio  # noqa: F401
    except ImportError:
        return "the studio needs Gradio: pip install 'imagine[studio]'"
    return None


def mount(app: Any, path: str = STUDIO_PATH) -> Any:
    """Add the studio at `path` to a server app made by `imagine.server.app.create_app`."""
    reason = gradio_missing()
    if reason:
        raise EngineUnavailable(reason)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # nothing leaves the machine
    import gradio as gr

    from . import app as studio

    client, keys = app.state.client, app.state.keys
    blocks = studio.build(client, path=path)

    def check(username: str, password: str) -> bool:
        return keys.check(password) is not None

    auth = check if keys.active() else None
    limit = app.state.settings.max_body_bytes  # an upload over the server's body cap is refused by name
    app = gr.mount_gradio_app(app, blocks, path=path, auth=auth, theme=studio.THEME, css=studio.CSS, ssr_mode=False,
                               footer_links=[], max_file_size=limit, show_error=True,
                               auth_message="This server uses API keys: sign in with any name and a key from "
                                            "`imagine keys create` as the password.")
    _compress(app, path)
    return app


def _compress(app: Any, path: str) -> None:
    """gzip the studio's pages and scripts (Gradio's JavaScript is most of a first visit's bytes). Only the
    studio's mount: the API's own responses stay uncompressed, and event streams are never compressed."""
    from starlette.middleware.gzip import GZipMiddleware
    from starlette.routing import Mount

    for route in app.router.routes:
        if isinstance(route, Mount) and route.path == path.rstrip("/"):
            route.app = GZipMiddleware(route.app, minimum_size=1024)


def app_from_env() -> Any:
    """The uvicorn factory for `imagine serve` / `imagine studio`: the API server with the studio on it."""
    from ..server.app import create_app, freeze_startup_objects
    from ..server.settings import ServerSettings

    # frozen once the studio is on it, so Gradio's module graph is left out of collections too
    return freeze_startup_objects(mount(create_app(settings=ServerSettings.from_env())))
