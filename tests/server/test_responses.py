"""The Responses API end to end: a real uvicorn server driven by the official openai SDK's
`client.responses` (create sync and async, stream=True, the `responses.stream` helper), on the mock engine
(deterministic echo), the bundled SmolLM2 for json_schema, and the openai engine pointed at a fake upstream
on loopback for function tools (the mock cannot call tools)."""

from __future__ import annotations

import base64
import json
from typing import Iterator

import pytest

from imagine.parts import Image, ToolResult, ToolUse

from ..helpers.fake_http import FakeServer, sse_reply
from ..helpers.media import png_bytes
from ..helpers.server import Served, served

openai = pytest.importorskip("openai")

TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather in a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, FakeServer]]:
    with FakeServer() as upstream:
        config = {"endpoints": {"up": {"kind": "openai", "base_url": upstream.url + "/v1", "api_key": "sk-up",
                                       "locality": "cloud", "default_model": "m"}}}
        with served(tmp_path_factory.mktemp("serve-responses"), config=config) as server:
            yield server, upstream


@pytest.fixture
def server(world: tuple[Served, FakeServer]) -> Served:
    return world[0]


def _chunk(delta: dict, finish: str | None = None) -> dict:
    return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def test_create_answers_with_output_usage_and_its_log_id(server):
    raw = server.openai().responses.with_raw_response.create(model="mock", input="hello there world",
                                                             instructions="be brief")
    response = raw.parse()
    assert response.output_text == "hello there world" and response.status == "completed"
    assert response.object == "response" and response.model == "mock:echo"
    assert response.output[0].type == "message" and response.output[0].role == "assistant"
    assert response.usage.output_tokens == 3 and response.usage.total_tokens == response.usage.input_tokens + 3
    log_id = raw.headers["x-imagine-log-id"]
    assert response.id == "resp_" + log_id and server.client.store.get(log_id)["id"] == log_id
    sent = server.mock().requests[-1].messages
    assert [(m.role, m.text) for m in sent] == [("system", "be brief"), ("user", "hello there world")]


def test_stream_true_sends_the_typed_events_in_order(server):
    events = list(server.openai().responses.create(model="mock", input="one two three", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "one two three"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    done = events[-1].response
    assert done.output_text == "one two three" and done.usage.output_tokens == 3 and done.status == "completed"
    assert events[0].response.id == done.id and events[0].response.status == "in_progress"


def test_the_stream_helper_accumulates_the_final_response(server):
    with server.openai().responses.stream(model="mock", input="alpha beta") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "alpha beta" and final.output_text == "alpha beta"


async def test_async_create_and_stream(server):
    client = server.async_openai()
    response = await client.responses.create(model="mock", input="async hello")
    assert response.output_text == "async hello"
    stream = await client.responses.create(model="mock", input="async stream", stream=True)
    text = "".join([e.delta async for e in stream if e.type == "response.output_text.delta"])
    assert text == "async stream"
    await client.close()


def test_input_items_with_an_image_data_url(server):
    url = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
    items = [{"role": "user", "content": [{"type": "input_text", "text": "what is this"},
                                          {"type": "input_image", "image_url": url}]}]
    assert server.openai().responses.create(model="mock", input=items).output_text == "what is this"
    parts = server.mock().requests[-1].messages[-1].parts
    assert isinstance(parts[1], Image) and parts[1].data == png_bytes()


def test_a_private_image_url_is_refused_naming_the_item(server, world):
    _, upstream = world
    before = len(upstream.requests)
    items = [{"role": "user", "content": [{"type": "input_text", "text": "look"},
                                          {"type": "input_image", "image_url": upstream.url + "/a.png"}]}]
    with pytest.raises(openai.BadRequestError, match="refused to fetch") as err:
        server.openai().responses.create(model="mock", input=items)
    assert err.value.body["param"] == "input[0].content[1].image_url" and len(upstream.requests) == before


def test_max_output_tokens_makes_an_incomplete_response(server):
    response = server.openai().responses.create(model="mock", input="a b c d e f", max_output_tokens=2,
                                                temperature=0.3, top_p=0.9)
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text == "a b " and server.mock().requests[-1].options.max_tokens == 2


def test_json_schema_and_json_object_on_the_mock(server):
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    server.mock().enqueue('{"a": 1}')
    response = server.openai().responses.create(model="mock", input="give a", text={"format": {
        "type": "json_schema", "name": "thing", "schema": schema, "strict": True}})
    assert json.loads(response.output_text) == {"a": 1} and server.mock().requests[-1].schema == schema
    server.mock().enqueue('{"b": 2}')
    response = server.openai().responses.create(model="mock", input="give b", text={"format": {"type": "json_object"}})
    assert json.loads(response.output_text) == {"b": 2}


def test_previous_response_id_continues_the_logged_conversation(server):
    client = server.openai()
    first = client.responses.create(model="mock", input="my name is Ada", instructions="be brief")
    second = client.responses.create(model="mock", input="what is my name", previous_response_id=first.id)
    sent = server.mock().requests[-1].messages
    assert [(m.role, m.text) for m in sent] == [("user", "my name is Ada"), ("assistant", "my name is Ada"),
                                               ("user", "what is my name")]  # instructions are not carried
    row = server.client.store.get(second.id.removeprefix("resp_"))
    assert row["conversation_id"] == server.client.store.get(first.id.removeprefix("resp_"))["conversation_id"]
    client.responses.create(model="mock", input="a branch", previous_response_id=first.id)
    assert [m.text for m in server.mock().requests[-1].messages] == ["my name is Ada", "my name is Ada", "a branch"]


def test_an_unknown_or_prefix_previous_response_id_is_not_found(server):
    first = server.openai().responses.create(model="mock", input="hi")
    for wrong in ("resp_nope", first.id[:8]):
        with pytest.raises(openai.NotFoundError, match="not found") as err:
            server.openai().responses.create(model="mock", input="x", previous_response_id=wrong)
        assert err.value.body["param"] == "previous_response_id"


@pytest.mark.parametrize("body, param, words", [
    ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0].type", "not supported"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}, "input[0].content[0].type",
     "not supported"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
     "input[0].content[0].file_id", "no file store"),
    ({"input": [{"role": "robot", "content": "hi"}]}, "input[0].role", "must be user"),
    ({"input": ""}, "input", "must not be empty"),
    ({"input": "hi", "tools": [{"type": "web_search"}]}, "tools[0].type", "function tools only"),
    ({"input": "hi", "text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format.schema", "required"),
    ({"input": "hi", "max_output_tokens": 10 ** 9}, "max_output_tokens", "at most"),
    ({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "[1"}]}, "input[0].arguments",
     "not valid JSON"),
])
def test_bad_input_is_a_400_naming_the_field(server, body, param, words):
    with pytest.raises(openai.BadRequestError, match=words) as err:
        server.openai().responses.create(model="mock", **body)
    assert err.value.body["param"] == param and err.value.body["type"] == "invalid_request_error"


def test_missing_input_and_unknown_model(server):
    import httpx

    r = httpx.post(server.base_url + "/responses", json={"model": "mock"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "input"
    with pytest.raises(openai.NotFoundError):
        server.openai().responses.create(model="nosuchengine:x", input="hi")


def test_function_tool_round_trip(world):
    server, upstream = world
    client = server.openai()
    call = {"index": 0, "id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    upstream.reply(sse_reply([_chunk({"tool_calls": [call]}), _chunk({}, "tool_calls"), b"data: [DONE]\n\n"]))
    first = client.responses.create(model="up:m", input="weather in Paris?", tools=TOOLS)
    (item,) = first.output
    assert item.type == "function_call" and item.name == "get_weather" and item.call_id == "call_1"
    assert json.loads(item.arguments) == {"city": "Paris"}
    assert upstream.requests[-1].json["tools"][0]["function"]["name"] == "get_weather"

    # the tool's result, continuing by previous_response_id (the call comes back from the log)
    upstream.reply(sse_reply([_chunk({"content": "Sunny, 21 C."}), _chunk({}, "stop"), b"data: [DONE]\n\n"]))
    output = [{"type": "function_call_output", "call_id": "call_1", "output": '{"sky": "sunny", "c": 21}'}]
    second = client.responses.create(model="up:m", input=output, tools=TOOLS, previous_response_id=first.id)
    assert second.output_text == "Sunny, 21 C."
    sent = upstream.requests[-1].json["messages"]
    assert sent[1]["tool_calls"][0]["id"] == "call_1" and sent[2]["role"] == "tool"
    assert sent[2]["tool_call_id"] == "call_1" and "sunny" in sent[2]["content"]

    # the same turn with the whole history sent as input items (no previous_response_id)
    upstream.reply(sse_reply([_chunk({"content": "Still sunny."}), _chunk({}, "stop"), b"data: [DONE]\n\n"]))
    items = [{"role": "user", "content": "weather in Paris?"}, item.model_dump(exclude_none=True), *output]
    assert client.responses.create(model="up:m", input=items, tools=TOOLS).output_text == "Still sunny."
    parts = [p for m in server.client.store.conversation(
        server.client.store.get(second.id.removeprefix("resp_"))["conversation_id"]) for p in m.parts]
    assert any(isinstance(p, ToolUse) for p in parts) and any(isinstance(p, ToolResult) for p in parts)


def test_a_streamed_function_call(world):
    server, upstream = world
    call = {"index": 0, "id": "call_2", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
    upstream.reply(sse_reply([_chunk({"content": "Let me check."}), _chunk({"tool_calls": [call]}),
                              _chunk({}, "tool_calls"), b"data: [DONE]\n\n"]))
    with server.openai().responses.stream(model="up:m", input="weather in Oslo?", tools=TOOLS,
                                          tool_choice={"type": "function", "name": "get_weather"}) as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds and "response.function_call_arguments.done" in kinds
    assert [o.type for o in final.output] == ["message", "function_call"]
    assert final.output_text == "Let me check." and json.loads(final.output[1].arguments) == {"city": "Oslo"}
    assert upstream.requests[-1].json["tool_choice"]["function"]["name"] == "get_weather"


@pytest.mark.llm
def test_bundled_llama_json_schema(server):
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    response = server.openai().responses.create(
        model="llama-cpp", input="Ada is 36. Give her name and age as JSON.", max_output_tokens=40, temperature=0,
        text={"format": {"type": "json_schema", "name": "person", "schema": schema, "strict": True}})
    value = json.loads(response.output_text)
    assert set(value) == {"name", "age"} and isinstance(value["age"], int)
    assert response.model.startswith("llama-cpp:") and response.usage.input_tokens > 0
