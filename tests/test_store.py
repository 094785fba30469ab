from __future__ import annotations

import multiprocessing as mp
import sqlite3

from imagine import Image, Message, Text
from imagine.store import MIGRATIONS, Store

from .helpers.media import png_bytes


def test_migrates_from_empty(tmp_path):
    store = Store(tmp_path / "logs.db")
    assert store.schema_version() == len(MIGRATIONS)
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"responses", "blobs"} <= tables
    store.close()
    assert Store(tmp_path / "logs.db").schema_version() == len(MIGRATIONS)  # idempotent


def test_migrates_a_version_one_database(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[0])
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO responses (id, created, model, engine) VALUES ('old', '2026-01-01', 'm', 'e')")
    conn.commit()
    conn.close()
    store = Store(path)
    assert store.schema_version() == len(MIGRATIONS)
    assert store.get("old")["model"] == "m"  # existing rows survive


def _writer(db: str, worker: int, count: int) -> None:
    store = Store(db)
    image = Image(png_bytes(color=(worker, 0, 0)))
    for i in range(count):
        store.log({"id": f"w{worker}-{i:03d}", "model": "m", "engine": "e",
                   "input": [{"role": "user", "parts": [store.put_part(image), store.put_part(Text(str(i)))]}],
                   "output_text": f"{worker}:{i}"})
    store.close()


def test_four_processes_fifty_writes_each_lose_nothing(tmp_path):
    db = str(tmp_path / "logs.db")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(db, w, 50)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    store = Store(db)
    assert store.count() == 200
    ids = {r[0] for r in store.conn.execute("SELECT id FROM responses")}
    assert ids == {f"w{w}-{i:03d}" for w in range(4) for i in range(50)}
    assert store.conn.execute("SELECT COUNT(*) FROM blobs").fetchone()[0] == 4  # one image per worker


def test_blobs_deduplicate(tmp_path):
    store = Store(tmp_path / "logs.db")
    image = Image(png_bytes())
    assert store.blobs.put(image.data, image.sha256) is True
    assert store.blobs.put(image.data, image.sha256) is False
    path = store.blobs.path(image.sha256)
    assert path.parent.name == image.sha256[:2] and path.name == image.sha256[2:]
    files = [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]
    assert len(files) == 1


def test_conversation_round_trips_media(tmp_path):
    store = Store(tmp_path / "logs.db")
    image = Image(png_bytes())
    msg = Message.user("what is this?", image)
    store.log({"id": "a1", "conversation_id": "c1", "model": "m", "engine": "e",
               "input": [{"role": msg.role, "parts": [store.put_part(p) for p in msg.parts]}],
               "output_text": "a red square"})
    rebuilt = store.conversation("c1")
    assert [m.role for m in rebuilt] == ["user", "assistant"]
    assert rebuilt[0].parts[1] == image and rebuilt[1].text == "a red square"
    assert store.last_conversation_id() == "c1"


def test_a_conversation_with_tool_calls_and_results_is_logged_and_reloaded(mock_engine):
    """Turn 1 asks for a tool; turn 2 continues the logged conversation with the tool's result. The log keeps
    the call (as the answer's ToolUse) and the result (ToolResult), and a text-only engine (mock) reads the
    result as text."""
    import imagine
    from imagine import Done, TextDelta, ToolCall, ToolResult, ToolUse, Usage

    call = ToolCall(id="call_1", name="get_weather", arguments={"city": "Oslo"})
    mock_engine.enqueue([TextDelta("Let me check."), call, Usage(3, 4), Done("tool_calls")])
    first = imagine.ask("weather in Oslo?", "mock")
    assert first.tool_calls == [call]
    assert first.as_message() == Message("assistant", ["Let me check.", ToolUse("call_1", "get_weather",
                                                                                 {"city": "Oslo"})])

    second = imagine.ask(Message.tool_result("call_1", {"temp_c": 12}, name="get_weather"), "mock",
                         conversation=first.conversation_id)
    assert second.text() == '[tool get_weather returned] {"temp_c": 12}'  # the echo of what the model read
    sent = mock_engine.requests[-1].messages
    assert [m.role for m in sent] == ["user", "assistant", "tool"]
    assert sent[1].parts == (Text("Let me check."), ToolUse("call_1", "get_weather", {"city": "Oslo"}))
    assert sent[2].parts == (ToolResult("call_1", {"temp_c": 12}, name="get_weather"),)

    rebuilt = imagine.get_store().conversation(first.conversation_id)
    assert rebuilt == [*sent, Message.assistant('[tool get_weather returned] {"temp_c": 12}')]
    assert not list((imagine.get_store().blobs.root).glob("*/*"))  # tool records hold their values: no blobs
