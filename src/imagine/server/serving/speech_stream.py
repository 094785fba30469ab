"""Speech as it is made: `POST /v1/audio/speech` with `stream_format` (and pcm or wav by default).

The voice engines stream already: Piper hands on each sentence as 16-bit PCM as soon as it is synthesised
(`PartDelta`), espeak the whole text in one piece. Here those chunks go to the client as they come:

- `audio`: the bytes themselves, chunked. pcm is OpenAI's 16-bit mono at 24 kHz (resampled with the
  voice loop's streaming resampler, which keeps its filter state across chunks so the joins do not
  click); wav is a header whose RIFF and data sizes are 0xFFFFFFFF, as OpenAI streams it, then PCM at
  the voice's own rate.
- `sse`: OpenAI's server-sent events, `speech.audio.delta` (base64 of the next bytes of the file) and
  a closing `speech.audio.done` with the usage.

mp3, opus, aac and flac are encoded from the whole clip (their encoders want the whole clip; a streamed
container would need rewriting at its end); with `sse` that clip is then sent as deltas, with `audio`
it is sent as it is. Everything that can be refused (the fields, the model, the voice, the text) is
refused before the first byte, as the usual 4xx JSON error: the first audio chunk is awaited before the
response starts. A client that hangs up cancels the synthesis (Piper stops after the sentence under
way), and the request is logged as cancelled."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any, AsyncIterator

from fastapi import Request as HttpRequest
from starlette.responses import StreamingResponse

from ...engine import Response
from ...errors import ImagineError, InputError, UpstreamError
from ...events import PCM_MIME, Event, PartDelta, PartOut, Restart, to_pcm16
from ...media.encode import AUDIO_FORMATS, PCM_RATE
from ...parts import Audio
from ..deps import Caller
from ..errors import ApiError, error_body, log, status_of
from ..protocol.media import SpeechRequest
from . import bridge
from .admission import AdmittedStream, admit
from .audio import MEDIA_HEADERS, plan_speech, speak_clip
from .media import log_header

__all__ = ["STREAMED_FORMATS", "streams", "stream_speech", "wav_stream_header"]

STREAMED_FORMATS = ("pcm", "wav")  # formats whose bytes can flow as the engine makes them
SSE_PIECE = 24_000  # bytes of an already-encoded clip per speech.audio.delta
_STREAM_HEADERS = {"x-accel-buffering": "no"}  # a proxy in front must not hold the chunks back


def streams(request: SpeechRequest) -> bool:
    """Whether the answer is streamed: asked for (`stream_format`), or pcm/wav, whose bytes can flow as
    they are made (as OpenAI's do)."""
    return request.stream_format is not None or request.response_format in STREAMED_FORMATS


def wav_stream_header(rate: int) -> bytes:
    """A 16-bit mono PCM WAV header for a stream of unknown length: RIFF and data sizes 0xFFFFFFFF."""
    return (b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
            + b"data" + struct.pack("<I", 0xFFFFFFFF))


async def stream_speech(request: SpeechRequest, caller: Caller, http: HttpRequest) -> StreamingResponse:
    """The streamed answer; refusals and failures before the first audio raise (4xx/5xx JSON)."""
    if request.response_format not in STREAMED_FORMATS:
        return await _whole_clip(request, caller, http)
    response = plan_speech(request, caller)
    gate = await admit(http, caller.key.id if caller.key else None, [response])
    stream = bridge.events(response)
    try:
        pending = await gate.first(_first_audio(stream))
    except BaseException as exc:
        await stream.aclose()  # type: ignore[attr-defined]
        _charge(caller, response)
        if type(exc) is InputError:  # the engine refused the text or the voice (subclasses keep their status)
            raise ApiError(400, str(exc), param="input", code="invalid_value") from None
        raise
    if not any(isinstance(e, (PartDelta, PartOut)) for e in pending):
        await stream.aclose()  # type: ignore[attr-defined]
        _charge(caller, response)
        gate.done()
        raise RuntimeError(f"{response.answered_ref} returned no audio")
    chunks = _pcm_chunks(pending, stream, request.response_format, response, caller)
    headers = {**log_header(response), **MEDIA_HEADERS, **_STREAM_HEADERS}
    if request.stream_format == "sse":
        return _Closing(_sse(chunks, response), None, gate.done, media_type="text/event-stream", headers=headers)
    return _Closing(chunks, None, gate.done, media_type=AUDIO_FORMATS[request.response_format].mime,
                    headers=headers)


class _Closing(AdmittedStream):
    """`Gate.stream`'s answer (the slot is given back when it ends), which also closes its body however
    the stream ended: a client that hangs up while a chunk is being sent leaves the body suspended at
    its `yield`, and the synthesis under it must stop now, not when the garbage collector gets to it."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        except ImagineError as exc:
            # a failure once audio bytes are out: no status can say so any more, so the response is left
            # unfinished and the server closes the connection before the last chunk (the client sees it cut)
            log.warning("speech stream cut short: %s", exc)
        finally:
            await self.body_iterator.aclose()  # type: ignore[attr-defined]  # a no-op when it finished


async def _first_audio(stream: AsyncIterator[Event]) -> list[Event]:
    """The events up to and including the first audio (or all of them, when there is none): the engine
    has accepted the voice and the text once audio comes."""
    seen: list[Event] = []
    while True:
        try:
            event = await stream.__anext__()
        except StopAsyncIteration:
            return seen
        if isinstance(event, Restart):  # a fallback before anything was sent: start over, nothing lost
            seen.clear()
            continue
        seen.append(event)
        if isinstance(event, (PartDelta, PartOut)):
            return seen


class _Pcm:
    """Float chunks -> 16-bit little-endian PCM at `rate` (None: each chunk's own rate)."""

    def __init__(self, rate: int | None) -> None:
        self.rate = rate
        self.resampler: Any = None
        self.source = 0

    def __call__(self, samples: Any, rate: int) -> bytes:
        if self.rate is None or rate == self.rate:
            return to_pcm16(samples)
        from ...realtime.audio import Resampler  # the voice loop's: libswresample, state kept across chunks

        out = b""
        if self.resampler is not None and rate != self.source:  # a voice that changes rate: flush, start anew
            out = to_pcm16(self.resampler.flush())
            self.resampler = None
        if self.resampler is None:
            self.resampler, self.source = Resampler(rate, self.rate), rate
        return out + to_pcm16(self.resampler(samples))

    def flush(self) -> bytes:
        return to_pcm16(self.resampler.flush()) if self.resampler is not None else b""


async def _pcm_chunks(pending: list[Event], stream: AsyncIterator[Event], fmt: str, response: Response,
                      caller: Caller) -> AsyncIterator[bytes]:
    """pcm or wav bytes as the engine makes them. A failure once bytes are out cannot be a status any
    more: it ends the stream (the connection closes without its last chunk, so the client sees it cut)."""
    pcm = _Pcm(PCM_RATE if fmt == "pcm" else None)
    header = fmt == "wav"
    streamed = False  # a PartDelta was sent: the finished PartOut repeats it and is skipped
    try:
        async for event in _chain(pending, stream):
            if isinstance(event, Restart):
                if streamed:
                    raise UpstreamError("the voice engine failed part way and another took over; the audio "
                                        "already sent cannot be taken back", hint="ask again")
                continue
            if isinstance(event, PartDelta) and event.mime == PCM_MIME:
                samples, rate = event.samples()
                streamed = True
            elif isinstance(event, PartOut) and isinstance(event.part, Audio) and not streamed:
                samples, rate = event.part.samples(None)  # an engine that does not stream: all at once
                streamed = True
            else:
                continue
            if header:
                header = False
                yield wav_stream_header(rate)
            data = pcm(samples, rate)
            if data:
                yield data
        tail = pcm.flush()
        if tail:
            yield tail
    finally:
        await stream.aclose()  # type: ignore[attr-defined]  # a client that left stops the synthesis now
        _charge(caller, response)


async def _sse(chunks: AsyncIterator[bytes], response: Response) -> AsyncIterator[bytes]:
    """OpenAI's speech events: a delta per chunk, then done with the usage; a failure part way is an
    error event (as in chat), which ends the stream."""
    try:
        async for data in chunks:
            yield _event({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode("ascii")})
    except ImagineError as exc:
        _, kind, code = status_of(exc)
        yield _event(error_body(str(exc), kind, None, code))
        return
    yield _event({"type": "speech.audio.done", "usage": _usage(response)})


async def _whole_clip(request: SpeechRequest, caller: Caller, http: HttpRequest) -> StreamingResponse:
    """mp3, opus, aac, flac: made and encoded whole (errors are a status), then sent."""
    response, data = await speak_clip(request, caller, http)
    headers = {**log_header(response), **MEDIA_HEADERS}

    async def audio() -> AsyncIterator[bytes]:
        yield data

    async def events() -> AsyncIterator[bytes]:
        for first in range(0, len(data), SSE_PIECE):
            yield _event({"type": "speech.audio.delta",
                          "audio": base64.b64encode(data[first:first + SSE_PIECE]).decode("ascii")})
        yield _event({"type": "speech.audio.done", "usage": _usage(response)})

    if request.stream_format == "sse":
        return StreamingResponse(events(), media_type="text/event-stream", headers={**headers, **_STREAM_HEADERS})
    return StreamingResponse(audio(), media_type=AUDIO_FORMATS[request.response_format].mime, headers=headers)


def _usage(response: Response) -> dict[str, int]:
    """OpenAI's speech usage: the engine's counts (Piper and espeak count the characters read as input)."""
    usage = response.usage if response.done else None
    tokens_in = (usage.input_tokens or 0) if usage else 0
    tokens_out = (usage.output_tokens or 0) if usage else 0
    return {"input_tokens": tokens_in, "output_tokens": tokens_out, "total_tokens": tokens_in + tokens_out}


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def _charge(caller: Caller, response: Response) -> None:
    if caller.key is not None and response.done:
        caller.keys.add_spend(caller.key, response.usage.cost or 0.0)


async def _chain(pending: list[Event], stream: AsyncIterator[Event]) -> AsyncIterator[Event]:
    for event in pending:
        yield event
    async for event in stream:
        yield event
