"""The `openai` engine against a real HTTP server on loopback (tests/helpers/fake_http.py): the official SDK does
real requests, and the tests check both what the server received and what imagine made of the reply."""

from __future__ import annotations

import base64
import io
import json
import time
import wave
from pathlib import Path
from typing import Any, Iterator

import pytest
from pydantic import BaseModel

pytest.importorskip("openai", reason="needs the openai extra: pip install -e '.[openai]'")

import imagine  # noqa: E402
from imagine import EngineUnavailable, InputError, Message, Request, Response, ToolCall, UpstreamError  # noqa: E402
from imagine.errors import RateLimited, Refused, UpstreamTimeout  # noqa: E402
from imagine.engines.cloud._cloud import display_url, retry_after_seconds  # noqa: E402

from ...helpers.fake_http import FakeServer, json_reply, reset_imagine as reset, sse_reply, unused_port  # noqa: E402
from ...helpers.media import png_bytes, wav_bytes  # noqa: E402

KEY = "sk-test-SECRET-key-4242"


def chunk(content: str | None = None, finish: str | None = None, *, tool_calls: list | None = None,
          logprobs: list[float] | None = None, audio: dict | None = None) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    if content is not None:
        delta["content"] = content
    if tool_calls is not None:
        delta["tool_calls"] = tool_calls
    if audio is not None:
        delta["audio"] = audio
    choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
    if logprobs is not None:
        choice["logprobs"] = {"content": [{"token": "t", "logprob": lp, "bytes": None, "top_logprobs": []}
                                          for lp in logprobs]}
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [choice]}


def usage_chunk(prompt: int, completion: int) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion}}


def answer(*deltas: str, finish: str = "stop", usage: tuple[int, int] = (10, 3)) -> Any:
    """A complete streamed answer: text deltas, the finish chunk, the usage chunk, [DONE]."""
    return sse_reply([*(chunk(d) for d in deltas), chunk(finish=finish), usage_chunk(*usage), b"data: [DONE]\n\n"])


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServer]:
    """The built-in `openai` engine pointed at a fake server through the usual environment variables."""
    with FakeServer() as srv:
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", srv.url + "/v1")
        reset()
        yield srv


def db_bytes(home: Path) -> bytes:
    imagine.tasks.reset_store()  # close the connection so the WAL is checkpointed into the file
    return b"".join(p.read_bytes() for p in home.iterdir() if p.name.startswith("logs.db"))


# -- the happy path --------------------------------------------------------------------------------------


def test_streams_deltas_and_sends_the_options(server):
    server.reply(answer("Hel", "lo", " there"))
    resp = imagine.ask("hi", "openai:gpt-4o-mini", system="be brief", temperature=0.2, seed=7, stop="END",
                       max_tokens=32)
    assert list(resp) == ["Hel", "lo", " there"]
    assert resp.text() == "Hello there" and resp.finish_reason == "stop"
    (req,) = server.requests
    assert req.method == "POST" and req.path == "/v1/chat/completions"
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert req.json == {
        "model": "gpt-4o-mini", "stream": True, "stream_options": {"include_usage": True},
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        "temperature": 0.2, "seed": 7, "stop": ["END"], "max_tokens": 32}


def test_usage_and_cost_reach_the_response_and_the_log(server, imagine_home):
    server.reply(answer("ok", usage=(1000, 500)))
    resp = imagine.ask("hi", "openai:gpt-4o-mini")
    expected = 1000 * 0.15 / 1e6 + 500 * 0.60 / 1e6
    assert resp.usage.input_tokens == 1000 and resp.usage.output_tokens == 500
    assert resp.usage.cost == pytest.approx(expected)
    row = imagine.get_store().get(resp.id)
    assert row["engine"] == "openai" and row["model"] == "gpt-4o-mini" and row["output_text"] == "ok"
    assert row["input_tokens"] == 1000 and row["output_tokens"] == 500
    assert row["cost"] == pytest.approx(expected) and row["error"] is None
    assert KEY.encode() not in db_bytes(imagine_home)


def test_an_unpriced_model_has_unknown_cost_on_a_cloud_endpoint(monkeypatch, imagine_home):
    with FakeServer() as srv:
        (imagine_home / "config.toml").parent.mkdir(parents=True, exist_ok=True)
        (imagine_home / "config.toml").write_text(
            f'[endpoints.openai]\nbase_url = "{srv.url}/v1"\nkey_env = "OPENAI_API_KEY"\nlocality = "cloud"\n')
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        reset()
        srv.reply(answer("ok"))
        resp = imagine.ask("hi", "openai:some-new-model")
        assert resp.text() == "ok" and resp.usage.input_tokens == 10 and resp.usage.cost is None


def test_an_image_arrives_as_a_data_url(server):
    png = png_bytes()
    server.reply(answer("a red square"))
    assert imagine.ask("what is this?", "openai:gpt-4o", attach=[png]).text() == "a red square"
    content = server.requests[0].json["messages"][0]["content"]
    assert content[0] == {"type": "text", "text": "what is this?"}
    url = content[1]["image_url"]["url"]
    assert content[1]["type"] == "image_url" and url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == png


def test_audio_arrives_as_input_audio(server):
    wav = wav_bytes()
    server.reply(answer("a beep"))
    assert imagine.ask("what is this?", "openai:gpt-4o-audio-preview", attach=[wav]).text() == "a beep"
    part = server.requests[0].json["messages"][0]["content"][1]
    assert part["type"] == "input_audio" and part["input_audio"]["format"] == "wav"
    assert base64.b64decode(part["input_audio"]["data"]) == wav


def test_other_audio_formats_are_converted_to_wav(server):
    av = pytest.importorskip("av")
    import numpy as np

    buf = io.BytesIO()
    with av.open(buf, mode="w", format="flac") as container:
        stream = container.add_stream("flac", rate=8000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), dtype=np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    server.reply(answer("silence"))
    assert imagine.ask("what is this?", "openai:gpt-4o-audio-preview", attach=[buf.getvalue()]).text() == "silence"
    part = server.requests[0].json["messages"][0]["content"][1]["input_audio"]
    with wave.open(io.BytesIO(base64.b64decode(part["data"]))) as w:
        assert part["format"] == "wav" and w.getframerate() == 8000 and w.getnframes() == 800


def test_tool_calls_accumulate_across_chunks(server):
    calls = [[{"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}],
             [{"index": 0, "function": {"arguments": '{"city": '}}],
             [{"index": 0, "function": {"arguments": '"Paris"}'}}]]
    server.reply(sse_reply([*(chunk(tool_calls=c) for c in calls), chunk(finish="tool_calls"), usage_chunk(20, 9)]))
    engine = imagine.get_registry().engine("openai")
    tool = {"name": "get_weather", "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
    request = Request(messages=(Message.user("weather in Paris?"),), model="gpt-4o-mini",
                      options=engine.parse_options({}), tools=(tool,))
    resp = Response(engine, request)
    events = list(resp.events())
    assert [e for e in events if isinstance(e, ToolCall)] == [ToolCall("call_1", "get_weather", {"city": "Paris"})]
    assert resp.finish_reason == "tool_calls" and resp.usage.output_tokens == 9
    assert server.requests[0].json["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather in a city", "parameters": tool["parameters"]}}]


def test_invalid_tool_arguments_are_an_upstream_error(server):
    bad = [{"index": 0, "id": "call_1", "function": {"name": "f", "arguments": '{"city": '}}]
    server.reply(sse_reply([chunk(tool_calls=bad), chunk(finish="tool_calls"), usage_chunk(1, 1)]))
    engine = imagine.get_registry().engine("openai")
    request = Request(messages=(Message.user("go"),), model="gpt-4o-mini", options=engine.parse_options({}),
                      tools=({"name": "f", "parameters": {"type": "object"}},))
    with pytest.raises(UpstreamError, match="invalid JSON arguments"):
        Response(engine, request).complete()


def test_a_schema_becomes_response_format_and_parsed(server):
    class Person(BaseModel):
        name: str
        age: int

    server.reply(answer('{"name": "Ada",', ' "age": 36}'))
    resp = imagine.ask("who?", "openai:gpt-4o-mini", schema=Person)
    assert resp.parsed == Person(name="Ada", age=36)
    fmt = server.requests[0].json["response_format"]
    assert fmt == {"type": "json_schema",
                   "json_schema": {"name": "output", "schema": Person.model_json_schema(), "strict": False}}


def test_logprobs_give_a_mean_logprob(server):
    server.reply(sse_reply([chunk("a", logprobs=[-0.5]), chunk("b", logprobs=[-1.5, -1.0]), chunk(finish="stop"),
                            usage_chunk(5, 3)]))
    resp = imagine.ask("hi", "openai:gpt-4o-mini", logprobs=True, top_logprobs=2)
    assert resp.text() == "ab"
    assert resp.usage.extra["mean_logprob"] == pytest.approx(-1.0)
    body = server.requests[0].json
    assert body["logprobs"] is True and body["top_logprobs"] == 2


def test_reasoning_models_get_max_completion_tokens(server):
    server.reply(answer("ok"))
    imagine.ask("hi", "openai:o4-mini", max_tokens=100, reasoning_effort="low").text()
    body = server.requests[0].json
    assert body["max_completion_tokens"] == 100 and "max_tokens" not in body and body["reasoning_effort"] == "low"


def test_unknown_options_are_refused_before_any_request(server):
    with pytest.raises(imagine.OptionsError, match="unknown option 'top_k'"):
        imagine.ask("hi", "openai:gpt-4o-mini", top_k=3)
    assert server.requests == []


def test_audio_answers_become_an_audio_part(server):
    pcm = b"\x01\x00\xff\x7f" * 100
    server.reply(sse_reply([
        chunk(audio={"id": "a1", "transcript": "Hello"}),
        chunk(audio={"id": "a1", "data": base64.b64encode(pcm[:200]).decode()}),
        chunk(audio={"id": "a1", "data": base64.b64encode(pcm[200:]).decode()}),
        chunk(finish="stop"), usage_chunk(4, 50)]))
    resp = imagine.tasks.speak("Hello", "openai:gpt-4o-audio-preview", voice="verse")
    (part,) = resp.parts
    assert isinstance(part, imagine.Audio) and resp.text() == "Hello"
    with wave.open(io.BytesIO(part.data)) as w:
        assert w.getframerate() == 24000 and w.readframes(w.getnframes()) == pcm
    body = server.requests[0].json
    assert body["modalities"] == ["text", "audio"] and body["audio"] == {"voice": "verse", "format": "pcm16"}


# -- failures ------------------------------------------------------------------------------------------


def test_a_server_error_is_an_upstream_error(server, imagine_home):
    server.reply(json_reply({"error": {"message": "the engine room is on fire", "type": "server_error"}}, 500))
    resp = imagine.ask("hi", "openai:gpt-4o-mini")
    with pytest.raises(UpstreamError, match="HTTP 500: the engine room is on fire"):
        resp.text()
    assert len(server.requests) == 1  # the SDK's own retries are off: the router decides
    assert "HTTP 500" in imagine.get_store().get(resp.id)["error"]


def test_rate_limits_carry_retry_after(server):
    server.reply(json_reply({"error": {"message": "slow down", "type": "requests"}}, 429, headers={"retry-after": "2"}))
    with pytest.raises(RateLimited) as info:
        imagine.ask("hi", "openai:gpt-4o-mini").text()
    assert info.value.retry_after == 2 and "slow down" in str(info.value)
    assert len(server.requests) == 1


def test_retry_after_forms():
    from email.utils import formatdate

    assert retry_after_seconds({"Retry-After": "2"}) == 2
    assert retry_after_seconds({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after_seconds({"retry-after": formatdate(1000.0 + 30, usegmt=True)}, now=1000.0) == 30
    assert retry_after_seconds({"retry-after": "soon"}) is None and retry_after_seconds({}) is None
    assert display_url("http://user:pw@127.0.0.1:8000/v1?key=abc") == "http://127.0.0.1:8000/v1"


def test_a_slow_server_times_out(server):
    server.reply(json_reply({}, delay=3))
    start = time.perf_counter()
    with pytest.raises(UpstreamTimeout, match="did not answer within 0.3 s"):
        imagine.ask("hi", "openai:gpt-4o-mini", timeout=0.3).text()
    assert time.perf_counter() - start < 2.5


def test_a_cut_stream_is_an_upstream_error(server, imagine_home):
    server.reply(sse_reply([chunk("Hel"), chunk("lo"), chunk(" there"), chunk(finish="stop"), usage_chunk(1, 3)],
                           cut_after=2))
    resp = imagine.ask("hi", "openai:gpt-4o-mini")
    with pytest.raises(UpstreamError, match="ended before the answer was complete"):
        resp.text()
    assert resp.text_so_far() == "Hello"
    row = imagine.get_store().get(resp.id)
    assert row["output_text"] == "Hello" and "ended before" in row["error"]


def test_a_content_filter_stop_is_refused(server):
    server.reply(answer("I", finish="content_filter"))
    with pytest.raises(Refused):
        imagine.ask("hi", "openai:gpt-4o-mini").text()


def test_a_rejected_key_is_engine_unavailable_without_the_key(server):
    server.reply(json_reply({"error": {"message": f"Incorrect API key provided: {KEY}", "code": "invalid_api_key"}},
                            401))
    with pytest.raises(EngineUnavailable, match="key rejected") as info:
        imagine.ask("hi", "openai:gpt-4o-mini").text()
    assert KEY not in str(info.value) and "OPENAI_API_KEY" in str(info.value)


def test_a_server_echoing_the_key_is_scrubbed(server):
    server.reply(json_reply({"error": {"message": f"bad header Bearer {KEY}", "type": "invalid_request_error"}}, 400))
    with pytest.raises(InputError, match="rejected the request") as info:
        imagine.ask("hi", "openai:gpt-4o-mini").text()
    assert KEY not in str(info.value)


def test_an_unknown_model_lists_the_known_ones(server):
    server.reply(json_reply({"error": {"message": "The model `gpt-9` does not exist", "code": "model_not_found"}},
                            404))
    default = imagine.get_registry().engine_class("openai").default_model
    with pytest.raises(InputError, match=f"known models: {default}"):
        imagine.ask("hi", "openai:gpt-9").text()


def test_an_unreachable_endpoint_says_so(monkeypatch):
    port = unused_port()
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{port}/v1")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # loopback servers need no key
    reset()
    with pytest.raises(UpstreamError, match=f"cannot reach http://127.0.0.1:{port}/v1.*unreachable"):
        imagine.ask("hi", "openai:gpt-4o-mini").text()


def test_video_is_refused_by_the_engine(server):
    engine = imagine.get_registry().engine("openai")
    video = imagine.Video(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 64)
    request = Request(messages=(Message.user("what happens?", video),), model="gpt-4o",
                      options=engine.parse_options({}))
    with pytest.raises(InputError, match="does not take video"):
        Response(engine, request).complete()
    assert server.requests == []


def test_without_a_key_openai_is_unavailable(monkeypatch):
    from click.testing import CliRunner

    from imagine.cli import cli

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    reset()
    rows = {r["id"]: r for r in json.loads(CliRunner().invoke(cli, ["models", "--json"]).output)}
    assert rows["openai"]["locality"] == "cloud" and "set OPENAI_API_KEY" in rows["openai"]["unavailable"]
    table = CliRunner().invoke(cli, ["models"], env={"COLUMNS": "300"}).output
    assert "needs OPENAI_API_KEY" in table
    with pytest.raises(EngineUnavailable, match="OPENAI_API_KEY"):
        imagine.ask("hi", "openai:gpt-4o-mini")


def test_a_configured_endpoint_becomes_an_engine(monkeypatch, imagine_home):
    secret = "myvllm-SECRET-token-77"
    with FakeServer() as srv:
        imagine_home.mkdir(parents=True, exist_ok=True)
        (imagine_home / "config.toml").write_text(f"""
[endpoints.myvllm]
kind = "openai"
base_url = "{srv.url}/v1"
key_env = "MYVLLM_KEY"
default_model = "qwen"
[endpoints.myvllm.models.qwen]
inputs = ["text"]
price_input = 1.0
price_output = 2.0
""")
        monkeypatch.setenv("MYVLLM_KEY", secret)
        reset()
        info = {i.id: i for i in imagine.get_registry().infos()}["myvllm"]
        assert info.locality == "local" and info.unavailable is None and info.default_model == "qwen"
        srv.reply(answer("from ", "vllm", usage=(100, 50)))
        resp = imagine.ask("hi", "myvllm")
        assert resp.text() == "from vllm" and resp.engine.id == "myvllm"
        assert resp.usage.cost == pytest.approx(100 * 1.0 / 1e6 + 50 * 2.0 / 1e6)
        req = srv.requests[0]
        assert req.json["model"] == "qwen" and req.headers["authorization"] == f"Bearer {secret}"
        assert imagine.get_store().get(resp.id)["engine"] == "myvllm"
        assert secret.encode() not in db_bytes(imagine_home)


def test_leaving_a_stream_early_stops_it(server, imagine_home):
    server.reply(sse_reply([chunk(f"w{i} ") for i in range(50)] + [chunk(finish="stop")], chunk_delay=0.05))
    resp = imagine.ask("hi", "openai:gpt-4o-mini")
    start = time.perf_counter()
    for delta in resp:
        break
    assert time.perf_counter() - start < 1.5
    assert resp.finish_reason == "cancelled" and resp.text_so_far() == "w0 "


def test_sync_and_async_callers_share_the_engine(server):
    import asyncio

    server.reply(answer("sync"), answer("async"))
    assert imagine.ask("hi", "openai:gpt-4o-mini").text() == "sync"  # runs on imagine's background loop

    async def main() -> str:  # a caller's own loop: the engine needs a client bound to this one
        resp = await imagine.aask("hi", "openai:gpt-4o-mini")
        return resp.text_so_far()

    assert asyncio.run(main()) == "async"
    assert len(server.requests) == 2


# -- real servers differ: response_format fallback, unknown usage, one-line errors, tool formats ----------

PERSON = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"]}
TRACEBACK = ("Traceback (most recent call last):\n  File \"/srv/app.py\", line 12, in create\n    validate(body)\n"
             "  File \"/srv/types.py\", line 40, in validate\n    raise ValueError(msg)\n"
             "ValueError: response_format.type: Input should be 'text' or 'json_object'\n")


def rejected(message: str, status: int = 400) -> Any:
    return json_reply({"error": {"message": message, "type": "invalid_request_error"}}, status)


def test_a_server_rejecting_json_schema_gets_json_object_and_it_is_remembered(server):
    server.reply(rejected("response_format.type: Input should be 'text' or 'json_object'"),
                 answer('{"name": "Ada", ', '"age": 36}'), answer('{"name": "Bo", "age": 7}'))
    resp = imagine.ask("who?", "openai:gpt-4o-mini", schema=PERSON, system="be exact")
    assert resp.parsed == {"name": "Ada", "age": 36}
    assert resp.usage.extra["response_format"] == "json_object"
    assert resp.usage.extra["response_format_rejected"] == ["json_schema"]
    first, second = (r.json for r in server.requests)
    assert first["response_format"]["type"] == "json_schema"
    assert second["response_format"] == {"type": "json_object", "schema": PERSON}
    system = second["messages"][0]
    assert system["role"] == "system" and system["content"].startswith("be exact\n\n")
    assert json.dumps(PERSON, separators=(",", ":")) in system["content"]  # said in words too
    assert [m["role"] for m in second["messages"]] == ["system", "user"]
    # the next schema request goes straight to what worked: json_schema is not tried again
    again = imagine.ask("who else?", "openai:gpt-4o-mini", schema=PERSON)
    assert again.parsed == {"name": "Bo", "age": 7} and "response_format_rejected" not in again.usage.extra
    assert len(server.requests) == 3 and server.requests[2].json["response_format"]["type"] == "json_object"


def test_a_traceback_500_about_the_format_falls_back_too(server):
    server.reply(json_reply({"error": {"message": TRACEBACK, "type": "internal_server_error"}}, 500),
                 answer('{"name": "Ada", "age": 36}'))
    resp = imagine.ask("who?", "openai:gpt-4o-mini", schema=PERSON)
    assert resp.parsed == {"name": "Ada", "age": 36} and len(server.requests) == 2


def test_a_server_taking_neither_format_gets_the_schema_in_words_and_one_repair(server, imagine_home):
    server.reply(rejected("response_format json_schema is not supported"),
                 rejected("response_format json_object is not supported"),
                 answer("Sure! Ada is 36.", usage=(30, 6)), answer('{"name": "Ada", "age": 36}', usage=(50, 9)))
    resp = imagine.ask("who?", "openai:gpt-4o-mini", schema=PERSON)
    assert list(resp) == ['{"name": "Ada", "age": 36}']  # only the valid answer is streamed
    assert resp.parsed == {"name": "Ada", "age": 36}
    assert (resp.usage.input_tokens, resp.usage.output_tokens) == (80, 15)  # both tries were spent
    assert resp.usage.extra["response_format"] == "prompt"
    assert resp.usage.extra["response_format_rejected"] == ["json_schema", "json_object"]
    plain, repair = server.requests[2].json, server.requests[3].json
    assert "response_format" not in plain and "JSON schema" in plain["messages"][0]["content"]
    assert repair["messages"][-2] == {"role": "assistant", "content": "Sure! Ada is 36."}
    assert repair["messages"][-1]["role"] == "user" and "not valid JSON" in repair["messages"][-1]["content"]
    # remembered: the next request asks in words at once
    server.reply(answer('{"name": "Bo", "age": 7}'))
    assert imagine.ask("who else?", "openai:gpt-4o-mini", schema=PERSON).parsed == {"name": "Bo", "age": 7}
    assert len(server.requests) == 5 and "response_format" not in server.requests[4].json


def test_prompted_json_that_fails_twice_is_a_one_line_schema_error(server, imagine_home):
    server.reply(rejected("unknown field response_format", 422), rejected("unknown field response_format", 422),
                 answer('{"name": "Ada"}'), answer('{"name": "Ada",\n"age": "old"}'))
    resp = imagine.ask("who?", "openai:gpt-4o-mini", schema=PERSON)
    with pytest.raises(imagine.SchemaError, match="even after one repair attempt") as info:
        resp.text()
    assert "\n" not in str(info.value) and "age" in str(info.value)
    assert resp.usage.output_tokens == 6  # the tokens of both tries still count
    assert imagine.get_store().get(resp.id)["output_tokens"] == 6


def test_an_unrelated_500_with_a_schema_is_not_a_fallback(server):
    server.reply(json_reply({"error": {"message": "CUDA out of memory", "type": "server_error"}}, 500))
    with pytest.raises(UpstreamError, match="HTTP 500: CUDA out of memory"):
        imagine.ask("who?", "openai:gpt-4o-mini", schema=PERSON).text()
    assert len(server.requests) == 1


def test_a_multi_line_server_error_becomes_one_line(server):
    server.reply(json_reply({"error": {"message": TRACEBACK.replace("response_format.type", "model"),
                                       "type": "internal_server_error"}}, 500))
    with pytest.raises(UpstreamError) as info:
        imagine.ask("hi", "openai:gpt-4o-mini").text()
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith(f"openai ({server.url}/v1) failed with HTTP 500: ValueError: model: Input should be")


def test_a_plain_text_error_body_becomes_one_line(server):
    from ...helpers.fake_http import Reply

    server.reply(Reply(502, {"content-type": "text/html"}, b"<html>\n<h1>502 Bad Gateway</h1>\n</html>\n"))
    with pytest.raises(UpstreamError) as info:
        imagine.ask("hi", "openai:gpt-4o-mini").text()
    assert "\n" not in str(info.value) and "HTTP 502" in str(info.value)


def test_one_line():
    from imagine.engines.cloud.openai import one_line

    assert one_line(TRACEBACK) == "ValueError: response_format.type: Input should be 'text' or 'json_object'"
    assert one_line("\n\n  first  line \nsecond") == "first line"
    assert one_line("x" * 500, limit=10) == "x" * 9 + "…" and one_line("") == ""


def test_a_server_that_sends_no_usage_leaves_it_unknown(monkeypatch, imagine_home):
    with FakeServer() as srv:
        imagine_home.mkdir(parents=True, exist_ok=True)
        (imagine_home / "config.toml").write_text(
            f'[endpoints.box]\nkind = "openai"\nbase_url = "{srv.url}/v1"\nlocality = "cloud"\n'
            '[endpoints.box.models.priced]\nprice_input = 1.0\nprice_output = 2.0\n')
        reset()
        srv.reply(sse_reply([chunk("ok"), chunk(finish="stop"), b"data: [DONE]\n\n"]))
        resp = imagine.ask("hi", "box:priced")
        assert resp.text() == "ok"
        assert resp.usage.input_tokens is None and resp.usage.output_tokens is None
        assert resp.usage.cost is None  # a priced model: without counts the cost is unknown, not $0
        row = imagine.get_store().get(resp.id)
        assert row["input_tokens"] is None and row["output_tokens"] is None and row["cost"] is None


def test_unknown_usage_on_a_free_local_server_costs_nothing(monkeypatch, imagine_home):
    with FakeServer() as srv:
        imagine_home.mkdir(parents=True, exist_ok=True)
        (imagine_home / "config.toml").write_text(f'[endpoints.box]\nkind = "openai"\nbase_url = "{srv.url}/v1"\n')
        reset()
        srv.reply(sse_reply([chunk("ok"), chunk(finish="stop"), b"data: [DONE]\n\n"]))
        resp = imagine.ask("hi", "box:some-model")
        assert resp.text() == "ok" and resp.usage.input_tokens is None and resp.usage.cost == 0.0


def test_unknown_usage_shows_as_a_question_mark_in_the_cli(server, imagine_home):
    from click.testing import CliRunner

    from imagine.cli import cli

    server.reply(sse_reply([chunk("ok"), chunk(finish="stop"), b"data: [DONE]\n\n"]))
    resp = imagine.ask("hi", "openai:gpt-4o-mini")
    resp.text()
    shown = CliRunner().invoke(cli, ["logs", "show", resp.id])
    assert shown.exit_code == 0 and "usage:         ? in / ? out" in shown.output
    table = CliRunner().invoke(cli, ["logs"], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "?/?" in table.output
    costs = CliRunner().invoke(cli, ["logs", "--cost", "--json"])
    assert json.loads(costs.output)[0]["uncounted"] == 1
    server.reply(sse_reply([chunk("ok"), chunk(finish="stop"), b"data: [DONE]\n\n"]))
    payload = CliRunner().invoke(cli, ["ask", "-m", "openai:gpt-4o-mini", "--json", "hi"])
    assert json.loads(payload.output)["usage"] == {"input_tokens": None, "output_tokens": None}


def test_usage_sums_treat_unknown_as_unknown():
    from imagine.events import Usage

    assert Usage(3, 4) + Usage(1, 1) == Usage(4, 5)
    assert (Usage(3, 4) + Usage(None, None)).input_tokens is None
    assert (Usage(None, 2) + Usage(None, 1)) == Usage(None, 3)
    assert (Usage(cost=0.5) + Usage(None, None)).cost == 0.5  # a known cost is kept beside an unknown one


WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def test_tools_in_the_openai_format_are_accepted(server):
    calls = [[{"index": 0, "id": "call_1", "type": "function",
               "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]]
    server.reply(sse_reply([*(chunk(tool_calls=c) for c in calls), chunk(finish="tool_calls"), usage_chunk(20, 9)]))
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                               "parameters": WEATHER}}]
    resp = imagine.ask("weather in Paris?", "openai:gpt-4o-mini", tools=tools)
    assert [e for e in resp.events() if isinstance(e, ToolCall)] == [ToolCall("call_1", "get_weather",
                                                                              {"city": "Paris"})]
    assert server.requests[0].json["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather in a city", "parameters": WEATHER}}]


@pytest.mark.parametrize(("tools", "field"), [
    ([{"type": "function", "function": {"name": "a", "parameters": WEATHER}}, {"type": "function", "function": {}}],
     "tools[1].function.name is missing"),
    ([{"type": "function"}], "tools[0].function is missing"),
    ([{"description": "no name"}], "tools[0].name is missing"),
    ([{"name": "f", "parameters": "not a schema"}], "tools[0].parameters must be a JSON schema"),
    ([{"type": "function", "function": {"name": 3}}], "tools[0].function.name must be a non-empty string"),
    ([{"type": "web_search"}], "tools[0].type is 'web_search'"),
    (["get_weather"], "tools[0] must be a dict"),
    ({"name": "f"}, "tools must be a list"),
])
def test_malformed_tools_are_an_input_error_naming_the_field(server, tools, field):
    with pytest.raises(InputError, match=field.replace("[", r"\[").replace("]", r"\]")):
        imagine.ask("weather?", "openai:gpt-4o-mini", tools=tools)
    assert server.requests == []  # refused before anything was sent


def test_every_tool_format_reaches_engines_in_one_shape():
    from imagine.engine import normalize_tools

    flat = {"name": "f", "description": "d", "parameters": WEATHER}
    assert normalize_tools([flat]) == (flat,)
    assert normalize_tools([{"type": "function", "function": flat}]) == (flat,)
    assert normalize_tools([{"name": "f", "description": "d", "input_schema": WEATHER}]) == (flat,)  # Anthropic's
    assert normalize_tools([{"type": "function", "name": "f", "description": "d", "parameters": WEATHER}]) == (flat,)
    assert normalize_tools([{"name": "g"}]) == ({"name": "g", "description": "",
                                                  "parameters": {"type": "object", "properties": {}}},)
    request = Request(messages=(Message.user("x"),), model="m", options=imagine.get_registry().engine(
        "mock").parse_options({}), tools=({"type": "function", "function": flat},))
    assert request.tools == (flat,)


def test_tool_choice_forces_a_named_tool(server):
    server.reply(sse_reply([chunk(tool_calls=[{"index": 0, "id": "c1", "type": "function", "function": {
        "name": "get_weather", "arguments": '{"city": "Oslo"}'}}]), chunk(finish="tool_calls")]))
    resp = imagine.ask("weather?", "openai:gpt-4o-mini", tools=[{"name": "get_weather", "parameters": WEATHER}],
                       tool_choice="get_weather")
    assert [e.name for e in resp.events() if isinstance(e, ToolCall)] == ["get_weather"]
    assert server.requests[0].json["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    with pytest.raises(InputError, match="tool_choice names no tool given: 'nope'"):
        imagine.ask("weather?", "openai:gpt-4o-mini", tools=[{"name": "get_weather"}], tool_choice="nope").text()
    with pytest.raises(InputError, match="tool_choice needs tools"):
        imagine.ask("weather?", "openai:gpt-4o-mini", tool_choice="auto").text()
    assert len(server.requests) == 1


def test_a_200_with_an_empty_stream_says_the_server_failed(server):
    server.reply(sse_reply([]))
    with pytest.raises(UpstreamError, match=r"accepted the request but sent no answer") as info:
        imagine.ask("hi", "openai:gpt-4o-mini").text()
    assert "\n" not in str(info.value) and "log says why" in str(info.value)


def test_a_tool_call_and_its_result_travel_back_in_the_next_request(server):
    """Turn 1 asks for a tool; the caller runs it and sends the call and its result back as history:
    an assistant message with `tool_calls`, then a `tool` message with the call's id."""
    tools = [{"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    call = [{"index": 0, "id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]
    server.reply(sse_reply([chunk("Let me check."), chunk(tool_calls=call), chunk(finish="tool_calls"),
                            usage_chunk(20, 9)]))
    history = [Message.user("weather in Oslo?")]
    first = imagine.ask(history, "openai:gpt-4o-mini", tools=tools)
    assert first.tool_calls == [ToolCall("call_1", "get_weather", {"city": "Oslo"})]
    history += [first.as_message(), Message.tool_result("call_1", {"temp_c": 12}, name="get_weather"),
                Message.tool_result("call_2", "no such city", is_error=True)]

    server.reply(answer("It is 12 C in Oslo."))
    second = imagine.ask(history, "openai:gpt-4o-mini", tools=tools)
    assert second.text() == "It is 12 C in Oslo." and second.tool_calls == []
    assert server.requests[-1].json["messages"] == [
        {"role": "user", "content": "weather in Oslo?"},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 12}'},
        {"role": "tool", "tool_call_id": "call_2", "content": "error: no such city"}]
    assert second.as_message() == Message.assistant("It is 12 C in Oslo.")


def test_an_assistant_turn_of_only_tool_calls_has_null_content(server):
    from imagine import ToolUse

    server.reply(answer("ok"))
    history = [Message.user("hi"), Message("assistant", [ToolUse("c1", "f", {})]), Message.tool_result("c1", "done")]
    assert imagine.ask(history, "openai:gpt-4o-mini").text() == "ok"
    sent = server.requests[-1].json["messages"]
    assert sent[1] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}
    assert sent[2] == {"role": "tool", "tool_call_id": "c1", "content": "done"}
