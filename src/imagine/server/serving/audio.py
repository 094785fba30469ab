"""Audio over the one request path: transcriptions and translations (an uploaded file -> text in OpenAI's
five formats) and speech (text -> audio in the format asked for).

OpenAI's request fields are mapped onto the named engine's own options (`prompt` -> `initial_prompt`,
`speed` -> Piper's `length_scale` or espeak's `rate`), and a field the engine has no option for is a 400
naming the field rather than something silently ignored. OpenAI's voice names (alloy, nova, ...) mean
the engine's default voice, so clients that hard-code one keep working. Speech streamed as it is made
(`stream_format`, and pcm or wav by default) is speech_stream.py, over the same validation."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from fastapi import Request as HttpRequest

from ...engine import Response
from ...errors import ImagineError, LimitExceeded
from ...media.encode import AUDIO_FORMATS, audio_formats, encode_audio
from ...parts import Audio, Data, Message, Modality, Part, Segments, Text, Video
from ...subtitles import to_srt, to_vtt
from ..deps import Caller
from ..protocol.media import TRANSCRIPT_FORMATS, SpeechRequest
from .media import Target, bad_field, finish, log_header, respond, target

__all__ = ["MEDIA_HEADERS", "OPENAI_STT_MODELS", "OPENAI_TTS_MODELS", "OPENAI_VOICES", "Transcribe", "plan_speech",
           "speak", "speak_clip", "transcribe"]

OPENAI_STT_MODELS = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe", "gpt-4o-transcribe-diarize")
OPENAI_TTS_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
OPENAI_VOICES = frozenset("alloy ash ballad coral echo fable onyx nova sage shimmer verse marin cedar".split())
MEDIA_HEADERS = {"x-content-type-options": "nosniff", "cache-control": "no-store"}


@dataclass
class Transcribe:
    """A transcription or translation request, as its multipart form gave it."""

    data: bytes
    filename: str | None
    model: str
    task: str = "transcribe"  # or "translate"
    language: str | None = None
    prompt: str | None = None
    response_format: str = "json"
    temperature: float | None = None
    granularities: tuple[str, ...] = ()
    options: dict[str, Any] | None = None


def _upload(request: Transcribe, caller: Caller) -> Part:
    """The uploaded file as an Audio (or Video) part; anything else is a 400 naming `file`."""
    if not request.data:
        raise bad_field("file", "is empty")
    limits = caller.client.settings.part_limits()
    if len(request.data) > limits.max_bytes:
        raise bad_field("file", f"is {len(request.data)} bytes; the limit is {limits.max_bytes}", 413,
                        "request_too_large")
    from ...media.sniff import sniff_mime

    mime = sniff_mime(request.data[:64]) or ""
    family = mime.split("/")[0]
    if family not in ("audio", "video"):
        what = mime or "not a recognised audio or video format"
        raise bad_field("file", f"{request.filename or 'the upload'} is {what}; send audio (wav, mp3, flac, ogg, "
                                "m4a, webm) or video", code="unsupported_file")
    try:
        return (Audio if family == "audio" else Video)(request.data, mime=mime, name=request.filename,
                                                       limits=limits)
    except LimitExceeded as exc:
        raise bad_field("file", str(exc), 413, "request_too_large") from None
    except ImagineError as exc:
        raise bad_field("file", str(exc)) from None


def _stt_options(request: Transcribe, to: Target) -> tuple[dict[str, Any], list[Part]]:
    """The engine options for the form's fields, and extra parts (a prompt as text where the engine reads
    one instead of an option)."""
    fields = to.fields
    options: dict[str, Any] = {}
    extra: list[Part] = []
    named = to.engine is not None
    if request.response_format not in TRANSCRIPT_FORMATS:
        raise bad_field("response_format", f"{request.response_format!r} is not one of "
                                           f"{', '.join(TRANSCRIPT_FORMATS)}")
    bad_grain = [g for g in request.granularities if g not in ("word", "segment")]
    if bad_grain:
        raise bad_field("timestamp_granularities[]", f"{bad_grain[0]!r} is not word or segment")
    wanted = {"language": request.language, "temperature": request.temperature,
              "word_timestamps": True if "word" in request.granularities else None,
              "task": "translate" if request.task == "translate" else None}
    for key, value in wanted.items():
        if value is None:
            continue
        if named and key not in fields:
            field = {"word_timestamps": "timestamp_granularities[]", "task": "model"}.get(key, key)
            raise bad_field(field, f"{to.engine.id if to.engine else 'the model'} cannot "  # type: ignore[union-attr]
                                   f"{'translate' if key == 'task' else 'take ' + key}", code="unsupported_value")
        options[key] = value
    if request.prompt:
        if "initial_prompt" in fields or not named:
            options["initial_prompt"] = request.prompt
        elif to.takes(Modality.TEXT):
            extra.append(Text(request.prompt))
        else:
            raise bad_field("prompt", f"{to.engine.id if to.engine else 'the model'} takes no prompt",  # type: ignore[union-attr]
                            code="unsupported_value")
    return {**options, **(request.options or {})}, extra


async def transcribe(request: Transcribe, caller: Caller, http: HttpRequest | None = None) -> tuple[Any, str, dict[str, str]]:
    """(body, media type, headers) of a transcription or translation in its response_format."""
    to = target(caller, request.model, OPENAI_STT_MODELS, "transcribe")
    part = _upload(request, caller)
    options, extra = _stt_options(request, to)
    response = respond(caller, [Message("user", [part, *extra])], to, Modality.TEXT, options)
    # a refusal of the input names the file; a translation refused by an English-only model names no field
    await finish(caller, response, param="file" if request.task == "transcribe" else None, http=http)
    headers = log_header(response)
    text = response.text_so_far().strip()
    segments = next((p for p in response.parts if isinstance(p, Segments)), Segments([]))
    info = next((p.value for p in response.parts if isinstance(p, Data) and isinstance(p.value, dict)), {})
    fmt = request.response_format
    if fmt == "text":
        return text + "\n", "text/plain; charset=utf-8", headers
    if fmt == "srt":
        return to_srt(segments), "application/x-subrip; charset=utf-8", headers
    if fmt == "vtt":
        return to_vtt(segments), "text/vtt; charset=utf-8", headers
    if fmt == "json":
        return {"text": text}, "application/json", headers
    return _verbose(request, text, segments, info), "application/json", headers


def _verbose(request: Transcribe, text: str, segments: Segments, info: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's verbose_json: segments always (unless only words were asked for), words when asked."""
    grains = set(request.granularities) or {"segment"}
    duration = info.get("duration") or (segments.items[-1].end if segments.items else 0.0)
    body: dict[str, Any] = {"task": request.task, "language": info.get("language") or request.language or "",
                            "duration": float(duration), "text": text}
    if "segment" in grains:
        body["segments"] = [{"id": i, "seek": 0, "start": s.start, "end": s.end, "text": s.text,
                             "tokens": [], "temperature": request.temperature or 0.0,
                             "avg_logprob": s.meta.get("avg_logprob", 0.0), "compression_ratio": 0.0,
                             "no_speech_prob": s.meta.get("no_speech_prob", 0.0)}
                            for i, s in enumerate(segments.items)]
    if "word" in grains:
        body["words"] = [{"word": w["word"], "start": w["start"], "end": w["end"]}
                         for s in segments.items for w in s.meta.get("words", ())]
    return body


# -- speech ------------------------------------------------------------------------------------------

def _speech_options(request: SpeechRequest, to: Target) -> dict[str, Any]:
    fields, options = to.fields, {}
    named = to.engine is not None
    engine = to.engine.id if to.engine is not None else "the model"
    voice = request.voice.get("id") if isinstance(request.voice, dict) else request.voice
    if voice and voice.lower() not in OPENAI_VOICES:
        if named and "voice" not in fields:
            raise bad_field("voice", f"{engine} has one voice; leave voice unset", code="unsupported_value")
        options["voice"] = voice
    if request.speed != 1.0:
        if "length_scale" in fields:  # Piper: phoneme duration, the inverse of speed
            options["length_scale"] = round(1.0 / request.speed, 4)
        elif "rate" in fields:  # espeak: words per minute around its 175
            options["rate"] = max(80, min(450, round(175 * request.speed)))
        elif "speed" in fields or not named:
            options["speed"] = request.speed
        else:
            raise bad_field("speed", f"{engine} cannot change its speed", code="unsupported_value")
    if request.instructions:
        if named and "instructions" not in fields:
            raise bad_field("instructions", f"{engine} takes no style instructions", code="unsupported_value")
        options["instructions"] = request.instructions
    return {**options, **(request.options or {})}


def plan_speech(request: SpeechRequest, caller: Caller) -> Response:
    """Validate a speech request and plan it (nothing runs yet): every refusal of its fields is a 4xx here,
    before a streamed answer has sent its first byte."""
    fmt = request.response_format
    why = audio_formats().get(fmt)
    if why is not None:
        raise bad_field("response_format", f"{fmt} cannot be written here: {why}", code="unsupported_value")
    if not request.input.strip():
        raise bad_field("input", "is empty; give some text to speak")
    to = target(caller, request.model, OPENAI_TTS_MODELS, "speak")
    options = _speech_options(request, to)
    return respond(caller, [Message.user(request.input)], to, Modality.AUDIO, options, request.policy,
                   request.max_cost)


async def speak_clip(request: SpeechRequest, caller: Caller, http: HttpRequest | None = None) -> tuple[Response, bytes]:
    """The finished response and its whole clip in request.response_format."""
    fmt = request.response_format
    response = plan_speech(request, caller)
    await finish(caller, response, param="input", http=http)
    audio = next((p for p in response.parts if isinstance(p, Audio)), None)
    if audio is None:
        raise RuntimeError(f"{response.answered_ref} returned no audio")
    if fmt == "wav" and audio.mime in ("audio/wav", "audio/x-wav"):
        data = audio.data
    else:
        data = await asyncio.to_thread(_encode, audio, fmt)  # encoding is CPU work: off the event loop
    return response, data


async def speak(request: SpeechRequest, caller: Caller, http: HttpRequest | None = None) -> tuple[bytes, str, dict[str, str]]:
    """(audio bytes, media type, headers) of the speech in request.response_format, made whole."""
    response, data = await speak_clip(request, caller, http)
    return data, AUDIO_FORMATS[request.response_format].mime, {**log_header(response), **MEDIA_HEADERS}


def _encode(audio: Audio, fmt: str) -> bytes:
    samples, rate = audio.samples(None)
    return encode_audio(samples, rate, fmt)
