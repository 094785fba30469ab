"""Local models under concurrency: one generation at a time, a fair bounded queue, 429 + Retry-After when
it is full, and a client that hangs up stops its generation and frees its slot.

The lane logic is tested directly (no server); the rest on a real uvicorn server with the mock engine
(a local engine) slowed down by its `delay` option, counting the deltas it actually produced."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from types import SimpleNamespace
from typing import Any, Iterator

import httpx
import pytest

from imagine.server.errors import ApiError
from imagine.server.serving.admission import Admission, lane_ref
from imagine.server.settings import ServerSettings

from ..helpers.server import served

openai = pytest.importorskip("openai")


class Counting(list):
    """A response for the mock engine that counts the deltas the engine actually pulled from it."""

    def __init__(self, n: int) -> None:
        super().__init__(["tok "] * n)
        self.produced = 0

    def __iter__(self) -> Iterator[Any]:
        for item in list.__iter__(self):
            self.produced += 1
            yield item


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with served(tmp_path_factory.mktemp("serve-admission"), local_queue=2) as running:
        yield running


def _depth(server: Any, model: str = "mock:echo") -> int:
    text = httpx.get(server.url + "/metrics").text
    found = re.search(rf'^imagine_queue_depth{{model="{model}"}} (\d+)$', text, re.M)
    return int(found.group(1)) if found else 0


def _wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def _chat(server: Any, text: str, **options: Any) -> dict[str, Any]:
    body = {"model": "mock", "messages": [{"role": "user", "content": text}], "options": options}
    return httpx.post(server.base_url + "/chat/completions", json=body, timeout=60).json()


def _in_thread(fn: Any, *args: Any, **kwargs: Any) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the test
            out["error"] = exc
        out["done_at"] = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def _open_stream(server: Any, **options: Any) -> tuple[httpx.Client, Any]:
    """A streamed chat request whose response the test reads (and drops) by hand."""
    http = httpx.Client(timeout=60)
    body = {"model": "mock", "stream": True, "messages": [{"role": "user", "content": "go"}], "options": options}
    response = http.send(http.build_request("POST", server.base_url + "/chat/completions", json=body), stream=True)
    assert response.status_code == 200
    return http, response


# -- the lanes on their own ------------------------------------------------------------------------

def _local(ref: str = "mock:echo") -> Any:
    return SimpleNamespace(decision=None, engine=SimpleNamespace(locality="local", id="mock"), model_ref=ref)


def test_lane_ref_is_none_for_cloud_models() -> None:
    cloud = SimpleNamespace(decision=None, engine=SimpleNamespace(locality="cloud", id="openai"), model_ref="openai:x")
    assert lane_ref(cloud) is None and lane_ref(_local()) == "mock:echo"
    local_server = SimpleNamespace(decision=None, model_ref="vllm:qwen",
                                   engine=SimpleNamespace(locality="local", id="vllm", in_process=False))
    assert lane_ref(local_server) is None  # a vLLM / llama.cpp server on loopback queues by itself


def test_lanes_are_fifo_round_robin_per_key_and_bounded() -> None:
    async def scenario() -> None:
        admission = Admission(ServerSettings(local_queue=4))
        running = admission.enter([_local()], "a")
        assert running is not None and running.granted
        order: list[str] = []
        tickets = [(name, admission.enter([_local()], key)) for name, key in
                   [("a1", "a"), ("a2", "a"), ("a3", "a"), ("b1", "b")]]
        with pytest.raises(ApiError) as full:
            admission.enter([_local()], "c")
        assert full.value.status == 429 and int(full.value.headers["retry-after"]) >= 1
        assert admission.depth()["mock:echo"] == (4, 1, 1)

        async def serve(name: str, ticket: Any) -> None:
            await ticket.wait()
            order.append(name)
            await asyncio.sleep(0)
            ticket.release()

        tasks = [asyncio.ensure_future(serve(n, t)) for n, t in tickets]
        await asyncio.sleep(0)
        running.release()
        running.release()  # idempotent
        await asyncio.gather(*tasks)
        # key a queued three before b queued one; b is not starved behind all of a's
        assert order == ["a1", "b1", "a2", "a3"]
        assert admission.depth()["mock:echo"] == (0, 0, 1)
        # without keys (one line): plain arrival order
        first = admission.enter([_local()])
        later = [admission.enter([_local()]) for _ in range(3)]
        first.release()
        for t in later:
            await t.wait()
            t.release()
        assert admission.depth()["mock:echo"][:2] == (0, 0)

    asyncio.run(scenario())


def test_a_waiter_that_leaves_gives_its_place_back() -> None:
    async def scenario() -> None:
        admission = Admission(ServerSettings(local_queue=1))
        running = admission.enter([_local()])
        waiting = admission.enter([_local()])
        waiting.release()  # the client left while queued
        assert admission.depth()["mock:echo"][:2] == (0, 1)
        again = admission.enter([_local()])  # its place is free again
        running.release()
        await again.wait()
        again.release()

    asyncio.run(scenario())


# -- through the server ----------------------------------------------------------------------------

def test_full_queue_is_429_with_retry_after_in_openais_shape(server: Any) -> None:
    slow = Counting(400)
    server.mock().enqueue(slow)
    http, stream = _open_stream(server, delay=0.02)  # holds the one slot
    waiters = [_in_thread(_chat, server, f"waiter {i}") for i in range(2)]
    _wait_for(lambda: _depth(server) == 2)
    with pytest.raises(openai.RateLimitError) as err:
        server.openai().chat.completions.create(model="mock", messages=[{"role": "user", "content": "one more"}])
    assert err.value.body["code"] == "queue_full" and err.value.body["type"] == "rate_limit_error"
    assert int(err.value.response.headers["retry-after"]) >= 1
    stream.close()
    http.close()
    for thread, out in waiters:
        thread.join(30)
        assert out["value"]["choices"][0]["message"]["content"].startswith("waiter")
    metrics = httpx.get(server.url + "/metrics").text
    assert 'imagine_queue_rejected_total{model="mock:echo"} 1' in metrics


def test_requests_are_served_in_arrival_order(server: Any) -> None:
    server.mock().enqueue(["x "] * 10)
    first = _in_thread(_chat, server, "first", delay=0.05)
    _wait_for(lambda: server.mock().requests and server.mock().requests[-1].messages[-1].text == "first")
    others = []
    for i, name in enumerate(["second", "third"]):
        others.append((name, _in_thread(_chat, server, name)))
        _wait_for(lambda i=i: _depth(server) == i + 1)
    first[0].join(30)
    for _, (thread, _) in others:
        thread.join(30)
    # the order the engine started them (the server's own record; the clients' clocks can be late to
    # notice under load, which once made this look reversed)
    started = [r.messages[-1].text for r in server.mock().requests]
    assert started[-3:] == ["first", "second", "third"]
    assert all("value" in out for out in (first[1], *(out for _, (_, out) in others)))


def test_a_client_that_leaves_mid_stream_stops_its_generation_and_frees_the_slot(server: Any) -> None:
    slow = Counting(400)  # 400 deltas at 20 ms: 8 s if nobody stopped it
    server.mock().enqueue(slow)
    http, stream = _open_stream(server, delay=0.02)
    queued = _in_thread(_chat, server, "next in line")
    _wait_for(lambda: _depth(server) == 1)
    lines = stream.iter_lines()
    got = [line for _, line in zip(range(4), lines)]
    assert any("tok" in line for line in got)
    stream.close()
    http.close()
    queued[0].join(10)  # the waiter runs as soon as the slot is free, long before the 8 s
    assert queued[1]["value"]["choices"][0]["message"]["content"] == "next in line"
    stopped_at = slow.produced
    time.sleep(0.3)
    assert slow.produced == stopped_at < 60  # generation stopped soon after the hang-up, and stays stopped


def test_a_client_that_leaves_a_non_streamed_request_stops_it_too(server: Any) -> None:
    slow = Counting(400)
    server.mock().enqueue(slow)
    body = {"model": "mock", "messages": [{"role": "user", "content": "go"}], "options": {"delay": 0.02}}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server.base_url + "/chat/completions", json=body, timeout=0.3)
    _wait_for(lambda: "imagine_generations_in_flight{model=\"mock:echo\"} 0" in httpx.get(server.url + "/metrics").text)
    stopped_at = slow.produced
    time.sleep(0.3)
    assert slow.produced == stopped_at < 60
    assert _chat(server, "after")["choices"][0]["message"]["content"] == "after"


# -- every local generation takes its turn: /v1/responses, media routes, chat's n choices -------------

def _fill_the_line(server: Any) -> tuple[Any, list[Any]]:
    """One slow streamed chat holding mock:echo's one slot and two waiters filling its line."""
    server.mock().enqueue(Counting(400))
    http, stream = _open_stream(server, delay=0.02)
    waiters = [_in_thread(_chat, server, f"waiter {i}") for i in range(2)]
    _wait_for(lambda: _depth(server) == 2)
    return (http, stream), waiters


def _drain(held: Any, waiters: list[Any]) -> None:
    http, stream = held
    stream.close()
    http.close()
    for thread, out in waiters:
        thread.join(30)
        assert out["value"]["choices"][0]["message"]["content"].startswith("waiter")


def test_responses_wait_their_turn_and_a_full_line_is_429(server: Any) -> None:
    held, waiters = _fill_the_line(server)
    with pytest.raises(openai.RateLimitError) as err:
        server.openai().responses.create(model="mock", input="one more")
    assert err.value.body["code"] == "queue_full" and int(err.value.response.headers["retry-after"]) >= 1
    with pytest.raises(openai.RateLimitError):
        server.openai().responses.create(model="mock", input="one more, streamed", stream=True)
    _drain(held, waiters)
    assert server.openai().responses.create(model="mock", input="now it runs").output_text == "now it runs"


def test_a_media_route_waits_its_turn_too(server: Any) -> None:
    sdk = server.openai()
    assert len(sdk.embeddings.create(model="minilm", input="warm up").data[0].embedding) > 0
    admission = server.app.state.admission
    ref = next(r for r in admission.lanes if r.startswith("minilm"))  # the embedder has a lane of its own
    lane = admission.lanes[ref]
    lane.running, lane.waiting = lane.slots, lane.capacity  # as if busy with a full line (read on the server loop)
    try:
        with pytest.raises(openai.RateLimitError) as err:
            sdk.embeddings.create(model="minilm", input="one more")
        assert err.value.body["code"] == "queue_full" and int(err.value.response.headers["retry-after"]) >= 1
        assert ref in err.value.body["message"]
    finally:
        lane.running, lane.waiting = 0, 0
    assert len(sdk.embeddings.create(model="minilm", input="after").data) == 1


def test_each_chat_choice_takes_its_own_turn(server: Any) -> None:
    """n = 2 is two generations: a request queued during the first runs before the second, so one
    client's n cannot hold the model for everyone else."""
    mock = server.mock()
    seen = len(mock.requests)
    body = {"model": "mock", "n": 2, "messages": [{"role": "user", "content": "a b c d e f g h"}],
            "options": {"delay": 0.04}}
    many = _in_thread(lambda: httpx.post(server.base_url + "/chat/completions", json=body, timeout=60).json())
    _wait_for(lambda: len(mock.requests) > seen)
    single = _in_thread(_chat, server, "single")
    _wait_for(lambda: _depth(server) == 1)
    many[0].join(30)
    single[0].join(30)
    order = [r.messages[-1].text for r in mock.requests[seen:]]
    assert order == ["a b c d e f g h", "single", "a b c d e f g h"]
    assert [c["message"]["content"] for c in many[1]["value"]["choices"]] == ["a b c d e f g h"] * 2
