"""Tools on the default engine: the bundled SmolLM2-135M calls them through a grammar (greedy, so the same
on every CPU), answers in text when it does not call, and reads tool results in its next turn."""

from __future__ import annotations

import asyncio
from typing import Literal

import pytest

import imagine
from imagine import InputError, Message, Text, ToolCall, ToolUse
from imagine.engine import Request
from imagine.tools import as_tool, check_arguments

pytest.importorskip("llama_cpp", reason="needs the llama extra: pip install -e '.[llama]'")
pytestmark = pytest.mark.llm

from imagine.engines.llama_cpp import LlamaCppEngine  # noqa: E402

GREEDY = dict(temperature=0, seed=42, max_tokens=120)


def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    return f"It is sunny and 21 C in {city}."


def convert(amount: int, unit: Literal["celsius", "fahrenheit"]) -> str:
    """Convert a temperature to another unit."""
    return str(amount)


WEATHER = [("What's the weather in Paris?", "Paris"), ("Is it raining in London right now?", "London"),
           ("How hot is it in Tokyo today?", "Tokyo"), ("Tell me the weather for Berlin.", "Berlin"),
           ("What is the temperature in New York?", "New York"), ("Weather in Madrid please", "Madrid"),
           ("Do I need an umbrella in Seattle today?", "Seattle"), ("How cold is it in Moscow?", "Moscow"),
           ("What's the forecast for Rome?", "Rome"), ("Is it sunny in Sydney?", "Sydney")]


def test_bundled_model_calls_the_tool_with_valid_arguments():
    tool = as_tool(get_weather)
    good = 0
    for prompt, city in WEATHER:
        response = imagine.ask(prompt, tools=[get_weather], tool_choice="required", **GREEDY)
        calls = response.tool_calls
        assert response.text() == "" and response.finish_reason == "tool_calls"
        assert all(call.name == "get_weather" and call.id for call in calls)
        args = check_arguments(tool, calls[0].arguments)  # the grammar makes every call fit the schema
        good += len(calls) == 1 and city.lower() in args["city"].lower()
    assert good >= 8


def test_forced_call_follows_types_and_enums_of_the_schema():
    response = imagine.ask("Convert 30 degrees to fahrenheit.", tools=[get_weather, convert],
                           tool_choice="convert", **GREEDY)
    (call,) = response.tool_calls
    assert call.name == "convert"
    args = check_arguments(as_tool(convert), call.arguments)
    assert isinstance(args["amount"], int) and args["unit"] in ("celsius", "fahrenheit")


def test_unrelated_question_is_answered_in_text():
    for prompt in ("What is 2 + 2?", "Who wrote Hamlet?", "What is the capital of Italy?"):
        response = imagine.ask(prompt, tools=[get_weather], **GREEDY)  # tool_choice auto: the model's choice
        assert response.tool_calls == [] and response.text().strip()
        assert "<tool_call>" not in response.text() and response.finish_reason == "stop"


def test_tool_choice_none_answers_without_tools_and_a_typo_is_named():
    response = imagine.ask("What's the weather in Paris?", tools=[get_weather], tool_choice="none", **GREEDY)
    assert response.tool_calls == [] and response.text().strip()
    with pytest.raises(InputError, match="get_wether"):
        imagine.ask("Paris?", tools=[get_weather], tool_choice="get_wether", **GREEDY).text()


def test_tool_result_turn_reaches_the_model_and_it_answers_in_text():
    history = [Message.user("What's the weather in Paris?"),
               Message("assistant", [ToolUse("call_1", "get_weather", {"city": "Paris"})]),
               Message.tool_result("call_1", "It is sunny and 21 C in Paris.")]
    response = imagine.ask(history, tools=[get_weather], **GREEDY)
    assert response.tool_calls == [] and response.text().strip() and response.finish_reason == "stop"

    engine = LlamaCppEngine()
    request = Request(messages=tuple(history), model="smollm2", options=engine.parse_options({}),
                      tools=(as_tool(get_weather).spec(),))
    chat = engine._chat_messages(request)
    assert [m["role"] for m in chat] == ["system", "user", "assistant", "user"]
    assert '"name": "get_weather"' in chat[0]["content"] or '"name":"get_weather"' in chat[0]["content"]
    assert chat[2]["content"].startswith("<tool_call>") and '"city": "Paris"' in chat[2]["content"]
    assert "<tool_response>" in chat[3]["content"] and "sunny and 21 C" in chat[3]["content"]


def test_the_call_streams_no_text_and_usage_is_counted():
    engine = LlamaCppEngine()
    request = Request(messages=(Message("user", [Text("Weather in Oslo?")]),), model="smollm2",
                      options=engine.parse_options({**GREEDY, "tool_choice": "required"}),
                      tools=(as_tool(get_weather).spec(),))

    async def events() -> list:
        return [e async for e in engine.stream(request)]

    got = asyncio.run(events())
    kinds = [type(e).__name__ for e in got]
    assert "TextDelta" not in kinds and kinds[-2:] == ["Usage", "Done"]
    assert [e for e in got if isinstance(e, ToolCall)][0].arguments["city"]
    usage = got[-2]
    assert usage.input_tokens > 50 and usage.output_tokens > 5

