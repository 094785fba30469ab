"""`mock`: the test seam for everything above the engine contract.

`engine.enqueue("answer")` (or a list of deltas, a list of events, or an exception) queues the next
response; with nothing queued it echoes the last user message, so the CLI can be exercised in a
subprocess without loading a model. Every request it receives is kept in `engine.requests`.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from dataclasses import replace
from typing import Any, AsyncIterator, Iterable, Iterator

from pydantic import BaseModel, ConfigDict, Field

from ..engine import Engine, Request
from ..events import Done, Event, TextDelta, Usage
from ..parts import Modality
from ._support.inputs import last_user
from ._support.tool_text import with_tools_as_text

__all__ = ["MockEngine", "MockOptions"]

Queued = str | list[str] | list[Event] | BaseException
LONG_ECHO = 1 << 20  # characters; a longer echo streams in deltas of about 4 KiB instead of word by word
_WORD = re.compile(r"\S+")


class MockOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    delay: float = Field(default=0.0, ge=0, le=10, description="seconds to wait before each delta")
    max_tokens: int | None = Field(default=None, gt=0, description="stop after this many deltas")
    seed: int | None = None


class MockEngine(Engine[MockOptions]):
    id = "mock"
    locality = "local"
    inputs = frozenset(Modality)
    outputs = frozenset({Modality.TEXT, Modality.DATA})
    features = frozenset({"stream", "json_schema", "seed", "stop"})
    default_model = "echo"
    description = "Test seam: replays enqueued responses, else echoes the prompt"
    auto_select = False

    Options = MockOptions

    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        super().__init__(settings)
        self._queue: deque[Queued] = deque()
        self.requests: list[Request[MockOptions]] = []

    def enqueue(self, response: Queued) -> None:
        """Queue the next response: a str, a list of text deltas or events, or an exception to raise."""
        self._queue.append(response)

    async def stream(self, request: Request[MockOptions]) -> AsyncIterator[Event]:
        self.requests.append(request)
        opts = request.options
        item: Queued
        if self._queue:
            item = self._queue.popleft()
        else:  # the echo reads tool calls and results as text, as a text-only model would
            message = last_user(replace(request, messages=with_tools_as_text(request.messages)))
            item = message.text if message else ""
        if isinstance(item, BaseException):
            raise item
        # a str: word-sized deltas that join back exactly
        pieces: Iterable[str | Event] = _pieces(item, 1 if len(item) <= LONG_ECHO else 4096) \
            if isinstance(item, str) else item
        produced = 0
        for piece in pieces:
            if opts.max_tokens is not None and produced >= opts.max_tokens:
                yield Usage(input_tokens=_count(request), output_tokens=produced)
                yield Done("length")
                return
            if opts.delay:
                await asyncio.sleep(opts.delay)
            else:
                await asyncio.sleep(0)  # a real suspension point, like a real engine
            if isinstance(piece, str):
                if piece:
                    yield TextDelta(piece)
                    produced += 1
            else:
                yield piece
                produced += isinstance(piece, TextDelta)
        yield Usage(input_tokens=_count(request), output_tokens=produced)
        yield Done("stop")


def _pieces(text: str, size: int) -> Iterator[str]:
    """Deltas of at least `size` characters (1: word by word), each up to and including a space, made one
    at a time: a long echo costs no list of millions of words."""
    start = 0
    while start < len(text):
        end = text.find(" ", start + size - 1)
        end = len(text) if end < 0 else end + 1
        yield text[start:end]
        start = end


def _count(request: Request) -> int:
    """Input "tokens": whitespace-separated words, counted without splitting the text into a list."""
    return sum(sum(1 for _ in _WORD.finditer(m.text)) for m in with_tools_as_text(request.messages))
