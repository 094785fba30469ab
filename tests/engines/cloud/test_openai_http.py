"""The lean HTTP/1.1 client that carries plain-http chat completions (engines/cloud/_http.py), against a raw
asyncio server on loopback that answers with whatever framing a test scripts: chunked, Content-Length,
read-until-close, gzip; keep-alive or not; a redirect; a kept connection the server dropped."""

from __future__ import annotations

import asyncio
import gzip
import json
from typing import Any, Callable

import openai
import pytest

from imagine.engines.cloud import _openai_http
from imagine.engines.cloud._http import Pool

EVENTS = [{"choices": [{"index": 0, "delta": {"content": w}, "finish_reason": None}]} for w in ("Hi", " there")]
SSE = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in EVENTS) + b"data: [DONE]\n\n"


class Upstream:
    """Answers each request with `answer(n)` (n counts requests); records connections and request heads."""

    def __init__(self, answer: Callable[[int], bytes]) -> None:
        self.answer, self.connections, self.heads = answer, 0, []  # type: list[bytes]
        self.writers: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.lower().split(b"\r\n")
                              if line.startswith(b"content-length"))
                await reader.readexactly(length)
                self.heads.append(head)
                reply = self.answer(len(self.heads))
                writer.write(reply)
                await writer.drain()
                if b"connection: close" in reply.lower() or b"content-length" not in reply.lower() \
                        and b"chunked" not in reply.lower():
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1"

    async def __aexit__(self, *exc: Any) -> None:
        for w in self.writers:
            w.close()
        self.server.close()


def chunked(body: bytes, headers: bytes = b"") -> bytes:
    pieces = [body[i:i + 7] for i in range(0, len(body), 7)]
    return (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n" + headers
            + b"\r\n" + b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\nx-trailer: 1\r\n\r\n")


def sized(body: bytes, status: bytes = b"200 OK", headers: bytes = b"") -> bytes:
    return b"HTTP/1.1 " + status + b"\r\ncontent-length: " + str(len(body)).encode() + b"\r\n" + headers + b"\r\n" + body


async def collect(url: str, timeout: float = 10) -> list[dict[str, Any]]:
    client = openai.AsyncOpenAI(api_key="k", base_url=url, max_retries=0, timeout=timeout)
    try:
        return [e async for e in _openai_http.chunks(client, {"model": "m", "messages": []}, timeout)]
    finally:
        await _openai_http.close_client(client)


@pytest.mark.parametrize("frame", [chunked, sized, lambda body: b"HTTP/1.0 200 OK\r\n\r\n" + body])
async def test_every_framing_gives_the_same_events(frame: Callable[[bytes], bytes]) -> None:
    upstream = Upstream(lambda n: frame(SSE))
    async with upstream as url:
        assert await collect(url) == EVENTS
    head = upstream.heads[0].lower()
    assert head.startswith(b"post /v1/chat/completions http/1.1\r\n")
    assert b"authorization: bearer k" in head and b"host: 127.0.0.1:" in head


async def test_keep_alive_connections_are_reused_and_gzip_is_decoded() -> None:
    upstream = Upstream(lambda n: sized(gzip.compress(SSE), headers=b"content-encoding: gzip\r\n") if n % 2
                        else chunked(SSE))
    async with upstream as url:
        client = openai.AsyncOpenAI(api_key="k", base_url=url, max_retries=0, timeout=10)
        for _ in range(4):
            assert [e async for e in _openai_http.chunks(client, {}, 10)] == EVENTS
        await _openai_http.close_client(client)
    assert upstream.connections == 1 and len(upstream.heads) == 4


async def test_a_kept_connection_the_server_dropped_is_replaced_once() -> None:
    upstream = Upstream(lambda n: sized(SSE))
    async with upstream as url:
        client = openai.AsyncOpenAI(api_key="k", base_url=url, max_retries=0, timeout=10)
        assert len([e async for e in _openai_http.chunks(client, {}, 10)]) == 2
        for w in upstream.writers:  # the server ends the idle keep-alive connection
            w.close()
        await asyncio.sleep(0.05)
        assert len([e async for e in _openai_http.chunks(client, {}, 10)]) == 2
        await _openai_http.close_client(client)
    assert upstream.connections == 2


async def test_errors_are_the_sdk_exceptions() -> None:
    error = json.dumps({"error": {"message": "slow down", "type": "rate_limit", "code": "x"}}).encode()
    upstream = Upstream(lambda n: sized(error, b"429 Too Many Requests", b"retry-after: 3\r\n"))
    async with upstream as url:
        with pytest.raises(openai.RateLimitError) as caught:
            await collect(url)
    assert caught.value.response.headers["retry-after"] == "3" and "slow down" in str(caught.value)
    cut = Upstream(lambda n: sized(SSE)[:-10])  # the server promises more than it sends, then hangs
    async with cut as url:
        with pytest.raises(openai.APITimeoutError):
            await collect(url, timeout=0.3)
    async with Upstream(lambda n: b"HTTP/1.1 200 OK\r\ncontent-length: 99\r\nconnection: close\r\n\r\ndata: {}") as url:
        with pytest.raises(openai.APIConnectionError):  # closed before the promised body
            await collect(url)


async def test_a_redirect_is_followed_by_the_sdk_stack() -> None:
    target = Upstream(lambda n: sized(SSE))
    async with target as good:
        upstream = Upstream(lambda n: sized(b"", b"307 Temporary Redirect", f"location: {good}/chat/completions\r\n".encode()))
        async with upstream as url:
            assert await collect(url) == EVENTS
    assert len(target.heads) == 1


async def test_reading_pauses_while_the_consumer_is_behind() -> None:
    big = b"x" * (2 * 1024 * 1024)
    async with Upstream(lambda n: sized(big)) as url:
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        pool = Pool("127.0.0.1", port)
        reply = await pool.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", b"", 5)
        await asyncio.sleep(0.2)  # the server writes as fast as it can; the client reads nothing yet
        assert len(reply._conn.buf) < 1024 * 1024 and reply._conn.paused
        assert await reply.read() == big
        await reply.aclose()
        pool.close()


async def test_a_close_delimited_body_is_read_to_the_end_by_a_slow_consumer() -> None:
    """The rest of the body and the close can both arrive while the consumer is busy: the rest still counts."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nfirst;")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"second;third")
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    pool = Pool("127.0.0.1", server.sockets[0].getsockname()[1])
    reply = await pool.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", b"", 5)
    pieces = []
    async for piece in reply.iter_bytes():
        pieces.append(piece)
        await asyncio.sleep(0.2)  # busy: the server sends the rest and closes meanwhile
    await reply.aclose()
    server.close()
    assert b"".join(pieces) == b"first;second;third"
