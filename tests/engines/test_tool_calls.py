"""The `<tool_call>` convention local engines share (parsing, streaming hold-back, tool choice, the grammar
text) and the one check of every engine's tool calls, in Response."""

from __future__ import annotations

import asyncio

import pytest

from imagine import Done, InputError, Message, SchemaError, TextDelta, ToolCall, ToolUse, Usage
from imagine.engine import Request, Response
from imagine.engines._support.tool_calls import (CallHolder, ToolChoice, call_text, only_repeats, parse_tool_calls,
                                                 resolve_tool_choice, with_tool_turns)
from imagine.engines._support.tool_grammar import call_grammar, repeats_call
from imagine.parts import Text
from imagine.tools import as_tool


def get_weather(city: str, days: int = 1) -> str:
    """Get the weather in a city."""
    return city


SPEC = as_tool(get_weather).spec()


def test_parse_reads_calls_after_text_and_tolerates_model_habits():
    text = ('Let me look. <tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>\n'
            '<tool_call>{"name": "get_weather", "parameters": "{\\"city\\": \\"Rome\\"}"}</tool_call>'
            '<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>')
    before, calls, problems = parse_tool_calls(text)
    assert before == "Let me look. " and problems == []
    assert [(c.name, c.arguments) for c in calls] == [("get_weather", {"city": "Oslo"}),
                                                       ("get_weather", {"city": "Rome"})]  # the repeat once
    assert len({c.id for c in calls}) == 2


def test_parse_reports_what_is_not_a_call():
    _, calls, problems = parse_tool_calls('<tool_call>{"name": }</tool_call><tool_call>{"arguments": {}}')
    assert calls == [] and "not valid JSON" in problems[0] and "names no tool" in problems[1]
    assert parse_tool_calls("just text") == ("just text", [], [])


def test_holder_streams_text_and_keeps_the_call_back():
    holder, out = CallHolder(), []
    for piece in ["Sure", ", <", "tool", "_call>\n{", '"name": "x"}', "</tool_call>"]:
        out.append(holder.feed(piece))
    assert "".join(out) == "Sure, " and holder.calling
    assert holder.held == '<tool_call>\n{"name": "x"}</tool_call>'
    plain = CallHolder()
    assert plain.feed("a <") == "a " and plain.feed(" b <tool") == "< b " and plain.flush() == "<tool"


def test_tool_choice_is_checked_against_the_tools():
    assert resolve_tool_choice(None, [SPEC]) == ToolChoice("auto")
    assert resolve_tool_choice(None, []) == ToolChoice("none")
    assert resolve_tool_choice("get_weather", [SPEC]) == ToolChoice("required", "get_weather")
    with pytest.raises(InputError, match="names no tool given: 'weather'"):
        resolve_tool_choice("weather", [SPEC])
    with pytest.raises(InputError, match="needs tools"):
        resolve_tool_choice("required", [])


def test_history_is_written_in_the_call_syntax_with_the_tools_note():
    history = [Message.system("Be brief."), Message.user("Oslo?"),
               Message("assistant", [ToolUse("c1", "get_weather", {"city": "Oslo"})]),
               Message.tool_result("c1", {"temp": 3}), Message.tool_result("c2", "x", name="other", is_error=True)]
    out = with_tool_turns(history, [SPEC])
    assert [m.role for m in out] == ["system", "user", "assistant", "user"]  # both results in one turn
    assert "Be brief." in out[0].text and "<tools>" in out[0].text and '"get_weather"' in out[0].text
    assert out[2].text == call_text("get_weather", {"city": "Oslo"})
    assert '"name": "get_weather"' in out[3].text and '"error": true' in out[3].text
    assert only_repeats(call_text("get_weather", {"city": "Oslo"}), history)
    assert not only_repeats(call_text("get_weather", {"city": "Rome"}), history)


def test_grammar_names_every_tool_and_limits_the_calls():
    pytest.importorskip("llama_cpp")
    from imagine.engines._support.tool_grammar import MAX_CALLS, compiled

    other = {"name": "lookup", "description": "", "parameters": {"type": "object", "properties": {
        "word": {"type": "string", "enum": ["a", "b"]}}, "required": ["word"]}}
    text = call_grammar([SPEC, other])
    assert '"\\"get_weather\\""' in text and '"\\"lookup\\""' in text and text.count('("\\n" call)?') == MAX_CALLS - 1
    assert '"\\"lookup\\""' not in call_grammar([SPEC, other], only=["get_weather"])
    compiled(text)  # llama.cpp parses it
    assert repeats_call('<tool_call>\n{"a": 1}\n</tool_call>\n<tool_call>\n{"a": 1}')
    assert not repeats_call('<tool_call>\n{"a": 1}\n</tool_call>\n<tool_call>\n{"a": 2}')


def respond(mock_engine, events: list) -> Response:
    mock_engine.enqueue(events)
    request = Request(messages=(Message("user", [Text("hi")]),), model="echo",
                      options=mock_engine.parse_options({}), tools=(SPEC,))
    return Response(engine=mock_engine, request=request)


def test_response_checks_every_engines_tool_calls(mock_engine):
    good = ToolCall("c1", "get_weather", {"city": "Oslo", "days": 2})
    assert respond(mock_engine, [good, Usage(1, 1), Done("tool_calls")]).tool_calls == [good]
    bad = respond(mock_engine, [TextDelta("ok"), ToolCall("c2", "get_weather", {"days": "many"}), Done()])
    with pytest.raises(SchemaError, match="'get_weather'.*city"):
        bad.complete()
    assert bad.text_so_far() == "ok" and not any(isinstance(e, ToolCall) for e in bad.events_seen)
    with pytest.raises(SchemaError, match="'get_time', which it was not given") as info:
        asyncio.run(respond(mock_engine, [ToolCall("c3", "get_time", {})])._complete())
    assert "get_weather" in (info.value.hint or "")


def test_results_as_context_ends_on_the_question_with_the_results_as_facts():
    from imagine.engines._support.tool_calls import results_as_context
    from imagine.parts import Message, ToolResult, ToolUse

    messages = [Message.system("Be brief."), Message.user("Weather in Oslo?"),
                Message("assistant", [ToolUse("c1", "get_weather", {"city": "Oslo"})]),
                Message("tool", [ToolResult("c1", "Sunny, 4 C.")]),
                Message("tool", [ToolResult("c2", "timeout", name="get_time", is_error=True)])]
    out = results_as_context(messages)
    assert [m.role for m in out] == ["system", "user"] and out[-1].text == "Weather in Oslo?"
    assert "Be brief." in out[0].text and "- get_weather: Sunny, 4 C." in out[0].text
    assert "- get_time (failed): timeout" in out[0].text
    assert "<tool" not in out[0].text
