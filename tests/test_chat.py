from __future__ import annotations

import io

import pytest

import imagine
from imagine.chat import ChatSession

from .helpers.media import png_bytes


def scripted(lines):
    it = iter(lines)

    def read(prompt: str) -> str:
        try:
            return next(it)
        except StopIteration:
            raise EOFError from None

    return read


def test_chat_keeps_history_and_commands(mock_engine, tmp_path):
    img = tmp_path / "a.png"
    img.write_bytes(png_bytes())
    out = io.StringIO()
    mock_engine.enqueue("Hello Ada.")
    mock_engine.enqueue("You are Ada.")
    session = ChatSession(model="mock", read=scripted(["My name is Ada", f"!attach {img}", "Who am I?",
                                                        "!bogus", "!quit"]), out=out)
    session.run()
    text = out.getvalue()
    assert "Hello Ada." in text and "You are Ada." in text and "unknown command" in text
    last = mock_engine.requests[-1].messages
    assert [m.role for m in last] == ["user", "assistant", "user"]
    assert last[2].modalities == {imagine.Modality.TEXT, imagine.Modality.IMAGE}
    rows = imagine.get_store().recent(5)
    assert len(rows) == 2 and rows[0]["conversation_id"] == rows[1]["conversation_id"]


@pytest.fixture
def sigint_raises():
    """A test run started in the background (`cmd &`) inherits SIGINT ignored; a terminal user never does."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_stops_reply_not_session(mock_engine, sigint_raises):
    """A real SIGINT while a reply streams: the reply stops, what arrived is kept, the session goes on."""
    import os
    import signal
    import threading

    class Out(io.StringIO):
        def write(self, text):
            if text == "first ":
                threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT)).start()
            return super().write(text)

    out = Out()
    mock_engine.enqueue(["first ", "second ", "third"])
    mock_engine.enqueue("still here")
    session = ChatSession(model="mock", options={"delay": 0.5}, read=scripted(["hi", "again"]), out=out)
    session.run()
    text = out.getvalue()
    assert "first  [stopped]" in text and "second" not in text
    assert "still here" in text  # the session survived
    assert session.history[1].text == "first "
    rows = imagine.get_store().recent(5)
    assert [r["finish_reason"] for r in rows] == ["stop", "cancelled"]
