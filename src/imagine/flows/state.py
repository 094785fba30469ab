"""Run state in SQLite (`flows.db` in the imagine home): runs, their items, and the step cache's index.

Every finished item is committed the moment it finishes, so a run killed at any point (SIGKILL included)
loses at most the items in flight; `imagine flow resume RUN_ID` reads what is done from here and runs the
rest. The cache index maps a step's cache key to the blob that holds its result (see `cache.py`).
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = ["RunState", "new_run_id"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, flow TEXT NOT NULL, name TEXT, flow_sha TEXT, inputs TEXT NOT NULL,
    out_dir TEXT NOT NULL, status TEXT NOT NULL, error TEXT, pid INTEGER, created TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
    run_id TEXT NOT NULL, key TEXT NOT NULL, idx INTEGER NOT NULL, status TEXT NOT NULL,
    record TEXT NOT NULL, updated TEXT NOT NULL, PRIMARY KEY (run_id, key)
);
CREATE TABLE IF NOT EXISTS cache (
    key TEXT PRIMARY KEY, result_sha TEXT NOT NULL, created TEXT NOT NULL
);
"""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def new_run_id() -> str:
    """Sortable by time, short enough to type: `20240501-101530-3f2a`."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:4]


class RunState:
    """One connection per runner; autocommit, so each write is on disk when the call returns."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(_SCHEMA)

    def close(self) -> None:
        self.conn.close()

    # -- runs -------------------------------------------------------------------------------------
    def start_run(self, run_id: str, flow: str, name: str | None, flow_sha: str, inputs: dict[str, str],
                  out_dir: str) -> None:
        now = _now()
        self.conn.execute("INSERT INTO runs (id, flow, name, flow_sha, inputs, out_dir, status, pid, created, updated)"
                          " VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?, ?)",
                          (run_id, flow, name, flow_sha, json.dumps(inputs), out_dir, _pid(), now, now))

    def set_status(self, run_id: str, status: str, error: str | None = None) -> None:
        self.conn.execute("UPDATE runs SET status = ?, error = ?, pid = ?, updated = ? WHERE id = ?",
                          (status, error, _pid(), _now(), run_id))

    def run(self, run_id: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            return None
        out = dict(row)
        out["inputs"] = json.loads(out["inputs"])
        return out

    def runs(self, limit: int = 20) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT r.*, (SELECT COUNT(*) FROM items i WHERE i.run_id = r.id AND i.status = 'done') AS done,"
            " (SELECT COUNT(*) FROM items i WHERE i.run_id = r.id) AS items"
            " FROM runs r ORDER BY r.created DESC LIMIT ?", (limit,)).fetchall()
        return [dict(r) for r in rows]

    # -- items ------------------------------------------------------------------------------------
    def finish_item(self, run_id: str, key: str, index: int, status: str, record: dict[str, Any]) -> None:
        self.conn.execute("INSERT OR REPLACE INTO items (run_id, key, idx, status, record, updated)"
                          " VALUES (?, ?, ?, ?, ?, ?)",
                          (run_id, key, index, status, json.dumps(record, default=str), _now()))

    def items(self, run_id: str) -> dict[str, dict[str, Any]]:
        """key -> the item's record (with its status and when it was written)."""
        rows = self.conn.execute("SELECT key, status, record, updated FROM items WHERE run_id = ? ORDER BY idx",
                                 (run_id,)).fetchall()
        return {r["key"]: {**json.loads(r["record"]), "status": r["status"], "updated": r["updated"]}
                for r in rows}

    # -- the cache index ----------------------------------------------------------------------------
    def cached(self, key: str) -> str | None:
        row = self.conn.execute("SELECT result_sha FROM cache WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def remember(self, key: str, result_sha: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO cache (key, result_sha, created) VALUES (?, ?, ?)",
                          (key, result_sha, _now()))

    def forget(self, key: str) -> None:
        self.conn.execute("DELETE FROM cache WHERE key = ?", (key,))


def _pid() -> int:
    import os

    return os.getpid()
