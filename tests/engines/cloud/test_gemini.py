"""The `gemini` engine against a real HTTP server on loopback (tests/helpers/fake_http.py): the official
google-genai SDK makes real requests (POST .../models/MODEL:streamGenerateContent?alt=sse) and parses
real `data: {json}` server-sent events; the tests check what the server received and what imagine made
of the reply."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import time
from typing import Any, Iterator

import pytest
from pydantic import BaseModel

pytest.importorskip("google.genai", reason="needs the gemini extra: pip install -e '.[gemini]'")

import imagine  # noqa: E402
from imagine import EngineUnavailable, InputError, ToolCall, UpstreamError  # noqa: E402
from imagine.errors import RateLimited, Refused, UpstreamTimeout  # noqa: E402

from ...helpers.fake_http import FakeServer, json_reply, reset_imagine as reset, sse_reply, unused_port  # noqa: E402
from ...helpers.media import png_bytes, wav_bytes  # noqa: E402

KEY = "AIza-test-SECRET-4242"
MODEL = "gemini-2.0-flash"


# -- the wire format ---------------------------------------------------------------------------------------

def chunk(*parts: dict[str, Any], finish: str | None = None, usage: tuple[int, int] | None = None,
          thoughts: int | None = None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": list(parts)}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    out: dict[str, Any] = {"candidates": [candidate], "modelVersion": MODEL}
    if usage:
        out["usageMetadata"] = {"promptTokenCount": usage[0], "candidatesTokenCount": usage[1],
                                "totalTokenCount": sum(usage)}
        if thoughts:
            out["usageMetadata"]["thoughtsTokenCount"] = thoughts
    return out


def answer(*deltas: str, finish: str = "STOP", usage: tuple[int, int] = (10, 5), **kw: Any) -> Any:
    """A streamed answer: one chunk per delta, the last one with the finish reason and the usage."""
    chunks = [chunk({"text": d}) for d in deltas[:-1]]
    chunks.append(chunk({"text": deltas[-1]}, finish=finish, usage=usage))
    return sse_reply(chunks, **kw)


def error_body(code: int, status: str, message: str, details: list | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": status, "details": details or []}}


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServer]:
    """The built-in `gemini` engine pointed at a fake server through the usual environment variables."""
    with FakeServer() as srv:
        monkeypatch.setenv("GEMINI_API_KEY", KEY)
        monkeypatch.setenv("GEMINI_BASE_URL", srv.url)
        monkeypatch.delenv("GOOGLE_GENAI_USE_VERTEXAI", raising=False)
        reset()
        yield srv


def ask(prompt: str = "hi", **kw: Any) -> imagine.Response:
    return imagine.ask(prompt, f"gemini:{MODEL}", **kw)


# -- the happy path --------------------------------------------------------------------------------------

def test_streams_deltas_and_sends_the_request(server):
    server.reply(answer("Hel", "lo", " there"))
    resp = ask("hi", system="be brief", temperature=0.2, seed=7, max_tokens=64, stop="END")
    assert list(resp) == ["Hel", "lo", " there"]
    assert resp.text() == "Hello there" and resp.finish_reason == "stop"
    sent = server.requests[0]
    assert sent.method == "POST"
    assert sent.path.endswith(f"/models/{MODEL}:streamGenerateContent?alt=sse")
    assert sent.headers["x-goog-api-key"] == KEY
    body = sent.json
    assert body["contents"] == [{"role": "user", "parts": [{"text": "hi"}]}]
    assert body["systemInstruction"]["parts"] == [{"text": "be brief"}]
    config = body["generationConfig"]
    assert config["temperature"] == 0.2 and config["seed"] == 7
    assert config["maxOutputTokens"] == 64 and config["stopSequences"] == ["END"]
    assert "tools" not in body and "responseMimeType" not in config


def test_history_uses_the_model_role(server):
    server.reply(answer("ok"))
    ask("second", history=[imagine.Message.user("first"), imagine.Message.assistant("reply")]).text()
    assert [c["role"] for c in server.requests[0].json["contents"]] == ["user", "model", "user"]


def test_usage_and_cost_reach_the_response_and_the_log(server, imagine_home):
    server.reply(answer("hi", usage=(1000, 200)))
    resp = ask()
    resp.text()
    expected = 1000 * 0.10 / 1e6 + 200 * 0.40 / 1e6
    assert (resp.usage.input_tokens, resp.usage.output_tokens) == (1000, 200)
    assert resp.usage.cost == pytest.approx(expected)
    row = imagine.get_store().get(resp.id)
    assert row["input_tokens"] == 1000 and row["output_tokens"] == 200
    assert row["cost"] == pytest.approx(expected)
    assert row["engine"] == "gemini" and row["model"] == MODEL and row["output_text"] == "hi"
    assert row["engine_version"].startswith("google-genai ")


def test_thinking_tokens_are_billed_as_output_and_thoughts_are_not_text(server):
    chunks = [chunk({"text": "pondering", "thought": True}),
              chunk({"text": "42"}, finish="STOP", usage=(10, 2), thoughts=30)]
    server.reply(sse_reply(chunks))
    resp = imagine.ask("answer?", "gemini:gemini-2.5-flash")
    assert resp.text() == "42"
    assert resp.usage.output_tokens == 32
    assert resp.usage.cost == pytest.approx(10 * 0.30 / 1e6 + 32 * 2.50 / 1e6)


def test_media_parts_are_sent_inline(server):
    png, wav = png_bytes(), wav_bytes()
    server.reply(answer("a red square and silence"))
    ask("describe", attach=[png, wav]).text()
    parts = server.requests[0].json["contents"][0]["parts"]
    assert parts[0] == {"text": "describe"}
    blobs = [p["inlineData"] for p in parts[1:]]
    mimes = [b.get("mimeType") or b.get("mime_type") for b in blobs]
    assert mimes == ["image/png", "audio/wav"]
    assert [base64.urlsafe_b64decode(b["data"]) for b in blobs] == [png, wav]  # the SDK sends URL-safe base64


class City(BaseModel):
    name: str
    population: int


def test_a_schema_becomes_json_mode_and_parses(server):
    server.reply(sse_reply([chunk({"text": '{"name": "Par'}),
                            chunk({"text": 'is", "population": 2100000}'}, finish="STOP", usage=(5, 9))]))
    resp = ask("biggest city in France?", schema=City)
    assert resp.parsed == City(name="Paris", population=2100000)
    config = server.requests[0].json["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    schema = config.get("responseJsonSchema") or config.get("responseSchema")
    assert schema["properties"]["population"]["type"] == "integer"


def test_function_calls_become_tool_call_events(server):
    tools = [{"name": "get_weather", "description": "weather for a city",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    call = {"functionCall": {"id": "fc_1", "name": "get_weather", "args": {"city": "Oslo"}}}
    server.reply(sse_reply([chunk(call, finish="STOP", usage=(20, 4))]))
    resp = ask("weather in Oslo?", tools=tools)
    calls = [e for e in resp.events() if isinstance(e, ToolCall)]
    assert calls == [ToolCall(id="fc_1", name="get_weather", arguments={"city": "Oslo"})]
    assert resp.finish_reason == "tool_calls"
    [tool] = server.requests[0].json["tools"]
    [decl] = tool["functionDeclarations"]
    assert decl["name"] == "get_weather" and decl["description"] == "weather for a city"
    assert (decl.get("parametersJsonSchema") or decl.get("parameters_json_schema")
            or decl.get("parameters"))["properties"]["city"]["type"] == "string"


def test_works_from_a_callers_own_event_loop(server):
    server.reply(answer("one"), answer("two"))
    assert ask().text() == "one"

    async def main() -> str:
        resp = await imagine.aask("hi", f"gemini:{MODEL}")
        return resp.text_so_far()

    assert asyncio.run(main()) == "two"


def test_max_tokens_is_finish_reason_length(server):
    server.reply(answer("trunc", finish="MAX_TOKENS"))
    resp = ask()
    assert resp.text() == "trunc" and resp.finish_reason == "length"


# -- failures --------------------------------------------------------------------------------------------

def test_a_server_error_is_an_upstream_error(server, imagine_home):
    server.reply(json_reply(error_body(500, "INTERNAL", "boom"), status=500))
    resp = ask()
    with pytest.raises(UpstreamError, match="boom"):
        resp.text()
    assert imagine.get_store().get(resp.id)["error"]
    assert len(server.requests) == 1  # no hidden retries


def test_rate_limits_carry_retry_after_from_the_header(server):
    server.reply(json_reply(error_body(429, "RESOURCE_EXHAUSTED", "quota"), status=429,
                            headers={"retry-after": "7"}))
    with pytest.raises(RateLimited) as info:
        ask().text()
    assert info.value.retry_after == 7.0


def test_rate_limits_carry_retry_info_from_the_body(server):
    details = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12s"}]
    server.reply(json_reply(error_body(429, "RESOURCE_EXHAUSTED", "quota", details), status=429))
    with pytest.raises(RateLimited) as info:
        ask().text()
    assert info.value.retry_after == 12.0


def test_a_slow_server_times_out(server):
    server.reply(dataclasses.replace(answer("late"), delay=2.0))
    with pytest.raises(UpstreamTimeout, match="0.3s"):
        ask(timeout=0.3).text()


def test_a_cut_stream_is_an_upstream_error(server, imagine_home):
    server.reply(answer("Hel", "lo", "!", cut_after=1))
    resp = ask()
    with pytest.raises(UpstreamError, match="cut"):
        resp.text()
    assert resp.text_so_far() == "Hel"
    assert imagine.get_store().get(resp.id)["output_text"] == "Hel"


@pytest.mark.parametrize("reason", ["SAFETY", "PROHIBITED_CONTENT"])
def test_a_safety_stop_is_refused(server, reason):
    server.reply(sse_reply([chunk(finish=reason, usage=(10, 0))]))
    with pytest.raises(Refused, match=reason):
        ask().text()


def test_a_blocked_prompt_is_refused(server):
    server.reply(sse_reply([{"promptFeedback": {"blockReason": "SAFETY"},
                             "usageMetadata": {"promptTokenCount": 4, "totalTokenCount": 4}}]))
    with pytest.raises(Refused, match="blocked"):
        ask().text()


def test_a_rejected_key_is_engine_unavailable_without_the_key(server):
    server.reply(json_reply(error_body(401, "UNAUTHENTICATED", f"bad key {KEY}"), status=401))
    with pytest.raises(EngineUnavailable) as info:
        ask().text()
    assert KEY not in str(info.value)
    assert "GEMINI_API_KEY" in str(info.value)


def test_an_invalid_key_reported_as_400_is_engine_unavailable(server):
    """The real API answers a bad key with 400 INVALID_ARGUMENT and reason API_KEY_INVALID."""
    details = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]
    server.reply(json_reply(error_body(400, "INVALID_ARGUMENT", "API key not valid.", details), status=400))
    with pytest.raises(EngineUnavailable, match="GEMINI_API_KEY"):
        ask().text()


def test_an_unknown_model_is_an_input_error(server):
    server.reply(json_reply(error_body(404, "NOT_FOUND", "models/gemini-nope is not found"), status=404))
    with pytest.raises(InputError, match="gemini-nope"):
        imagine.ask("hi", "gemini:gemini-nope").text()


def test_a_bad_request_is_an_input_error(server):
    server.reply(json_reply(error_body(400, "INVALID_ARGUMENT", "contents is too long"), status=400))
    with pytest.raises(InputError, match="too long"):
        ask().text()


def test_an_unreachable_endpoint_names_the_url(monkeypatch):
    port = unused_port()
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    monkeypatch.setenv("GEMINI_BASE_URL", f"http://127.0.0.1:{port}")
    reset()
    with pytest.raises(UpstreamError, match=f"127.0.0.1:{port}"):
        ask().text()


def test_without_a_key_gemini_is_unavailable(monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GEMINI_BASE_URL", raising=False)
    reset()
    with pytest.raises(EngineUnavailable, match="GEMINI_API_KEY"):
        ask()


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

    server.reply(answer('{"a": ', "1}"))
    resp = respond([imagine.Message.user("give json")], f"gemini:{MODEL}", want=imagine.Modality.DATA,
                   schema={"type": "object"})
    assert [p.value for p in resp.parts] == [{"a": 1}]


def test_a_function_call_and_its_response_travel_back_in_the_next_request(server):
    """Turn 1 asks for a function; turn 2 carries a model turn with the function_call and a user turn with
    the function_response (named after the call when the result does not say; a non-object wrapped)."""
    from imagine import Message

    tools = [{"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    call = {"functionCall": {"id": "fc_1", "name": "get_weather", "args": {"city": "Oslo"}}}
    server.reply(sse_reply([chunk({"text": "Checking."}), chunk(call, finish="STOP", usage=(20, 4))]))
    history = [Message.user("weather in Oslo?")]
    first = imagine.ask(history, f"gemini:{MODEL}", tools=tools)
    assert first.tool_calls == [ToolCall("fc_1", "get_weather", {"city": "Oslo"})]
    history += [first.as_message(), Message.tool_result("fc_1", "12 C")]

    server.reply(answer("It is 12 C."))
    second = imagine.ask(history, f"gemini:{MODEL}", tools=tools)
    assert second.text() == "It is 12 C."
    contents = server.requests[-1].json["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert contents[1]["parts"] == [{"text": "Checking."}, {"functionCall": {"id": "fc_1", "name": "get_weather",
                                                                             "args": {"city": "Oslo"}}}]
    assert contents[2]["parts"] == [{"functionResponse": {"id": "fc_1", "name": "get_weather",
                                                          "response": {"result": "12 C"}}}]


def test_a_function_response_without_a_known_name_is_refused_before_sending(server):
    from imagine import Message

    with pytest.raises(InputError, match="name of the tool"):
        imagine.ask([Message.user("hi"), Message.tool_result("fc_9", {"ok": True})], f"gemini:{MODEL}").text()
    assert server.requests == []


def test_dict_and_error_results_as_function_responses(server):
    from imagine import Message, ToolUse

    server.reply(answer("ok"))
    history = [Message.user("hi"), Message("assistant", [ToolUse("a", "f", {}), ToolUse("b", "g", {"x": 1})]),
               Message.tool_result("a", {"temp": 3}), Message.tool_result("b", "boom", name="g", is_error=True)]
    assert imagine.ask(history, f"gemini:{MODEL}").text() == "ok"
    contents = server.requests[-1].json["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]  # the two results: one user turn
    assert contents[2]["parts"] == [{"functionResponse": {"id": "a", "name": "f", "response": {"temp": 3}}},
                                    {"functionResponse": {"id": "b", "name": "g", "response": {"error": "boom"}}}]
