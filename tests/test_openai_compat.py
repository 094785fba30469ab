"""The `openai` engine against a real HTTP server on loopback (tests/fake_http.py): the official SDK does
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
from imagine.engines._cloud import display_url, retry_after_seconds  # noqa: E402

from .fake_http import FakeServer, json_reply, reset_imagine as reset, sse_reply, unused_port  # noqa: E402
from .test_parts import png_bytes, wav_bytes  # noqa: E402

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
    with pytest.raises(InputError, match="known models: gpt-4o-mini"):
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
    assert "set OPENAI_API_KEY" in table
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
