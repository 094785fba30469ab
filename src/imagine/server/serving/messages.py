"""OpenAI chat messages -> imagine Messages: text, images (data URLs, or remote URLs through the
SSRF-safe fetcher), input audio, assistant tool calls and tool results.

Every refusal names the field (`messages[2].content[1].image_url.url`), so the caller knows which part
of a long request to fix. Conversion is async because a remote image is downloaded here: the fetch runs
in a worker thread (`afetch_url`), so one slow URL never stalls the server's event loop. The pieces
(`bad`, `b64`, `media`, `image`, `tool_arguments`) are shared with the Responses API's input items."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from ...errors import ImagineError, LimitExceeded
from ...media.fetch import afetch_url
from ...parts import Audio, Image, Limits, Message, Part, Text, ToolUse
from ..errors import ApiError
from ..protocol.chat import ChatMessage, ContentPart

__all__ = ["AUDIO_MIME", "b64", "bad", "image", "media", "to_messages", "tool_arguments"]

AUDIO_MIME = {"wav": "audio/wav", "mp3": "audio/mpeg", "flac": "audio/flac", "ogg": "audio/ogg",
               "webm": "audio/webm", "m4a": "audio/mp4"}


def bad(field: str, message: str) -> ApiError:
    return ApiError(400, f"{field}: {message}", param=field, code="invalid_value")


def b64(data: str, field: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise bad(field, "is not valid base64") from None


def media(cls: type[Image] | type[Audio], data: bytes, mime: str | None, field: str, limits: Limits) -> Part:
    try:
        return cls(data, mime=mime, limits=limits)
    except ImagineError as exc:  # LimitExceeded stays a 413, naming the field
        if isinstance(exc, LimitExceeded):
            raise ApiError(413, f"{field}: {exc}", param=field, code="request_too_large") from None
        raise bad(field, str(exc)) from None


async def image(url: str, field: str, limits: Limits, allow_private: bool = False) -> Part:
    """An image from a data URL, or from a remote http(s) URL through the SSRF-safe fetcher. A refused or
    failed fetch is the caller's 400 naming the field: the URL is theirs, not the server's problem."""
    if url.startswith("data:"):
        head, sep, payload = url.partition(",")
        if not sep or not head.endswith(";base64"):
            raise bad(field, "a data URL must look like data:image/png;base64,...")
        mime = head[5:-7] or None
        if mime and not mime.startswith("image/"):
            raise bad(field, f"is a {mime} data URL, not an image")
        return media(Image, b64(payload, field), None, field, limits)
    if url[:8].lower().startswith(("http://", "https://")):
        try:
            fetched = await afetch_url(url, limits=limits, allow_private=allow_private)
        except LimitExceeded as exc:
            raise ApiError(413, f"{field}: {exc}", param=field, code="request_too_large") from None
        except ImagineError as exc:
            raise bad(field, str(exc)) from None
        return media(Image, fetched.data, None, field, limits)
    raise bad(field, "must be a data: URL or an http(s) URL")


async def _part(part: ContentPart, field: str, limits: Limits, allow_private: bool) -> Part:
    if part.type == "text":
        if part.text is None:
            raise bad(f"{field}.text", "is required for a text part")
        return Text(part.text)
    if part.type == "image_url":
        if part.image_url is None:
            raise bad(f"{field}.image_url", "is required for an image_url part")
        return await image(part.image_url.url, f"{field}.image_url.url", limits, allow_private)
    if part.type == "input_audio":
        if part.input_audio is None:
            raise bad(f"{field}.input_audio", "is required for an input_audio part")
        fmt = part.input_audio.format.lower()
        data = b64(part.input_audio.data, f"{field}.input_audio.data")
        return media(Audio, data, AUDIO_MIME.get(fmt), f"{field}.input_audio.data", limits)
    raise bad(f"{field}.type", f"content parts of type {part.type!r} are not supported "
                                "(text, image_url, input_audio are)")


async def _content(message: ChatMessage, field: str, limits: Limits, allow_private: bool) -> list[Part]:
    if message.content is None:
        return []
    if isinstance(message.content, str):
        return [Text(message.content)] if message.content else []
    return [await _part(p, f"{field}.content[{j}]", limits, allow_private) for j, p in enumerate(message.content)]


def tool_arguments(text: str | None, where: str) -> dict[str, Any]:
    """A tool call's arguments as the client sent them (a JSON object in a string), parsed or refused."""
    try:
        arguments: Any = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise bad(where, f"is not valid JSON ({exc.msg})") from None
    if not isinstance(arguments, dict):
        raise bad(where, "must be a JSON object")
    return arguments


def _tool_uses(message: ChatMessage, field: str) -> list[Part]:
    uses: list[Part] = []
    for j, call in enumerate(message.tool_calls or []):
        arguments = tool_arguments(call.function.arguments, f"{field}.tool_calls[{j}].function.arguments")
        uses.append(ToolUse(call.id, call.function.name, arguments))
    return uses


async def to_messages(messages: list[ChatMessage], limits: Limits, allow_private: bool = False) -> list[Message]:
    """The request's messages as imagine Messages; `allow_private` is the Client's allow_private_urls
    (off by default: remote images may not point into the server's own network)."""
    out: list[Message] = []
    for i, message in enumerate(messages):
        field = f"messages[{i}]"
        role = message.role
        if role in ("system", "developer"):
            out.append(Message("system", await _content(message, field, limits, allow_private)))
        elif role == "user":
            parts = await _content(message, field, limits, allow_private)
            if not parts:
                raise bad(f"{field}.content", "a user message needs some content")
            out.append(Message("user", parts))
        elif role == "assistant":
            parts = [p for p in await _content(message, field, limits, allow_private) if isinstance(p, Text)] + _tool_uses(message, field)
            out.append(Message("assistant", parts))
        elif role == "tool":
            if not message.tool_call_id:
                raise bad(f"{field}.tool_call_id", "is required for a tool message")
            text = "\n".join(p.text for p in await _content(message, field, limits, allow_private) if isinstance(p, Text))
            out.append(Message.tool_result(message.tool_call_id, text, name=message.name))
        else:
            raise bad(f"{field}.role", "the 'function' role is deprecated; send tool messages instead")
    return out
