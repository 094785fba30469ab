"""The runner on the mock engine: 20 items, the cache, on_error: skip, resume after SIGKILL, --watch."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from imagine.flows import Flow

from ..helpers.flows import twenty, write


def test_twenty_items_then_all_from_the_cache(tmp_path, mock_engine):
    flow = Flow.load(twenty(tmp_path))
    result = flow.run(out=tmp_path / "out")
    assert result.status == "done" and result.manifest["counts"] == {"done": 20}
    assert len(mock_engine.requests) == 39  # item 3's second step is skipped by `when`
    items = result.items
    assert [i["index"] for i in items] == list(range(20))
    assert items[5]["steps"]["second"]["outputs"]["text"] == "again item 5"
    assert items[5]["steps"]["first"]["engine"] == "mock:echo" and items[5]["steps"]["first"]["log_id"]
    assert items[3]["steps"]["second"]["status"] == "skipped"
    assert (tmp_path / "out" / "answers" / "0005.txt").read_text() == "again item 5"
    lines = (tmp_path / "out" / "first.jsonl").read_text().splitlines()
    assert len(lines) == 20 and json.loads(lines[7])["first"] == "item 7"
    on_disk = json.loads(result.manifest_path.read_text())
    assert on_disk["counts"] == {"done": 20}
    # the log ids in the manifest are rows of the client's log
    from imagine import get_store

    assert get_store().get(items[5]["steps"]["first"]["log_id"])["output_text"] == "item 5"

    store = get_store()  # `imagine logs gc` past the grace period must not throw the cache away
    for blob in store.blobs.root.glob("??/*"):
        os.utime(blob, (time.time() - 7200,) * 2)
    store.gc()
    again = Flow.load(twenty(tmp_path)).run(out=tmp_path / "out2")
    assert len(mock_engine.requests) == 39, "a second run is served from the cache: no engine call"
    assert again.manifest["counts"] == {"done": 20}
    assert {s["status"] for i in again.items for s in i["steps"].values()} == {"cached", "skipped"}
    assert again.items[5]["steps"]["first"]["log_id"] == items[5]["steps"]["first"]["log_id"]


def test_a_failing_item_is_skipped_and_recorded(tmp_path, mock_engine):
    (tmp_path / "rows.csv").write_text("name,prompt\na,hello\nb,\nc,world\n")
    flow = Flow.load(write(tmp_path, """
        inputs:
          rows: {csv: rows.csv}
        for_each: rows
        steps:
          answer: {task: ask, model: mock, input: "${item.prompt}", on_error: skip, retries: 2, backoff: 0}
          louder: {task: ask, model: mock, input: "${answer.text}!"}
        outputs:
          out: {from: "${louder.text}"}
        """))
    result = flow.run(out=tmp_path / "out")
    assert result.status == "done"
    by_name = {i["item"]["name"]: i for i in result.items}
    assert by_name["b"]["status"] == "skipped" and "the prompt is empty" in by_name["b"]["error"]
    assert by_name["b"]["error"].startswith("answer:")
    assert by_name["a"]["outputs"]["out"] == "hello!" and by_name["c"]["outputs"]["out"] == "world!"
    assert len(mock_engine.requests) == 4
    assert result.manifest["counts"] == {"done": 2, "skipped": 1}


def test_on_error_default_and_fail(tmp_path, mock_engine):
    from imagine.errors import UpstreamError

    flow = Flow.load(write(tmp_path, """
        steps:
          a: {task: ask, model: mock, input: hi, on_error: default, default: {text: "fallback"}}
          b: {task: ask, model: mock, input: "${a.text}?"}
        """))
    mock_engine.enqueue(UpstreamError("boom"))
    result = flow.run(out=tmp_path / "out")
    assert result.items[0]["steps"]["a"]["status"] == "default"
    assert result.items[0]["steps"]["b"]["outputs"]["text"] == "fallback?"

    flow = Flow.load(write(tmp_path, """
        steps:
          a: {task: ask, model: mock, input: bye, retries: 1, backoff: 0}
        """, "g.yaml"))
    mock_engine.enqueue(UpstreamError("boom"))
    mock_engine.enqueue(UpstreamError("boom again"))
    result = flow.run(out=tmp_path / "out2")
    assert result.status == "failed" and "boom again" in result.items[0]["error"]


def _done(home: Path) -> dict[str, str]:
    db = home / "flows.db"
    if not db.exists():
        return {}
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return {k: u for k, u in conn.execute("SELECT key, updated FROM items WHERE status = 'done'")}
    except sqlite3.OperationalError:
        return {}


def _child(args: list[str], home: Path, cwd: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "IMAGINE_HOME": str(home)}
    return subprocess.Popen([sys.executable, "-m", "imagine", *args], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_sigkill_halfway_then_resume_recomputes_nothing_finished(tmp_path, imagine_home, mock_engine):
    path = twenty(tmp_path, delay=0.04, lanes=1)
    child = _child(["flow", "run", str(path), "-O", str(tmp_path / "out")], imagine_home, tmp_path)
    deadline = time.monotonic() + 60
    while len(_done(imagine_home)) < 4 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    before = _done(imagine_home)
    assert 4 <= len(before) < 20, f"killed halfway, not after {len(before)} items"
    with sqlite3.connect(imagine_home / "flows.db") as conn:
        (run_id, status), = conn.execute("SELECT id, status FROM runs").fetchall()
        old = {k: json.loads(r) for k, r in conn.execute("SELECT key, record FROM items")}
    assert status == "running"

    result = Flow.resume(run_id)
    assert result.status == "done" and result.manifest["counts"] == {"done": 20}
    after = _done(imagine_home)
    assert all(after[k] == u for k, u in before.items()), "finished items are untouched"
    for item in result.items:
        if item["key"] in before:
            assert item["steps"] == old[item["key"]]["steps"]
    # every engine call made now is for a step no finished item had; steps done before the kill come from the cache
    new_steps = sum(1 for i in result.items if i["key"] not in before for s in i["steps"].values()
                    if s["status"] == "done")
    cached_now = sum(1 for i in result.items if i["key"] not in before for s in i["steps"].values()
                     if s["status"] == "cached")
    assert len(mock_engine.requests) == new_steps
    assert new_steps + cached_now == sum(1 for i in result.items if i["key"] not in before
                                         for s in i["steps"].values() if s["status"] != "skipped")
    assert new_steps >= 1
    lines = (tmp_path / "out" / "first.jsonl").read_text().splitlines()
    assert len(lines) == 20


def test_watch_picks_up_a_file_added_while_it_runs(tmp_path, imagine_home):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "one.txt").write_text("first")
    path = write(tmp_path, """
        inputs:
          docs: {folder: inbox, pattern: "*.txt"}
        for_each: docs
        steps:
          read: {task: ask, model: mock, input: "${item.name} arrived"}
        outputs:
          said: {from: "${read.text}", file: "${item.name}.txt"}
        """)
    out = tmp_path / "out"
    child = _child(["flow", "run", str(path), "--watch", str(inbox), "--poll", "0.1", "-O", str(out)],
                   imagine_home, tmp_path)
    try:
        deadline = time.monotonic() + 45
        while "one.txt" not in _done(imagine_home) and time.monotonic() < deadline:
            assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
            time.sleep(0.05)
        staged = tmp_path / "two.tmp"
        staged.write_text("second")
        staged.rename(inbox / "two.txt")
        while "two.txt" not in _done(imagine_home) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "two.txt" in _done(imagine_home)
        assert (out / "two.txt").read_text() == "two arrived"
        assert child.poll() is None, "--watch keeps running"
    finally:
        child.send_signal(signal.SIGINT)
        child.wait(timeout=30)
    with sqlite3.connect(imagine_home / "flows.db") as conn:
        (status,), = conn.execute("SELECT status FROM runs").fetchall()
    assert status == "interrupted"
