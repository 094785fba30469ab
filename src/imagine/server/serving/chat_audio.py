"""Spoken chat answers: `modalities: ["text", "audio"]` with `audio: {voice, format}`.

OpenAI's audio chat models write and speak in one pass; imagine's local text models only write. So the
answer is generated as text first and then spoken by the default voice engine through the same one
request path (`serving.audio.speak` -> `Client.respond(want=AUDIO)`, logged like any speech), and returned
the way OpenAI's SDK expects it: `message.audio = {id, data (base64), expires_at, transcript}` with
`content: null`; streamed, the transcript goes out as `delta.audio.transcript` pieces while the text is
generated, then the sound as `delta.audio.data` chunks, then the audio's `id` and `expires_at`.

Everything a malformed request can get wrong is checked in `audio_request`, before any generation: a
format this machine's FFmpeg cannot write would otherwise be found only after the whole answer was made."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

from ...media.encode import audio_formats
from ..errors import ApiError
from ..protocol.chat import ChatRequest
from ..protocol.media import SpeechRequest
from .audio import speak

if TYPE_CHECKING:
    from ..deps import Caller

__all__ = ["CHAT_AUDIO_FORMATS", "SpokenAudio", "Voice", "audio_request", "speak_answer", "stream_chunks"]

# OpenAI's chat audio formats -> the speech endpoint's names (pcm16: 24 kHz little-endian 16-bit mono)
CHAT_AUDIO_FORMATS = {"wav": "wav", "mp3": "mp3", "flac": "flac", "opus": "opus", "pcm16": "pcm"}
EXPIRES_S = 3600  # OpenAI keeps audio for a follow-up turn an hour; imagine's log keeps it for good
CHUNK_BYTES = 24_000  # raw audio bytes per streamed `data` chunk (0.5 s of pcm16), each base64'd alone


@dataclass(frozen=True)
class Voice:
    """What the request asked the answer to sound like."""

    voice: str | dict[str, Any] | None
    format: str  # the chat name (wav, mp3, flac, opus, pcm16)

    @property
    def speech_format(self) -> str:
        return CHAT_AUDIO_FORMATS[self.format]


@dataclass(frozen=True)
class SpokenAudio:
    """An answer as sound: the encoded bytes and OpenAI's fields for them."""

    id: str
    data: bytes
    expires_at: int
    transcript: str

    def message_audio(self) -> dict[str, Any]:
        return {"id": self.id, "data": base64.b64encode(self.data).decode("ascii"), "expires_at": self.expires_at,
                "transcript": self.transcript}


def _bad(field: str, message: str, code: str = "invalid_value") -> ApiError:
    return ApiError(400, f"{field}: {message}", param=field, code=code)


def audio_request(request: ChatRequest) -> Voice | None:
    """The requested voice when the answer should be spoken, else None; a 400 naming the field for a
    request that cannot be honoured (no `audio`, an unknown format, one this machine cannot encode)."""
    modalities = list(request.modalities or ["text"])
    unknown = [m for m in modalities if m not in ("text", "audio")]
    if unknown:
        raise _bad("modalities", f"{unknown[0]!r} is not an output this server makes (text, audio)",
                   "unsupported_value")
    if "audio" not in modalities:
        return None
    audio = request.audio
    if audio is None:
        raise _bad("audio", 'is required with modalities ["text", "audio"]: {"voice": ..., "format": ...}')
    fmt = audio.format
    if fmt not in CHAT_AUDIO_FORMATS:
        raise _bad("audio.format", f"{fmt!r} is not one of {', '.join(CHAT_AUDIO_FORMATS)}", "unsupported_value")
    why = audio_formats().get(CHAT_AUDIO_FORMATS[fmt])
    if why is not None:
        raise _bad("audio.format", f"{fmt} cannot be written here: {why}", "unsupported_value")
    if request.tools and request.tool_choice not in (None, "none"):
        raise _bad("tools", "a spoken answer cannot also call tools here; ask for text only", "unsupported_value")
    return Voice(audio.voice, fmt)


async def speak_answer(caller: "Caller", voice: Voice, text: str, choice_id: str) -> SpokenAudio:
    """Speak `text` with the default voice engine (one logged speech response) in the requested format.
    Runs inside the chat's own admitted turn, so it waits in no second line."""
    spoken = text.strip() or "..."  # a voice engine refuses empty input; silence-ish beats a 500
    request = SpeechRequest(input=spoken, model="tts-1", voice=voice.voice, response_format=voice.speech_format)  # type: ignore[arg-type]
    data, _, headers = await speak(request, caller)
    log_id = next(iter(headers.get("x-imagine-log-id", "").split(",")), "") or choice_id
    return SpokenAudio("audio_" + log_id, data, int(time.time()) + EXPIRES_S, text)


def stream_chunks(audio: SpokenAudio) -> Iterator[dict[str, Any]]:
    """The `delta.audio` objects that follow the transcript in a stream: the sound in chunks (each chunk
    base64'd on its own, so a client decodes and appends them), then its id and expiry."""
    for start in range(0, len(audio.data), CHUNK_BYTES):
        yield {"data": base64.b64encode(audio.data[start:start + CHUNK_BYTES]).decode("ascii")}
    yield {"id": audio.id, "expires_at": audio.expires_at}
