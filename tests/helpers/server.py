"""A real uvicorn server on a free loopback port, over a Client with its own home (tests/server).

`served(...)` starts one; tests/server's module-scoped `server` fixture calls it once per module. The
server runs in a thread of the test process, so a test can reach the Client behind it (the mock engine's
queue, the log store) while it drives the server over HTTP with the official openai SDK."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .fake_http import unused_port


@dataclass
class Served:
    url: str
    client: Any  # the imagine Client behind the server
    home: Path
    app: Any = None  # the FastAPI app (its state: admission lanes, metrics)

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def openai(self, api_key: str = "none", **kwargs: Any) -> Any:
        import openai

        return openai.OpenAI(base_url=self.base_url, api_key=api_key, max_retries=0, timeout=120, **kwargs)

    def async_openai(self, api_key: str = "none") -> Any:
        import openai

        return openai.AsyncOpenAI(base_url=self.base_url, api_key=api_key, max_retries=0, timeout=120)

    def mock(self) -> Any:
        return self.client.registry.engine("mock")


@contextmanager
def served(home: Path, config: dict[str, Any] | None = None, *, studio: bool = False,
           **settings: Any) -> Iterator[Served]:
    import uvicorn

    from imagine import Client
    from imagine.server.app import create_app
    from imagine.server.settings import ServerSettings

    port = unused_port()
    client = Client(home=home, config=config)
    app = create_app(client, settings=ServerSettings(host="127.0.0.1", port=port, **settings))
    if studio:
        from imagine.studio import mount

        app = mount(app)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on" if studio else "off"))  # Gradio starts its queue at start-up
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield Served(f"http://127.0.0.1:{port}", client, home, app)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        client.close()
