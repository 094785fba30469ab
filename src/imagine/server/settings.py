"""Server settings: what `imagine serve` was started with (bind, CORS, request limits).

Kept apart from the core `Settings` on purpose: the core's config has no server table, and the limits
here are about HTTP requests (body size, `n`, message count), not media decoding."""

from __future__ import annotations

import ipaddress
import json
import os

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ENV_VAR", "ServerSettings", "is_loopback"]

ENV_VAR = "IMAGINE_SERVE_SETTINGS"  # how `--workers N` hands the settings to each worker process


class ServerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    cors_origins: list[str] = Field(default_factory=list, description="CORS is off unless origins are given")
    allowed_hosts: list[str] = Field(default_factory=list, description="Host header values accepted beside "
                                                                         "the bind address and localhost")
    max_body_bytes: int = Field(default=64 << 20, gt=0, description="request body cap (413 above it)")
    max_n: int = Field(default=8, ge=1, description="most choices one chat request may ask for")
    max_tokens: int = Field(default=32768, ge=1, description="most tokens one choice may ask for")
    max_messages: int = Field(default=2048, ge=1, description="most messages one chat request may carry")
    local_slots: int = Field(default=1, ge=1, description="generations one local model runs at once")
    engine_slots: dict[str, int] = Field(default_factory=dict, description="local_slots per engine id")
    local_queue: int = Field(default=32, ge=0, description="requests that may wait for a busy local model; "
                                                             "one more is answered 429 with Retry-After")
    realtime_sessions: int = Field(default=4, ge=0, description="voice sessions (/v1/realtime) open at once; "
                                                                 "one more is refused (WebSocket code 1013)")

    def to_env(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_env(cls) -> "ServerSettings":
        raw = os.environ.get(ENV_VAR)
        return cls(**json.loads(raw)) if raw else cls()


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses: only this machine can reach such a bind."""
    name = host.strip("[]").lower()
    if name in ("localhost", "localhost.localdomain") or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
