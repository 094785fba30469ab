"""Admission for local models: one generation at a time (or a few), a fair bounded queue, 429 when full.

A local model is one process's CPU or GPU: two generations at once only slow each other down, and a
thousand waiting requests are a thousand open sockets and prompts held in memory. So each local
engine:model is a *lane* with `slots` concurrent generations and at most `queue` waiting requests;
one more is refused at once with 429 and a Retry-After estimated from how long a generation has
been taking. Cloud engines have no lane: their own APIs rate-limit, and serialising them would cost
throughput for nothing.

Fairness: waiters are served first come, first served; when API keys are in use each key has its own
line and the lanes take one request from each key in turn, so one client's burst cannot starve
another's single request. A waiter whose client hangs up leaves the queue; a running request whose
client hangs up is cancelled (its generation stops) and its slot goes to the next in line.

Everything here runs on the server's event loop: no locks, a few dict and deque operations a request."""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Any, Awaitable, Callable, TypeVar

from fastapi import Request
from starlette.responses import StreamingResponse

from ..errors import ApiError

if TYPE_CHECKING:
    from ...engine import Response
    from ..metrics import Metrics
    from ..settings import ServerSettings

__all__ = ["Admission", "AdmittedStream", "ClientGone", "Gate", "Lane", "Ticket", "admit", "lane_ref", "until_disconnect"]

T = TypeVar("T")


class ClientGone(Exception):
    """The client hung up while its request waited or ran."""


def lane_ref(response: "Response") -> str | None:
    """The local in-process engine:model a response will run on first, or None for a cloud one or an
    API endpoint, local or not (no lane).

    The router's plan names the first candidate; a fallback to another engine after a failure runs
    inside the same slot, which at worst holds a local lane a little longer than needed."""
    if not getattr(response.engine, "in_process", True):
        return None  # an endpoint on loopback (vLLM, llama.cpp server) queues and batches by itself
    decision = getattr(response, "decision", None)
    plan = decision.plan if decision is not None else []
    if plan:
        first = plan[0]
        return first.ref if first.locality == "local" else None
    engine = response.engine
    if getattr(engine, "locality", "cloud") != "local":
        return None
    return response.model_ref or engine.id


class Lane:
    """One local model's slots and its waiting line (per key, taken in turn)."""

    def __init__(self, ref: str, slots: int, capacity: int) -> None:
        self.ref, self.slots, self.capacity = ref, slots, capacity
        self.running = 0
        self.waiting = 0
        self.lines: OrderedDict[str | None, deque[Ticket]] = OrderedDict()  # key -> its waiters, in turn order
        self.service_s = 2.0  # moving average of how long a slot is held; seeds Retry-After
        self.rejected = 0

    def retry_after(self) -> int:
        """Seconds until a slot is likely free for a new request: the line ahead of it, served `slots` at
        a time, each taking about `service_s`."""
        rounds = (self.waiting + self.running) / self.slots
        return max(1, min(300, math.ceil(rounds * self.service_s)))

    def _grant_next(self) -> None:
        while self.running < self.slots and self.lines:
            key, line = next(iter(self.lines.items()))
            ticket = line.popleft()
            if line:
                self.lines.move_to_end(key)  # round robin: this key goes to the back of the turn order
            else:
                del self.lines[key]
            self.waiting -= 1
            if ticket.future.done():  # cancelled while queued (already removed its count)
                continue
            self.running += 1
            ticket.granted_at = time.perf_counter()
            ticket.future.set_result(None)

    def _withdraw(self, ticket: "Ticket") -> None:
        line = self.lines.get(ticket.key)
        if line is not None and ticket in line:
            line.remove(ticket)
            self.waiting -= 1
            if not line:
                del self.lines[ticket.key]

    def _finish(self, ticket: "Ticket") -> None:
        self.running -= 1
        held = time.perf_counter() - ticket.granted_at
        self.service_s = 0.8 * self.service_s + 0.2 * held
        self._grant_next()


class Ticket:
    """A request's place in a lane: wait for it, then release it exactly once (idempotent)."""

    def __init__(self, lane: Lane, key: str | None, metrics: "Metrics | None") -> None:
        self.lane, self.key, self.metrics = lane, key, metrics
        self.future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.queued_at = time.perf_counter()
        self.granted_at = 0.0
        self.released = False

    @property
    def granted(self) -> bool:
        return self.future.done() and not self.future.cancelled()

    async def wait(self, request: Request | None = None) -> None:
        """Wait for a slot; raise ClientGone (and leave the line) if the client hangs up meanwhile."""
        if not self.future.done():
            try:
                if request is None:
                    await asyncio.shield(self.future)
                else:
                    watcher = asyncio.ensure_future(_disconnected(request))
                    try:
                        await asyncio.wait({self.future, watcher}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        watcher.cancel()
                    if not self.future.done():
                        raise ClientGone()
            except BaseException:
                self.release()
                raise
        if self.metrics is not None:
            self.metrics.observe_wait(self.lane.ref, time.perf_counter() - self.queued_at)

    def release(self) -> None:
        """Give the slot back (or leave the line): the next waiter starts at once."""
        if self.released:
            return
        self.released = True
        if self.granted:
            self.lane._finish(self)
        else:
            self.future.cancel()
            self.lane._withdraw(self)


class Admission:
    """The server's lanes, one per local engine:model, made on first use."""

    def __init__(self, settings: "ServerSettings", metrics: "Metrics | None" = None) -> None:
        self.settings, self.metrics = settings, metrics
        self.lanes: dict[str, Lane] = {}

    def lane(self, ref: str) -> Lane:
        lane = self.lanes.get(ref)
        if lane is None:
            engine_id = ref.partition(":")[0]
            slots = self.settings.engine_slots.get(engine_id, self.settings.local_slots)
            lane = self.lanes[ref] = Lane(ref, max(1, slots), self.settings.local_queue)
        return lane

    def enter(self, responses: "list[Response]", key: str | None = None) -> Ticket | None:
        """A ticket for the lane the request runs in (None for a cloud model: no lane). Granted at once
        when a slot is free; queued when not; ApiError 429 with Retry-After when the line is full."""
        ref = lane_ref(responses[0]) if responses else None
        if ref is None:
            return None
        lane = self.lane(ref)
        ticket = Ticket(lane, key, self.metrics)
        if lane.running < lane.slots and not lane.lines:
            lane.running += 1
            ticket.granted_at = time.perf_counter()
            ticket.future.set_result(None)
            return ticket
        if lane.waiting >= lane.capacity:
            lane.rejected += 1
            wait = lane.retry_after()
            if self.metrics is not None:
                self.metrics.rejected(ref)
            raise ApiError(429, f"{ref} is busy: {lane.running} running and {lane.waiting} waiting, the most this "
                                f"server queues (retry in about {wait} s, or raise --queue)",
                           type="rate_limit_error", code="queue_full", headers={"retry-after": str(wait)})
        lane.lines.setdefault(key, deque()).append(ticket)
        lane.waiting += 1
        return ticket

    def requeue(self, ticket: Ticket) -> Ticket:
        """Give `ticket`'s slot back and take a new place at the back of its key's line, for the next
        part of an admitted request (chat's next choice). Never refused: the request was admitted once,
        and a 429 halfway through an answer would throw away what it already made."""
        lane = ticket.lane
        ticket.release()
        again = Ticket(lane, ticket.key, self.metrics)
        if lane.running < lane.slots and not lane.lines:
            lane.running += 1
            again.granted_at = time.perf_counter()
            again.future.set_result(None)
        else:
            lane.lines.setdefault(ticket.key, deque()).append(again)
            lane.waiting += 1
        return again

    def depth(self) -> dict[str, tuple[int, int, int]]:
        """ref -> (waiting, running, rejected) for /metrics."""
        return {ref: (lane.waiting, lane.running, lane.rejected) for ref, lane in self.lanes.items()}


async def _disconnected(request: Request) -> None:
    """Return when the client hangs up. Only used once the body has been read: the next ASGI message
    is then the disconnect."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Run `work`; if the client hangs up first, cancel it (a local generation stops) and raise
    ClientGone. For answers that are not streamed, which Starlette would otherwise finish for nobody."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        try:
            await task
        except BaseException:
            pass
        raise ClientGone()
    return task.result()


class AdmittedStream(StreamingResponse):
    """A streamed answer that gives its slot back when the stream ends however it ends: finished, failed,
    or the client gone (Starlette then cancels the body, which closes the generation), and then calls
    `on_end` (token counters). Done around the whole response, so a body that never started still
    releases."""

    def __init__(self, content: Any, ticket: Ticket | None, on_end: Callable[[], None] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.ticket, self.on_end = ticket, on_end

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self.ticket is not None:
                self.ticket.release()
            if self.on_end is not None:
                self.on_end()


class Gate:
    """What a route holds for one request: its ticket (None for a cloud model) and the hooks that give
    the slot back and count tokens when the answer ends. A route uses it in three words:
    `await gate.first(...)` to start, `gate.stream(...)` or `await gate.complete(...)` to answer."""

    def __init__(self, request: Request, ticket: Ticket | None, responses: "list[Response]",
                 metrics: "Metrics | None", admission: Admission | None = None) -> None:
        self.request, self.ticket, self.responses, self.metrics = request, ticket, responses, metrics
        self.admission = admission

    async def next_turn(self) -> None:
        """Between the parts of one request (chat's n choices): give the slot back and wait for another
        turn behind whoever queued meanwhile. Each choice is a whole generation, so n = 8 holding the
        model for eight generations would make every other client wait for all of them; taking a turn
        per choice keeps the per-key round robin fair. Waits without its own disconnect watcher: the
        stream (Starlette) or `complete` (until_disconnect) already watches and cancels this wait."""
        if self.ticket is None or self.admission is None:
            return
        self.ticket = self.admission.requeue(self.ticket)
        await self.ticket.wait(None)

    def done(self) -> None:
        if self.ticket is not None:
            self.ticket.release()
        if self.metrics is not None:
            self.metrics.observe_responses(self.responses)
            self.metrics = None  # once

    async def _run(self, work: Awaitable[T]) -> T:
        if self.ticket is None:
            return await work
        try:
            return await until_disconnect(self.request, work)
        except ClientGone:
            raise _gone() from None

    async def first(self, work: Awaitable[T]) -> T:
        """Start a streamed answer (its first event); on failure the slot is given back at once."""
        try:
            return await self._run(work)
        except BaseException:
            self.done()
            raise

    async def complete(self, work: Awaitable[T]) -> T:
        """A whole answer; cancelled if the client leaves; the slot is given back when it ends."""
        try:
            return await self._run(work)
        finally:
            self.done()

    def stream(self, content: Any, **kwargs: Any) -> AdmittedStream:
        """The streamed answer, giving its slot back when the stream ends however it ends."""
        return AdmittedStream(content, None, self.done, **kwargs)


def _gone() -> ApiError:
    return ApiError(499, "the client closed the request", code="client_closed_request")


async def admit(request: Request, key: str | None, responses: "list[Response]") -> Gate:
    """Take the request's place in its local model's lane and wait for a slot (429 when the line is
    full, 499 if the client hangs up while waiting); a cloud model passes straight through."""
    state = request.app.state
    admission: Admission | None = getattr(state, "admission", None)
    metrics: "Metrics | None" = getattr(state, "metrics", None)
    ticket = admission.enter(responses, key) if admission is not None else None
    if ticket is not None:
        try:
            await ticket.wait(request)
        except ClientGone:
            raise _gone() from None
    return Gate(request, ticket, responses, metrics, admission)
