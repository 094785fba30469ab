"""A local model behind `imagine serve`: KV prefix reuse across turns, and fair queueing under load.

1. Time to first token of the 5th turn of a conversation, through the server (streamed), with llama.cpp's
   KV prefix kept from the previous turn vs the same request with `options.prefix_cache=false`. Before
   each timed request the 4th turn is sent again, so the cache holds the conversation so far, as it
   does when a client chats. Runs alternate. Goal: ratio <= 0.3.
2. 8 concurrent clients, each sending requests back to back on the bundled model, vs one client alone
   (the baseline, same run): no errors, completion order close to arrival order (one slot, FIFO),
   latency p50/p99 bounded by the queue (about 8 generations), throughput about the same as alone.

    .venv/bin/python bench/server_local.py [--reps 5] [--clients 8] [--per-client 3] [--tokens 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx  # noqa: E402

SYSTEM = ("You are a patient tutor. Explain things step by step, with one short example each time, and "
          "keep every answer under a hundred words. ") * 3
QUESTIONS = ["What is a prime number?", "Why is 1 not prime?", "How do I test whether 91 is prime?",
             "What is the sieve of Eratosthenes?", "Give me the primes below 30."]


def serve(home: Path) -> tuple[str, Any, threading.Thread]:
    import socket

    import uvicorn

    from imagine import Client
    from imagine.server.app import create_app
    from imagine.server.settings import ServerSettings

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = Client(home=home)
    app = create_app(client, settings=ServerSettings(port=port))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    return f"http://127.0.0.1:{port}/v1", server, thread


def chat(http: httpx.Client, url: str, messages: list[dict[str, str]], tokens: int, **options: Any) -> str:
    body = {"model": "llama-cpp", "messages": messages, "max_tokens": tokens, "temperature": 0, "seed": 1,
            "options": options}
    response = http.post(url + "/chat/completions", json=body)
    response.raise_for_status()
    return response.json()["choices"][0]["message"]["content"]


def ttft(http: httpx.Client, url: str, messages: list[dict[str, str]], **options: Any) -> float:
    """Seconds from sending a streamed request to its first content chunk."""
    body = {"model": "llama-cpp", "messages": messages, "max_tokens": 16, "temperature": 0, "seed": 1,
            "stream": True, "options": options}
    start = time.perf_counter()
    with http.stream("POST", url + "/chat/completions", json=body) as response:
        response.raise_for_status()
        elapsed = None
        for line in response.iter_lines():  # read to the end: the next request starts on a free model
            if elapsed is None and '"content":"' in line and '"content":""' not in line:
                elapsed = time.perf_counter() - start
    if elapsed is None:
        raise RuntimeError("no content in the stream")
    return elapsed


def prefix_bench(url: str, reps: int, tokens: int) -> None:
    http = httpx.Client(timeout=300)
    messages = [{"role": "system", "content": SYSTEM}]
    for question in QUESTIONS[:4]:  # turns 1-4, as a client would have them
        messages.append({"role": "user", "content": question})
        messages.append({"role": "assistant", "content": chat(http, url, messages, tokens * 2)})
    turn4 = messages[:-1]
    turn5 = messages + [{"role": "user", "content": QUESTIONS[4]}]
    warm, cold = [], []
    ttft(http, url, turn5)  # warm-up
    for i in range(reps):
        for on in ((True, False) if i % 2 == 0 else (False, True)):
            chat(http, url, turn4, tokens * 2)  # the cache holds the conversation up to turn 4's answer
            (warm if on else cold).append(ttft(http, url, turn5, prefix_cache=on))
    w, c = statistics.median(warm), statistics.median(cold)
    words = sum(len(m["content"].split()) for m in turn5)
    print(f"5th turn ({len(turn5)} messages, {words} words), time to first token, median of {reps}:")
    print(f"  prefix cache on : {w * 1000:7.1f} ms  (runs {', '.join(f'{x * 1000:.0f}' for x in warm)})")
    print(f"  prefix cache off: {c * 1000:7.1f} ms  (runs {', '.join(f'{x * 1000:.0f}' for x in cold)})")
    print(f"  ratio on/off    : {w / c:.3f}  (goal <= 0.3)")


async def one_client(url: str, who: int, count: int, tokens: int, log: list[dict[str, Any]]) -> None:
    async with httpx.AsyncClient(timeout=600) as http:
        for i in range(count):
            body = {"model": "llama-cpp", "max_tokens": tokens, "temperature": 0, "seed": who,
                    "messages": [{"role": "user", "content": f"Client {who}, request {i}: tell me a fact about "
                                                              f"the number {who * 10 + i}."}]}
            sent = time.perf_counter()
            response = await http.post(url + "/chat/completions", json=body)
            done = time.perf_counter()
            ok = response.status_code == 200
            out = response.json()["usage"]["completion_tokens"] if ok else 0
            log.append({"sent": sent, "done": done, "ok": ok, "status": response.status_code, "tokens": out})


async def load(url: str, clients: int, per_client: int, tokens: int) -> list[dict[str, Any]]:
    log: list[dict[str, Any]] = []
    await asyncio.gather(*(one_client(url, c, per_client, tokens, log) for c in range(clients)))
    return log


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def in_order(log: list[dict[str, Any]]) -> float:
    """Fraction of request pairs that finished in the order they were sent (1.0 = strict FIFO)."""
    ordered = sorted(log, key=lambda r: r["sent"])
    pairs = good = 0
    for i, a in enumerate(ordered):
        for b in ordered[i + 1:]:
            pairs += 1
            good += a["done"] <= b["done"]
    return good / pairs if pairs else 1.0


def load_bench(url: str, clients: int, per_client: int, tokens: int) -> None:
    t0 = time.perf_counter()
    alone = asyncio.run(load(url, 1, clients, tokens))  # the same number of requests, one client
    alone_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    crowd = asyncio.run(load(url, clients, per_client, tokens))
    crowd_s = time.perf_counter() - t0
    errors = [r["status"] for r in crowd if not r["ok"]]
    latency = [r["done"] - r["sent"] for r in crowd if r["ok"]]
    single = statistics.median([r["done"] - r["sent"] for r in alone])
    tokens_out = sum(r["tokens"] for r in crowd)
    rate_alone = len(alone) / alone_s
    rate_crowd = len(crowd) / crowd_s
    print(f"{clients} concurrent clients x {per_client} requests ({tokens} tokens max), one slot:")
    print(f"  errors          : {len(errors)} {errors[:5] if errors else ''}")
    print(f"  in arrival order: {in_order(crowd):.3f} of request pairs (1.0 = FIFO)")
    print(f"  latency         : p50 {pct(latency, 0.5):.2f} s, p99 {pct(latency, 0.99):.2f} s, max "
          f"{max(latency):.2f} s; one request alone {single:.2f} s (p99/alone {pct(latency, 0.99) / single:.1f}x, "
          f"bound ~{clients}x)")
    print(f"  throughput      : {rate_crowd:.2f} requests/s, {tokens_out / crowd_s:.1f} tokens/s; one client "
          f"{rate_alone:.2f} requests/s (ratio {rate_crowd / rate_alone:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--per-client", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        url, server, thread = serve(Path(home))
        try:
            prefix_bench(url, args.reps, args.tokens)
            load_bench(url, args.clients, args.per_client, args.tokens)
        finally:
            server.should_exit = True
            thread.join(timeout=30)


if __name__ == "__main__":
    main()
