"""The one thin sync wrapper: a background event loop that sync callers drive async code on.

imagine's core is async. Rather than a parallel sync class hierarchy, sync calls submit coroutines to a
single daemon-thread loop. Engines and their loaded models therefore live on one loop per process.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
import threading
import weakref
from contextlib import contextmanager
from typing import Any, AsyncIterator, Coroutine, Generator, Iterator, TypeVar

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

    _wait_through_interrupts(asyncio.run_coroutine_threadsafe(_cancel_tracked(holder), loop))


async def _cancel_tracked(holder: list[asyncio.Task[Any]]) -> None:
    """Cancel the tracked tasks still running and wait for them. This runs on the loop after every task
    scheduled before it has started (callbacks run in order), so a task the interrupt caught between being
    scheduled and starting is in `holder` by now."""
    pending = [task for task in holder if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)


def _wait_through_interrupts(future: "concurrent.futures.Future[Any]", seconds: float = 60.0) -> None:
    """Wait for clean-up running on the loop (stop generating, write the log row). A second Ctrl-C (or
    SIGTERM) while it runs must not cut it short: the row would be lost, or the database left half made.
    The exception already on its way out is what the caller sees."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            future.result(timeout=max(0.0, deadline - time.monotonic()))
            return
        except KeyboardInterrupt:
            if time.monotonic() >= deadline:
                return
        except Exception:  # best effort: the interrupt itself is what matters to the caller
            return


_cleaning = 0  # clean-ups after an interrupt now running (the main thread's, where signals land)


@contextmanager
def _cleaning_up() -> Iterator[None]:
    global _cleaning
    _cleaning += 1
    try:
        yield
    finally:
        _cleaning -= 1


_last_interrupt = -1e9
REPEAT_S = 1.0  # a repeat this soon is the same impatient keypress: it must not cut the first one's clean-up


def interrupt_handler(signum: int, frame: Any) -> None:
    """SIGINT and SIGTERM for the CLI: a KeyboardInterrupt, except while the clean-up of an earlier one runs
    (stopping the engine, writing the log row) or is about to (the first is still unwinding to it): a
    second quick Ctrl-C must not cut it short and lose the partial answer."""
    global _last_interrupt
    now = time.monotonic()
    if _cleaning or now - _last_interrupt < REPEAT_S:
        return
    _last_interrupt = now
    raise KeyboardInterrupt


def _run(coro: Coroutine[Any, Any, T], loop: asyncio.AbstractEventLoop,
         holder: list[asyncio.Task[Any]] | None = None) -> T:
    holder = [] if holder is None else holder
    try:  # an interrupt may land inside the scheduling call itself: the task may exist without a future
        return asyncio.run_coroutine_threadsafe(_tracked(coro, holder), loop).result()
    except KeyboardInterrupt:
        with _cleaning_up():
            _wait_cancelled(holder, loop)
        raise


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on the bridge loop and wait for its result; Ctrl-C cancels it cleanly."""
    _check_not_on_loop()
    return _run(coro, bridge_loop())


_open_streams: "weakref.WeakSet[Generator[Any, None, None]]" = weakref.WeakSet()


def iterate_sync(agen: AsyncIterator[T]) -> Iterator[T]:
    """Iterate an async iterator from sync code. Leaving early (break, Ctrl-C) closes it on the loop."""
    stream = _iterate(agen)
    _open_streams.add(stream)
    return stream


def close_open_streams() -> None:
    """Close every stream a sync caller left suspended. A Ctrl-C that lands between two events unwinds
    past the loop holding the stream, and a traceback keeps it alive: closed only at interpreter shutdown,
    its clean-up (and the log row of the partial answer) could be lost. The CLI calls this before it exits."""
    for stream in list(_open_streams):
        stream.close()


def _iterate(agen: AsyncIterator[T]) -> Generator[T, None, None]:
    _check_not_on_loop()
    loop = bridge_loop()
    finished = False
    holder: list[asyncio.Task[Any]] = []  # the __anext__ task in flight, if an interrupt left one
    try:
        while True:
            try:
                item: T = _run(agen.__anext__(), loop, holder)  # type: ignore[arg-type]
            except StopAsyncIteration:
                finished = True
                return
            holder.clear()
            yield item
    finally:
        if not finished:  # best-effort, through further interrupts: the original exception matters more
            with _cleaning_up():
                _wait_through_interrupts(asyncio.run_coroutine_threadsafe(_close(agen, holder), loop))


async def _close(agen: AsyncIterator[Any], holder: list[asyncio.Task[Any]]) -> None:
    """Stop a step still running (an async generator cannot be closed while it runs), then close it."""
    await _cancel_tracked(holder)
    aclose = getattr(agen, "aclose", None)
    if aclose is not None:
        await aclose()
