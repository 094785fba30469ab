"""Blocking model code in a worker thread, streamed on the event loop as it produces.

Local engines (llama.cpp, faster-whisper, torch models) compute synchronously. Each runs its work in a
thread and hands pieces to the loop, so streaming never blocks other requests. Leaving the stream
early (the caller stopped reading, or cancelled) sets `stop`, which the work checks between pieces,
and the stream waits for the thread to finish before it closes, so a model is never used by two
requests at once through an abandoned thread.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Generic, TypeVar

__all__ = ["Finished", "stream_from_thread"]

R = TypeVar("R")


@dataclass(frozen=True)
class Finished(Generic[R]):
    """The last item of the stream: what the work returned."""
    value: R


Emit = Callable[[Any], None]


async def stream_from_thread(work: Callable[[Emit, threading.Event], Any]) -> AsyncIterator[Any]:
    """Run `work(emit, stop)` in a worker thread. Yields each `emit(item)` in order, then `Finished(result)`.
    An exception raised by the work is raised here, on the loop side, unchanged."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    stop = threading.Event()

    def emit(item: Any) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, ("item", item))

    def run() -> None:
        try:
            result = work(emit, stop)
        except BaseException as exc:  # handed to the loop side, which raises it
            loop.call_soon_threadsafe(queue.put_nowait, ("error", exc))
        else:
            loop.call_soon_threadsafe(queue.put_nowait, ("end", result))

    worker = loop.run_in_executor(None, run)
    try:
        while True:
            kind, value = await queue.get()
            if kind == "item":
                yield value
            elif kind == "error":
                raise value
            else:
                yield Finished(value)
                return
    finally:
        stop.set()
        await asyncio.shield(worker)
