"""API keys for `imagine serve`: stored hashed in the imagine home, checked in constant time.

A key is `imk-` + 32 random bytes (URL-safe base64), shown once when created; only its SHA-256 is kept
(`api_keys.json` beside the log, mode 0600). A leaked file gives no key, and a revoked key stays listed
(with `revoked` set) so `imagine keys list` tells what happened to it. The server re-reads the file when
it changes, so `imagine keys revoke` takes effect on a running server at its next request.

Each key may carry a policy: `local_only` (its requests never leave the device) and a daily budget in US
dollars (its requests are refused once the day's spend reaches it). Spend is counted per key in memory
and persisted beside the keys (`api_key_spend.json`), a day at a time (UTC)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InputError

__all__ = ["ApiKey", "KeyStore"]

PREFIX = "imk-"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class ApiKey:
    id: str
    name: str
    sha256: str
    shown: str  # the first characters of the key, to recognise it in a list
    created: float
    local_only: bool = False
    daily_budget: float | None = None
    revoked: float | None = None

    @property
    def active(self) -> bool:
        return self.revoked is None

    def public(self) -> dict[str, Any]:
        """What `imagine keys list` shows: everything but the hash."""
        record = asdict(self)
        record.pop("sha256")
        return record


class KeyStore:
    """The keys of one imagine home. Cheap to ask: the file is read again only when it changed."""

    def __init__(self, home: Path) -> None:
        self.path = Path(home) / "api_keys.json"
        self.spend_path = Path(home) / "api_key_spend.json"
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._keys: list[ApiKey] = []
        self._spend: dict[str, float] = {}
        self._spend_day = ""

    # -- reading ---------------------------------------------------------------------------------
    def keys(self) -> list[ApiKey]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._keys = None, []
            return []
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            with self._lock:
                self._keys = self._read()
                self._stamp = stamp
        return self._keys

    def _read(self) -> list[ApiKey]:
        try:
            rows = json.loads(self.path.read_text("utf-8")).get("keys", [])
            return [ApiKey(**row) for row in rows]
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            raise ConfigError(f"cannot read the API keys in {self.path}: {exc}",
                              hint="fix or remove the file, then `imagine keys create`") from None

    def active(self) -> list[ApiKey]:
        return [k for k in self.keys() if k.active]

    def check(self, presented: str | None) -> ApiKey | None:
        """The active key matching `presented`, else None. Every stored hash is compared (in constant
        time), so the time taken says nothing about which key nearly matched."""
        if not presented:
            return None
        digest = _hash(presented)
        found = None
        for key in self.keys():
            if hmac.compare_digest(digest, key.sha256) and key.active:
                found = key
        return found

    # -- writing (the `imagine keys` command) -----------------------------------------------------
    def create(self, name: str = "", *, local_only: bool = False, daily_budget: float | None = None) -> tuple[ApiKey, str]:
        """A new key; returns (its record, the secret). The secret is not stored and cannot be shown again."""
        if daily_budget is not None and not (daily_budget >= 0 and daily_budget != float("inf")):
            raise InputError(f"daily budget must be a finite number >= 0, not {daily_budget!r}")
        secret = PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(id="key_" + secrets.token_hex(4), name=name, sha256=_hash(secret), shown=secret[:10] + "…",
                     created=time.time(), local_only=local_only, daily_budget=daily_budget)
        with self._lock:
            keys = self._read() if self.path.exists() else []
            keys.append(key)
            self._write(keys)
        return key, secret

    def revoke(self, key_id: str) -> ApiKey:
        with self._lock:
            keys = self._read() if self.path.exists() else []
            for key in keys:
                if key.id == key_id or (len(key_id) >= 6 and key.shown.startswith(key_id)):
                    if key.revoked is None:
                        key.revoked = time.time()
                    self._write(keys)
                    return key
        raise InputError(f"no API key {key_id!r}", hint="`imagine keys list` shows their ids")

    def _write(self, keys: list[ApiKey]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"keys": [asdict(k) for k in keys]}, f, indent=1)
        os.replace(tmp, self.path)
        self._stamp = None

    # -- per-key daily budget ---------------------------------------------------------------------
    def _today(self) -> dict[str, float]:
        day = time.strftime("%Y-%m-%d", time.gmtime())
        if day != self._spend_day:
            self._spend_day, self._spend = day, {}
            try:
                saved = json.loads(self.spend_path.read_text("utf-8"))
                if saved.get("day") == day:
                    self._spend = {str(k): float(v) for k, v in saved.get("spend", {}).items()}
            except (OSError, ValueError, TypeError, AttributeError):
                pass
        return self._spend

    def budget_left(self, key: ApiKey) -> float | None:
        """US dollars the key may still spend today (None: no budget)."""
        if key.daily_budget is None:
            return None
        with self._lock:
            return max(0.0, key.daily_budget - self._today().get(key.id, 0.0))

    def add_spend(self, key: ApiKey, cost: float | None) -> None:
        if not cost:
            return
        with self._lock:
            spend = self._today()
            spend[key.id] = spend.get(key.id, 0.0) + cost
            try:
                self.spend_path.write_text(json.dumps({"day": self._spend_day, "spend": spend}), "utf-8")
            except OSError:
                pass  # the in-memory count still holds the budget for this process
