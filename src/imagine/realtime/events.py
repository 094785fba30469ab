"""What a voice session reports, in order, to whatever carries it (the WebSocket, `imagine talk`, a test).

Times named `at` are seconds of input audio since the session began; `timings` hold monotonic-clock
marks of one turn (`time.monotonic()`), from the end of the person's speech to the first reply audio.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Union

__all__ = ["Item", "ReplyAudio", "ReplyDone", "ReplyStarted", "ReplyText", "SessionError", "SessionEvent",
           "SpeechStarted", "SpeechStopped", "TranscriptPartial", "TurnCommitted", "TurnDropped"]


@dataclass
class Item:
    """One entry of the conversation."""

    id: str
    role: Literal["user", "assistant", "system"]
    text: str
    status: Literal["completed", "incomplete", "in_progress"] = "completed"  # incomplete: cut by barge-in
    audio_s: float = 0.0  # seconds of speech (the person's utterance, or the reply audio heard)
    generated: str | None = None  # a reply cut short: everything the model had written by then
    log_id: str | None = None  # the log row of the call that made it (transcription or reply)


@dataclass(frozen=True)
class SpeechStarted:
    at: float
    item_id: str
    interrupted: str | None = None  # the reply this speech cut short


@dataclass(frozen=True)
class SpeechStopped:
    at: float
    item_id: str


@dataclass(frozen=True)
class TranscriptPartial:
    item_id: str
    text: str  # the whole utterance so far, as heard now (a later partial may revise it)


@dataclass(frozen=True)
class TurnCommitted:
    item: Item
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class TurnDropped:
    item_id: str
    reason: str  # "too short", "no words": noise or a cough is not a turn


@dataclass(frozen=True)
class ReplyStarted:
    response_id: str
    item_id: str


@dataclass(frozen=True)
class ReplyText:
    response_id: str
    item_id: str
    text: str  # the words of the audio that follows (a piece: sentence or clause)


@dataclass(frozen=True)
class ReplyAudio:
    response_id: str
    item_id: str
    pcm: bytes  # 16-bit little-endian mono at `rate`
    rate: int


@dataclass(frozen=True)
class ReplyDone:
    response_id: str
    item: Item
    status: Literal["completed", "cancelled", "failed"]
    reason: str | None = None  # cancelled: "turn_detected" (barge-in) or "client_cancelled"
    usage: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class SessionError:
    message: str
    code: str = "server_error"
    hint: str | None = None


SessionEvent = Union[SpeechStarted, SpeechStopped, TranscriptPartial, TurnCommitted, TurnDropped, ReplyStarted,
                     ReplyText, ReplyAudio, ReplyDone, SessionError]
