"""Drive a Response on imagine's loop from the server's loop.

Engines and their connection pools live on imagine's background loop (`_bridge`); the server's loop is
uvicorn's. Each event crosses once (one thread hop per event); when the server runs on imagine's own
loop there is no hop at all. Cancelling the consumer (a client that hung up) cancels the generation on
imagine's loop, and the Response still logs what it made."""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

from ..._bridge import bridge_loop, on_bridge_loop
from ...engine import Response
from ...events import Event

__all__ = ["complete", "events"]


async def events(response: Response) -> AsyncIterator[Event]:
    """The response's events, streamed across loops."""
    agen = response.aevents()
    if on_bridge_loop():
        try:
            async for event in agen:
                yield event
        finally:
            await agen.aclose()  # type: ignore[attr-defined]
        return
    loop = bridge_loop()
    finished = False
    try:
        while True:
            try:
                event = await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(agen.__anext__(), loop))  # type: ignore[arg-type]
            except StopAsyncIteration:
                finished = True
                return
            yield event
    finally:
        if not finished:
            try:
                await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(agen.aclose(), loop))  # type: ignore[attr-defined]
            except BaseException:  # closing is best effort; the reason we are leaving matters more
                pass


async def complete(response: Response) -> Response:
    """Run the response to its end on imagine's loop."""
    async def run() -> Response:
        return await response

    if on_bridge_loop():
        return await run()
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(run(), bridge_loop()))
