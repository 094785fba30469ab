"""The `openai` engine against a real third-party OpenAI-compatible server: llama-cpp-python's own
(`python -m llama_cpp.server`), serving the bundled SmolLM2 GGUF on loopback, added as an endpoint the
way `imagine engines add` does. One server for the module, started and stopped here.

What this server does (llama-cpp-python 0.3.x, default chat format from the GGUF): it streams, it takes
`response_format` json_object with a schema (grammar-constrained) but answers json_schema with an HTTP
500 carrying a multi-line validation error, it sends no usage in streams, and it ignores tools unless
`tool_choice` forces one (then it constrains the call to the tool's schema).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.importorskip("openai", reason="needs the openai extra: pip install -e '.[openai]'")
pytest.importorskip("llama_cpp.server.app", reason="needs llama-cpp-python[server]: pip install -e '.[test]'")

import imagine  # noqa: E402
from imagine import InputError, ToolCall, UpstreamError  # noqa: E402
from imagine.engines.llama_cpp import bundled_smollm2_path  # noqa: E402
from imagine.engines.cloud.openai import forget_response_formats  # noqa: E402

from ..helpers.cli import assert_one_line_error, run  # noqa: E402
from ..helpers.fake_http import unused_port  # noqa: E402
from ..helpers.media import wav_bytes  # noqa: E402

pytestmark = pytest.mark.llm

NAME = "lcpp"
GREEDY: dict[str, Any] = dict(temperature=0, seed=7)
PERSON = {"type": "object", "required": ["name", "age"],
          "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"}}}
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                   "required": ["city"]}}}


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python -m llama_cpp.server` on 127.0.0.1:<free port>, ready when /v1/models answers."""
    port = unused_port()
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(bundled_smollm2_path()),
               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--verbose", "False"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, "HF_HUB_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 180  # a guard against a hung start, not a performance assertion
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not come up: {log_path.read_text()[-2000:]}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def lcpp(server_url: str, imagine_home: Path) -> str:
    """The server as endpoint `lcpp`, added through `imagine engines add`; the engine id to use."""
    from click.testing import CliRunner

    from imagine.cli import cli

    result = CliRunner().invoke(cli, ["engines", "add", NAME, "--base-url", server_url, "--model", "smollm2"])
    assert result.exit_code == 0, result.output
    imagine.registry.reset_registry()
    forget_response_formats()  # every test starts from what a fresh process knows
    return NAME


def test_the_endpoint_is_a_local_engine(lcpp):
    info = {i.id: i for i in imagine.get_registry().infos()}[lcpp]
    assert info.locality == "local" and info.unavailable is None and info.default_model == "smollm2"


def test_plain_chat(lcpp, imagine_home):
    resp = imagine.ask("Say hello.", lcpp, max_tokens=12, **GREEDY)
    assert resp.text().strip() and resp.finish_reason in ("stop", "length")
    assert resp.engine.id == lcpp and resp.request.model == "smollm2"
    row = imagine.get_store().get(resp.id)
    assert row["engine"] == lcpp and row["output_text"] == resp.text() and row["error"] is None


def test_streamed_deltas_join_to_the_text(lcpp):
    resp = imagine.ask("Name three colours.", lcpp, max_tokens=16, **GREEDY)
    deltas = list(resp)
    assert len(deltas) > 1 and "".join(deltas) == resp.text()


def test_a_schema_goes_through_the_fallback_and_is_remembered(lcpp):
    import jsonschema

    first = imagine.ask("Give a person named Ada, aged 36, as JSON.", lcpp, schema=PERSON, max_tokens=64, **GREEDY)
    jsonschema.validate(first.parsed, PERSON)
    # the server answered json_schema with a 500; json_object with the schema worked
    assert first.usage.extra["response_format"] == "json_object"
    assert first.usage.extra["response_format_rejected"] == ["json_schema"]
    # remembered for this endpoint: the second request does not try json_schema again
    second = imagine.ask("Give a person named Bo, aged 7, as JSON.", lcpp, schema=PERSON, max_tokens=64, **GREEDY)
    jsonschema.validate(second.parsed, PERSON)
    assert second.usage.extra["response_format"] == "json_object"
    assert "response_format_rejected" not in second.usage.extra


def test_openai_format_tools_give_a_tool_call_when_one_is_forced(lcpp):
    resp = imagine.ask("What is the weather in Paris?", lcpp, tools=[WEATHER_TOOL], tool_choice="get_weather",
                       max_tokens=32, **GREEDY)
    calls = [e for e in resp.events() if isinstance(e, ToolCall)]
    assert resp.finish_reason == "tool_calls" and len(calls) == 1
    assert calls[0].name == "get_weather" and isinstance(calls[0].arguments.get("city"), str)


def test_unforced_tools_are_accepted_and_answered_in_text(lcpp):
    # the GGUF's own chat format has no tool calling: the server takes the tools and the model just talks
    resp = imagine.ask("What is the weather in Paris?", lcpp, tools=[WEATHER_TOOL], max_tokens=12, **GREEDY)
    assert resp.text().strip() and resp.finish_reason in ("stop", "length")


def test_a_malformed_tool_is_an_input_error_naming_the_field(lcpp):
    with pytest.raises(InputError, match=r"tools\[0\]\.function\.name is missing"):
        imagine.ask("weather?", lcpp, tools=[{"type": "function", "function": {"description": "no name"}}])


def test_usage_is_unknown_when_the_server_sends_none_never_zero(lcpp, imagine_home):
    resp = imagine.ask("Say hello.", lcpp, max_tokens=8, **GREEDY)
    resp.text()
    usage = resp.usage
    counts = (usage.input_tokens, usage.output_tokens)
    # this server sends no usage in streams (whatever stream_options says); if a later version does, the
    # counts must be real ones
    assert counts == (None, None) or (counts[0] > 0 and counts[1] > 0), counts
    assert 0 not in counts and usage.cost == 0.0  # a loopback endpoint is free, counted or not
    row = imagine.get_store().get(resp.id)
    assert (row["input_tokens"], row["output_tokens"]) == counts


def test_a_rejected_request_is_one_line_naming_the_endpoint(lcpp, server_url, imagine_home):
    # declare the model as taking audio, so imagine sends it; the server answers with 15 lines of validation
    with (imagine_home / "config.toml").open("a") as config:
        config.write(f'[endpoints.{lcpp}.models.smollm2]\ninputs = ["text", "audio"]\n')
    imagine.config.reset_settings()
    imagine.registry.reset_registry()
    with pytest.raises(UpstreamError) as info:
        imagine.ask("What is this?", lcpp, attach=[wav_bytes()], max_tokens=4).text()
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message and len(message) < 400
    assert message.startswith(f"{lcpp} ({server_url}) failed with HTTP 500: ") and "validation error" in message
    # the same through the CLI: one line on stderr, a non-zero exit
    audio = imagine_home / "beep.wav"
    audio.write_bytes(wav_bytes())
    assert_one_line_error(run("ask", "-m", lcpp, "-a", str(audio), "What is this?", home=imagine_home),
                          f"{lcpp} ({server_url})", "HTTP 500")


def test_a_prompt_longer_than_the_context_is_one_line(lcpp, server_url):
    # the server starts its 200 stream, then fails: imagine says so in one line instead of "connection cut"
    with pytest.raises(UpstreamError) as info:
        imagine.ask("word " * 3000, lcpp, max_tokens=4).text()
    assert "\n" not in str(info.value) and str(info.value).startswith(f"{lcpp} ({server_url}) accepted the request")
