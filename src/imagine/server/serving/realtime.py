"""The OpenAI Realtime API (the subset a voice client needs) over a `VoiceSession`.

Client events: `session.update`, `input_audio_buffer.append|commit|clear`, `conversation.item.create|
truncate|delete`, `response.create`, `response.cancel`. Server events: `session.created|updated`,
`input_audio_buffer.speech_started|speech_stopped|committed|cleared`, `conversation.item.created|truncated|
deleted`, `conversation.item.input_audio_transcription.delta|completed`, `response.created`,
`response.output_item.added|done`, `response.content_part.added|done`, `response.audio.delta|done`,
`response.audio_transcript.delta|done` (`response.text.*` when the session is text-only), `response.done`,
`error`. Audio is base64 16-bit PCM, mono, 24 kHz, both ways. A bad event is answered with an `error`
event naming the field (`param`) and the session goes on; only a broken socket ends it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from dataclasses import replace
from typing import Any, Awaitable, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ...engine import new_id
from ...realtime import SessionConfig, TurnSettings, VoiceSession
from ...realtime import events as ev
from ...realtime.audio import from_pcm16
from ..errors import ApiError
from .messages import image

__all__ = ["MAX_APPEND_BYTES", "RATE", "RealtimeBridge", "SessionUpdate"]

RATE = 24000  # pcm16 in the Realtime API
MAX_APPEND_BYTES = 15 * 1024 * 1024 // 10  # one append: ~30 s of 24 kHz pcm16, base64-encoded
_WARMED: set[tuple[Any, ...]] = set()


class _Open(BaseModel):
    model_config = ConfigDict(extra="ignore")  # fields newer than this server are accepted and ignored


class TurnDetection(_Open):
    type: Literal["server_vad"] = "server_vad"
    threshold: float = Field(default=0.5, gt=0, lt=1)
    prefix_padding_ms: int = Field(default=300, ge=0, le=2000)
    silence_duration_ms: int = Field(default=500, ge=64, le=10000)
    create_response: bool = True


class Transcription(_Open):
    model: str | None = None  # whisper-1 and other OpenAI names mean the default transcriber
    language: str | None = None


class SessionUpdate(_Open):
    """The `session` object of `session.update` (and of `session.created`/`updated`, filled in)."""

    model: str | None = None  # the LLM: ENGINE:MODEL, an alias, or an OpenAI name (the default model)
    instructions: str | None = Field(default=None, max_length=100_000)
    voice: str | None = Field(default=None, max_length=1000, description="a Piper voice (joe, en_US-lessac-medium) "
                              "or a TTS model as ENGINE:MODEL")
    modalities: list[Literal["text", "audio"]] | None = None
    input_audio_format: Literal["pcm16"] | None = None
    output_audio_format: Literal["pcm16"] | None = None
    input_audio_transcription: Transcription | None = None
    turn_detection: TurnDetection | None = Field(default_factory=TurnDetection)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_response_output_tokens: int | Literal["inf"] | None = None
    policy: str | None = None  # imagine: a router policy for the LLM (local_only, cheapest, ...)
    tools: list[dict[str, Any]] | None = None  # function tools, by name: imagine's built-ins run server-side
    tool_choice: str | None = None


def _tools(tools: list[dict[str, Any]] | None) -> list[str] | None:
    """The built-in tools a session may call by voice. A client's own function tools would need the client to
    run them (function_call events), which this server does not speak yet: those are refused by name."""
    from ...agents.builtin import DEFAULT_TOOLS

    if not tools:
        return None
    names = [t.get("name") if isinstance(t, dict) else None for t in tools]
    unknown = [str(n) for n in names if n not in DEFAULT_TOOLS]
    if unknown:
        raise ValueError(f"tools {', '.join(unknown)} are not imagine built-ins; this server runs only its own "
                         f"tools by voice: {', '.join(DEFAULT_TOOLS)}")
    return [str(n) for n in names]


def _model(name: str | None) -> str | None:
    """OpenAI's realtime model names mean "the default model here"; anything else is an imagine model ref."""
    if not name or name.startswith(("gpt-4o", "gpt-realtime", "whisper-1", "gpt-4o-transcribe")):
        return None
    return name


def _voice(name: str | None) -> tuple[str | None, dict[str, Any]]:
    """A Piper voice name, or a TTS model ref (it has a colon); OpenAI's voice names mean the default voice."""
    openai_voices = {"alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar"}
    if not name or name in openai_voices:
        return None, {}
    if ":" in name:
        return name, {}
    return "piper", {"voice": name}


class RealtimeBridge:
    """One WebSocket connection: client events in, server events out, a VoiceSession in between."""

    def __init__(self, client: Any, send: Callable[[dict[str, Any]], Awaitable[None]],
                 model: str | None = None) -> None:
        self.send_json = send
        self.limits = client.settings.part_limits()
        self.fields = SessionUpdate(model=model)
        self.session = VoiceSession(client, self._config(self.fields))
        self._last_item: str | None = None
        self._pump: asyncio.Task[None] | None = None
        self._transcript: dict[str, str] = {}  # response id -> text so far
        self._partial: dict[str, str] = {}  # user item id -> partial transcript sent so far

    # -- settings ---------------------------------------------------------------------------------------
    def _config(self, fields: SessionUpdate) -> SessionConfig:
        old = getattr(self, "session", None)
        config = replace(old.config) if old is not None else SessionConfig(output_rate=RATE)
        config.model, config.policy = _model(fields.model), fields.policy
        if fields.instructions is not None:
            config.instructions = fields.instructions
        config.voice, config.voice_options = _voice(fields.voice)
        config.audio_out = fields.modalities is None or "audio" in fields.modalities
        transcription = fields.input_audio_transcription
        config.stt_model = _model(transcription.model) if transcription else None
        config.stt_options = {"language": transcription.language} if transcription and transcription.language else None
        llm = {"max_tokens": 120}
        if fields.temperature is not None:
            llm["temperature"] = fields.temperature  # type: ignore[assignment]
        if isinstance(fields.max_response_output_tokens, int):
            llm["max_tokens"] = fields.max_response_output_tokens
        config.tools = _tools(fields.tools)
        if fields.tool_choice in ("required", "none") and config.tools:
            llm["tool_choice"] = fields.tool_choice  # type: ignore[assignment]
        config.llm_options = llm
        vad = fields.turn_detection
        config.turn = None if vad is None else TurnSettings(threshold=vad.threshold, prefix_padding_ms=vad.prefix_padding_ms,
                                                            silence_ms=vad.silence_duration_ms,
                                                            max_silence_ms=max(1200, vad.silence_duration_ms))
        config.respond_to_turns = vad is not None and vad.create_response
        return config

    def describe(self) -> dict[str, Any]:
        config = self.session.config
        vad = self.fields.turn_detection
        return {"id": self.session.id, "object": "realtime.session", "model": config.model or "default",
                "modalities": ["text", "audio"] if config.audio_out else ["text"],
                "instructions": config.instructions, "voice": self.fields.voice or "joe",
                "input_audio_format": "pcm16", "output_audio_format": "pcm16",
                "input_audio_transcription": {"model": config.stt_model or "whisper"},
                "turn_detection": vad.model_dump() if vad is not None else None,
                "max_response_output_tokens": config.llm_options.get("max_tokens")}

    # -- the connection ---------------------------------------------------------------------------------
    async def run(self, receive: Callable[[], Awaitable[str | None]]) -> None:
        """Serve until the client goes away (`receive` returns None)."""
        warm_key = (id(self.session.client.registry), self.session.config.model, self.session.config.voice)
        if warm_key not in _WARMED:  # the first session of a process loads the models before it listens
            await self.session.warm()
            _WARMED.add(warm_key)
        await self.session.start()
        await self.emit("session.created", session=self.describe())
        self._pump = asyncio.create_task(self._forward())
        try:
            while (raw := await receive()) is not None:
                await self.handle(raw)
        finally:
            await self.session.close()
            await asyncio.gather(self._pump, return_exceptions=True)

    async def emit(self, kind: str, **fields: Any) -> None:
        await self.send_json({"type": kind, "event_id": "event_" + new_id(), **fields})

    async def error(self, message: str, *, code: str = "invalid_value", param: str | None = None,
                    event_id: str | None = None, kind: str = "invalid_request_error") -> None:
        await self.emit("error", error={"type": kind, "code": code, "message": message, "param": param,
                                        "event_id": event_id})

    async def handle(self, raw: str) -> None:
        try:
            event = json.loads(raw)
        except ValueError:
            await self.error("the message is not JSON", code="invalid_json")
            return
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            await self.error("each message must be a JSON object with a string `type`", param="type")
            return
        handler = self.HANDLERS.get(event["type"])
        if handler is None:
            await self.error(f"unknown event type {event['type']!r} (supported: {', '.join(sorted(self.HANDLERS))})",
                             code="unknown_event", param="type", event_id=event.get("event_id"))
            return
        try:
            await handler(self, event)
        except ApiError as exc:  # a picture that cannot be fetched or decoded, named by its field
            await self.error(exc.message, code=exc.code or "invalid_value", param=exc.param,
                             event_id=event.get("event_id"))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            await self.error(f"{where}: {first['msg']}", param=where, event_id=event.get("event_id"))

    # -- client events ------------------------------------------------------------------------------------
    async def _session_update(self, event: dict[str, Any]) -> None:
        body = event.get("session")
        if not isinstance(body, dict):
            await self.error("session.update needs a `session` object", param="session", event_id=event.get("event_id"))
            return
        merged = {**self.fields.model_dump(exclude_unset=True), **body}
        fields = SessionUpdate.model_validate(merged)
        try:
            config = self._config(fields)
        except ValueError as exc:
            await self.error(str(exc), param="tools", event_id=event.get("event_id"))
            return
        self.fields = fields
        self.session.update(config)
        await self.emit("session.updated", session=self.describe())

    async def _append(self, event: dict[str, Any]) -> None:
        audio = event.get("audio")
        if not isinstance(audio, str):
            await self.error("input_audio_buffer.append needs `audio`: base64 pcm16 at 24 kHz", param="audio",
                             event_id=event.get("event_id"))
            return
        if len(audio) > MAX_APPEND_BYTES:
            await self.error(f"one append may carry at most {MAX_APPEND_BYTES} base64 characters (~30 s); send the "
                             "audio in smaller pieces", code="audio_too_large", param="audio",
                             event_id=event.get("event_id"))
            return
        try:
            pcm = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            await self.error("`audio` is not valid base64", param="audio", event_id=event.get("event_id"))
            return
        self.session.append(from_pcm16(pcm), RATE)

    async def _commit(self, event: dict[str, Any]) -> None:
        self.session.commit()

    async def _clear(self, event: dict[str, Any]) -> None:
        self.session.clear()
        await self.emit("input_audio_buffer.cleared")

    async def _item_create(self, event: dict[str, Any]) -> None:
        item = event.get("item")
        content = item.get("content") if isinstance(item, dict) else None
        role = item.get("role", "user") if isinstance(item, dict) else None
        if role not in ("user", "assistant", "system") or not isinstance(content, list):
            await self.error("conversation.item.create needs `item` with `role` (user, assistant or system) and a "
                             "`content` list", param="item", event_id=event.get("event_id"))
            return
        texts, pictures = [], []
        for index, piece in enumerate(content):
            kind = piece.get("type") if isinstance(piece, dict) else None
            if kind == "input_image" and isinstance(piece.get("image_url"), str):
                pictures.append(await image(piece["image_url"], f"item.content[{index}].image_url", self.limits))
            elif kind in ("input_text", "text") and isinstance(piece.get("text"), str):
                texts.append(piece["text"])
            else:
                await self.error("content parts may be input_text (text) or input_image (image_url: a data URL or "
                                 "https URL)", param=f"item.content[{index}]", event_id=event.get("event_id"))
                return
        for picture in pictures:
            self.session.show(picture)  # in view for this and the following turns
        if texts:
            await self._created(self.session.add_item(role, "\n".join(texts)))  # type: ignore[arg-type]
        elif pictures:
            await self.emit("conversation.item.created", previous_item_id=self._last_item, item={
                "id": "item_" + new_id(), "object": "realtime.item", "type": "message", "role": role,
                "status": "completed", "content": [{"type": "input_image"} for _ in pictures]})

    async def _item_truncate(self, event: dict[str, Any]) -> None:
        item_id, end = event.get("item_id"), event.get("audio_end_ms")
        if not isinstance(end, int) or end < 0:
            await self.error("audio_end_ms must be a whole number of milliseconds", param="audio_end_ms",
                             event_id=event.get("event_id"))
            return
        try:
            self.session.truncate(str(item_id), end)
        except KeyError:
            await self.error(f"no recent assistant item {item_id!r}", code="item_not_found", param="item_id",
                             event_id=event.get("event_id"))
            return
        await self.emit("conversation.item.truncated", item_id=item_id, content_index=0, audio_end_ms=end)

    async def _item_delete(self, event: dict[str, Any]) -> None:
        item_id = event.get("item_id")
        before = len(self.session.items)
        self.session.items[:] = [i for i in self.session.items if i.id != item_id]
        if len(self.session.items) == before:
            await self.error(f"no item {item_id!r}", code="item_not_found", param="item_id",
                             event_id=event.get("event_id"))
            return
        await self.emit("conversation.item.deleted", item_id=item_id)

    async def _response_create(self, event: dict[str, Any]) -> None:
        self.session.respond()

    async def _response_cancel(self, event: dict[str, Any]) -> None:
        if self.session.cancel_reply("client_cancelled") is None:
            await self.error("no response is in progress", code="response_cancel_not_active",
                             event_id=event.get("event_id"))

    HANDLERS: dict[str, Callable[["RealtimeBridge", dict[str, Any]], Awaitable[None]]] = {
        "session.update": _session_update, "input_audio_buffer.append": _append,
        "input_audio_buffer.commit": _commit, "input_audio_buffer.clear": _clear,
        "conversation.item.create": _item_create, "conversation.item.truncate": _item_truncate,
        "conversation.item.delete": _item_delete, "response.create": _response_create,
        "response.cancel": _response_cancel}

    # -- session events out -----------------------------------------------------------------------------
    async def _created(self, item: ev.Item) -> None:
        await self.emit("conversation.item.created", previous_item_id=self._last_item, item=self._item(item))
        self._last_item = item.id

    def _item(self, item: ev.Item) -> dict[str, Any]:
        if item.role == "user" and item.audio_s:
            content = [{"type": "input_audio", "transcript": item.text}]
        elif item.role == "assistant":
            audio = self.session.config.audio_out
            content = [{"type": "audio" if audio else "text", ("transcript" if audio else "text"): item.text}]
        else:
            content = [{"type": "input_text", "text": item.text}]
        return {"id": item.id, "object": "realtime.item", "type": "message", "role": item.role,
                "status": item.status, "content": content}

    async def _forward(self) -> None:
        async for event in self.session.events():
            await self._out(event)

    async def _out(self, event: ev.SessionEvent) -> None:  # noqa: C901 - one branch per event kind
        audio = self.session.config.audio_out
        if isinstance(event, ev.SpeechStarted):
            await self.emit("input_audio_buffer.speech_started", audio_start_ms=int(event.at * 1000),
                            item_id=event.item_id)
        elif isinstance(event, ev.SpeechStopped):
            await self.emit("input_audio_buffer.speech_stopped", audio_end_ms=int(event.at * 1000),
                            item_id=event.item_id)
            await self.emit("input_audio_buffer.committed", previous_item_id=self._last_item, item_id=event.item_id)
        elif isinstance(event, ev.TranscriptPartial):
            sent = self._partial.get(event.item_id, "")
            delta = event.text[len(sent):] if event.text.startswith(sent) else event.text
            self._partial[event.item_id] = event.text
            await self.emit("conversation.item.input_audio_transcription.delta", item_id=event.item_id,
                            content_index=0, delta=delta, transcript=event.text)
        elif isinstance(event, ev.TurnCommitted):
            self._partial.pop(event.item.id, None)
            await self._created(event.item)
            await self.emit("conversation.item.input_audio_transcription.completed", item_id=event.item.id,
                            content_index=0, transcript=event.item.text)
        elif isinstance(event, ev.TurnDropped):
            self._partial.pop(event.item_id, None)
        elif isinstance(event, ev.ReplyStarted):
            self._transcript[event.response_id] = ""
            await self.emit("response.created", response={"id": event.response_id, "object": "realtime.response",
                                                          "status": "in_progress", "output": []})
            item = {"id": event.item_id, "object": "realtime.item", "type": "message", "role": "assistant",
                    "status": "in_progress", "content": []}
            await self.emit("response.output_item.added", response_id=event.response_id, output_index=0, item=item)
            await self.emit("response.content_part.added", response_id=event.response_id, item_id=event.item_id,
                            output_index=0, content_index=0,
                            part={"type": "audio", "transcript": ""} if audio else {"type": "text", "text": ""})
        elif isinstance(event, ev.ReplyText):
            text = (" " if self._transcript.get(event.response_id) else "") + event.text
            self._transcript[event.response_id] = self._transcript.get(event.response_id, "") + text
            await self.emit("response.audio_transcript.delta" if audio else "response.text.delta",
                            response_id=event.response_id, item_id=event.item_id, output_index=0, content_index=0,
                            delta=text)
        elif isinstance(event, ev.ReplyAudio):
            await self.emit("response.audio.delta", response_id=event.response_id, item_id=event.item_id,
                            output_index=0, content_index=0, delta=base64.b64encode(event.pcm).decode("ascii"))
        elif isinstance(event, ev.ReplyDone):
            await self._reply_done(event, audio)
        elif isinstance(event, ev.SessionError):
            await self.error(event.message + (f" ({event.hint})" if event.hint else ""), code=event.code,
                             kind="server_error")

    async def _reply_done(self, event: ev.ReplyDone, audio: bool) -> None:
        ids = {"response_id": event.response_id, "item_id": event.item.id, "output_index": 0, "content_index": 0}
        text = self._transcript.pop(event.response_id, "")
        item = self._item(event.item)
        if audio:
            await self.emit("response.audio.done", **ids)
            await self.emit("response.audio_transcript.done", **ids, transcript=text)
        else:
            await self.emit("response.text.done", **ids, text=text)
        await self.emit("response.content_part.done", **ids, part=item["content"][0])
        await self.emit("response.output_item.done", response_id=event.response_id, output_index=0, item=item)
        self._last_item = event.item.id
        details = None
        if event.status != "completed":
            details = {"type": event.status, "reason": event.reason}
        usage = {"input_tokens": event.usage.get("input_tokens", 0), "output_tokens": event.usage.get("output_tokens", 0)}
        usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
        await self.emit("response.done", response={"id": event.response_id, "object": "realtime.response",
                                                   "status": event.status, "status_details": details,
                                                   "output": [item], "usage": usage,
                                                   "metadata": {"heard": event.item.text, "log_id": event.item.log_id,
                                                                "generated": event.item.generated,
                                                                "timings": event.timings}})
