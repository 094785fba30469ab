"""A real HTTP server on loopback for driving the official SDKs in tests (no mocking of SDK objects).

    with FakeServer() as server:
        server.reply(json_reply({"id": "x", ...}))             # next request gets this
        server.reply(sse_reply([b'data: {...}\\n\\n', ...]))    # a server-sent-events stream
        server.reply(json_reply({"error": ...}, status=429, headers={"retry-after": "2"}))
        server.reply(sse_reply(chunks, cut_after=2))           # the stream breaks after 2 chunks
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="test")
        ...
        server.requests[0].json                                  # what the SDK sent

Replies are consumed in order; with none queued the server answers 500. `server.requests` records
method, path, headers and body of every request, so a test can also assert that *no* request came.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    chunks: list[bytes] | None = None  # streamed (SSE) when set
    chunk_delay: float = 0.0
    cut_after: int | None = None  # close the connection after this many chunks
    delay: float = 0.0  # wait before answering (timeouts)


def json_reply(payload: Any, status: int = 200, headers: dict[str, str] | None = None, delay: float = 0.0) -> Reply:
    return Reply(status, {"content-type": "application/json", **(headers or {})}, json.dumps(payload).encode(),
                 delay=delay)


def sse_reply(events: Iterable[Any], *, cut_after: int | None = None, chunk_delay: float = 0.0,
              event_names: bool = False) -> Reply:
    """A text/event-stream reply. Items: dicts become `data: {json}`; (name, dict) pairs become
    `event: name` + data (Anthropic's format); bytes are sent as they are (e.g. b"data: [DONE]\\n\\n")."""
    chunks = []
    for item in events:
        if isinstance(item, bytes):
            chunks.append(item)
        elif isinstance(item, tuple):
            name, data = item
            chunks.append(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
        else:
            chunks.append(f"data: {json.dumps(item)}\n\n".encode())
    return Reply(200, {"content-type": "text/event-stream"}, chunks=chunks, cut_after=cut_after,
                 chunk_delay=chunk_delay)


def reset_imagine() -> None:
    """Forget cached settings and engines, after a test changed the environment or config.toml."""
    import imagine
    from imagine._bridge import run_sync

    imagine.config.reset_settings()
    run_sync(imagine.registry.get_registry().aclose())  # close pools now, not whenever GC gets to them
    imagine.registry.reset_registry()
    # a fake server may reuse a port: what an earlier one took as response_format must not carry over
    from imagine.engines.cloud.openai import forget_response_formats

    forget_response_formats()


def unused_port() -> int:
    """A loopback port with nothing listening: for "the endpoint is unreachable" tests."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FakeServer:
    """Threaded HTTP server on 127.0.0.1:<free port> answering with queued replies."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._replies: deque[Reply | Callable[[Recorded], Reply]] = deque()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                recorded = Recorded(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with server._lock:
                    server.requests.append(recorded)
                    item = server._replies.popleft() if server._replies else None
                reply = item(recorded) if callable(item) else item
                if reply is None:
                    reply = json_reply({"error": {"message": "no reply queued", "type": "server_error"}}, 500)
                if reply.delay:
                    time.sleep(reply.delay)
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                if reply.chunks is None:
                    self.send_header("content-length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                    return
                self.send_header("connection", "close")
                self.send_header("cache-control", "no-cache")
                self.end_headers()
                self.close_connection = True
                for index, chunk in enumerate(reply.chunks):
                    if reply.cut_after is not None and index >= reply.cut_after:
                        break
                    self.wfile.write(chunk)
                    self.wfile.flush()
                    if reply.chunk_delay:
                        time.sleep(reply.chunk_delay)

            def _quietly(self) -> None:
                try:
                    self._handle()
                except (BrokenPipeError, ConnectionResetError):  # the client hung up (timeouts, cut streams)
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = _quietly

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def reply(self, *replies: Reply | Callable[[Recorded], Reply]) -> None:
        with self._lock:
            self._replies.extend(replies)

    def __enter__(self) -> "FakeServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
