"""Server overhead: what `imagine serve` adds on top of the engine it relays to.

A trivial OpenAI-compatible upstream (raw asyncio, canned answer) runs in its own process; `imagine serve`
runs in another, with one worker, request logging on, and an openai-compatible endpoint engine (`up`)
pointed at the upstream. The same load client then calls the upstream directly and through imagine, in
the same run, at concurrency 1 and 32, streaming and not, and prints for each: p50/p99 latency, the
added p50/p99, requests/s and their ratio, and CPU per request of the server process (read from /proc,
so the client's own cost is not in it) and of the client (printed too: on a small machine the client
competes for the same cores). Goals (issue 14): added p50 <= 1 ms at concurrency 1, >= 2,000 requests/s
at concurrency 32, streamed chunks relayed without needless re-parsing.

The load client is a minimal HTTP/1.1 keep-alive client over asyncio streams (one connection per
concurrent worker); it costs a fraction of httpx's CPU, which matters when client, server and upstream
share two cores. Scenarios alternate direct/imagine for --rounds rounds; the best round of each is kept
(noise from other work on the machine only ever adds).

    .venv/bin/python bench/server_overhead.py [--requests 2000] [--rounds 2] [--profile out.svg]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

TEXT_CHUNKS = ["Hello", " from", " the", " fake", " upstream", "."]
_HEAD = {"id": "chatcmpl-up", "created": 1, "model": "m"}


def _canned() -> tuple[bytes, bytes]:
    """The upstream's two answers, built once: a chat.completion and its streamed form (SSE)."""
    full = json.dumps({**_HEAD, "object": "chat.completion", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "".join(TEXT_CHUNKS)}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11}}).encode()
    events = [{"role": "assistant", "content": ""}] + [{"content": t} for t in TEXT_CHUNKS]
    sse = b"".join(b"data: " + json.dumps({**_HEAD, "object": "chat.completion.chunk", "choices": [
        {"index": 0, "delta": d, "finish_reason": None}]}).encode() + b"\n\n" for d in events)
    sse += b"data: " + json.dumps({**_HEAD, "object": "chat.completion.chunk", "choices": [
        {"index": 0, "delta": {}, "finish_reason": "stop"}]}).encode() + b"\n\n"
    sse += b"data: " + json.dumps({**_HEAD, "object": "chat.completion.chunk", "choices": [], "usage": {
        "prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11}}).encode() + b"\n\n"
    sse += b"data: [DONE]\n\n"

    def reply(body: bytes, kind: bytes) -> bytes:
        return (b"HTTP/1.1 200 OK\r\ncontent-type: " + kind + b"\r\ncontent-length: " + str(len(body)).encode()
                + b"\r\n\r\n" + body)

    return reply(full, b"application/json"), reply(sse, b"text/event-stream")


# -- the upstream: a raw asyncio HTTP/1.1 server --------------------------------------------------

class _Upstream(asyncio.Protocol):
    full, stream = _canned()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport, self.buf = transport, b""  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15:head.find(b"\r\n", at) if head.find(b"\r\n", at) > 0 else None]) if at >= 0 else 0
            if len(self.buf) < end + 4 + length:
                return
            body = self.buf[end + 4:end + 4 + length]
            self.buf = self.buf[end + 4 + length:]
            if head.startswith(b"get"):
                models = json.dumps({"object": "list", "data": [{"id": "m", "object": "model"}]}).encode()
                self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "  # type: ignore[attr-defined]
                                     + str(len(models)).encode() + b"\r\n\r\n" + models)
                continue
            streamed = b'"stream":true' in body.replace(b" ", b"")
            self.transport.write(self.stream if streamed else self.full)  # type: ignore[attr-defined]


def run_upstream(port: int) -> None:
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Upstream, "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:  # the benchmark stops it with SIGINT
        pass


# -- the load client ------------------------------------------------------------------------------

class Conn:
    """One keep-alive HTTP/1.1 connection; reads Content-Length and chunked bodies."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(b"POST " + path.encode() + b" HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json"
                          b"\r\nauthorization: Bearer none\r\ncontent-length: " + str(len(body)).encode()
                          + b"\r\n\r\n" + body)
        head = (await self.reader.readuntil(b"\r\n\r\n")).lower()
        status = int(head[9:12])
        at = head.find(b"content-length:")
        if at >= 0:
            data = await self.reader.readexactly(int(head[at + 15:head.find(b"\r\n", at)]))
        else:  # chunked
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                parts.append(await self.reader.readexactly(size + 2))
                if size == 0:
                    break
            data = b"".join(p[:-2] for p in parts)
        if b"connection: close" in head:
            self.writer.close()
            self.writer = None
        return status, data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@dataclass
class Result:
    latencies: list[float]
    wall: float
    server_cpu: float
    client_cpu: float

    @property
    def n(self) -> int:
        return len(self.latencies)

    def pct(self, q: float) -> float:
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000

    @property
    def rps(self) -> float:
        return self.n / self.wall


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its reaped children, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


async def load(port: int, model: str, stream: bool, concurrency: int, total: int, server_pid: int) -> Result:
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "Say hello."}],
                       "stream": stream, "max_tokens": 16}).encode()
    conns = [Conn(port) for _ in range(concurrency)]
    for c in conns:  # warm: connect, and let the server load what it loads on first use
        status, data = await c.post("/v1/chat/completions", body)
        if status != 200 or (stream and not data.rstrip().endswith(b"[DONE]")):
            raise SystemExit(f"{model}: HTTP {status}: {data[:300]!r}")
    latencies: list[float] = []
    left = total

    async def worker(conn: Conn) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            t = time.perf_counter()
            status, data = await conn.post("/v1/chat/completions", body)
            latencies.append(time.perf_counter() - t)
            if status != 200:
                raise SystemExit(f"HTTP {status}: {data[:300]!r}")

    cpu0, ccpu0, t0 = cpu_seconds(server_pid), time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    wall = time.perf_counter() - t0
    result = Result(latencies, wall, cpu_seconds(server_pid) - cpu0, time.process_time() - ccpu0)
    for c in conns:
        c.close()
    return result


# -- processes ------------------------------------------------------------------------------------

def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"process exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def start_imagine(home: Path, up_port: int, port: int, profile: str | None) -> subprocess.Popen[bytes]:
    (home / "config.toml").write_text(f'[endpoints.up]\nkind = "openai"\nbase_url = "http://127.0.0.1:{up_port}/v1"\n'
                                      f'api_key = "sk-up"\nlocality = "local"\ndefault_model = "m"\n')
    env = {**os.environ, "IMAGINE_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "imagine", "serve", "--port", str(port), "--log-level", "warning"]
    if profile:
        cmd = [str(Path(sys.executable).parent / "py-spy"), "record", "-o", profile, "-r", "500",
               *(["--format", "raw"] if not profile.endswith(".svg") else []), "--", *cmd]
    return subprocess.Popen(cmd, env=env)


def report(name: str, direct: Result, through: Result) -> None:
    print(f"{name:<22} direct p50 {direct.pct(.5):6.2f} p99 {direct.pct(.99):6.2f} ms {direct.rps:7.0f} req/s | "
          f"imagine p50 {through.pct(.5):6.2f} p99 {through.pct(.99):6.2f} ms {through.rps:7.0f} req/s")
    print(f"{'  ->':<22} added p50 {through.pct(.5) - direct.pct(.5):+6.2f} ms  p99 {through.pct(.99) - direct.pct(.99):+6.2f} ms"
          f"  latency x{through.pct(.5) / direct.pct(.5):.1f}  throughput x{through.rps / direct.rps:.2f}"
          f"  server CPU/req {1000 * through.server_cpu / through.n:.2f} ms (upstream {1000 * direct.server_cpu / direct.n:.2f})"
          f"  client CPU/req {1000 * through.client_cpu / through.n:.2f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=2000, help="requests per scenario (concurrency 1: a quarter)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds; the best of each is kept")
    ap.add_argument("--profile", help="record the server with py-spy into this file (.svg: a flame graph; else collapsed stacks)")
    ap.add_argument("--only", choices=["1", "32"], help="one concurrency only")
    args = ap.parse_args()
    up_port, im_port = free_port(), free_port()
    upstream = subprocess.Popen([sys.executable, __file__, "--upstream", str(up_port)])
    home = Path(tempfile.mkdtemp(prefix="imagine-bench-serve-"))
    server = start_imagine(home, up_port, im_port, args.profile)
    try:
        wait_port(up_port, upstream)
        wait_port(im_port, server)
        print(f"server pid {server.pid} (one worker, request logging on), upstream pid {upstream.pid}, "
              f"{os.cpu_count()} CPUs; best of {args.rounds} alternating rounds")
        for concurrency in ([int(args.only)] if args.only else [1, 32]):
            total = args.requests // 4 if concurrency == 1 else args.requests
            for stream in (False, True):
                best: dict[str, Result] = {}
                for _ in range(args.rounds):
                    for key, port, model, pid in (("direct", up_port, "m", upstream.pid),
                                                  ("imagine", im_port, "up:m", server.pid)):
                        r = asyncio.run(load(port, model, stream, concurrency, total, pid))
                        if key not in best or r.pct(.5) < best[key].pct(.5):
                            best[key] = r
                report(f"c={concurrency} {'stream' if stream else 'non-stream'}", best["direct"], best["imagine"])
        logged = _logged(home)
        print(f"log rows written: {logged}")
    finally:
        for proc in (server, upstream):
            proc.send_signal(signal.SIGINT)
        for proc in (server, upstream):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        if args.profile:
            print(f"profile: {args.profile}")


def _logged(home: Path) -> int | str:
    import sqlite3

    try:
        dbs = list(home.glob("**/*.db"))
        with sqlite3.connect(dbs[0]) as db:
            return int(db.execute("select count(*) from responses").fetchone()[0])
    except Exception as exc:  # the count is a sanity check, not the benchmark
        return f"unknown ({exc})"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--upstream":
        run_upstream(int(sys.argv[2]))
    else:
        main()
