"""`imagine index|search|memory` and `ask --index/--memory` through a real subprocess, and memory in chat."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from imagine.chat import ChatSession
from imagine.client import default_client
from imagine.index.memory import Memory

from ..helpers.cli import assert_one_line_error, run

pytest.importorskip("lancedb", reason="needs the index extra: pip install -e '.[index]'")


@pytest.fixture
def docs(tmp_path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "meeting.md").write_text("# Meeting\n\nWe decided to cut the travel budget by ten percent.\n")
    (folder / "garden.txt").write_text("Tomatoes need six hours of sun and deep watering twice a week.\n")
    (folder / "junk.bin").write_bytes(b"\x00\x01binary")  # not indexable inside a folder: skipped silently
    return folder


def test_index_add_search_show_rm_drop(docs, imagine_home):
    added = run("index", "add", "notes", str(docs), str(docs / "nope.txt"), home=imagine_home)
    assert added.returncode == 0, added.stderr
    assert "added" in added.stdout and "meeting.md" in added.stdout and "garden.txt" in added.stdout
    assert "skipped" in added.stderr and "nope.txt" in added.stderr

    again = run("index", "add", "notes", str(docs), "--json", home=imagine_home)
    report = json.loads(again.stdout)
    assert report["added"] == [] and len(report["unchanged"]) == 2

    found = run("search", "notes", "how", "much", "sun", "do", "tomatoes", "need", "--json", home=imagine_home)
    hits = json.loads(found.stdout)
    assert Path(hits[0]["source"]).name == "garden.txt" and hits[0]["citation"] == "garden.txt:1"
    printed = run("search", "notes", "travel budget", home=imagine_home).stdout
    assert printed.startswith("1. meeting.md:")

    listed = run("index", "list", "--json", home=imagine_home)
    assert json.loads(listed.stdout)[0] | {"files": 2, "name": "notes"} == json.loads(listed.stdout)[0]
    shown = run("index", "show", "notes", home=imagine_home).stdout
    assert "meeting.md" in shown and "garden.txt" in shown

    removed = run("index", "rm", "notes", str(docs / "garden.txt"), home=imagine_home)
    assert removed.returncode == 0 and "1 chunks" in removed.stdout
    gone = json.loads(run("search", "notes", "tomatoes sun", "--json", home=imagine_home).stdout)
    assert all(Path(h["source"]).name != "garden.txt" for h in gone)

    assert run("index", "drop", "notes", "--yes", home=imagine_home).returncode == 0
    assert_one_line_error(run("search", "notes", "budget", home=imagine_home), "no index named 'notes'")


def test_ask_index_with_nothing_relevant_says_so(docs, imagine_home):
    run("index", "add", "notes", str(docs), home=imagine_home)
    proc = run("ask", "--index", "notes", "-m", "mock", "Who painted the Mona Lisa?", home=imagine_home)
    assert proc.returncode == 0, proc.stderr
    assert "holds nothing relevant" in proc.stdout
    relevant = run("ask", "--index", "notes", "-m", "mock", "What did we decide about the travel budget?",
                   "--json", home=imagine_home)
    payload = json.loads(relevant.stdout)
    assert payload["found"] and Path(payload["sources"][0]["source"]).name == "meeting.md"
    assert "[1] (meeting.md:1)" in payload["answer"]  # the mock echoes the prompt it was given


def test_bad_input_is_one_line(docs, imagine_home):
    assert_one_line_error(run("index", "add", "bad name!", str(docs), home=imagine_home), "bad index name")
    assert_one_line_error(run("memory", "forget", home=imagine_home), "name the memories to forget")
    run("index", "add", "notes", str(docs), home=imagine_home)
    assert_one_line_error(run("search", "notes", home=imagine_home), "the search query is empty")
    assert_one_line_error(run("index", "add", "notes", str(docs), "--embed-model", "clip", home=imagine_home),
                          "was made with embedder minilm")


def test_ask_memory_remembers_and_recalls(imagine_home):
    first = run("ask", "--memory", "-m", "mock", "My cat is called Miso and she likes tuna.", home=imagine_home)
    assert first.returncode == 0, first.stderr
    items = json.loads(run("memory", "list", "--json", home=imagine_home).stdout)
    assert len(items) == 1 and items[0]["question"].startswith("My cat is called Miso")
    second = run("ask", "--memory", "-m", "mock", "What is the name of my cat?", "--json", home=imagine_home)
    payload = json.loads(second.stdout)
    assert [m["id"] for m in payload["memories"]] == [items[0]["id"]]
    forgot = run("memory", "forget", items[0]["id"], home=imagine_home)
    assert forgot.returncode == 0 and "forgot 1 memory" in forgot.stdout
    assert len(json.loads(run("memory", "list", "--json", home=imagine_home).stdout)) == 1  # the second turn


def _reader(*lines: str):
    queue = list(lines)

    def read(_prompt: str) -> str:
        if not queue:
            raise EOFError
        return queue.pop(0)
    return read


def test_chat_memory_puts_recalled_turns_in_front_of_the_model(mock_engine):
    out = io.StringIO()
    mock_engine.enqueue("What a lovely name.")
    mock_engine.enqueue("The person's cat is called Miso and likes tuna.")  # the summary
    ChatSession(model="mock", read=_reader("My cat is called Miso and she likes tuna."), out=out,
                memory=True).run()
    memories = Memory(default_client()).list()
    assert len(memories) == 1 and memories[0].meta["summary"] == "The person's cat is called Miso and likes tuna."

    mock_engine.enqueue("Your cat is Miso [m1].")
    mock_engine.enqueue("The person asked for the cat's name.")
    out = io.StringIO()
    ChatSession(model="mock", read=_reader("What is my cat's name?"), out=out, memory=True).run()
    answered = [r for r in mock_engine.requests if any(m.role == "system" and "Miso" in m.text for m in r.messages)]
    assert answered, "the recalled memory did not reach the model"
    assert "memories used: [m1]" in out.getvalue()
    assert len(Memory(default_client()).list()) == 2


def test_memory_forgets_everything_and_is_off_by_default(mock_engine):
    from imagine.tasks import ask

    ask("Remember that the wifi password is on the fridge.", "mock").text()
    assert Memory(default_client()).list() == []  # nothing is remembered without --memory
    memory = Memory(default_client())
    memory.remember("Where is the wifi password?", "On the fridge.", summarize=False)
    assert memory.recall("where did I put the wifi password") != []
    assert memory.recall("quantum chromodynamics lecture notes") == []
    assert memory.forget(everything=True) == 1 and memory.list() == []
