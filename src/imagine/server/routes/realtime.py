"""`GET /v1/realtime` (WebSocket): talk to imagine's engines with the OpenAI Realtime API events.

Auth as everywhere (`Authorization: Bearer KEY`), plus the subprotocol `openai-insecure-api-key.KEY` that
browsers use because they cannot set headers on a WebSocket. The Guard has already checked Host and
Origin. Each connection is one VoiceSession; a server runs at most `realtime_sessions` at once (each holds
a core while it listens and answers), and one more is refused with code 1013 (try again later)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from ..deps import authorize, presented_key
from ..errors import ApiError
from ..serving.realtime import RealtimeBridge

router = APIRouter(tags=["realtime"])

_KEY_PROTOCOL = "openai-insecure-api-key."


def _offered(ws: WebSocket) -> list[str]:
    raw = ws.headers.get("sec-websocket-protocol", "")
    return [p.strip() for p in raw.split(",") if p.strip()]


@router.websocket("/v1/realtime")
async def realtime(ws: WebSocket, model: str | None = None) -> None:
    offered = _offered(ws)
    key = presented_key(ws.headers) or next((p[len(_KEY_PROTOCOL):] for p in offered if p.startswith(_KEY_PROTOCOL)),
                                             None)
    try:
        who = authorize(ws.app.state, key)
    except ApiError as exc:
        await ws.close(code=1008, reason=str(exc.message)[:120])
        return
    state = ws.app.state
    limit = state.settings.realtime_sessions
    if getattr(state, "realtime_open", 0) >= limit:  # accepted, then closed: 1013 tells the client to retry later
        await ws.accept(subprotocol="realtime" if "realtime" in offered else None)
        await ws.close(code=1013, reason=f"this server runs at most {limit} realtime sessions at once")
        return
    state.realtime_open = getattr(state, "realtime_open", 0) + 1
    try:
        await ws.accept(subprotocol="realtime" if "realtime" in offered else None)

        async def send(event: dict[str, Any]) -> None:
            await ws.send_text(json.dumps(event, separators=(",", ":")))

        async def receive() -> str | None:
            while True:
                try:
                    message = await ws.receive()
                except (WebSocketDisconnect, RuntimeError):
                    return None
                if message["type"] == "websocket.disconnect":
                    return None
                if message.get("text") is not None:
                    return str(message["text"])
                if message.get("bytes") is not None:
                    return bytes(message["bytes"]).decode("utf-8", errors="replace")

        bridge = RealtimeBridge(who.client, send, model=model)
        try:
            await bridge.run(receive)
        except (WebSocketDisconnect, RuntimeError):
            pass  # the client went away mid-send: the session is closed by run()
    finally:
        state.realtime_open -= 1
