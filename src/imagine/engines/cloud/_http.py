"""A lean HTTP/1.1 client for plain-http OpenAI-compatible endpoints: the hot path of a gateway.

`imagine serve` in front of a vLLM / Ollama / llama.cpp box relays every request to it. Through httpx2 +
httpcore2 one small streamed POST costs ~0.4 ms of CPU (a third of the server's whole budget in
bench/server_overhead.py); the same exchange over an asyncio Protocol with one write per request and no
per-request objects beyond the answer costs a fraction of that.

Deliberately small: plain http only (https keeps the SDK's stack: TLS, cookies, proxies, HTTP/2
options), keep-alive connections per host, Content-Length / chunked / read-until-close bodies,
gzip and deflate (what httpx offers by default), connect and read timeouts like httpx's single
`Timeout(t)`, and backpressure (reading pauses while the consumer is behind). Callers fall back to
httpx for anything else (a redirect, a proxy, a client with hooks or cookies); see openai_wire.py.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections import deque
from typing import AsyncIterator

__all__ = ["HttpFailure", "HttpTimeout", "Pool", "Reply"]

_HIGH, _LOW = 256 * 1024, 64 * 1024  # pause reading above, resume below (bytes buffered)
_MAX_HEAD = 64 * 1024
_NO_BODY = {204, 304}


class HttpFailure(Exception):
    """The connection failed, closed early, or the server broke HTTP/1.1."""


class HttpTimeout(HttpFailure):
    """No connection, or no bytes, within the timeout."""


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(HttpTimeout("timed out"))


class _Conn(asyncio.Protocol):
    """One connection: bytes land in `buf`; `more()` waits for the next ones (or EOF, or the timeout)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.closed = False
        self.paused = False
        self.answered = False  # a byte came since the last request was sent
        self.idle_since = 0.0
        self.waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self.answered = True
        if len(self.buf) > _HIGH and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def more(self, timeout: float) -> None:
        """Wait for more bytes; HttpFailure when the peer has closed, HttpTimeout after `timeout` s."""
        if self.closed:
            raise HttpFailure("server closed the connection")
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        waiter = self.waiter = self.loop.create_future()
        timer = self.loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self.waiter = None

    def take(self, n: int) -> bytes:
        data = bytes(self.buf[:n])
        del self.buf[:n]
        if self.paused and len(self.buf) < _LOW and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return data

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Reply:
    """A response whose body is read as it arrives; `aclose()` returns a fully read keep-alive connection
    to the pool and closes any other."""

    def __init__(self, pool: Pool, conn: _Conn, status: int, headers: list[tuple[str, str]], head_only: bool,
                 timeout: float) -> None:
        self.status, self.headers = status, headers
        self._pool, self._conn, self._timeout = pool, conn, timeout
        self._framing, self._left, self._reusable = self._frame(head_only)
        self._done = self._framing == "length" and self._left == 0
        encoding = self.header("content-encoding").lower().strip()
        self._decoder = (zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding in ("gzip", "x-gzip")
                         else zlib.decompressobj() if encoding == "deflate" else None)
        if encoding not in ("", "identity", "gzip", "x-gzip", "deflate"):
            raise HttpFailure(f"unsupported content-encoding {encoding!r}")

    def header(self, name: str) -> str:
        return next((v for k, v in self.headers if k == name), "")

    def _frame(self, head_only: bool) -> tuple[str, int, bool]:
        keep = "close" not in self.header("connection").lower()
        if head_only or self.status in _NO_BODY or 100 <= self.status < 200:
            return "length", 0, keep
        if "chunked" in self.header("transfer-encoding").lower():
            return "chunked", 0, keep
        length = self.header("content-length")
        if length:
            if not length.strip().isdigit():
                raise HttpFailure(f"bad content-length {length!r}")
            return "length", int(length), keep
        return "close", 0, False

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        """The body, decoded, piece by piece as it arrives."""
        async for raw in self._raw():
            if self._decoder is None:
                yield raw
            else:
                data = self._decoder.decompress(raw)
                if data:
                    yield data
        if self._decoder is not None:
            tail = self._decoder.flush()
            if tail:
                yield tail

    async def read(self) -> bytes:
        return b"".join([piece async for piece in self.iter_bytes()])

    async def _raw(self) -> AsyncIterator[bytes]:
        conn, timeout = self._conn, self._timeout
        if self._framing == "length":
            while self._left > 0:
                if not conn.buf:
                    await conn.more(timeout)
                piece = conn.take(min(self._left, len(conn.buf)))
                self._left -= len(piece)
                yield piece
        elif self._framing == "close":
            while True:
                if conn.buf:  # what came before the close is the body too, however late it is read
                    yield conn.take(len(conn.buf))
                    continue
                if conn.closed:
                    break
                try:
                    await conn.more(timeout)
                except HttpTimeout:
                    raise
                except HttpFailure:
                    break
        else:
            async for piece in self._chunked():
                yield piece
        self._done = True

    async def _chunked(self) -> AsyncIterator[bytes]:
        conn, timeout = self._conn, self._timeout
        while True:
            end = conn.buf.find(b"\r\n")
            while end < 0:
                if len(conn.buf) > _MAX_HEAD:
                    raise HttpFailure("chunk size line too long")
                await conn.more(timeout)
                end = conn.buf.find(b"\r\n")
            line = conn.take(end + 2)[:-2].split(b";", 1)[0].strip()
            try:
                size = int(line, 16)
            except ValueError:
                raise HttpFailure(f"bad chunk size {line[:20]!r}") from None
            if size == 0:  # trailers, then the blank line that ends the body
                while True:
                    end = conn.buf.find(b"\r\n")
                    while end < 0:
                        await conn.more(timeout)
                        end = conn.buf.find(b"\r\n")
                    if not conn.take(end + 2)[:-2]:
                        return
            left = size
            while left > 0:
                if not conn.buf:
                    await conn.more(timeout)
                piece = conn.take(min(left, len(conn.buf)))
                left -= len(piece)
                yield piece
            while len(conn.buf) < 2:
                await conn.more(timeout)
            if conn.take(2) != b"\r\n":
                raise HttpFailure("chunk not followed by CRLF")

    async def aclose(self) -> None:
        conn, self._conn.waiter = self._conn, None
        if self._done and self._reusable and not conn.closed and not conn.buf:
            self._pool.release(conn)
        else:
            conn.close()


class Pool:
    """Keep-alive connections to one host:port (plain http), for the loop that made them."""

    def __init__(self, host: str, port: int, keepalive_expiry: float = 5.0, max_idle: int = 100) -> None:
        self.host, self.port, self.expiry, self.max_idle = host, port, keepalive_expiry, max_idle
        self._idle: deque[_Conn] = deque()

    def release(self, conn: _Conn) -> None:
        if len(self._idle) < self.max_idle:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:
            conn.close()

    def _reuse(self) -> _Conn | None:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()  # the most recently used: the least likely to have been closed
            if not conn.closed and not conn.buf and now - conn.idle_since < self.expiry:
                return conn
            conn.close()
        return None

    async def _connect(self, timeout: float) -> _Conn:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(loop.create_connection(lambda: _Conn(loop), self.host, self.port),
                                             timeout)
        except asyncio.TimeoutError:
            raise HttpTimeout(f"could not connect to {self.host}:{self.port} within {timeout:g} s") from None
        except OSError as exc:
            raise HttpFailure(f"could not connect to {self.host}:{self.port}: {exc}") from None
        return conn

    async def send(self, head: bytes, content: bytes, timeout: float) -> Reply:
        """Send one request (head already ends in the blank line) and read the response's head. A kept
        connection the server closed before answering a byte is replaced once by a new one."""
        while True:
            conn = self._reuse()
            reused = conn is not None
            if conn is None:
                conn = await self._connect(timeout)
            assert conn.transport is not None
            conn.answered = False
            conn.transport.write(head + content)
            try:
                return await self._head(conn, timeout)
            except HttpTimeout:
                conn.close()
                raise
            except HttpFailure:
                conn.close()
                if not reused or conn.answered:
                    raise
            except BaseException:
                conn.close()
                raise

    async def _head(self, conn: _Conn, timeout: float) -> Reply:
        while True:
            end = conn.buf.find(b"\r\n\r\n")
            while end < 0:
                if len(conn.buf) > _MAX_HEAD:
                    raise HttpFailure("response head too large")
                await conn.more(timeout)
                end = conn.buf.find(b"\r\n\r\n")
            lines = conn.take(end + 4)[:-4].decode("latin-1").split("\r\n")
            status_line = lines[0].split(" ", 2)
            if len(status_line) < 2 or not status_line[0].startswith("HTTP/1.") or not status_line[1].isdigit():
                raise HttpFailure(f"not an HTTP/1.x response: {lines[0][:60]!r}")
            status = int(status_line[1])
            if 100 <= status < 200 and status != 101:
                continue  # 100 Continue and other interim answers
            headers = []
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if sep:
                    headers.append((name.strip().lower(), value.strip()))
            reply = Reply(self, conn, status, headers, False, timeout)
            if status_line[0] == "HTTP/1.0" and "keep-alive" not in reply.header("connection").lower():
                reply._reusable = False
            return reply

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
