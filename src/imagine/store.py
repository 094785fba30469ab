"""The log: SQLite (WAL) rows with provenance, plus a content-addressed blob store for media.

Every finished response becomes one row: what went in (parts by hash), who answered (engine, version,
options, routing decision), what came out (text, parts), usage, latency, time to first token, cost, error.
Media bodies are stored once under `blobs/ab/cdef...` whatever number of rows refer to them.
Several processes may write at once: each insert is its own IMMEDIATE transaction under a busy timeout.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from .errors import InputError, StoreError
from .events import Usage
from .parts import (Audio, Data, Image, MediaPart, Message, Part, Segment, Segments, Text, ToolResult, ToolUse, Vector,
                    Video)

if TYPE_CHECKING:
    from .engine import Response

__all__ = ["MIGRATIONS", "BlobStore", "Store"]

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
]

_MEDIA_KINDS: dict[str, type[MediaPart]] = {"image": Image, "audio": Audio, "video": Video}


class BlobStore:
    """Files named by the sha256 of their content; writes are atomic and idempotent."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:]

    def put(self, data: bytes, sha256: str) -> bool:
        """Store `data` under its hash; returns False when it was already there (deduplicated)."""
        target = self.path(sha256)
        if target.exists():
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return True

    def get(self, sha256: str) -> bytes:
        try:
            return self.path(sha256).read_bytes()
        except FileNotFoundError:
            raise StoreError(f"blob {sha256[:12]} is missing from {self.root}") from None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Store:
    """The response log. Cheap to create; opens its connection lazily and migrates on first use."""

    def __init__(self, db_path: Path, blob_dir: Path | None = None) -> None:
        self.db_path = Path(db_path)
        self.blobs = BlobStore(blob_dir or self.db_path.parent / "blobs")
        self._conn: sqlite3.Connection | None = None

    # -- connection and migrations --------------------------------------------------------------
    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                self.db_path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.db_path, timeout=60, isolation_level=None, check_same_thread=False)
                conn.row_factory = sqlite3.Row
                conn.execute("PRAGMA busy_timeout = 60000")
                self._retry(lambda: conn.execute("PRAGMA journal_mode = WAL"))
                conn.execute("PRAGMA synchronous = NORMAL")
                self._migrate(conn)
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open the log at {self.db_path}: {exc}",
                                 hint="check IMAGINE_HOME points to a writable folder") from None
            self._conn = conn
        return self._conn

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

    def close(self) -> None:
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

    def _execute(self, sql: str, params: tuple[Any, ...]) -> None:
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(sql, params)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
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
                     routing: dict[str, Any] | None = None) -> str:
        """Log a finished response; `new_messages` are the ones this turn added to the conversation."""
        reported = any(isinstance(e, Usage) for e in response.events_seen)
        usage = response.usage if response.done and reported else None  # a cancelled stream reports none
        prov = response.provenance
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
            "usage": {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens} if usage else {},
            "input_tokens": usage.input_tokens if usage else None,
            "output_tokens": usage.output_tokens if usage else None,
            "latency_ms": None if response.latency_s is None else round(response.latency_s * 1000, 2),
            "ttft_ms": None if response.ttft_s is None else round(response.ttft_s * 1000, 2),
            "cost": usage.cost if usage else None,
            "routing": routing or response.routing or {
                "strategy": "direct", "requested": response.model_ref or prov["model"],
                "chosen": f"{prov['engine']}:{prov['model']}"},
            "finish_reason": response.finish_reason,
            "error": str(response.error) if response.error else None,
        })

    # -- reading --------------------------------------------------------------------------------
    @staticmethod
    def _decode(row: sqlite3.Row) -> dict[str, Any]:
        out = dict(row)
        for key in ("options", "input", "output_parts", "usage", "routing", "schema"):
            if out.get(key):
                out[key] = json.loads(out[key])
        return out

    def recent(self, limit: int = 10, conversation_id: str | None = None) -> list[dict[str, Any]]:
        """Newest first."""
        if conversation_id:
            rows = self.conn.execute("SELECT * FROM responses WHERE conversation_id = ? "
                                     "ORDER BY created DESC, id DESC LIMIT ?", (conversation_id, limit))
        else:
            rows = self.conn.execute("SELECT * FROM responses ORDER BY created DESC, id DESC LIMIT ?", (limit,))
        return [self._decode(r) for r in rows]

    def count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def get(self, response_id: str) -> dict[str, Any]:
        """One row by id or unique id prefix."""
        rows = self.conn.execute("SELECT * FROM responses WHERE id LIKE ? ORDER BY id LIMIT 2",
                                 (response_id.replace("%", "").replace("_", "") + "%",)).fetchall()
        if not rows:
            raise InputError(f"no logged response with id {response_id!r}", hint="see `imagine logs` for ids")
        if len(rows) > 1:
            raise InputError(f"id prefix {response_id!r} is ambiguous", hint="give more characters")
        return self._decode(rows[0])

    def cost_since_midnight(self) -> float:
        """US dollars logged today (UTC): what a daily budget counts against."""
        today = datetime.now(timezone.utc).date().isoformat()
        row = self.conn.execute("SELECT COALESCE(SUM(cost), 0) FROM responses WHERE created >= ?", (today,)).fetchone()
        return float(row[0])

    def cost_by_engine_and_day(self, days: int = 30) -> list[dict[str, Any]]:
        """Spend per (day, engine), newest day first: `imagine logs --cost`. Token sums cover the responses
        whose counts are known; `uncounted` says how many were not (NULL: the engine could not say)."""
        rows = self.conn.execute(
            "SELECT substr(created, 1, 10) AS day, engine, COUNT(*) AS responses, "
            "COALESCE(SUM(input_tokens), 0) AS input_tokens, COALESCE(SUM(output_tokens), 0) AS output_tokens, "
            "COALESCE(SUM(cost), 0) AS cost, SUM(cost IS NULL) AS unpriced, "
            "SUM(input_tokens IS NULL OR output_tokens IS NULL) AS uncounted FROM responses "
            "GROUP BY day, engine ORDER BY day DESC, cost DESC LIMIT ?", (days * 50,))
        return [dict(r) for r in rows]

    def conversation_is_local_only(self, conversation_id: str) -> bool:
        """True when any turn of the conversation was routed under local_only."""
        for (routing,) in self.conn.execute("SELECT routing FROM responses WHERE conversation_id = ?",
                                            (conversation_id,)):
            if json.loads(routing or "{}").get("policy", {}).get("local_only"):
                return True
        return False

    def last_conversation_id(self) -> str | None:
        row = self.conn.execute("SELECT conversation_id FROM responses WHERE conversation_id IS NOT NULL "
                                "ORDER BY created DESC, id DESC LIMIT 1").fetchone()
        return row[0] if row else None

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
        body = self.blobs.get(record["sha256"])
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
        rows = self.conn.execute("SELECT input, output_text, output_parts FROM responses WHERE conversation_id = ? "
                                 "ORDER BY created, id", (conversation_id,))
        messages: list[Message] = []
        for row in rows:
            for msg in json.loads(row["input"]):
                messages.append(Message(msg["role"], [self.part_from_record(p) for p in msg["parts"]]))
            calls = [self.part_from_record(p) for p in json.loads(row["output_parts"] or "[]")
                     if isinstance(p, dict) and p.get("type") == "tool_use"]
            if row["output_text"] or calls:
                messages.append(Message("assistant", [*([row["output_text"]] if row["output_text"] else []), *calls]))
        return messages

    def iter_all(self) -> Iterator[dict[str, Any]]:
        for row in self.conn.execute("SELECT * FROM responses ORDER BY created, id"):
            yield self._decode(row)
