"""Choosing the first tool by meaning (agents/choose.py) with the bundled MiniLM: the closest tool above the
threshold, none below it, and the loop using it only where it should (the mock engine's choice is not weak)."""

from __future__ import annotations

import asyncio

import pytest

import imagine
from imagine import Done, InputError, ToolCall, Usage
from imagine.agents.choose import THRESHOLD, closest_tool
from imagine.client import default_client
from imagine.tools import as_tool

pytest.importorskip("tokenizers", reason="needs the embed extra: pip install -e '.[embed]'")


def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    return f"sunny in {city}"


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def transcribe_audio(path: str) -> str:
    """Transcribe the speech in an audio file."""
    return "hello"


TOOLS = [as_tool(f) for f in (get_weather, add, transcribe_audio)]


def choose(prompt: str):
    return asyncio.run(closest_tool(prompt, TOOLS, default_client()))


def test_the_closest_tool_wins_when_close_enough():
    weather = choose("What's the weather like in Lisbon today?")
    assert weather is not None and weather.tool == "get_weather" and weather.similarity >= THRESHOLD
    speech = choose("Please transcribe the speech in this audio recording.")
    assert speech is not None and speech.tool == "transcribe_audio"


def test_nothing_is_chosen_for_an_unrelated_request():
    assert choose("Who wrote Hamlet?") is None
    assert choose("Explain photosynthesis briefly.") is None
    assert asyncio.run(closest_tool("anything", [], default_client())) is None


def test_the_loop_leaves_a_strong_models_choice_alone_unless_asked(model):
    """The mock engine is not marked weak_tool_choice, so auto lets it choose; it has no tool_choice option,
    so even choose="meaning" cannot force it (the model chooses, and says so by not being `chosen`)."""
    model.enqueue([ToolCall("c1", "get_weather", {"city": "Oslo"}), Usage(5, 1), Done("tool_calls")])
    model.enqueue("Sunny in Oslo.")
    run = imagine.agent("What's the weather in Oslo?", tools=[get_weather], model="mock")
    first = list(run)[0]
    assert first.chosen is None and [c.name for c in first.calls] == ["get_weather"]
    assert run.text() == "Sunny in Oslo."
    with pytest.raises(InputError, match="choose must be one of"):
        imagine.agent("hi", tools=[get_weather], model="mock", choose="dice")  # type: ignore[arg-type]
