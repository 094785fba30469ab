"""Events: the one streaming currency between engines and everything above them.

The set is small and closed on purpose: every consumer (CLI, server, studio, flows, the log) handles
exactly these nine types. Errors are exceptions inside imagine; `Error` is the one in-band form, for the
edges that must report a failure inside a stream (server-sent events, flows).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

from .parts import Part

__all__ = ["PCM_MIME", "Done", "Error", "Event", "PartDelta", "PartOut", "Progress", "Restart", "TextDelta",
           "ToolCall", "Usage", "from_pcm16", "pcm_delta", "to_pcm16"]

PCM_MIME = "audio/pcm"  # raw 16-bit little-endian mono samples; a PartDelta's meta carries the rate


@dataclass(frozen=True)
class TextDelta:
    """A piece of generated text; the deltas of one response concatenate to its text."""

    text: str


@dataclass(frozen=True)
class PartDelta:
    """A chunk of a media part still being made: audio for a voice reply as it is synthesised, a
    progressive image. Chunks with the same `index` belong to one part; the finished part still arrives
    as a `PartOut`, so a consumer that does not stream media can ignore these."""

    data: bytes
    mime: str
    index: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    def samples(self) -> tuple[Any, int]:
        """(float32 samples in [-1, 1], rate) of a `PCM_MIME` chunk."""
        import numpy as np

        if self.mime != PCM_MIME:
            raise ValueError(f"a {self.mime} chunk is not raw PCM")
        return from_pcm16(self.data), int(self.meta["rate"])


def to_pcm16(samples: Any) -> bytes:
    """Float samples in [-1, 1] as 16-bit little-endian PCM."""
    import numpy as np

    return np.round(np.clip(np.asarray(samples, np.float32), -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def from_pcm16(data: bytes) -> Any:
    """16-bit little-endian PCM as float32 samples in [-1, 1]; a trailing odd byte is dropped."""
    import numpy as np

    return np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.float32) / 32767.0


def pcm_delta(samples: Any, rate: int, index: int = 0, **meta: Any) -> PartDelta:
    """Float samples in [-1, 1] as a chunk of 16-bit PCM: how speech engines stream audio as it is made."""
    return PartDelta(to_pcm16(samples), PCM_MIME, index, {"rate": int(rate), **meta})


@dataclass(frozen=True)
class Restart:
    """The answer starts over (the router fell back to another engine mid-stream): consumers drop the
    text and parts received so far; usage keeps adding up (the failed try was spent)."""

    reason: str = ""


@dataclass(frozen=True)
class PartOut:
    """A finished output part (image, audio, vector, segments, data)."""

    part: Part


@dataclass(frozen=True)
class Progress:
    """How far a long step has got: `done` of `total` (total None when unknown)."""

    done: float
    total: float | None = None
    label: str = ""


@dataclass(frozen=True)
class Usage:
    """Tokens (or other units) consumed; cost in US dollars when the engine knows it.

    A token count is None when it is unknown (a server that reports no usage): never a made-up zero,
    so costs and budgets stay honest. Adding usages adds the counts, and a sum with an unknown part is
    unknown (None): a partial count would understate what was spent. Costs add the same way except that
    an unknown cost beside a known one keeps the known part (None only when both are unknown)."""

    input_tokens: int | None = 0
    output_tokens: int | None = 0
    cost: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __add__(self, other: "Usage") -> "Usage":
        cost = None if self.cost is None and other.cost is None else (self.cost or 0.0) + (other.cost or 0.0)
        return Usage(_plus(self.input_tokens, other.input_tokens), _plus(self.output_tokens, other.output_tokens),
                     cost, {**self.extra, **other.extra})


def _plus(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else a + b


@dataclass(frozen=True)
class ToolCall:
    """The model asks the caller to run a tool with JSON arguments."""

    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Error:
    """The engine failed; `kind` is the ImagineError class name to re-raise on the consumer side."""

    message: str
    kind: str = "UpstreamError"
    hint: str | None = None


@dataclass(frozen=True)
class Done:
    """The stream ended normally; `finish_reason` is e.g. "stop", "length" or "cancelled"."""

    finish_reason: str = "stop"


Event = Union[TextDelta, PartDelta, PartOut, Progress, Restart, Usage, ToolCall, Error, Done]
