"""The one thin sync wrapper: a background event loop that sync callers drive async code on.

imagine's core is async. Rather than a parallel sync class hierarchy, sync calls submit coroutines to a
single daemon-thread loop. Engines and their loaded models therefore live on one loop per process.
"""

from __future__ import annotations

import asyncio
import time
import threading
from typing import Any, AsyncIterator, Coroutine, Iterator, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None


def bridge_loop() -> asyncio.AbstractEventLoop:
    """Start (once) and return the background loop."""
    global _loop, _thread
    with _lock:
        if _loop is None or not _loop.is_running():
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            _thread = threading.Thread(target=run, name="imagine-loop", daemon=True)
            _thread.start()
            ready.wait()
            _loop = loop
        return _loop


def on_bridge_loop() -> bool:
    """True when the running loop is imagine's own background loop (which lives as long as the process)."""
    try:
        return asyncio.get_running_loop() is _loop
    except RuntimeError:
        return False


def _check_not_on_loop() -> None:
    if _thread is not None and threading.current_thread() is _thread:
        raise RuntimeError("sync imagine API called from inside the imagine loop; use the async API (await/async for)")


async def _tracked(coro: Coroutine[Any, Any, T], holder: list[asyncio.Task[Any]]) -> T:
    task = asyncio.current_task()
    assert task is not None
    holder.append(task)
    return await coro


def _wait_cancelled(holder: list[asyncio.Task[Any]], loop: asyncio.AbstractEventLoop) -> None:
    """Cancel the task and wait until its clean-up (stop generation, write the log) has finished,
    so that a Ctrl-C never exits the process with that work half done."""

    async def cancel() -> None:
        if holder and not holder[0].done():
            holder[0].cancel()
            await asyncio.wait([holder[0]])

    future = asyncio.run_coroutine_threadsafe(cancel(), loop)
    deadline = time.monotonic() + 60
    while True:  # a second Ctrl-C (or SIGTERM) while the clean-up runs must not lose the log row
        try:
            future.result(timeout=max(0.0, deadline - time.monotonic()))
            return
        except KeyboardInterrupt:
            if time.monotonic() >= deadline:
                return
        except Exception:  # best effort: the interrupt itself is what matters to the caller
            return


def _run(coro: Coroutine[Any, Any, T], loop: asyncio.AbstractEventLoop) -> T:
    holder: list[asyncio.Task[Any]] = []
    future = asyncio.run_coroutine_threadsafe(_tracked(coro, holder), loop)
    try:
        return future.result()
    except KeyboardInterrupt:
        _wait_cancelled(holder, loop)
        raise


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on the bridge loop and wait for its result; Ctrl-C cancels it cleanly."""
    _check_not_on_loop()
    return _run(coro, bridge_loop())


def iterate_sync(agen: AsyncIterator[T]) -> Iterator[T]:
    """Iterate an async iterator from sync code. Leaving early (break, Ctrl-C) closes it on the loop."""
    _check_not_on_loop()
    loop = bridge_loop()
    finished = False
    try:
        while True:
            try:
                item: T = _run(agen.__anext__(), loop)  # type: ignore[arg-type]
            except StopAsyncIteration:
                finished = True
                return
            yield item
    finally:
        if not finished:
            aclose = getattr(agen, "aclose", None)
            if aclose is not None:
                try:
                    asyncio.run_coroutine_threadsafe(aclose(), loop).result(timeout=60)
                except Exception:  # closing is best-effort; the original exception matters more
                    pass
