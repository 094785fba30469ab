"""The studio: a web page to try, compare and keep multimodal results (Gradio, mounted on the server).

`imagine serve` serves it at /studio when Gradio is installed (`pip install 'imagine[studio]'`);
`imagine studio` starts the server and opens it. Everything it does goes through the one request path
(`Client`), so every reply is logged with its provenance like any other call."""

from .mount import STUDIO_PATH, app_from_env, mount

__all__ = ["STUDIO_PATH", "app_from_env", "mount"]
