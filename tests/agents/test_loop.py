"""The agent loop on the mock engine: scripted tool calls, real tool functions, the log."""

from __future__ import annotations

import asyncio
import io
import threading

import pytest
from PIL import Image as PILImage

import imagine
from imagine import Done, Image, InputError, Message, ToolCall, ToolResult, ToolUse, Usage
from imagine.agents.loop import ModelStep, ToolStep
from imagine.tools import Tool, as_tool


def calls(*items: tuple[str, str, dict]) -> list:
    return [*(ToolCall(i, name, args) for i, name, args in items), Usage(5, 1), Done("tool_calls")]


def test_independent_calls_run_concurrently_and_their_results_reach_the_model(model):
    barrier = threading.Barrier(2, timeout=10)  # each tool waits for the other: only concurrent calls pass

    def city_weather(city: str) -> str:
        """The weather in a city."""
        barrier.wait()
        return f"sunny in {city}"

    def city_time(city: str) -> str:
        """The local time in a city."""
        barrier.wait()
        return f"noon in {city}"

    model.enqueue(calls(("c1", "city_weather", {"city": "Oslo"}), ("c2", "city_time", {"city": "Oslo"})))
    model.enqueue("Sunny, and it is noon.")
    run = imagine.agent("Weather and time in Oslo?", tools=[city_weather, city_time], model="mock")
    steps = list(run)
    tools = [s for s in steps if isinstance(s, ToolStep)]
    assert {(s.name, s.result.content) for s in tools} == {("city_weather", "sunny in Oslo"),
                                                           ("city_time", "noon in Oslo")}
    assert all(s.ok for s in tools)
    assert run.text() == "Sunny, and it is noon." and run.stopped == "answer"
    second = model.requests[1].messages
    assert second[-2].role == "assistant" and [u.id for u in second[-2].tool_uses] == ["c1", "c2"]
    assert second[-1].role == "tool" and [(r.call_id, r.content) for r in second[-1].tool_results] == [
        ("c1", "sunny in Oslo"), ("c2", "noon in Oslo")]  # in call order, whatever order they finished in
    assert [t["name"] for t in model.requests[0].tools] == ["city_weather", "city_time"]


def test_a_bad_argument_goes_back_as_an_error_and_the_retry_succeeds(model):
    ran: list[int] = []

    def add(a: int, b: int) -> int:
        """Add two whole numbers."""
        ran.append(a + b)
        return a + b

    model.enqueue(calls(("c1", "add", {"a": 1, "b": "two"})))
    model.enqueue(calls(("c2", "add", {"a": 1, "b": 2})))
    model.enqueue("1 + 2 = 3")
    run = imagine.agent("1 + 2?", tools=[add], model="mock")
    assert run.text() == "1 + 2 = 3"
    first, second = [s for s in run.steps if isinstance(s, ToolStep)]
    assert first.result.is_error and "b" in first.result.text and "call the tool again" in first.result.text
    assert second.ok and second.result.content == 3 and ran == [3]  # the bad call never ran
    told = model.requests[1].messages[-1].tool_results[0]
    assert told.call_id == "c1" and told.is_error
    assert isinstance(run.steps[0], ModelStep) and run.steps[0].error


def test_a_call_to_a_tool_not_given_is_refused_and_the_model_answers(model):
    def lookup(word: str) -> str:
        """Look a word up."""
        return "a word"

    model.enqueue(calls(("c1", "delete_everything", {})))
    model.enqueue("I cannot do that.")
    run = imagine.agent("Delete it all", tools=[lookup], model="mock")
    assert run.text() == "I cannot do that."
    (refused,) = [s for s in run.steps if isinstance(s, ToolStep)]
    assert refused.result.is_error and "which it was not given" in refused.result.text


def test_max_steps_stops_and_says_so(model):
    ran: list[str] = []

    def again(x: str) -> str:
        """Do it again."""
        ran.append(x)
        return "once more"

    for i in range(3):
        model.enqueue(calls((f"c{i}", "again", {"x": str(i)})))
    run = imagine.agent("loop", tools=[again], model="mock", max_steps=2)
    assert run.text() == "" and run.stopped == "max_steps"
    assert ran == ["0"]  # the second turn's call is not run: no model call would read its result
    assert "stopped after 2 model calls without an answer" in run.stop_reason and "again" in run.stop_reason
    assert len(model.requests) == 2
    with pytest.raises(InputError, match="max_steps"):
        imagine.agent("x", tools=[again], model="mock", max_steps=0)


def test_every_model_call_is_logged_under_the_run_id(model):
    def shout(text: str) -> str:
        """Upper-case a text."""
        return text.upper()

    model.enqueue(calls(("c1", "shout", {"text": "hi"})))
    model.enqueue(calls(("c2", "shout", {"text": "there"})))
    model.enqueue("HI THERE")
    run = imagine.agent("shout hi there", tools=[shout], model="mock")
    assert run.text() == "HI THERE"
    store = imagine.get_store()
    rows = [r for r in store.iter_all() if r["conversation_id"] == run.run_id]
    turns = [s for s in run.steps if isinstance(s, ModelStep)]
    assert sorted(r["id"] for r in rows) == sorted(s.response_id for s in turns) and len(rows) == 3
    assert {r["id"] for r in store.iter_all()} == {r["id"] for r in rows}  # the tools here log nothing else
    history = store.conversation(run.run_id)  # the run can be read back (and continued) like a chat
    uses = [p for m in history for p in m.parts if isinstance(p, ToolUse)]
    results = [p for m in history for p in m.parts if isinstance(p, ToolResult)]
    assert [u.id for u in uses] == ["c1", "c2"] and [r.content for r in results] == ["HI", "THERE"]
    assert history[-1].text == "HI THERE"
    assert run.usage.input_tokens is not None and run.usage.output_tokens == 1 + 1 + 2


def _png(colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", (16, 12), colour).save(buf, "PNG")
    return buf.getvalue()


def test_media_a_tool_makes_stays_a_part_of_the_answer(model):
    def paint(colour: str) -> Image:
        """Paint a small picture in one colour."""
        return Image(_png((255, 0, 0) if colour == "red" else (0, 0, 255)), name="painting.png")

    model.enqueue(calls(("c1", "paint", {"colour": "red"})))
    model.enqueue("Here is your red picture.")
    run = imagine.agent("Paint me something red", tools=[paint], model="mock")
    text, picture = run.parts
    assert text.text == "Here is your red picture."
    assert isinstance(picture, Image) and picture.pil().getpixel((0, 0)) == (255, 0, 0)
    result = model.requests[1].messages[-1].tool_results[0]
    assert result.content == "image-1"  # the model reads a handle, not base64
    assert run.workspace.media["image-1"] is picture


def test_a_tool_past_its_timeout_fails_and_the_run_goes_on(model):
    async def slow(seconds: float) -> str:
        """Wait a while."""
        await asyncio.sleep(seconds)
        return "done"

    tool = Tool(**{**as_tool(slow).__dict__, "timeout": 0.2})
    model.enqueue(calls(("c1", "slow", {"seconds": 5})))
    model.enqueue("It took too long.")
    run = imagine.agent("wait", tools=[tool], model="mock")
    assert run.text() == "It took too long."
    (step,) = [s for s in run.steps if isinstance(s, ToolStep)]
    assert step.result.is_error and "took longer than 0.2 s" in step.result.text and step.seconds < 3


def test_a_tool_that_raises_reports_the_error_to_the_model(model):
    def divide(a: float, b: float) -> float:
        """Divide a by b."""
        return a / b

    model.enqueue(calls(("c1", "divide", {"a": 1, "b": 0})))
    model.enqueue("Cannot divide by zero.")
    run = imagine.agent("1/0", tools=[divide], model="mock")
    assert run.text() == "Cannot divide by zero."
    assert "ZeroDivisionError" in model.requests[1].messages[-1].tool_results[0].text


def test_async_use_and_replay(model):
    def echo(text: str) -> str:
        """Say it back."""
        return text

    model.enqueue(calls(("c1", "echo", {"text": "ping"})))
    model.enqueue("pong")

    async def go() -> list:
        run = imagine.agent("ping", tools=[echo], model="mock")
        seen = [s async for s in run]
        await run
        return [seen, run]

    seen, run = asyncio.run(go())
    assert [type(s).__name__ for s in seen] == ["ModelStep", "ToolStep", "ModelStep"]
    assert list(run) == seen and run.text() == "pong"  # a finished run replays its steps


def test_tools_are_checked_before_anything_runs(model):
    with pytest.raises(InputError, match="no built-in tool named 'summon'"):
        imagine.agent("x", tools=["summon"], model="mock")
    with pytest.raises(InputError, match="two tools are named"):
        imagine.agent("x", tools=["read_text", "read_text"], model="mock")
    with pytest.raises(InputError, match="'lookup' has no function to run"):
        imagine.agent("x", tools=[{"name": "lookup", "parameters": {"type": "object"}}], model="mock")
    with pytest.raises(InputError, match="prompt"):
        imagine.agent("  ", tools=[], model="mock")
    run = imagine.agent("hello there", tools=[], model="mock")
    assert run.text().startswith("hello there") and model.requests[-1].tools == ()
    assert Message  # the public names the loop speaks in
