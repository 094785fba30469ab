"""server/fastpath.py: valid JSON bodies of the hot routes skip FastAPI's machinery and reach the same route
function; anything else reaches FastAPI with the body as sent, so its errors read exactly as before."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from imagine.server.app import FAST_ROUTES, ROUTERS
from imagine.server.errors import ApiError
from imagine.server.fastpath import FastPath
from imagine.server.protocol.chat import ChatRequest

BODY = {"model": "mock", "messages": [{"role": "user", "content": "hi"}]}


def chat_route() -> Any:
    return next(r for router in ROUTERS for r in router.routes if getattr(r, "path", "") == "/v1/chat/completions")


class Recorder:
    """The app behind the fast path, and a stand-in route endpoint: each records what reached it."""

    def __init__(self) -> None:
        self.inner: list[bytes] = []
        self.endpoint: list[Any] = []

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.inner.append((await receive())["body"])
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def call(path: str, body: bytes, content_type: bytes | None = b"application/json",
               error: Exception | None = None) -> tuple[Recorder, list[dict[str, Any]]]:
    from starlette.responses import JSONResponse

    recorder = Recorder()
    fast = FastPath(recorder.app, {"/v1/chat/completions": chat_route()})
    route, model, _ = fast.routes["/v1/chat/completions"]

    async def endpoint(parsed: Any, request: Any, who: Any) -> Any:
        recorder.endpoint.append((parsed, who))
        if error is not None:
            raise error
        return JSONResponse({"ok": True})

    fast.routes["/v1/chat/completions"] = (route, model, endpoint)

    class State:
        keys = type("Keys", (), {"active": staticmethod(lambda: [])})()
        client = type("C", (), {"settings": None, "registry": None, "router": None, "store": None, "policy": None})()

    app = type("App", (), {"state": State()})()
    headers = [(b"content-type", content_type)] if content_type is not None else []
    scope = {"type": "http", "method": "POST", "path": path, "headers": headers, "app": app, "query_string": b""}
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    import imagine.server.fastpath as fp

    real, fp.caller = fp.caller, lambda request: _who()  # type: ignore[assignment]
    try:
        await fast(scope, receive, send)
    finally:
        fp.caller = real
    return recorder, sent


async def _who() -> str:
    return "caller"


async def test_a_valid_body_goes_straight_to_the_route_function() -> None:
    recorder, sent = await call("/v1/chat/completions", json.dumps(BODY).encode())
    assert recorder.inner == [] and len(recorder.endpoint) == 1
    parsed, who = recorder.endpoint[0]
    assert isinstance(parsed, ChatRequest) and parsed.messages[0].content == "hi" and who == "caller"
    assert sent[0]["status"] == 200 and json.loads(sent[1]["body"]) == {"ok": True}


@pytest.mark.parametrize("body,content_type", [
    (b'{"model": "mock", "messages": [', b"application/json"),  # not JSON
    (json.dumps({"model": "mock"}).encode(), b"application/json"),  # messages missing
    (json.dumps({**BODY, "n": "many"}).encode(), None),  # a wrong type
    (json.dumps(BODY).encode(), b"text/plain"),  # FastAPI does not read this as JSON
    (b"", b"application/json"),
])
async def test_anything_else_reaches_fastapi_with_the_body_as_sent(body: bytes, content_type: bytes | None) -> None:
    recorder, sent = await call("/v1/chat/completions", body, content_type)
    assert recorder.inner == [body] and recorder.endpoint == [] and sent[0]["status"] == 299


async def test_other_paths_and_route_errors() -> None:
    recorder, _ = await call("/v1/embeddings", json.dumps(BODY).encode())
    assert recorder.inner == [json.dumps(BODY).encode()] and recorder.endpoint == []
    _, sent = await call("/v1/chat/completions", json.dumps(BODY).encode(),
                         error=ApiError(429, "busy", type="rate_limit_error", code="queue_full",
                                        headers={"retry-after": "3"}))
    assert sent[0]["status"] == 429 and (b"retry-after", b"3") in sent[0]["headers"]
    assert json.loads(sent[1]["body"]) == {"error": {"message": "busy", "type": "rate_limit_error", "param": None,
                                                     "code": "queue_full"}}


def test_the_fast_routes_exist_and_answer_like_fastapi(server: Any) -> None:
    """Through a real server: the routes are found, a planning error has its usual shape, a body FastAPI
    refuses is refused in the same words as before."""
    paths = {getattr(r, "path", "") for router in ROUTERS for r in router.routes}
    assert set(FAST_ROUTES) <= paths
    client = server.openai()
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="mock", messages=[{"role": "user", "content": "x"}], n=99)
    assert caught.value.body["param"] == "n" and caught.value.body["code"] == "invalid_value"
    response = httpx.post(server.base_url + "/chat/completions", json={"model": "mock", "messages": "nope"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "messages"
    reply = client.chat.completions.create(model="mock", messages=[{"role": "user", "content": "one two"}])
    assert reply.choices[0].message.content and reply.usage.completion_tokens > 0
