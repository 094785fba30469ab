"""Parts: immutable media values, and `Message`, the multimodal unit of conversation.

A part is built from a str, bytes or a path; its media type is sniffed from the content (never the file
extension), its sha256 names it in the log and the blob store, and decoding happens only when an engine
asks for pixels or samples. Limits are checked before anything is decoded.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Iterable, Iterator, Literal, Sequence, Union

from .errors import InputError, LimitExceeded
from .media.limits import DEFAULT_LIMITS, Limits  # with the decoders in media/, and part of the parts' vocabulary
from .media.sniff import sniff_mime

__all__ = [
    "Audio",
    "Data",
    "Image",
    "Limits",
    "MediaPart",
    "Message",
    "Modality",
    "Part",
    "Segment",
    "Segments",
    "Text",
    "ToolResult",
    "ToolUse",
    "Vector",
    "Video",
    "load_part",
    "read_file",
    "sniff_mime",
    "utf8_text",
]


class Modality(StrEnum):
    """What a part is; engines declare the modalities they take and give."""

    TEXT = "text"
    IMAGE = "image"
    AUDIO = "audio"
    VIDEO = "video"
    VECTOR = "vector"
    SEGMENTS = "segments"
    DATA = "data"


# --- parts ---------------------------------------------------------------------------------------


class Part:
    """Base of every part. Immutable; equal when kind and content hash are equal."""

    modality: ClassVar[Modality]

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def content_bytes(self) -> bytes:
        """The bytes the hash covers and the blob store keeps."""
        raise NotImplementedError

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.content_bytes()).hexdigest()

    @property
    def mime(self) -> str:
        raise NotImplementedError

    def to_record(self) -> dict[str, Any]:
        """A JSON-able description for logs; media bodies live in the blob store under `sha256`."""
        return {"kind": self.modality.value, "mime": self.mime, "sha256": self.sha256,
                "size": len(self.content_bytes())}

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.sha256 == self.sha256  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.sha256))


class Text(Part):
    """A run of text."""

    modality = Modality.TEXT

    def __init__(self, text: str) -> None:
        if not isinstance(text, str):
            raise InputError(f"Text part needs a str, got {type(text).__name__}")
        object.__setattr__(self, "text", utf8_text(text, "the text"))

    text: str

    @property
    def mime(self) -> str:
        return "text/plain"

    def content_bytes(self) -> bytes:
        return self.text.encode("utf-8")

    def to_record(self) -> dict[str, Any]:
        return {**super().to_record(), "text": self.text}

    def __repr__(self) -> str:
        short = self.text if len(self.text) <= 40 else self.text[:37] + "..."
        return f"Text({short!r})"


class MediaPart(Part):
    """A part backed by encoded bytes (image, audio, video). Decoding is lazy and limit-checked."""

    family: ClassVar[str]  # the mime prefix this class accepts: "image", "audio", "video"

    data: bytes
    name: str | None

    def __init__(self, source: bytes | str | os.PathLike[str], *, mime: str | None = None,
                 name: str | None = None, limits: Limits = DEFAULT_LIMITS) -> None:
        if isinstance(source, (str, os.PathLike)):
            path = Path(source)
            data = read_file(path, limits)
            name = name or path.name
        elif isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
            if len(data) > limits.max_bytes:
                raise _too_big(len(data), limits, "input")
        else:
            raise InputError(f"{type(self).__name__} needs bytes or a file path, got {type(source).__name__}")
        if not data:
            raise InputError(f"{name or type(self).__name__} is empty (0 bytes)")
        sniffed = sniff_mime(data[:64])
        mime = mime or sniffed
        if mime is None or not mime.startswith(self.family + "/"):
            what = f"it looks like {sniffed}" if sniffed else "its content is not a format imagine recognises"
            raise InputError(f"{name or 'data'} is not a valid {self.family} ({what})",
                             hint=f"pass a {self.family} file such as {_EXAMPLES[self.family]}")
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "_mime", mime)
        object.__setattr__(self, "name", name)

    @property
    def mime(self) -> str:
        return self._mime  # type: ignore[attr-defined,no-any-return]

    def content_bytes(self) -> bytes:
        return self.data

    def to_record(self) -> dict[str, Any]:
        record = super().to_record()
        if self.name:
            record["name"] = self.name
        return record

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name or self.sha256[:12]!r}, {self.mime}, {len(self.data)} bytes)"


_EXAMPLES = {"image": "PNG, JPEG, GIF, WebP", "audio": "WAV, FLAC, MP3, OGG", "video": "MP4, WebM, MOV"}


class Image(MediaPart):
    """An encoded image. `.pil()` decodes it (Pillow) after checking the pixel count."""

    modality = Modality.IMAGE
    family = "image"

    def pil(self, limits: Limits = DEFAULT_LIMITS, *, max_side: int | None = None, mode: str | None = None,
            upright: bool = False) -> Any:
        """The decoded PIL image. An engine that resizes anyway passes the longest side it uses as
        `max_side`: a bigger image comes back scaled down to it without ever being held at full size in
        more than one buffer (a JPEG is decoded at reduced scale). `mode` converts (alpha onto white when
        the mode has none) after scaling; `upright` applies the EXIF orientation."""
        from .media.image import decode_image

        return decode_image(self.data, limits, self.name or "image", max_side=max_side, mode=mode, upright=upright)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) read from the header, without decoding the pixels."""
        from .media.image import open_image

        return open_image(self.data, None, self.name or "image").size  # type: ignore[no-any-return]

    def validate(self) -> None:
        self.pil()


class Audio(MediaPart):
    """Encoded audio. `.samples(rate)` decodes (PyAV) to float32 mono at the rate an engine needs."""

    modality = Modality.AUDIO
    family = "audio"

    def samples(self, rate: int | None = 16000, *, mono: bool = True, limits: Limits = DEFAULT_LIMITS) -> tuple[Any, int]:
        """(float32 samples in [-1, 1], sample rate); limits are enforced while decoding."""
        from .media import decode_audio

        return decode_audio(self.data, rate=rate, mono=mono, limits=limits, name=self.name or "audio")

    def blocks(self, rate: int = 16000, block: int = 512_000, *, limits: Limits = DEFAULT_LIMITS) -> Iterator[Any]:
        """Mono float32 samples in blocks of `block` (the last shorter), decoded as they are read, so long
        recordings are handled in flat memory; limits are enforced while decoding."""
        from .media import iter_audio

        return iter_audio(self.data, rate=rate, block=block, limits=limits, name=self.name or "audio")

    @property
    def duration(self) -> float:
        samples, rate = self.samples(rate=None)
        return len(samples) / rate

    @classmethod
    def from_samples(cls, samples: Any, rate: int, *, name: str | None = None) -> "Audio":
        """A WAV part from float samples in [-1, 1]."""
        from .media import encode_wav

        return cls(encode_wav(samples, rate), mime="audio/wav", name=name)


class Video(MediaPart):
    """Encoded video. `.frames(every)` samples frames, `.audio()` extracts the sound track."""

    modality = Modality.VIDEO
    family = "video"

    def frames(self, every: float = 1.0, *, limits: Limits = DEFAULT_LIMITS) -> Iterator[tuple[float, Any]]:
        """(seconds, PIL image) pairs, one every `every` seconds."""
        from .media import iter_frames

        return iter_frames(self.data, every=every, limits=limits, name=self.name or "video")

    def info(self) -> Any:
        """Duration, frame rate, size and whether there is a sound track (a `media.VideoInfo`)."""
        from .media import video_info

        return video_info(self.data, name=self.name or "video")

    def audio(self, rate: int = 16000, *, limits: Limits = DEFAULT_LIMITS) -> "Audio | None":
        """The sound track as a WAV part, or None when the video is silent."""
        if not self.info().has_audio:
            return None
        samples, sr = self.samples(rate, limits=limits)
        return Audio.from_samples(samples, sr, name=f"{self.name or 'video'}.wav")

    def samples(self, rate: int | None = 16000, *, limits: Limits = DEFAULT_LIMITS) -> tuple[Any, int]:
        from .media import decode_audio

        return decode_audio(self.data, rate=rate, limits=limits, name=self.name or "video")

    def blocks(self, rate: int = 16000, block: int = 512_000, *, limits: Limits = DEFAULT_LIMITS) -> Iterator[Any]:
        """The sound track as `Audio.blocks` gives it."""
        from .media import iter_audio

        return iter_audio(self.data, rate=rate, block=block, limits=limits, name=self.name or "video")


class Vector(Part):
    """An embedding: a fixed tuple of floats."""

    modality = Modality.VECTOR

    values: tuple[float, ...]

    def __init__(self, values: Iterable[float]) -> None:
        vals = tuple(float(v) for v in values)
        if not vals or not all(math.isfinite(v) for v in vals):
            raise InputError("Vector needs at least one finite number")
        object.__setattr__(self, "values", vals)

    @property
    def mime(self) -> str:
        return "application/x-imagine-vector+json"

    def content_bytes(self) -> bytes:
        # written once: the hash, the log record and the blob each ask for it (384 floats as JSON ~60 us)
        cached = self.__dict__.get("_content")
        if cached is None:
            cached = self.__dict__["_content"] = json.dumps(self.values).encode()
        return cached  # type: ignore[no-any-return]

    def __len__(self) -> int:
        return len(self.values)

    def __repr__(self) -> str:
        return f"Vector(dim={len(self.values)})"


@dataclass(frozen=True)
class Segment:
    """A span of time (seconds) carrying text and optional metadata."""

    start: float
    end: float
    text: str = ""
    meta: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


class Segments(Part):
    """Timestamped spans: transcripts, speech regions, video timelines."""

    modality = Modality.SEGMENTS

    items: tuple[Segment, ...]

    def __init__(self, items: Iterable[Segment]) -> None:
        object.__setattr__(self, "items", tuple(items))

    @property
    def mime(self) -> str:
        return "application/x-imagine-segments+json"

    def content_bytes(self) -> bytes:
        rows = [{"start": s.start, "end": s.end, "text": s.text, "meta": s.meta} for s in self.items]
        return json.dumps(rows, sort_keys=True, default=str).encode()

    def __repr__(self) -> str:
        return f"Segments({len(self.items)} items)"


class Data(Part):
    """A JSON value: structured output, tool results, metadata."""

    modality = Modality.DATA

    value: Any

    def __init__(self, value: Any) -> None:
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise InputError(f"Data part must be JSON-serialisable: {exc}") from None
        object.__setattr__(self, "value", value)

    @property
    def mime(self) -> str:
        return "application/json"

    def content_bytes(self) -> bytes:
        return json.dumps(self.value, sort_keys=True).encode()

    def to_record(self) -> dict[str, Any]:
        return {**super().to_record(), "value": self.value}

    def __repr__(self) -> str:
        return f"Data({self.value!r:.40})"


class ToolUse(Part):
    """The assistant asked for a tool: a `ToolCall` event kept in the conversation, so the next request
    carries the call its result answers. Engines with tool support send it in their API's own form."""

    modality = Modality.DATA

    id: str
    name: str
    arguments: dict[str, Any]

    def __init__(self, id: str, name: str, arguments: dict[str, Any] | None = None) -> None:
        if not isinstance(id, str) or not id or not isinstance(name, str) or not name:
            raise InputError("ToolUse needs a call id and a tool name (non-empty strings)")
        arguments = {} if arguments is None else arguments
        if not isinstance(arguments, dict):
            raise InputError(f"ToolUse arguments must be a dict, got {type(arguments).__name__}")
        object.__setattr__(self, "id", id)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "arguments", _json_copy(arguments, "ToolUse arguments"))

    @property
    def mime(self) -> str:
        return "application/x-imagine-tool-use+json"

    def content_bytes(self) -> bytes:
        return json.dumps({"id": self.id, "name": self.name, "arguments": self.arguments}, sort_keys=True).encode()

    def to_record(self) -> dict[str, Any]:
        return {**super().to_record(), "type": "tool_use", "id": self.id, "name": self.name,
                "arguments": self.arguments}

    def __repr__(self) -> str:
        return f"ToolUse({self.id!r}, {self.name!r}, {self.arguments!r:.40})"


class ToolResult(Part):
    """What a tool returned for the call `call_id` (a str, or any JSON value); `is_error` when it failed.
    Travels in a message of role "tool" (`Message.tool_result`)."""

    modality = Modality.DATA

    call_id: str
    name: str | None
    content: Any
    is_error: bool

    def __init__(self, call_id: str, content: Any, *, name: str | None = None, is_error: bool = False) -> None:
        if not isinstance(call_id, str) or not call_id:
            raise InputError("ToolResult needs the id of the call it answers (a non-empty string)")
        if name is not None and not isinstance(name, str):
            raise InputError(f"ToolResult name must be a str, got {type(name).__name__}")
        object.__setattr__(self, "call_id", call_id)
        object.__setattr__(self, "name", name or None)
        object.__setattr__(self, "content", _json_copy(content, "ToolResult content"))
        object.__setattr__(self, "is_error", bool(is_error))

    @property
    def text(self) -> str:
        """The content as text: a str as it is, any other value as JSON."""
        return self.content if isinstance(self.content, str) else json.dumps(self.content)

    @property
    def mime(self) -> str:
        return "application/x-imagine-tool-result+json"

    def content_bytes(self) -> bytes:
        return json.dumps({"call_id": self.call_id, "name": self.name, "content": self.content,
                           "is_error": self.is_error}, sort_keys=True).encode()

    def to_record(self) -> dict[str, Any]:
        return {**super().to_record(), "type": "tool_result", "call_id": self.call_id, "name": self.name,
                "content": self.content, "is_error": self.is_error}

    def __repr__(self) -> str:
        return f"ToolResult({self.call_id!r}, {self.text!r:.40}{', error' if self.is_error else ''})"


def _json_copy(value: Any, what: str) -> Any:
    """A private copy of a JSON value (so the part cannot change under its hash), or an InputError."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what} must be JSON-serialisable: {exc}") from None


TOOL_PARTS = (ToolUse, ToolResult)


# --- loading from files --------------------------------------------------------------------------


def _too_big(size: int, limits: Limits, what: str) -> LimitExceeded:
    return LimitExceeded(f"{what} is {size:,} bytes, over the limit of {limits.max_bytes:,}",
                         hint="raise it with IMAGINE_MAX_BYTES")


def utf8_text(raw: str | bytes, what: str = "the prompt") -> str:
    """The one rule for undecodable text: refuse it, naming the first bad byte and its offset.

    `raw` is bytes (stdin, a file) or a str that may carry the surrogates Python makes of undecodable
    command-line bytes; a str that is valid Unicode comes back as it is."""
    hint = "attach binary files with -a"
    if isinstance(raw, str):
        try:
            raw.encode("utf-8")
            return raw
        except UnicodeEncodeError:
            try:
                raw = raw.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError as exc:
                bad = ord(exc.object[exc.start])
                raise InputError(f"{what} is not valid UTF-8 text (a lone surrogate U+{bad:04X} at character "
                                 f"{exc.start})", hint=hint) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{what} is not valid UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})",
                         hint=hint) from None


def read_file(path: Path, limits: Limits) -> bytes:
    """A file's bytes under the input rules every reader shares: it exists, is a file, is not empty, and is
    within `limits.max_bytes` (else LimitExceeded naming the variable that raises it)."""
    if not path.exists():
        raise InputError(f"file not found: {path}", hint="check the path")
    if path.is_dir():
        raise InputError(f"{path} is a folder, not a file")
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise _too_big(size, limits, str(path))
    if size == 0 and path.is_file():
        raise InputError(f"{path} is empty (0 bytes)", hint="attach a file with content")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None


_FAMILIES: dict[str, type[MediaPart]] = {"image": Image, "audio": Audio, "video": Video}


def load_part(source: str | bytes | os.PathLike[str], *, limits: Limits = DEFAULT_LIMITS) -> Part:
    """Build the right part for a file, an http(s) URL (fetched through media/fetch.py) or bytes by
    sniffing its content.

    UTF-8 text that is no known media format becomes a Text part, so `-a notes.md` works too.
    """
    if isinstance(source, str) and source[:8].lower().startswith(("http://", "https://")):
        from .media.fetch import fetch_url  # the one SSRF-safe fetcher, imported only when a URL comes

        fetched = fetch_url(source, limits=limits)
        data, name = fetched.data, fetched.final_url.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
        if not data:
            raise InputError(f"{source} is empty (0 bytes)")
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        data, name = read_file(path, limits), path.name
    else:
        data, name = bytes(source), None
        if len(data) > limits.max_bytes:
            raise _too_big(len(data), limits, "input")
        if not data:
            raise InputError("the data is empty (0 bytes)")
    mime = sniff_mime(data[:64])
    if mime is not None and mime.split("/")[0] in _FAMILIES:
        part = _FAMILIES[mime.split("/")[0]](data, mime=mime, name=name, limits=limits)
        if isinstance(part, Image):
            part.validate()
        return part
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        what = f"{mime} files are not supported as input" if mime else "unrecognised binary format"
        raise InputError(f"cannot use {name or 'data'} as input: {what}",
                         hint="attach an image (PNG/JPEG/GIF/WebP), audio (WAV/FLAC/MP3/OGG), "
                              "video (MP4/WebM) or UTF-8 text file") from None
    if "\x00" in text:
        raise InputError(f"cannot use {name or 'data'} as input: binary data, not text")
    return Text(text)


# --- messages ------------------------------------------------------------------------------------

Role = Literal["system", "user", "assistant", "tool"]
PartLike = Union[Part, str]


@dataclass(frozen=True)
class Message:
    """A role plus an ordered list of parts: interleaved and multimodal."""

    role: Role
    parts: tuple[Part, ...]

    def __init__(self, role: Role, parts: Sequence[PartLike] | PartLike) -> None:
        if role not in ("system", "user", "assistant", "tool"):
            raise InputError(f"message role must be system, user, assistant or tool, not {role!r}")
        if isinstance(parts, (Part, str)):
            parts = [parts]
        built = tuple(Text(p) if isinstance(p, str) else p for p in parts)
        for p in built:
            if not isinstance(p, Part):
                raise InputError(f"message parts must be Part or str, got {type(p).__name__}")
        object.__setattr__(self, "role", role)
        object.__setattr__(self, "parts", built)

    @classmethod
    def user(cls, *parts: PartLike) -> "Message":
        return cls("user", parts)

    @classmethod
    def system(cls, *parts: PartLike) -> "Message":
        return cls("system", parts)

    @classmethod
    def assistant(cls, *parts: PartLike) -> "Message":
        return cls("assistant", parts)

    @classmethod
    def tool_result(cls, call_id: str, content: Any, name: str | None = None, is_error: bool = False) -> "Message":
        """A "tool" message answering the tool call `call_id` (its `ToolCall.id`) with `content`."""
        return cls("tool", [ToolResult(call_id, content, name=name, is_error=is_error)])

    @property
    def text(self) -> str:
        """The text parts joined; what a text-only engine sees."""
        return "\n".join(p.text for p in self.parts if isinstance(p, Text))

    @property
    def tool_uses(self) -> list[ToolUse]:
        return [p for p in self.parts if isinstance(p, ToolUse)]

    @property
    def tool_results(self) -> list[ToolResult]:
        return [p for p in self.parts if isinstance(p, ToolResult)]

    @property
    def modalities(self) -> set[Modality]:
        """What an engine must read to take this message. Tool calls and results count as text: engines
        with tool support send them natively, every other text engine reads them as text."""
        return {Modality.TEXT if isinstance(p, TOOL_PARTS) else p.modality for p in self.parts}

    def to_record(self) -> dict[str, Any]:
        return {"role": self.role, "parts": [p.to_record() for p in self.parts]}
