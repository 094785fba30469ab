"""The `anthropic` engine against a real HTTP server on loopback (tests/helpers/fake_http.py): the official SDK
makes real requests and parses real server-sent events; the tests check what the server received and
what imagine made of the reply."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import time
import io
from typing import Any, Iterator

import pytest
from pydantic import BaseModel

pytest.importorskip("anthropic", reason="needs the anthropic extra: pip install -e '.[anthropic]'")

import imagine  # noqa: E402
from imagine import EngineUnavailable, InputError, OptionsError, ToolCall, UpstreamError  # noqa: E402
from imagine.errors import RateLimited, Refused, UpstreamTimeout  # noqa: E402

from ...helpers.fake_http import FakeServer, json_reply, reset_imagine as reset, sse_reply, unused_port  # noqa: E402
from ...helpers.media import png_bytes  # noqa: E402

KEY = "sk-ant-test-SECRET-4242"
MODEL = "claude-3-5-haiku-latest"


# -- the wire format: Anthropic's named server-sent events ------------------------------------------------

def start(input_tokens: int = 10) -> tuple[str, dict[str, Any]]:
    return ("message_start", {"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": MODEL, "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": input_tokens, "output_tokens": 1}}})


def text_block(index: int, *deltas: str) -> list[tuple[str, dict[str, Any]]]:
    return [("content_block_start", {"type": "content_block_start", "index": index,
                                     "content_block": {"type": "text", "text": ""}}),
            *(("content_block_delta", {"type": "content_block_delta", "index": index,
                                       "delta": {"type": "text_delta", "text": d}}) for d in deltas),
            ("content_block_stop", {"type": "content_block_stop", "index": index})]


def tool_block(index: int, tool_id: str, name: str, *json_parts: str) -> list[tuple[str, dict[str, Any]]]:
    return [("content_block_start", {"type": "content_block_start", "index": index,
                                     "content_block": {"type": "tool_use", "id": tool_id, "name": name, "input": {}}}),
            *(("content_block_delta", {"type": "content_block_delta", "index": index,
                                       "delta": {"type": "input_json_delta", "partial_json": p}}) for p in json_parts),
            ("content_block_stop", {"type": "content_block_stop", "index": index})]


def stop(reason: str = "end_turn", output_tokens: int = 5) -> list[tuple[str, dict[str, Any]]]:
    return [("message_delta", {"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": None},
                               "usage": {"output_tokens": output_tokens}}),
            ("message_stop", {"type": "message_stop"})]


def answer(*deltas: str, reason: str = "end_turn", usage: tuple[int, int] = (10, 5), **kw: Any) -> Any:
    return sse_reply([start(usage[0]), ("ping", {"type": "ping"}), *text_block(0, *deltas),
                      *stop(reason, usage[1])], **kw)


def error_body(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServer]:
    """The built-in `anthropic` engine pointed at a fake server through the usual environment variables."""
    with FakeServer() as srv:
        monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", srv.url)
        reset()
        yield srv


def ask(prompt: str = "hi", **kw: Any) -> imagine.Response:
    return imagine.ask(prompt, f"anthropic:{MODEL}", **kw)


# -- the happy path --------------------------------------------------------------------------------------

def test_streams_deltas_and_sends_the_request(server):
    server.reply(answer("Hel", "lo", " there"))
    resp = ask("hi", system="be brief", temperature=0.2, stop=["END"])
    assert list(resp) == ["Hel", "lo", " there"]
    assert resp.text() == "Hello there" and resp.finish_reason == "stop"
    sent = server.requests[0]
    assert sent.method == "POST" and sent.path == "/v1/messages"
    assert KEY in (sent.headers.get("x-api-key", "") + sent.headers.get("authorization", ""))
    body = sent.json
    assert body["model"] == MODEL and body["stream"] is True
    assert body["system"] == "be brief"  # system goes to its own parameter, not into messages
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert body["max_tokens"] == 1024  # required by the API: a default when the option is unset
    assert body["temperature"] == 0.2 and body["stop_sequences"] == ["END"]
    assert "tools" not in body and "tool_choice" not in body


def test_max_tokens_and_history_roles(server):
    server.reply(answer("ok"))
    history = [imagine.Message.user("first"), imagine.Message.assistant("reply")]
    ask("second", max_tokens=50, history=history).text()
    body = server.requests[0].json
    assert body["max_tokens"] == 50
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][2]["content"][0]["text"] == "second"


def test_usage_and_cost_reach_the_response_and_the_log(server, imagine_home):
    server.reply(answer("hi", usage=(1000, 200)))
    resp = ask()
    resp.text()
    expected = 1000 * 0.80 / 1e6 + 200 * 4.00 / 1e6
    assert (resp.usage.input_tokens, resp.usage.output_tokens) == (1000, 200)
    assert resp.usage.cost == pytest.approx(expected)
    row = imagine.get_store().get(resp.id)
    assert row["input_tokens"] == 1000 and row["output_tokens"] == 200
    assert row["cost"] == pytest.approx(expected)
    assert row["engine"] == "anthropic" and row["model"] == MODEL and row["output_text"] == "hi"
    assert row["engine_version"].startswith("anthropic ")


def test_an_image_is_sent_as_base64(server):
    png = png_bytes()
    server.reply(answer("a red square"))
    ask("what is this?", attach=[png]).text()
    content = server.requests[0].json["messages"][0]["content"]
    assert content[0] == {"type": "text", "text": "what is this?"}
    assert content[1]["type"] == "image"
    assert content[1]["source"]["type"] == "base64" and content[1]["source"]["media_type"] == "image/png"
    assert base64.b64decode(content[1]["source"]["data"]) == png


def test_an_image_type_the_api_lacks_is_converted_to_png(server):
    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.new("RGB", (4, 4), (1, 2, 3)).save(buf, format="BMP")
    server.reply(answer("ok"))
    ask("what is this?", attach=[buf.getvalue()]).text()
    source = server.requests[0].json["messages"][0]["content"][1]["source"]
    assert source["media_type"] == "image/png"
    assert base64.b64decode(source["data"]).startswith(b"\x89PNG")


class City(BaseModel):
    name: str
    population: int


def test_a_schema_forces_the_output_tool_and_parses(server):
    events = [start(), *tool_block(0, "toolu_1", "output", '{"name": "Par', 'is", "population": ', "2100000}"),
              *stop("tool_use")]
    server.reply(sse_reply(events))
    resp = ask("biggest city in France?", schema=City)
    assert resp.parsed == City(name="Paris", population=2100000)
    assert resp.text() == '{"name": "Paris", "population": 2100000}'
    assert resp.finish_reason == "stop"
    body = server.requests[0].json
    assert body["tool_choice"] == {"type": "tool", "name": "output"}
    [tool] = body["tools"]
    assert tool["name"] == "output" and tool["input_schema"]["properties"]["population"]["type"] == "integer"


def test_a_non_object_schema_is_wrapped_and_unwrapped(server):
    schema = {"type": "array", "items": {"type": "string"}}
    server.reply(sse_reply([start(), *tool_block(0, "t", "output", '{"value": ["a", ', '"b"]}'), *stop("tool_use")]))
    resp = ask("two letters", schema=schema)
    assert resp.parsed == ["a", "b"]
    input_schema = server.requests[0].json["tools"][0]["input_schema"]
    assert input_schema["type"] == "object" and input_schema["properties"]["value"] == schema


def test_tool_calls_become_events(server):
    tools = [{"name": "get_weather", "description": "weather for a city",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    events = [start(), *text_block(0, "Let me check."),
              *tool_block(1, "toolu_9", "get_weather", '{"ci', 'ty": "Oslo"}'), *stop("tool_use")]
    server.reply(sse_reply(events))
    resp = ask("weather in Oslo?", tools=tools)
    calls = [e for e in resp.events() if isinstance(e, ToolCall)]
    assert calls == [ToolCall(id="toolu_9", name="get_weather", arguments={"city": "Oslo"})]
    assert resp.text() == "Let me check." and resp.finish_reason == "tool_calls"
    sent = server.requests[0].json["tools"]
    assert sent == [{"name": "get_weather", "description": "weather for a city",
                     "input_schema": tools[0]["parameters"]}]


def test_works_from_a_callers_own_event_loop(server):
    """A client opened on imagine's background loop must not be reused on another loop."""
    server.reply(answer("one"), answer("two"))
    assert ask().text() == "one"

    async def main() -> str:
        resp = await imagine.aask("hi", f"anthropic:{MODEL}")
        return resp.text_so_far()

    assert asyncio.run(main()) == "two"


def test_seed_is_refused_before_any_request(server):
    with pytest.raises(OptionsError, match="seed"):
        ask(seed=1)
    assert server.requests == []


# -- failures --------------------------------------------------------------------------------------------

def test_a_server_error_is_an_upstream_error(server, imagine_home):
    server.reply(json_reply(error_body("api_error", "boom"), status=500))
    resp = ask()
    with pytest.raises(UpstreamError, match="boom"):
        resp.text()
    assert imagine.get_store().get(resp.id)["error"]
    assert len(server.requests) == 1  # the SDK's own retries are off


def test_overloaded_is_an_upstream_error(server):
    server.reply(json_reply(error_body("overloaded_error", "Overloaded"), status=529))
    with pytest.raises(UpstreamError, match="overloaded") as info:
        ask().text()
    assert type(info.value) is UpstreamError


def test_an_error_event_mid_stream_is_an_upstream_error(server):
    events = [start(), *text_block(0, "par"), ("error", error_body("overloaded_error", "Overloaded"))]
    server.reply(sse_reply(events))
    resp = ask()
    with pytest.raises(UpstreamError, match="overloaded"):
        resp.text()
    assert resp.text_so_far() == "par"


def test_rate_limits_carry_retry_after(server):
    server.reply(json_reply(error_body("rate_limit_error", "slow down"), status=429, headers={"retry-after": "7"}))
    with pytest.raises(RateLimited) as info:
        ask().text()
    assert info.value.retry_after == 7.0


def test_a_slow_server_times_out(server):
    server.reply(dataclasses.replace(answer("late"), delay=2.0))
    with pytest.raises(UpstreamTimeout, match="0.3s"):
        ask(timeout=0.3).text()


def test_a_cut_stream_is_an_upstream_error(server, imagine_home):
    server.reply(answer("Hel", "lo", cut_after=4))  # message_start, ping, block start, first delta
    resp = ask()
    with pytest.raises(UpstreamError, match="message_stop"):
        resp.text()
    assert resp.text_so_far() == "Hel"
    row = imagine.get_store().get(resp.id)
    assert row["output_text"] == "Hel" and "cut" in row["error"]
    assert row["input_tokens"] == 10  # the prompt was paid for


def test_a_refusal_is_refused(server):
    server.reply(answer("I can't", reason="refusal"))
    with pytest.raises(Refused, match="declined"):
        ask().text()


def test_a_rejected_key_is_engine_unavailable_without_the_key(server):
    server.reply(json_reply(error_body("authentication_error", f"invalid x-api-key {KEY}"), status=401))
    with pytest.raises(EngineUnavailable) as info:
        ask().text()
    assert KEY not in str(info.value)
    assert "ANTHROPIC_API_KEY" in str(info.value)


def test_an_unknown_model_is_an_input_error(server):
    server.reply(json_reply(error_body("not_found_error", "model: claude-nope"), status=404))
    with pytest.raises(InputError, match="claude-nope"):
        imagine.ask("hi", "anthropic:claude-nope").text()


def test_a_bad_request_is_an_input_error(server):
    server.reply(json_reply(error_body("invalid_request_error", "messages: too long"), status=400))
    with pytest.raises(InputError, match="too long"):
        ask().text()


def test_an_unreachable_endpoint_names_the_url(monkeypatch):
    port = unused_port()
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", f"http://127.0.0.1:{port}")
    reset()
    with pytest.raises(UpstreamError, match=f"127.0.0.1:{port}"):
        ask().text()


def test_without_a_key_anthropic_is_unavailable(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    reset()
    with pytest.raises(EngineUnavailable, match="ANTHROPIC_API_KEY"):
        ask()
    info = {row.id: row for row in imagine.get_registry().infos()}["anthropic"]
    assert "ANTHROPIC_API_KEY" in (info.unavailable or "")


def test_leaving_a_stream_early_stops_it(server):
    server.reply(answer(*(f"w{i} " for i in range(50)), chunk_delay=0.05))
    resp = ask()
    began = time.perf_counter()
    for _ in resp:
        break
    assert time.perf_counter() - began < 1.5
    assert resp.finish_reason == "cancelled" and resp.text_so_far() == "w0 "


def test_a_data_request_gets_the_json_as_a_data_part(server):
    from imagine.tasks import respond

    server.reply(sse_reply([start(), *tool_block(0, "t", "output", '{"a": 1}'), *stop("tool_use")]))
    resp = respond([imagine.Message.user("give json")], f"anthropic:{MODEL}", want=imagine.Modality.DATA,
                   schema={"type": "object"})
    assert [p.value for p in resp.parts] == [{"a": 1}]


def test_a_tool_call_and_its_result_travel_back_in_the_next_request(server):
    """Turn 1 asks for a tool; turn 2 carries the assistant's tool_use block and a user turn whose
    tool_result blocks come first, merged with the user's text that follows (turns must alternate)."""
    from imagine import Message, ToolUse

    tools = [{"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    server.reply(sse_reply([start(), *text_block(0, "Let me check."),
                            *tool_block(1, "toolu_9", "get_weather", '{"city": "Oslo"}'), *stop("tool_use")]))
    history = [Message.user("weather in Oslo?")]
    first = imagine.ask(history, f"anthropic:{MODEL}", tools=tools)
    assert first.tool_calls == [ToolCall("toolu_9", "get_weather", {"city": "Oslo"})]
    assert first.as_message() == Message("assistant", ["Let me check.", ToolUse("toolu_9", "get_weather",
                                                                                {"city": "Oslo"})])
    history += [first.as_message(), Message.tool_result("toolu_9", {"temp_c": 12}),
                Message.user("in Celsius, please")]

    server.reply(answer("12 C in Oslo."))
    second = imagine.ask(history, f"anthropic:{MODEL}", tools=tools)
    assert second.text() == "12 C in Oslo."
    assert server.requests[-1].json["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "weather in Oslo?"}]},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {"city": "Oslo"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_9", "content": '{"temp_c": 12}', "is_error": False},
            {"type": "text", "text": "in Celsius, please"}]}]


def test_tool_results_go_first_in_their_user_turn(server):
    from imagine import Message, ToolUse

    server.reply(answer("ok"))
    history = [Message.user("hi"), Message("assistant", [ToolUse("t1", "f", {})]),
               Message("tool", ["a note", imagine.ToolResult("t1", "failed badly", is_error=True)])]
    assert imagine.ask(history, f"anthropic:{MODEL}").text() == "ok"
    assert server.requests[-1].json["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "t1", "content": "failed badly", "is_error": True},
        {"type": "text", "text": "a note"}]
