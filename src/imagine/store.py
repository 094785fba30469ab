"""The log: SQLite (WAL) rows with provenance, plus a content-addressed blob store for media.

Every finished response becomes one row: what went in (parts by hash), who answered (engine, version,
options, routing decision), what came out (text, parts), usage, latency, time to first token, cost, error.
Media bodies are stored once under `blobs/ab/cdef...` whatever number of rows refer to them.
Several processes may write at once: each insert is its own IMMEDIATE transaction under a busy timeout.

Failure rules: every OSError or sqlite3 error leaves this module as a `StoreError` (one line), so a caller
that keeps answers when logging fails never loses one. Reading opens the file read-only (no write access
needed; a missing log reads as empty). A corrupt file (found by `PRAGMA quick_check` when it is opened, for
files up to QUICK_CHECK_MAX_BYTES, or by the first "malformed" error later) is moved aside to
`logs.db.corrupt-<time>` and a fresh log is started, with one warning line; nothing else is touched. Blob
hashes read back from the database are checked (64 lowercase hex digits) before they become paths.
`Store.gc` removes blobs no row refers to and writers' leftover temporary files, both only once older than
a grace period, so concurrent writers are never raced; `Store.pin` keeps a blob no row names (a flow's
cached step result) and the blobs its JSON record names.
"""

from __future__ import annotations

import json
import logging
import atexit
import os
import queue
import re
import sqlite3
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator
from urllib.parse import quote

from .blobs import GC_GRACE_SECONDS, SHA256, BlobStore, blob_hashes, sweep, valid_sha256
from .errors import InputError, StoreError
from .events import Usage
from .parts import (Audio, Data, Image, MediaPart, Message, Part, Segment, Segments, Text, ToolResult, ToolUse, Vector,
                    Video)

if TYPE_CHECKING:
    from .engine import Response

__all__ = ["MIGRATIONS", "BlobStore", "Store", "valid_sha256"]

_log = logging.getLogger("imagine.store")
# `PRAGMA quick_check` costs about 0.6 ms per MB (measured: 1 MB 0.7 ms, 22 MB 15 ms, 110 MB 62 ms, warm
# cache); bigger logs skip it on open and are caught by the first "malformed" error instead.
QUICK_CHECK_MAX_BYTES = 16 * 1024 * 1024
_BATCH_WAIT = 0.005  # seconds the background writer waits after a row for more to share its transaction
# Called with a one-line notice (a corrupt log moved aside); the CLI prints it as `warning: ...`. Without
# a hook the notice goes to the "imagine.store" logger.
NOTICE_HOOKS: list[Callable[[str], None]] = []


def _is_corrupt(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, sqlite3.DatabaseError) and (
        "malformed" in text or "not a database" in text or "disk image" in text or "corrupt" in text)

# A plain list: migration N brings the database from user_version N to N+1. Only ever append.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE responses (
        id TEXT PRIMARY KEY,
        conversation_id TEXT,
        created TEXT NOT NULL,
        model TEXT NOT NULL,
        engine TEXT NOT NULL,
        engine_version TEXT,
        options TEXT NOT NULL DEFAULT '{}',
        input TEXT NOT NULL DEFAULT '[]',
        schema TEXT,
        output_text TEXT NOT NULL DEFAULT '',
        output_parts TEXT NOT NULL DEFAULT '[]',
        usage TEXT NOT NULL DEFAULT '{}',
        input_tokens INTEGER,
        output_tokens INTEGER,
        latency_ms REAL,
        ttft_ms REAL,
        cost REAL,
        routing TEXT NOT NULL DEFAULT '{}',
        finish_reason TEXT,
        error TEXT
    );
    CREATE INDEX responses_conversation ON responses (conversation_id, created);
    CREATE INDEX responses_created ON responses (created);
    """,
    """
    CREATE TABLE blobs (
        sha256 TEXT PRIMARY KEY,
        mime TEXT NOT NULL,
        size INTEGER NOT NULL,
        created TEXT NOT NULL
    );
    """,
    """
    CREATE TABLE pins (
        sha256 TEXT NOT NULL,
        owner TEXT NOT NULL,
        created TEXT NOT NULL,
        PRIMARY KEY (sha256, owner)
    );
    """,
    # the id of the server API key a row was made for (NULL: no key): what it may later reach again
    "ALTER TABLE responses ADD COLUMN api_key TEXT;",
    # a person's preference between answers to the same input (studio's compare): see votes.py
    """
    CREATE TABLE votes (
        id TEXT PRIMARY KEY,
        created TEXT NOT NULL,
        task TEXT NOT NULL,
        prompt TEXT NOT NULL DEFAULT '',
        winner TEXT,
        candidates TEXT NOT NULL DEFAULT '[]'
    );
    CREATE INDEX votes_task ON votes (task, created);
    """,
]
PIN_WALK_MAX_BYTES = 1024 * 1024  # a pinned JSON record this small is read for the blobs it names

_MEDIA_KINDS: dict[str, type[MediaPart]] = {"image": Image, "audio": Audio, "video": Video}


def _estimated_cost(response: "Response") -> float | None:
    """What a response that reported no usage (cancelled before the engine's count came) may have cost:
    the engine's price for the whole request in and the text so far out, at about 4 characters a token,
    so interrupted cloud spend still counts against a daily budget. None when the engine cannot price it."""
    if response.finish_reason != "cancelled":
        return None
    try:
        engine, model = response.answered_by
        if engine.locality == "local":
            return None
        messages = response.request.messages
        tokens_in = max(1, sum(len(m.text) for m in messages) // 4 + 8 * len(messages))
        tokens_out = len(response.text_so_far()) // 4
        images = sum(isinstance(p, Image) for m in messages for p in m.parts)
        return engine.estimate_cost(model, tokens_in, tokens_out, images=images)
    except Exception:  # a price is a best effort; the row matters more
        return None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Store:
    """The response log. Cheap to create; opens its connection lazily and migrates on first use.
    Reads go through a read-only connection until this store has written (then through the writer's)."""

    def __init__(self, db_path: Path, blob_dir: Path | None = None) -> None:
        self.db_path = Path(db_path)
        self.blobs = BlobStore(blob_dir or self.db_path.parent / "blobs")
        self._conn: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._checked = False
        self.notice: str | None = None  # the one line said when a corrupt log was moved aside
        self._pending: "queue.SimpleQueue[tuple[str, tuple[Any, ...]] | None] | None" = None
        self._writer: threading.Thread | None = None
        self._idle = threading.Condition()
        self._queued = 0

    # -- connection and migrations --------------------------------------------------------------
    @property
    def conn(self) -> sqlite3.Connection:
        """The writing connection (creates and migrates the log)."""
        if self._conn is None:
            self._close_reader()
            self._check_integrity()
            try:
                self._conn = self._open_writer()
            except sqlite3.DatabaseError as exc:
                if not _is_corrupt(exc):
                    raise StoreError(f"cannot open the log at {self.db_path}: {exc}",
                                     hint="check IMAGINE_HOME points to a writable folder") from None
                self._recover(exc)
                self._conn = self._open_writer_or_fail()
            except OSError as exc:
                raise StoreError(f"cannot open the log at {self.db_path}: {exc.strerror or exc}",
                                 hint="check IMAGINE_HOME points to a writable folder") from None
        return self._conn

    def _open_writer_or_fail(self) -> sqlite3.Connection:
        try:
            return self._open_writer()
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open the log at {self.db_path}: {exc}",
                             hint="check IMAGINE_HOME points to a writable folder") from None

    def _open_writer(self) -> sqlite3.Connection:
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.db_path, timeout=60, isolation_level=None, check_same_thread=False)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout = 60000")
            self._retry(lambda: conn.execute("PRAGMA journal_mode = WAL"))
            conn.execute("PRAGMA synchronous = NORMAL")
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _read_conn(self) -> sqlite3.Connection | None:
        """The connection reads use: the writer's when open, else a read-only one; None when there is no
        log yet (reads see an empty log, and nothing is created)."""
        if self._conn is not None:
            return self._conn
        if self._reader is None:
            if not self.db_path.exists():
                return None
            self._check_integrity()
            if not self.db_path.exists():  # moved aside just now
                return None
            try:
                conn = sqlite3.connect(f"file:{quote(str(self.db_path.resolve()))}?mode=ro", uri=True, timeout=60,
                                       isolation_level=None, check_same_thread=False)
                conn.row_factory = sqlite3.Row
                conn.execute("PRAGMA busy_timeout = 60000")
                conn.execute("PRAGMA user_version").fetchone()
            except sqlite3.DatabaseError as exc:
                if _is_corrupt(exc):
                    self._recover(exc)
                    return None
                raise StoreError(f"cannot read the log at {self.db_path}: {exc}",
                                 hint="check the file and its folder can be read") from None
            self._reader = conn
        return self._reader

    def _check_integrity(self) -> None:
        """Once per store: a quick check of a small log file; a corrupt one is moved aside."""
        if self._checked:
            return
        self._checked = True
        try:
            size = self.db_path.stat().st_size
        except OSError:
            return
        if size > QUICK_CHECK_MAX_BYTES:
            return
        try:
            conn = sqlite3.connect(f"file:{quote(str(self.db_path.resolve()))}?mode=ro", uri=True, timeout=60)
            try:
                conn.execute("PRAGMA busy_timeout = 60000")
                result = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
            finally:
                conn.close()
        except sqlite3.DatabaseError as exc:
            if _is_corrupt(exc):
                self._recover(exc)
            return  # anything else (a locked or unreadable file) is for the real open to report
        if result != "ok":
            self._recover(sqlite3.DatabaseError(str(result)))

    def _recover(self, exc: BaseException) -> None:
        """Move a corrupt log (and its -wal/-shm) aside and start a new one; say so in one line."""
        self._close_reader()
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        target = self.db_path.with_name(f"{self.db_path.name}.corrupt-{stamp}")
        reason = " ".join(str(exc).replace("*** in database main ***", "").split())[:120] or type(exc).__name__
        try:
            os.replace(self.db_path, target)
        except FileNotFoundError:
            return  # another process moved it already
        except OSError as err:
            raise StoreError(f"{self.db_path} is corrupt ({reason}) and could not be moved aside: "
                             f"{err.strerror or err}",
                             hint=f"move {self.db_path.name} away yourself; a new log starts on the next run") from None
        for suffix in ("-wal", "-shm"):
            side = self.db_path.with_name(self.db_path.name + suffix)
            try:
                os.replace(side, target.with_name(target.name + suffix))
            except OSError:
                pass
        self.notice = (f"{self.db_path.name} is corrupt ({reason}); moved it to {target.name} and started a new "
                       f"log (the blobs are untouched)")
        for hook in NOTICE_HOOKS:
            hook(self.notice)
        if not NOTICE_HOOKS:
            _log.warning("warning: %s", self.notice)

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """Run a read; corruption found here moves the log aside (and the read sees the new, empty log)."""
        self.flush()  # a read sees every row written before it
        for attempt in (0, 1):
            conn = self._read_conn()
            if conn is None:
                return []
            try:
                return conn.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as exc:
                if _is_corrupt(exc) and attempt == 0:
                    self._recover(exc)
                    continue
                if isinstance(exc, sqlite3.OperationalError) and "no such table" in str(exc):
                    return []  # a log created but never migrated: nothing logged
                raise StoreError(f"cannot read the log at {self.db_path}: {exc}") from None
        return []

    @staticmethod
    def _retry(fn: Any, attempts: int = 50) -> Any:
        for i in range(attempts):
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or i == attempts - 1:
                    raise
                time.sleep(0.05 * (i + 1))

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version >= len(MIGRATIONS):
            return
        conn.execute("BEGIN IMMEDIATE")  # one process migrates; the others wait, then see it done
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for number in range(version, len(MIGRATIONS)):
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def _close_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def close(self) -> None:
        self.stop_background()
        self._close_reader()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- writing --------------------------------------------------------------------------------
    def put_part(self, part: Part) -> dict[str, Any]:
        """Record for a part; media bodies go to the blob store (once)."""
        record = part.to_record()
        if not isinstance(part, (Text, Data, ToolUse, ToolResult)):  # these records hold their whole value
            data = part.content_bytes()
            if self.blobs.put(data, part.sha256):
                self._execute("INSERT OR IGNORE INTO blobs (sha256, mime, size, created) VALUES (?, ?, ?, ?)",
                              (part.sha256, part.mime, len(data), _now()))
        return record

    # -- background writing (the server) -------------------------------------------------------
    def write_in_background(self) -> None:
        """From now on writes go to one writer thread that commits them in batches, so a server's event
        loop never waits on SQLite and many rows share one transaction. Nothing is lost: every read (and
        `close`, and the end of the process) first waits until what was queued is written."""
        if self._writer is not None:
            return
        self._pending = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_loop, name="imagine-log-writer", daemon=True)
        self._writer.start()
        atexit.register(self.stop_background)

    def flush(self, timeout: float = 60.0) -> None:
        """Wait until every queued write is in the log (no-op when writing in the foreground)."""
        if self._writer is None or threading.current_thread() is self._writer:
            return
        with self._idle:
            self._idle.wait_for(lambda: self._queued == 0, timeout=timeout)

    def stop_background(self) -> None:
        """Write what is queued and stop the writer thread; later writes happen in the caller again."""
        writer, pending = self._writer, self._pending
        if writer is None or pending is None:
            return
        pending.put(None)
        writer.join(timeout=60)
        self._writer = self._pending = None
        atexit.unregister(self.stop_background)

    def _write_loop(self) -> None:
        assert self._pending is not None
        while True:
            batch = [self._pending.get()]
            if batch[-1] is not None:
                # let a few more rows come: one wake-up per row would take the GIL from the event loop
                # once per request (measured: ~8% of a logged request's CPU at concurrency 32)
                time.sleep(_BATCH_WAIT)
            while batch[-1] is not None and len(batch) < 512:
                try:
                    batch.append(self._pending.get_nowait())
                except queue.Empty:
                    break
            statements = [item for item in batch if item is not None]
            try:
                self._write_batch(statements)
            finally:
                with self._idle:
                    self._queued -= len(statements)
                    self._idle.notify_all()
            if batch[-1] is None:
                late = []  # queued while stopping: written too
                while True:
                    try:
                        item = self._pending.get_nowait()
                    except queue.Empty:
                        break
                    if item is not None:
                        late.append(item)
                self._write_batch(late)
                with self._idle:
                    self._queued -= len(late)
                    self._idle.notify_all()
                return

    def _write_batch(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        """One transaction for the batch; if it fails, each statement alone through the usual path (which
        moves a corrupt log aside), so one bad row costs only itself, and says so."""
        if not statements:
            return
        try:
            self._transaction(self.conn, statements)
            return
        except (sqlite3.Error, StoreError):
            pass
        for sql, params in statements:
            try:
                self._execute_now(sql, params)
            except StoreError as exc:  # nobody to raise to on this thread: say it, keep writing the rest
                _log.warning("warning: a log row was not written: %s", exc)

    @staticmethod
    def _transaction(conn: sqlite3.Connection, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        """Run `statements` as one IMMEDIATE transaction: all of them or, rolled back, none."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in statements:
                conn.execute(sql, params)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _execute(self, sql: str, params: tuple[Any, ...]) -> None:
        if self._pending is not None and threading.current_thread() is not self._writer:
            with self._idle:
                self._queued += 1
            self._pending.put((sql, params))
            return
        self._execute_now(sql, params)

    def _execute_now(self, sql: str, params: tuple[Any, ...]) -> None:
        for attempt in (0, 1):
            conn = self.conn
            try:
                self._transaction(conn, [(sql, params)])
                return
            except sqlite3.Error as exc:
                if _is_corrupt(exc) and attempt == 0:
                    self._recover(exc)
                    continue
                raise StoreError(f"cannot write to the log at {self.db_path}: {exc}") from None

    def log(self, row: dict[str, Any]) -> str:
        """Insert one response row (dict of column -> value; JSON columns given as Python values)."""
        row = dict(row)
        row.setdefault("created", _now())
        for key in ("options", "input", "output_parts", "usage", "routing", "schema"):
            if key in row and not isinstance(row[key], str) and row[key] is not None:
                row[key] = json.dumps(row[key], default=str)
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        self._execute(f"INSERT INTO responses ({columns}) VALUES ({marks})", tuple(row.values()))
        return str(row["id"])

    def log_response(self, response: "Response", new_messages: list[Message],
                     routing: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> str:
        """Log a finished response; `new_messages` are the ones this turn added to the conversation, `extra`
        more columns (the server's api_key). A cancelled response keeps what it got: its text so far and
        the usage (and cost) the engine had reported by then."""
        reported = any(isinstance(e, Usage) for e in response.events_seen)
        usage = response.usage if response.done and reported else None  # a cancelled stream may report none
        prov = response.provenance
        estimated = None if usage is not None else _estimated_cost(response)
        outputs = [self.put_part(p) for p in response.parts] if response.done and not response.error else []
        if response.done and not response.error:  # the tools it asked for, so the conversation can go on
            outputs += [self.put_part(ToolUse(c.id, c.name, c.arguments)) for c in response.tool_calls]
        return self.log({
            "id": response.id,
            "conversation_id": response.conversation_id,
            "created": datetime.fromtimestamp(response.started_at or time.time(), timezone.utc)
            .isoformat(timespec="milliseconds"),
            "model": prov["model"],
            "engine": prov["engine"],
            "engine_version": prov["engine_version"],
            "options": prov["options"],
            "input": [{"role": m.role, "parts": [self.put_part(p) for p in m.parts]} for m in new_messages],
            "schema": response.request.schema,
            "output_text": response.text_so_far(),
            "output_parts": outputs,
            "usage": {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens} if usage else
            ({"estimated_cost": estimated} if estimated is not None else {}),
            "input_tokens": usage.input_tokens if usage else None,
            "output_tokens": usage.output_tokens if usage else None,
            "latency_ms": None if response.latency_s is None else round(response.latency_s * 1000, 2),
            "ttft_ms": None if response.ttft_s is None else round(response.ttft_s * 1000, 2),
            "cost": usage.cost if usage else estimated,
            "routing": routing or response.routing or {
                "strategy": "direct", "requested": response.model_ref or prov["model"],
                "chosen": f"{prov['engine']}:{prov['model']}"},
            "finish_reason": response.finish_reason,
            "error": str(response.error) if response.error else None,
            **(extra or {}),
        })

    # -- reading --------------------------------------------------------------------------------
    _JSON_COLUMNS: dict[str, Any] = {"options": {}, "input": [], "output_parts": [], "usage": {}, "routing": {},
                                     "schema": None}

    @classmethod
    def _decode(cls, row: sqlite3.Row) -> dict[str, Any]:
        """A row as a dict. A JSON cell that does not parse becomes its empty value and is named in
        `bad_columns`, so one damaged row is shown as damaged instead of breaking a listing."""
        out = dict(row)
        bad: list[str] = []
        for key, empty in cls._JSON_COLUMNS.items():
            if out.get(key):
                try:
                    out[key] = json.loads(out[key])
                except (TypeError, ValueError):
                    out[key] = empty
                    bad.append(key)
        if bad:
            out["bad_columns"] = bad
        return out

    def recent(self, limit: int = 10, conversation_id: str | None = None) -> list[dict[str, Any]]:
        """Newest first."""
        if conversation_id:
            rows = self._query("SELECT * FROM responses WHERE conversation_id = ? "
                               "ORDER BY created DESC, id DESC LIMIT ?", (conversation_id, limit))
        else:
            rows = self._query("SELECT * FROM responses ORDER BY created DESC, id DESC LIMIT ?", (limit,))
        return [self._decode(r) for r in rows]

    def count(self) -> int:
        rows = self._query("SELECT COUNT(*) FROM responses")
        return int(rows[0][0]) if rows else 0

    def get(self, response_id: str) -> dict[str, Any]:
        """One row by id or unique id prefix."""
        if not re.fullmatch(r"[0-9A-Za-z_-]{1,64}", response_id or ""):
            shown = response_id if len(response_id) <= 40 else response_id[:40] + "…"
            raise InputError(f"{shown!r} is not a response id (up to 64 letters, digits, - or _)",
                             hint="see `imagine logs` for ids")
        rows = self._query("SELECT * FROM responses WHERE id LIKE ? ORDER BY id LIMIT 2",
                           (response_id.replace("%", "").replace("_", "") + "%",))
        if not rows:
            raise InputError(f"no logged response with id {response_id!r}", hint="see `imagine logs` for ids")
        if len(rows) > 1:
            raise InputError(f"id prefix {response_id!r} is ambiguous", hint="give more characters")
        return self._decode(rows[0])

    def cost_since_midnight(self) -> float:
        """US dollars logged today (UTC): what a daily budget counts against."""
        today = datetime.now(timezone.utc).date().isoformat()
        rows = self._query("SELECT COALESCE(SUM(cost), 0) FROM responses WHERE created >= ?", (today,))
        return float(rows[0][0]) if rows else 0.0

    def cost_by_engine_and_day(self, days: int = 30) -> list[dict[str, Any]]:
        """Spend per (day, engine), newest day first: `imagine logs --cost`. Token sums cover the responses
        whose counts are known; `uncounted` says how many were not (NULL: the engine could not say)."""
        rows = self._query(
            "SELECT substr(created, 1, 10) AS day, engine, COUNT(*) AS responses, "
            "COALESCE(SUM(input_tokens), 0) AS input_tokens, COALESCE(SUM(output_tokens), 0) AS output_tokens, "
            "COALESCE(SUM(cost), 0) AS cost, SUM(cost IS NULL) AS unpriced, "
            "SUM(input_tokens IS NULL OR output_tokens IS NULL) AS uncounted FROM responses "
            "GROUP BY day, engine ORDER BY day DESC, cost DESC LIMIT ?", (days * 50,))
        return [dict(r) for r in rows]

    def conversation_is_local_only(self, conversation_id: str) -> bool:
        """True when any turn of the conversation was routed under local_only (or its routing cannot be
        read: a damaged row keeps the conversation local)."""
        for (routing,) in self._query("SELECT routing FROM responses WHERE conversation_id = ?", (conversation_id,)):
            try:
                if json.loads(routing or "{}").get("policy", {}).get("local_only"):
                    return True
            except (ValueError, AttributeError):
                return True
        return False

    def last_conversation_id(self) -> str | None:
        rows = self._query("SELECT conversation_id FROM responses WHERE conversation_id IS NOT NULL "
                           "ORDER BY created DESC, id DESC LIMIT 1")
        return rows[0][0] if rows else None

    def part_from_record(self, record: dict[str, Any]) -> Part:
        kind = record["kind"]
        if record.get("type") == "tool_use":
            return ToolUse(record["id"], record["name"], record.get("arguments") or {})
        if record.get("type") == "tool_result":
            return ToolResult(record["call_id"], record.get("content"), name=record.get("name"),
                              is_error=bool(record.get("is_error")))
        if kind == "text":
            return Text(record["text"])
        if kind == "data":
            return Data(record["value"])
        body = self.blobs.get(valid_sha256(record.get("sha256")))
        if kind in _MEDIA_KINDS:
            return _MEDIA_KINDS[kind](body, mime=record["mime"], name=record.get("name"))
        if kind == "vector":
            return Vector(json.loads(body))
        if kind == "segments":
            return Segments(Segment(**s) for s in json.loads(body))
        raise StoreError(f"unknown part kind {kind!r} in the log")

    def conversation(self, conversation_id: str) -> list[Message]:
        """Rebuild a conversation (inputs and answers, oldest first) to continue it. An answer is its text
        and the tool calls it made (`ToolUse`), so the next turn can carry their results."""
        rows = self._query("SELECT id, input, output_text, output_parts FROM responses WHERE conversation_id = ? "
                           "ORDER BY created, id", (conversation_id,))
        messages: list[Message] = []
        for row in rows:
            try:
                for msg in json.loads(row["input"]):
                    messages.append(Message(msg["role"], [self.part_from_record(p) for p in msg["parts"]]))
                calls = [self.part_from_record(p) for p in json.loads(row["output_parts"] or "[]")
                         if isinstance(p, dict) and p.get("type") == "tool_use"]
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                raise StoreError(f"logged response {row['id']} of conversation {conversation_id} is damaged "
                                 f"({type(exc).__name__}); it cannot be continued",
                                 hint="start a new conversation") from None
            if row["output_text"] or calls:
                messages.append(Message("assistant", [*([row["output_text"]] if row["output_text"] else []), *calls]))
        return messages

    def iter_all(self) -> Iterator[dict[str, Any]]:
        for row in self._query("SELECT * FROM responses ORDER BY created, id"):
            yield self._decode(row)

    # -- garbage collection ---------------------------------------------------------------------
    def pin(self, sha256: str, owner: str) -> None:
        """Keep a blob no log row names (a flow's cached step result, say) from `gc`; a pinned blob that is
        a small JSON record keeps the blobs it names too. `owner` says who pinned it, for `unpin`."""
        self._execute("INSERT OR IGNORE INTO pins (sha256, owner, created) VALUES (?, ?, ?)",
                      (valid_sha256(sha256), owner, _now()))

    def unpin(self, sha256: str, owner: str) -> None:
        self._execute("DELETE FROM pins WHERE sha256 = ? AND owner = ?", (valid_sha256(sha256), owner))

    def _pinned(self) -> set[str]:
        found: set[str] = set()
        for (sha,) in self._query("SELECT DISTINCT sha256 FROM pins"):
            if not isinstance(sha, str) or not SHA256.fullmatch(sha):
                continue
            found.add(sha)
            try:
                path = self.blobs.path(sha)
                if path.stat().st_size <= PIN_WALK_MAX_BYTES:
                    blob_hashes(json.loads(path.read_bytes()), found)
            except (OSError, ValueError, StoreError):
                continue  # gone, or not a JSON record: it keeps only itself
        return found

    def referenced_blobs(self, after_rowid: int | None = None) -> set[str]:
        """Every blob hash some row's input or output refers to (rows inserted after `after_rowid` only),
        and every pinned blob with the blobs it names (always all of them: pins are few)."""
        found: set[str] = self._pinned()
        rows = (self._query("SELECT input, output_parts FROM responses WHERE rowid > ?", (after_rowid,))
                if after_rowid is not None else self._query("SELECT input, output_parts FROM responses"))
        for row in rows:
            for cell in row:
                try:
                    blob_hashes(json.loads(cell or "[]"), found)
                except ValueError:
                    continue
        return found

    def gc(self, grace_s: float = GC_GRACE_SECONDS, dry_run: bool = False) -> dict[str, Any]:
        """Remove blobs no row refers to and writers' leftover `.tmp-*` files, each only when older than
        `grace_s` (see `blobs.sweep`). Returns what was (or would be) removed: counts and bytes."""
        last = self._query("SELECT MAX(rowid) FROM responses")
        start = int(last[0][0] or 0) if last else 0
        if not self.blobs.root.is_dir():
            return {"blobs": 0, "tmp": 0, "bytes": 0, "kept_young": 0}
        referenced = self.referenced_blobs()  # read before listing: a row inserted later names a young blob
        removed, gone = sweep(self.blobs, referenced, lambda: self.referenced_blobs(after_rowid=start),
                              grace_s=grace_s, dry_run=dry_run)
        if gone and not dry_run and self.db_path.exists():
            for sha in gone:
                self._execute("DELETE FROM blobs WHERE sha256 = ?", (sha,))
        return removed
