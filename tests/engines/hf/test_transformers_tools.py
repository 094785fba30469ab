"""Tools on the transformers engine: given to a chat template that renders them, else described in the system
turn; `<tool_call>` answers become ToolCall events (checked against the schema above the engine). The model's
words are scripted where they matter: random weights say nothing deterministic about tools."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers", reason="needs the hf extra: pip install -e '.[hf]'")

import imagine  # noqa: E402
from imagine import Message, SchemaError, ToolCall, ToolUse  # noqa: E402
from imagine.engines._support.tool_calls import openai_tools  # noqa: E402
from imagine.engines.hf import transformers as tt  # noqa: E402
from imagine.tools import as_tool  # noqa: E402

from ...helpers.tiny_llama import TEMPLATE, save_tiny_llama  # noqa: E402

TOOLS_TEMPLATE = ("{% if tools %}<s>system: tools:{% for t in tools %} {{ t['function']['name'] }}{% endfor %}</s>\n"
                  "{% endif %}" + TEMPLATE)


def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    return city


@pytest.fixture(scope="module")
def llm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama whose chat template ignores tools."""
    return save_tiny_llama(tmp_path_factory.mktemp("hf") / "tiny-llama")


@pytest.fixture(scope="module")
def tool_llm(llm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same tiny model, its tokenizer's template rendering `tools`."""
    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("hf") / "tiny-llama-tools"
    shutil.copytree(llm, folder)
    tok = AutoTokenizer.from_pretrained(folder)
    tok.chat_template = TOOLS_TEMPLATE
    tok.save_pretrained(folder)
    return folder


def scripted(monkeypatch: pytest.MonkeyPatch, reply: str) -> list[dict[str, Any]]:
    """Answer with `reply` instead of generating; record each call's turns and template tools."""
    seen: list[dict[str, Any]] = []

    def fake(loaded: Any, turns: Any, opts: Any, *, on_text: Any, cancel: Any, tools: Any = None) -> tt.Generated:
        seen.append({"turns": list(turns), "tools": tools,
                     "prompt": tt.render_text_prompt(loaded.tokenizer, turns, tools)})
        for i in range(0, len(reply), 7):  # in pieces, as a streamer hands them over
            on_text(reply[i:i + 7])
        return tt.Generated(reply, 10, 5, "stop")

    monkeypatch.setattr(tt, "run_generation", fake)
    return seen


CALL = 'Checking. <tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'


def test_a_template_that_takes_tools_gets_them(tool_llm, monkeypatch):
    seen = scripted(monkeypatch, CALL)
    response = imagine.ask("weather in Oslo?", model=f"transformers:{tool_llm}", tools=[get_weather])
    assert "".join(response) == "Checking. "  # the text before the call streams; the call does not
    (call,) = response.tool_calls
    assert (call.name, call.arguments) == ("get_weather", {"city": "Oslo"})
    assert response.finish_reason == "tool_calls" and "<tool_call>" not in response.text()
    assert seen[0]["tools"] == openai_tools([as_tool(get_weather).spec()])
    assert "tools: get_weather" in seen[0]["prompt"] and "<tools>" not in seen[0]["prompt"]


def test_a_template_without_tools_gets_them_in_the_system_turn(llm, monkeypatch):
    seen = scripted(monkeypatch, CALL)
    response = imagine.ask("weather in Oslo?", model=f"transformers:{llm}", tools=[get_weather])
    assert [c.arguments for c in response.tool_calls] == [{"city": "Oslo"}]
    assert seen[0]["tools"] is None
    system = seen[0]["turns"][0]
    assert system[0] == "system" and "<tools>" in system[1][0] and '"get_weather"' in system[1][0]


def test_earlier_calls_and_results_are_in_the_prompt(llm, monkeypatch):
    seen = scripted(monkeypatch, "It is sunny.")
    history = [Message.user("weather in Oslo?"), Message("assistant", [ToolUse("c1", "get_weather", {"city": "Oslo"})]),
               Message.tool_result("c1", "sunny, 12 C")]
    response = imagine.ask(history[-1], history=history[:-1], model=f"transformers:{llm}", tools=[get_weather])
    assert response.text() == "It is sunny." and response.tool_calls == [] and response.finish_reason == "stop"
    prompt = seen[0]["prompt"]
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}' in prompt
    assert "<tool_response>" in prompt and "sunny, 12 C" in prompt


def test_a_malformed_call_stays_text_and_bad_arguments_are_refused(llm, monkeypatch):
    scripted(monkeypatch, "<tool_call>{not json</tool_call>")
    response = imagine.ask("weather?", model=f"transformers:{llm}", tools=[get_weather])
    assert response.text() == "<tool_call>{not json</tool_call>" and response.tool_calls == []
    scripted(monkeypatch, '<tool_call>{"name": "get_weather", "arguments": {"town": "Oslo"}}</tool_call>')
    with pytest.raises(SchemaError, match="'town' was unexpected"):
        imagine.ask("weather?", model=f"transformers:{llm}", tools=[get_weather]).text()


def test_the_real_tiny_model_runs_with_tools(tool_llm):
    events = list(imagine.ask("the cat sees a dog", model=f"transformers:{tool_llm}", tools=[get_weather],
                              temperature=0, max_tokens=6).events())
    assert not any(isinstance(e, ToolCall) for e in events)  # its vocabulary cannot spell a call
    assert type(events[-1]).__name__ == "Done" and events[-1].finish_reason == "length"
