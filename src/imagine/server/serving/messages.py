"""OpenAI chat messages -> imagine Messages: text, images (data URLs, or remote URLs through the
SSRF-safe fetcher when it is installed), input audio, assistant tool calls and tool results.

Every refusal names the field (`messages[2].content[1].image_url.url`), so the caller knows which part
of a long request to fix."""

from __future__ import annotations

import base64
import binascii
import importlib
import json
from typing import Any

from ...errors import ImagineError, LimitExceeded
from ...parts import Audio, Image, Limits, Message, Part, Text, ToolUse
from ..errors import ApiError
from ..protocol.chat import ChatMessage, ContentPart

__all__ = ["to_messages"]

_AUDIO_MIME = {"wav": "audio/wav", "mp3": "audio/mpeg", "flac": "audio/flac", "ogg": "audio/ogg",
               "webm": "audio/webm", "m4a": "audio/mp4"}


def _bad(field: str, message: str) -> ApiError:
    return ApiError(400, f"{field}: {message}", param=field, code="invalid_value")


def _b64(data: str, field: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise _bad(field, "is not valid base64") from None


def _media(cls: type[Image] | type[Audio], data: bytes, mime: str | None, field: str, limits: Limits) -> Part:
    try:
        return cls(data, mime=mime, limits=limits)
    except ImagineError as exc:  # LimitExceeded stays a 413, naming the field
        if isinstance(exc, LimitExceeded):
            raise ApiError(413, f"{field}: {exc}", param=field, code="request_too_large") from None
        raise _bad(field, str(exc)) from None


def _image(url: str, field: str, limits: Limits) -> Part:
    if url.startswith("data:"):
        head, sep, payload = url.partition(",")
        if not sep or not head.endswith(";base64"):
            raise _bad(field, "a data URL must look like data:image/png;base64,...")
        mime = head[5:-7] or None
        if mime and not mime.startswith("image/"):
            raise _bad(field, f"is a {mime} data URL, not an image")
        return _media(Image, _b64(payload, field), None, field, limits)
    if url.startswith(("http://", "https://")):
        try:
            fetch = importlib.import_module("imagine.media.fetch")
        except ImportError:
            raise _bad(field, "remote image URLs are not fetched by this server yet; send the image as a "
                              "data URL (data:image/png;base64,...)") from None
        try:
            data = fetch.fetch_url(url, limits=limits)
        except ImagineError as exc:
            raise _bad(field, str(exc)) from None
        return _media(Image, data if isinstance(data, bytes) else getattr(data, "data", data), None, field, limits)
    raise _bad(field, "must be a data: URL or an http(s) URL")


def _part(part: ContentPart, field: str, limits: Limits) -> Part:
    if part.type == "text":
        if part.text is None:
            raise _bad(f"{field}.text", "is required for a text part")
        return Text(part.text)
    if part.type == "image_url":
        if part.image_url is None:
            raise _bad(f"{field}.image_url", "is required for an image_url part")
        return _image(part.image_url.url, f"{field}.image_url.url", limits)
    if part.type == "input_audio":
        if part.input_audio is None:
            raise _bad(f"{field}.input_audio", "is required for an input_audio part")
        fmt = part.input_audio.format.lower()
        data = _b64(part.input_audio.data, f"{field}.input_audio.data")
        return _media(Audio, data, _AUDIO_MIME.get(fmt), f"{field}.input_audio.data", limits)
    raise _bad(f"{field}.type", f"content parts of type {part.type!r} are not supported "
                                "(text, image_url, input_audio are)")


def _content(message: ChatMessage, field: str, limits: Limits) -> list[Part]:
    if message.content is None:
        return []
    if isinstance(message.content, str):
        return [Text(message.content)] if message.content else []
    return [_part(p, f"{field}.content[{j}]", limits) for j, p in enumerate(message.content)]


def _tool_uses(message: ChatMessage, field: str) -> list[Part]:
    uses: list[Part] = []
    for j, call in enumerate(message.tool_calls or []):
        where = f"{field}.tool_calls[{j}].function.arguments"
        try:
            arguments: Any = json.loads(call.function.arguments or "{}")
        except json.JSONDecodeError as exc:
            raise _bad(where, f"is not valid JSON ({exc.msg})") from None
        if not isinstance(arguments, dict):
            raise _bad(where, "must be a JSON object")
        uses.append(ToolUse(call.id, call.function.name, arguments))
    return uses


def to_messages(messages: list[ChatMessage], limits: Limits) -> list[Message]:
    out: list[Message] = []
    for i, message in enumerate(messages):
        field = f"messages[{i}]"
        role = message.role
        if role in ("system", "developer"):
            out.append(Message("system", _content(message, field, limits)))
        elif role == "user":
            parts = _content(message, field, limits)
            if not parts:
                raise _bad(f"{field}.content", "a user message needs some content")
            out.append(Message("user", parts))
        elif role == "assistant":
            parts = [p for p in _content(message, field, limits) if isinstance(p, Text)] + _tool_uses(message, field)
            out.append(Message("assistant", parts))
        elif role == "tool":
            if not message.tool_call_id:
                raise _bad(f"{field}.tool_call_id", "is required for a tool message")
            text = "\n".join(p.text for p in _content(message, field, limits) if isinstance(p, Text))
            out.append(Message.tool_result(message.tool_call_id, text, name=message.name))
        else:
            raise _bad(f"{field}.role", "the 'function' role is deprecated; send tool messages instead")
    return out
