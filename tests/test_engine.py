"""The Response over an engine's events, driven through MockEngine (the test seam)."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

import imagine
from imagine import Done, InputError, OptionsError, SchemaError, TextDelta, UpstreamError, Usage


def test_sync_streaming_joins_to_text(mock_engine):
    mock_engine.enqueue(["Hel", "lo", " world"])
    response = imagine.ask("hi", "mock")
    assert list(response) == ["Hel", "lo", " world"]
    assert response.text() == "Hello world"
    assert response.finish_reason == "stop"
    assert response.usage.output_tokens == 3


async def test_async_await_and_iteration(mock_engine):
    mock_engine.enqueue("one two three")
    response = await imagine.aask("hi", "mock")
    assert response.text() == "one two three"
    mock_engine.enqueue(["a", "b"])
    deltas = [d async for d in imagine.aask("hi", "mock")]
    assert deltas == ["a", "b"]


def test_replay_after_done(mock_engine):
    mock_engine.enqueue(["x", "y"])
    response = imagine.ask("hi", "mock").complete()
    assert list(response) == ["x", "y"]  # replayed, not re-run
    assert len(mock_engine.requests) == 1


def test_events_include_usage_and_done(mock_engine):
    mock_engine.enqueue([TextDelta("a"), Usage(5, 1), Done("length")])
    events = list(imagine.ask("hi", "mock").events())
    assert events[0] == TextDelta("a") and Done("length") in events
    assert sum(e.input_tokens for e in events if isinstance(e, Usage)) >= 5


def test_options_are_validated_by_the_engine(mock_engine):
    with pytest.raises(OptionsError, match="unknown option 'temprature'.*delay"):
        imagine.ask("hi", "mock", temprature=1)
    with pytest.raises(OptionsError, match="'max_tokens'"):
        imagine.ask("hi", "mock", max_tokens="lots")
    mock_engine.enqueue("a b c d e")
    assert imagine.ask("hi", "mock", max_tokens=2).text() == "a b "


def test_empty_prompt_is_an_input_error():
    with pytest.raises(InputError, match="empty"):
        imagine.ask("   ", "mock")


class City(BaseModel):
    name: str
    population: int


def test_schema_model_gives_parsed_object(mock_engine):
    mock_engine.enqueue('{"name": "Lisbon", "population": 545000}')
    response = imagine.ask("city?", "mock", schema=City)
    assert response.parsed == City(name="Lisbon", population=545000)
    assert response.json() == {"name": "Lisbon", "population": 545000}
    assert response.request.schema["required"] == ["name", "population"]


def test_schema_failure_is_schema_error_and_keeps_text(mock_engine):
    mock_engine.enqueue('{"name": "Lisbon"}')
    response = imagine.ask("city?", "mock", schema=City)
    with pytest.raises(SchemaError, match="population"):
        response.parsed
    assert response.text_so_far() == '{"name": "Lisbon"}'
    row = imagine.get_store().get(response.id)
    assert "population" in row["error"] and row["output_text"] == '{"name": "Lisbon"}'


def test_invalid_json_schema_dict_is_input_error():
    with pytest.raises(InputError, match="not a valid JSON schema"):
        imagine.ask("hi", "mock", schema={"type": "banana"})


def test_engine_exception_is_logged_with_partial_output(mock_engine):
    mock_engine.enqueue([TextDelta("partial "), imagine.Error("backend exploded", kind="UpstreamError")])
    response = imagine.ask("hi", "mock")
    with pytest.raises(UpstreamError, match="exploded"):
        response.text()
    row = imagine.get_store().get(response.id)
    assert row["output_text"] == "partial " and "exploded" in row["error"]
    mock_engine.enqueue(RuntimeError("bug"))
    with pytest.raises(UpstreamError, match="engine mock failed: RuntimeError: bug"):
        imagine.ask("hi", "mock").text()


def test_leaving_a_stream_early_logs_it_cancelled(mock_engine):
    mock_engine.enqueue(["a", "b", "c", "d"])
    response = imagine.ask("hi", "mock")
    for delta in response:
        break
    assert response.finish_reason == "cancelled"
    row = imagine.get_store().get(response.id)
    assert row["finish_reason"] == "cancelled" and row["output_text"] == "a"


async def test_concurrent_async_requests(mock_engine):
    for i in range(5):
        mock_engine.enqueue(f"answer {i}")
    results = await asyncio.gather(*(imagine.aask(f"q{i}", "mock", delay=0.01) for i in range(5)))
    assert sorted(r.text() for r in results) == [f"answer {i}" for i in range(5)]


def test_every_response_is_logged_with_provenance(mock_engine, tmp_path):
    mock_engine.enqueue("fine")
    response = imagine.ask("how are you?", "mock", system="be brief", seed=3)
    response.text()
    row = imagine.get_store().get(response.id[:14])
    assert row["engine"] == "mock" and row["model"] == "echo"
    assert row["engine_version"].startswith("imagine")
    assert row["options"]["seed"] == 3
    assert [m["role"] for m in row["input"]] == ["system", "user"]
    assert row["latency_ms"] >= 0 and row["ttft_ms"] is not None
    assert row["routing"]["chosen"] == "mock:echo"


def test_logging_can_be_turned_off(mock_engine, monkeypatch):
    from imagine import config

    monkeypatch.setenv("IMAGINE_LOG", "0")
    config.reset_settings()
    imagine.ask("hi", "mock").text()
    assert imagine.get_store().count() == 0


def test_conversation_continues_from_the_log(mock_engine):
    mock_engine.enqueue("Nice to meet you, Ada.")
    first = imagine.ask("My name is Ada.", "mock")
    first.text()
    mock_engine.enqueue("Your name is Ada.")
    second = imagine.ask("What is my name?", "mock", conversation=True)
    second.text()
    assert second.conversation_id == first.conversation_id
    sent = mock_engine.requests[-1].messages
    assert [m.role for m in sent] == ["user", "assistant", "user"]
    assert sent[1].text == "Nice to meet you, Ada."
    with pytest.raises(InputError, match="no conversation"):
        imagine.ask("hi", "mock", conversation="nope")


def test_attached_image_is_stored_once(mock_engine, tmp_path):
    from .helpers.media import png_bytes

    path = tmp_path / "red.png"
    path.write_bytes(png_bytes())
    for _ in range(2):
        imagine.ask("describe", "mock", attach=[path]).text()
    store = imagine.get_store()
    assert store.count() == 2
    sha = imagine.load_part(path).sha256
    assert store.blobs.path(sha).read_bytes() == path.read_bytes()
    assert store.conn.execute("SELECT COUNT(*) FROM blobs").fetchone()[0] == 1
