"""Keys and policy: with keys, missing/wrong/revoked keys get 401; a local_only key never reaches a cloud
engine; a public bind without keys is refused at start-up. Tools with a tool-result turn go through a
cloud-style endpoint (the openai engine pointed at a fake upstream on loopback)."""

from __future__ import annotations

import json

import httpx
import pytest

from ..helpers.cli import assert_one_line_error, run
from ..helpers.fake_http import FakeServer, sse_reply

from ..helpers.server import served

openai = pytest.importorskip("openai")

USER = [{"role": "user", "content": "weather in Paris?"}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                           "parameters": {"type": "object",
                                                          "properties": {"city": {"type": "string"}}}}}]


def _chunk(delta: dict, finish: str | None = None) -> dict:
    return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from imagine.server.keys import KeyStore

    home = tmp_path_factory.mktemp("serve-keys")
    store = KeyStore(home)
    keys = {name: store.create(name, local_only=name == "local")[1] for name in ("full", "local", "gone")}
    with FakeServer() as upstream:
        config = {"endpoints": {"up": {"kind": "openai", "base_url": upstream.url + "/v1", "api_key": "sk-up",
                                       "locality": "cloud", "default_model": "m"}}}
        with served(home, config=config) as server:
            yield server, upstream, keys, store


def test_keys_are_required_once_they_exist(world):
    server, _, keys, store = world
    url = server.base_url + "/chat/completions"
    body = {"model": "mock", "messages": USER}
    assert httpx.post(url, json=body).status_code == 401
    r = httpx.post(url, json=body, headers={"authorization": "Bearer imk-wrong"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        server.openai("imk-wrong").models.list()
    assert server.openai(keys["gone"]).chat.completions.create(model="mock", messages=USER).choices
    gone_id = next(k.id for k in store.keys() if k.name == "gone")
    store.revoke(gone_id)
    with pytest.raises(openai.AuthenticationError, match="wrong or revoked"):
        server.openai(keys["gone"]).chat.completions.create(model="mock", messages=USER)
    assert httpx.get(server.url + "/health").status_code == 200  # liveness needs no key


def test_keys_are_stored_hashed(world):
    server, _, keys, _ = world
    text = (server.home / "api_keys.json").read_text()
    assert all(secret not in text for secret in keys.values())


def test_tools_with_a_tool_result_turn(world):
    server, upstream, keys, _ = world
    call = {"index": 0, "id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    upstream.reply(sse_reply([_chunk({"tool_calls": [call]}), _chunk({}, "tool_calls"), b"data: [DONE]\n\n"]))
    client = server.openai(keys["full"])
    first = client.chat.completions.create(model="up:m", messages=USER, tools=TOOLS)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls[0].function.name == "get_weather"
    assert json.loads(choice.message.tool_calls[0].function.arguments) == {"city": "Paris"}

    upstream.reply(sse_reply([_chunk({"content": "Sunny, 21 C."}), _chunk({}, "stop"), b"data: [DONE]\n\n"]))
    history = [*USER, choice.message.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": "call_1", "content": '{"sky": "sunny", "c": 21}'}]
    second = client.chat.completions.create(model="up:m", messages=history, tools=TOOLS)
    assert second.choices[0].message.content == "Sunny, 21 C."
    sent = upstream.requests[-1].json["messages"]
    assert sent[1]["tool_calls"][0]["id"] == "call_1" and sent[2]["role"] == "tool"
    assert sent[2]["tool_call_id"] == "call_1" and "sunny" in sent[2]["content"]


@pytest.mark.llm
def test_a_local_only_key_never_reaches_a_cloud_engine(world):
    server, upstream, keys, _ = world
    before = len(upstream.requests)
    client = server.openai(keys["local"])
    for model in ("up:m", "cloud"):
        with pytest.raises(openai.PermissionDeniedError, match="local_only"):
            client.chat.completions.create(model=model, messages=USER)
    # whatever the request's policy says, the router keeps the key's requests on the device
    routed = client.chat.completions.create(model="auto", messages=USER, max_tokens=2,
                                            extra_body={"policy": "cloud"})
    assert routed.model.startswith("llama-cpp:")
    assert client.chat.completions.create(model="mock", messages=USER).choices[0].message.content
    assert len(upstream.requests) == before


def test_a_public_bind_without_keys_is_refused(tmp_path):
    proc = run("serve", "--host", "0.0.0.0", "--port", "1", home=tmp_path)
    assert_one_line_error(proc, "refusing to serve on 0.0.0.0 without API keys")
    from imagine import Client
    from imagine.errors import ConfigError
    from imagine.server.app import create_app
    from imagine.server.settings import ServerSettings

    with pytest.raises(ConfigError):
        create_app(Client(home=tmp_path), settings=ServerSettings(host="0.0.0.0"))


def test_keys_cli_create_list_revoke(tmp_path):
    made = run("keys", "create", "--name", "ci", "--local-only", "--daily-budget", "0.5", "--json", home=tmp_path)
    assert made.returncode == 0, made.stderr
    record = json.loads(made.stdout)
    assert record["key"].startswith("imk-") and record["local_only"] and record["daily_budget"] == 0.5
    listed = run("keys", "list", "--json", home=tmp_path)
    assert [k["id"] for k in json.loads(listed.stdout)] == [record["id"]] and record["key"] not in listed.stdout
    assert run("keys", "revoke", record["id"], home=tmp_path).returncode == 0
    assert json.loads(run("keys", "list", "--json", home=tmp_path).stdout)[0]["revoked"]
    assert_one_line_error(run("keys", "revoke", "key_nope", home=tmp_path), "no API key")


def test_previous_response_id_belongs_to_the_key_that_made_it(world):
    server, _, keys, _ = world
    first = server.openai(keys["full"]).responses.create(model="mock", input="remember the word teal")
    assert server.client.store.get(first.id.removeprefix("resp_"))["api_key"] == next(
        k.id for k in world[3].keys() if k.name == "full")
    with pytest.raises(openai.NotFoundError) as caught:  # another key: the same 404 as an unknown id
        server.openai(keys["local"]).responses.create(model="mock", input="and now?", previous_response_id=first.id)
    assert caught.value.body["code"] == "previous_response_not_found"
    again = server.openai(keys["full"]).responses.create(model="mock", input="and now?",
                                                        previous_response_id=first.id)
    assert again.id != first.id and again.output_text
