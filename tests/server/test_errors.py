"""Every failure in OpenAI's error shape with the right status: bad JSON, a missing field, an unknown
model, an oversize body, a foreign Host header, an unknown route. Never a traceback, never a 500."""

from __future__ import annotations

import httpx
import pytest

from ..helpers.server import served

openai = pytest.importorskip("openai")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with served(tmp_path_factory.mktemp("serve-errors"), max_body_bytes=1 << 20) as running:
        yield running


def _shape(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert "Traceback" not in response.text
    return body["error"]


def test_bad_json_is_a_400(server):
    r = httpx.post(server.base_url + "/chat/completions", content=b"{not json",
                   headers={"content-type": "application/json"})
    assert "not valid JSON" in _shape(r, 400)["message"]


def test_missing_field_names_it(server):
    r = httpx.post(server.base_url + "/chat/completions", json={"model": "mock"})
    error = _shape(r, 400)
    assert error["param"] == "messages" and error["message"] == "messages is required"
    r = httpx.post(server.base_url + "/chat/completions",
                   json={"model": "mock", "messages": [{"role": "user", "content": 5}]})
    assert _shape(r, 400)["param"].startswith("messages[0].content")
    r = httpx.post(server.base_url + "/chat/completions", json={"model": "mock", "messages": [
        {"role": "user", "content": "hi"}], "temperature": "hot"})
    assert _shape(r, 400)["param"] == "temperature"


def test_unknown_model_is_a_404_like_openai(server):
    with pytest.raises(openai.NotFoundError) as err:
        server.openai().chat.completions.create(model="nosuch:thing", messages=[{"role": "user", "content": "hi"}])
    assert err.value.body["code"] == "model_not_found" and "nosuch" in err.value.body["message"]
    with pytest.raises(openai.NotFoundError):
        server.openai().models.retrieve("nosuch:thing")


def test_oversize_body_is_a_413_read_no_further(server):
    big = {"model": "mock", "messages": [{"role": "user", "content": "x" * (2 << 20)}]}
    error = _shape(httpx.post(server.base_url + "/chat/completions", json=big), 413)
    assert error["code"] == "request_too_large"

    def chunks():  # no Content-Length: counted as it arrives
        yield b'{"model": "mock", "messages": [{"role": "user", "content": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}]}'
    r = httpx.post(server.base_url + "/chat/completions", content=chunks(), headers={"content-type": "application/json"})
    _shape(r, 413)


def test_foreign_host_header_is_refused(server):
    r = httpx.get(server.base_url + "/models", headers={"host": "evil.example"})
    assert _shape(r, 421)["code"] == "host_not_allowed"
    assert httpx.get(server.base_url + "/models", headers={"host": f"localhost:{server.url.rsplit(':', 1)[1]}"}).status_code == 200


def test_unknown_route_and_method(server):
    assert _shape(httpx.get(server.url + "/v1/nothing"), 404)["code"] == "not_found"
    assert _shape(httpx.get(server.base_url + "/chat/completions"), 405)["code"] == "method_not_allowed"


def test_models_lists_engines_and_aliases(server):
    ids = [m.id for m in server.openai().models.list()]
    assert ids[:3] == ["auto", "local", "cloud"]
    assert "mock:echo" in ids and "llama-cpp:smollm2" in ids
    assert server.openai().models.retrieve("mock:echo").owned_by == "mock"


def test_health(server):
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}
