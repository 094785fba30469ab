"""The agent loop on the bundled SmolLM2-135M: a forced first call through the grammar, the tool runs with
the city asked about, its result goes back to the model, and the run ends with a text answer."""

from __future__ import annotations

import pytest

import imagine
from imagine.agents.loop import ModelStep, ToolStep
from imagine.client import default_client

pytest.importorskip("llama_cpp", reason="needs the llama extra: pip install -e '.[llama]'")
pytestmark = pytest.mark.llm

CITIES = [("What is the weather in Paris?", "Paris"), ("How is the weather in Tokyo today?", "Tokyo"),
          ("Is it raining in Berlin?", "Berlin")]


def test_the_bundled_model_calls_the_tool_and_answers_from_its_result():
    for question, city in CITIES:
        asked: list[str] = []

        def get_weather(city: str) -> str:
            """Get the current weather in a city."""
            asked.append(city)
            return f"It is sunny and 21 degrees in {city}."

        run = imagine.agent(question, tools=[get_weather],
                            options={"tool_choice": "required", "temperature": 0, "seed": 42, "max_tokens": 80})
        steps = list(run)
        assert [s.name for s in steps if isinstance(s, ToolStep)][:1] == ["get_weather"]
        assert city.lower() in asked[0].lower(), (question, asked)
        assert run.stopped == "answer" and run.text().strip(), "the run ends with a text answer"
        assert "<tool" not in run.text() and "[tool" not in run.text(), "no call or result syntax in the answer"
        assert isinstance(steps[-1], ModelStep) and not steps[-1].calls
        history = default_client().store.conversation(run.run_id)  # what the model was sent, as logged
        results = [p for m in history if m.role == "tool" for p in m.tool_results]
        assert results and f"21 degrees in {asked[0]}" in results[0].text


def test_without_a_forced_choice_the_first_tool_is_chosen_by_meaning():
    """Left to itself the 135M model never opens a call (bench/tool_calls.py); the agent's choice by meaning
    calls the weather tool for weather questions and no tool for unrelated ones."""
    asked: list[str] = []

    def get_weather(city: str) -> str:
        """Get the current weather in a city."""
        asked.append(city)
        return f"It is sunny and 21 degrees in {city}."

    options = {"temperature": 0, "seed": 42, "max_tokens": 60}
    run = imagine.agent("Tell me the weather for Berlin.", tools=[get_weather], options=options)
    first = list(run)[0]
    assert isinstance(first, ModelStep) and first.chosen is not None and first.chosen.tool == "get_weather"
    assert first.chosen.similarity >= 0.3 and "chosen by meaning" in str(first)
    assert asked and "berlin" in asked[0].lower() and run.stopped == "answer"

    for unrelated in ("Who wrote Hamlet?", "How do I sort a list in Python?"):
        run = imagine.agent(unrelated, tools=[get_weather], max_steps=2, options=options)
        steps = list(run)
        assert steps[0].chosen is None and not [s for s in steps if isinstance(s, ToolStep)], unrelated

    # the caller's own choice stands: choose="model" leaves it to the model, which answers in text
    run = imagine.agent("Tell me the weather for Berlin.", tools=[get_weather], choose="model", max_steps=2,
                        options=options)
    assert list(run)[0].chosen is None
