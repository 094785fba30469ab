"""Issue 13, "the log and the blob store": each attack kept as a test. A failing log never loses an answer;
hashes from the database never become paths outside the blob store; a corrupt log is moved aside with one
line; reading needs no write access; interrupted work is logged; `imagine logs gc` cleans up safely."""

from __future__ import annotations

import errno
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from imagine import Image, Text
from imagine.cli.app import cli
from imagine.errors import StoreError
from imagine.store import Store

from .helpers.media import png_bytes, wav_bytes


def _invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_full_disk_keeps_the_transcript_and_warns_once(tmp_path, monkeypatch, mock_engine):
    # root ignores a read-only blobs/ folder, so the full disk is simulated where the blob is written
    audio = tmp_path / "a.wav"
    audio.write_bytes(wav_bytes())

    def full(self, data, sha256):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("imagine.store.BlobStore.put", full)
    mock_engine.enqueue("the transcript")
    result = _invoke("transcribe", str(audio), "-m", "mock:echo")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "the transcript"  # the answer reached the user
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: not logged:")]
    assert len(warnings) == 1 and "No space left" in warnings[0], result.stderr


def test_a_raw_oserror_from_the_log_still_keeps_the_answer(monkeypatch):
    def broken(self, part):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("imagine.store.Store.put_part", broken)
    result = _invoke("ask", "-m", "mock:echo", "hello")
    assert result.exit_code == 0 and "hello" in result.stdout
    assert result.stderr.count("warning: not logged:") == 1 and "Read-only" in result.stderr


def test_a_hash_from_an_edited_log_never_leaves_the_blob_store(imagine_home):
    assert _invoke("ask", "-m", "mock:echo", "-a", str(_png(imagine_home.parent)), "look").exit_code == 0
    db = imagine_home / "logs.db"
    conn = sqlite3.connect(db)
    (row_id, inputs), = conn.execute("SELECT id, input FROM responses").fetchall()
    inputs = inputs.replace(Image(png_bytes()).sha256, "xx/etc/passwd")  # blobs/xx + /etc/passwd
    conn.execute("UPDATE responses SET input = ? WHERE id = ?", (inputs, row_id))
    conn.commit()
    conn.close()
    result = _invoke("ask", "-m", "mock:echo", "-c", "again")
    assert result.exit_code == 5 and "root:" not in result.stdout
    assert "invalid hash" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    with pytest.raises(StoreError, match="invalid hash"):
        Store(db).blobs.path("../../etc/passwd" + "0" * 47)


def _png(folder: Path) -> Path:
    path = folder / "p.png"
    path.write_bytes(png_bytes())
    return path


def _corrupt(db: Path) -> None:
    data = bytearray(db.read_bytes())
    page = 4096
    data[page:page * 2] = os.urandom(page)  # page 2: the responses table
    db.write_bytes(bytes(data))


def _fill(db: Path, rows: int = 200) -> None:
    store = Store(db)
    for i in range(rows):
        store.log({"id": f"{i:024x}", "model": "m", "engine": "mock", "output_text": "x" * 200})
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()


def test_a_corrupt_log_is_moved_aside_in_one_line_and_a_new_one_started(imagine_home):
    db = imagine_home / "logs.db"
    _fill(db)
    _corrupt(db)
    result = _invoke("ask", "-m", "mock:echo", "hi")
    assert result.exit_code == 0 and "hi" in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "logs.db is corrupt" in lines[0] and "moved it to logs.db.corrupt-" in lines[0], lines
    aside = list(imagine_home.glob("logs.db.corrupt-*"))
    assert [p.name for p in aside if not p.name.endswith(("-wal", "-shm"))]
    assert Store(db).count() == 1  # the fresh log holds this answer


def test_ask_continue_on_a_corrupt_log_is_no_traceback(imagine_home):
    db = imagine_home / "logs.db"
    _fill(db)
    _corrupt(db)
    result = _invoke("ask", "-m", "mock:echo", "-c", "hi")
    assert "Traceback" not in result.stderr and "DatabaseError" not in result.stderr
    warning, error = result.stderr.strip().splitlines()  # what happened to the log, then why -c cannot go on
    assert "logs.db is corrupt" in warning and "moved it to" in warning and error.startswith("error: ")


def test_a_malformed_json_cell_is_shown_as_a_bad_row(imagine_home):
    assert _invoke("ask", "-m", "mock:echo", "one").exit_code == 0
    assert _invoke("ask", "-m", "mock:echo", "two").exit_code == 0
    conn = sqlite3.connect(imagine_home / "logs.db")
    conn.execute("UPDATE responses SET usage = '{not json', input = '[' WHERE output_text LIKE '%one%'")
    conn.commit()
    conn.close()
    result = _invoke("logs")
    assert result.exit_code == 0 and "bad row" in result.stdout and "two" in result.stdout
    rows = json.loads(_invoke("logs", "--json").stdout)
    assert sorted(r.get("bad_columns", []) for r in rows) == [[], ["input", "usage"]]
    bad = next(r for r in rows if r.get("bad_columns"))
    shown = _invoke("logs", "show", bad["id"])
    assert shown.exit_code == 0 and "damaged" in shown.stdout


def test_reading_the_log_needs_no_write_access(imagine_home):
    assert _invoke("logs").exit_code == 0
    assert not (imagine_home / "logs.db").exists()  # reading an empty home creates nothing
    assert _invoke("ask", "-m", "mock:echo", "hi").exit_code == 0
    store = Store(imagine_home / "logs.db")
    assert store.count() == 1 and store.recent(1)[0]["output_text"]
    assert store._conn is None  # only the read-only connection was opened
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        store._read_conn().execute("DELETE FROM responses")


def test_a_huge_id_for_logs_show_is_one_line(imagine_home):
    result = _invoke("logs", "show", "a" * 100_000)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and len(lines[0]) < 300


def test_sigterm_during_a_stream_logs_the_partial_answer(imagine_home):
    env = {**os.environ, "IMAGINE_HOME": str(imagine_home), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "imagine", "ask", "-m", "mock:echo", "-o", "delay=0.3",
                             "one two three four five six seven eight nine ten"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    proc.stdout.read(3)  # it has started answering
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    rows = Store(imagine_home / "logs.db").recent(5)
    assert len(rows) == 1 and rows[0]["finish_reason"] == "cancelled" and rows[0]["output_text"]


def test_gc_spares_pinned_blobs_and_what_a_pinned_record_names(imagine_home):
    """A flow's cached step result is a JSON record in the blob store that no log row names: its pin keeps
    it, and the parts it names, from gc; once unpinned they go."""
    import hashlib
    import json

    store = Store(imagine_home / "logs.db")
    part = Image(png_bytes(color=(4, 5, 6)))
    body = json.dumps({"fields": {"image": store.put_part(part)}}).encode()
    record = hashlib.sha256(body).hexdigest()
    store.blobs.put(body, record)
    store.pin(record, "flows")
    old = time.time() - 7200
    for sha in (record, part.sha256):
        os.utime(store.blobs.path(sha), (old, old))
    assert store.gc()["blobs"] == 0
    assert store.blobs.path(record).exists() and store.blobs.path(part.sha256).exists()
    store.unpin(record, "flows")
    assert store.gc()["blobs"] == 2
    assert not store.blobs.path(record).exists() and not store.blobs.path(part.sha256).exists()
    with pytest.raises(StoreError):
        store.pin("../../etc/passwd", "flows")


def test_gc_removes_orphans_only_once_old(imagine_home):
    store = Store(imagine_home / "logs.db")
    kept = Image(png_bytes(color=(1, 2, 3)))
    store.log({"id": "a" * 24, "model": "m", "engine": "e",
               "input": [{"role": "user", "parts": [store.put_part(kept), store.put_part(Text("x"))]}]})
    orphan = Image(png_bytes(color=(9, 9, 9)))
    store.put_part(orphan)  # a writer killed before its row
    tmp = store.blobs.path(kept.sha256).parent / ".tmp-dead"
    tmp.write_bytes(b"half")
    young = store.gc()
    assert young["blobs"] == young["tmp"] == 0 and young["kept_young"] == 2  # within the grace period
    old = time.time() - 7200
    for path in (store.blobs.path(orphan.sha256), tmp, store.blobs.path(kept.sha256)):
        os.utime(path, (old, old))
    result = _invoke("logs", "gc")
    assert result.exit_code == 0 and "removed 1 unreferenced blobs and 1 temporary files" in result.stdout
    assert store.blobs.path(kept.sha256).exists() and not store.blobs.path(orphan.sha256).exists()
    assert not tmp.exists()
    assert store.conn.execute("SELECT COUNT(*) FROM blobs").fetchone()[0] == 1


def test_a_cancelled_cloud_answer_still_counts_its_cost(monkeypatch, mock_engine):
    import imagine
    from imagine.engines.mock import MockEngine

    # the mock stands in for a cloud engine that reports usage only at the end, as the APIs do
    monkeypatch.setattr(MockEngine, "locality", "cloud")
    monkeypatch.setattr(MockEngine, "estimate_cost",
                        lambda self, model, tokens_in, tokens_out, images=0, audio_seconds=0.0:
                        tokens_in * 1e-6 + tokens_out * 2e-6)
    resp = imagine.ask("hi " * 400, "mock:echo", options={"delay": 0.01})
    for _ in resp:
        break
    assert resp.finish_reason == "cancelled"
    row = imagine.get_store().get(resp.id)
    assert row["cost"] is not None and row["cost"] > 0 and row["usage"]["estimated_cost"] == row["cost"]
    assert row["input_tokens"] is None  # the counts stay unknown; only the price is estimated
    assert imagine.get_store().cost_since_midnight() == row["cost"]  # max_cost_per_day sees it


@pytest.mark.parametrize("gap", [0.0, 0.01, 0.05])
def test_two_quick_ctrl_c_still_log_the_partial_answer(tmp_path, gap):
    """The first Ctrl-C lands anywhere: while waiting for the engine, while printing, or inside the call
    that schedules the next step (each lost the row once, about one run in ten); the second lands during
    the clean-up."""
    home = tmp_path / "home"
    env = {**os.environ, "IMAGINE_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "imagine", "ask", "-m", "mock:echo", "-o", "delay=0.3",
                             "one two three four five six seven eight nine ten"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    proc.stdout.read(3)
    proc.send_signal(signal.SIGINT)
    time.sleep(gap)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode in (130, -signal.SIGINT), err  # a Ctrl-C landing after the clean-up ends it at once
    assert b"Traceback" not in err and b"Exception ignored" not in err, err
    rows = Store(home / "logs.db").recent(5)
    assert len(rows) == 1 and rows[0]["finish_reason"] == "cancelled" and rows[0]["output_text"]


def test_a_garbage_log_file_is_moved_aside_not_blamed_on_the_folder(imagine_home):
    imagine_home.mkdir(parents=True, exist_ok=True)
    (imagine_home / "logs.db").write_bytes(os.urandom(8192))
    listing = _invoke("logs")
    assert listing.exit_code == 0 and "writable folder" not in listing.stderr
    assert "logs.db is corrupt" in listing.stderr and "no responses logged yet" in listing.stdout
    result = _invoke("ask", "-m", "mock:echo", "hi")
    assert result.exit_code == 0 and result.stderr == "" and Store(imagine_home / "logs.db").count() == 1


def test_gc_spares_an_old_blob_a_writer_is_reusing(imagine_home):
    store = Store(imagine_home / "logs.db")
    image = Image(png_bytes(color=(4, 5, 6)))
    store.put_part(image)
    old = time.time() - 7200
    os.utime(store.blobs.path(image.sha256), (old, old))
    store.put_part(image)  # deduplicated: a writer about to log a row that names it
    assert store.gc()["blobs"] == 0 and store.blobs.path(image.sha256).exists()
