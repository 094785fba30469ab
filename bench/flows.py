"""Flows benchmark: what the step cache saves, and what the Ray executor buys on CPU-bound items.

1. Cache: a two-step flow over 50 items — `ask` on the bundled SmolLM2-135M (llama-cpp, a few tokens,
   fixed seed) then a `wer` step — run cold, then again in the same home (a new run, a new output
   folder): every step is served from the cache. Goal: warm >= 50x faster than cold.
2. Executors: a flow whose one step is `wer` (word error rate: a pure-Python edit distance, about half a
   second for two 1,500-word texts here) over 20 items, on the local executor (asyncio: one core) and on
   the Ray executor (a local Ray with `--cpus` workers, started before the clock starts; its start-up is
   printed apart; a second Ray run shows the figure once the workers are warm). Each run gets its own
   texts, so neither is served from the other's cache. The Ray overhead per item is measured on tiny
   items: (Ray time - local time) / items.
   Goal: Ray >= 1.7x on 2 cores.

    .venv/bin/python bench/flows.py [--items 50] [--cpu-items 20] [--words 1500] [--cpus 2] [--model mock]

`--model mock` replaces SmolLM2 with the mock engine plus a 20 ms delay (no llama.cpp needed).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("IMAGINE_HOME", tempfile.mkdtemp(prefix="imagine-bench-"))

from imagine import Client  # noqa: E402
from imagine.flows import Flow  # noqa: E402

CACHE_FLOW = """
name: bench-cache
inputs:
  rows: {jsonl: rows.jsonl}
for_each: rows
steps:
  answer:
    task: ask
    model: %(model)s
    input: "Repeat after me: ${item.text}"
    options: %(options)s
  score: {task: wer, input: "${answer.text}", reference: "${item.text}"}
outputs:
  answer: {from: "${answer.text}", file: "answers.jsonl"}
  wer: {from: "${score.wer}"}
"""

CPU_FLOW = """
name: bench-cpu
inputs:
  rows: {jsonl: rows.jsonl}
for_each: rows
steps:
  score: {task: wer, input: "${item.hyp}", reference: "${item.ref}"}
outputs:
  wer: {from: "${score.wer}", file: "wer.jsonl"}
"""

WORDS = ["the", "cat", "sat", "on", "a", "mat", "while", "dogs", "ran", "past", "green", "houses", "slowly"]


def folder(root: Path, name: str, flow: str, rows: list[dict[str, str]]) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "flow.yaml").write_text(flow)
    return d / "flow.yaml"


def timed(flow: Path, out: Path, client: Client, **kwargs: object) -> tuple[float, dict[str, int]]:
    start = time.perf_counter()
    result = Flow.load(flow, client=client).run(out=out, client=client, **kwargs)
    elapsed = time.perf_counter() - start
    assert result.status == "done", result.manifest["counts"]
    return elapsed, result.manifest["counts"]


def bench_cache(root: Path, items: int, model: str, client: Client) -> None:
    rng = random.Random(1)
    rows = [{"text": " ".join(rng.choice(WORDS) for _ in range(6))} for _ in range(items)]
    options = "{max_tokens: 12, seed: 0, temperature: 0}" if model != "mock" else "{delay: 0.02}"
    path = folder(root, "cache", CACHE_FLOW % {"model": model, "options": options}, rows)
    cold, counts = timed(path, root / "cache-out-1", client)
    warm, again = timed(path, root / "cache-out-2", client)
    print(f"1. cache, {items} items, ask ({model}) + wer:  cold {cold:.2f} s  warm {warm:.3f} s  "
          f"({warm / items * 1000:.1f} ms/item)  -> warm is {cold / warm:.0f}x faster (goal >= 50x)  {counts} / {again}")


def cpu_rows(n: int, words: int, salt: str) -> list[dict[str, str]]:
    rng = random.Random(salt)
    rows = []
    for _ in range(n):
        ref = [rng.choice(WORDS) for _ in range(words)]
        hyp = [w if rng.random() < 0.9 else rng.choice(WORDS) for w in ref]
        rows.append({"ref": " ".join(ref), "hyp": " ".join(hyp)})
    return rows


def bench_executors(root: Path, items: int, words: int, cpus: int, client: Client) -> None:
    from imagine.flows.ray import RayExecutor

    start = time.perf_counter()
    ray = RayExecutor(num_cpus=cpus)
    ray.start()
    started = time.perf_counter() - start
    try:
        runs: dict[str, float] = {}
        # "ray" is the first run on fresh workers (each imports imagine and builds its Client inside the
        # timing); "ray-again" is a second run of new texts on the same, now warm, workers
        for name, executor in (("local", None), ("ray", ray), ("ray-again", ray)):
            path = folder(root, f"cpu-{name}", CPU_FLOW, cpu_rows(items, words, name))
            runs[name], counts = timed(path, root / f"cpu-{name}-out", client, executor=executor)
        # tiny items show the per-item cost of the path itself; the first tiny run of each pair loads its
        # flow file in each worker (the CPU-bound runs above paid that, and each worker's Client, in full)
        small: dict[str, float] = {}
        for n, executor in (("local", None), ("ray", ray)):
            for k in (0, 1):
                path = folder(root, f"tiny-{n}-{k}", CPU_FLOW, cpu_rows(items, 3, f"tiny-{n}-{k}"))
                small[n], _ = timed(path, root / f"tiny-{n}-{k}-out", client, executor=executor)
    finally:
        ray.close()
    per_item = (small["ray"] - small["local"]) / items * 1000
    print(f"2. executors, {items} items of wer over {words}-word texts, {cpus} CPUs for Ray:  "
          f"local {runs['local']:.2f} s  ray {runs['ray']:.2f} s  -> ray is {runs['local'] / runs['ray']:.2f}x "
          f"(goal >= 1.7x); warm workers: ray {runs['ray-again']:.2f} s -> {runs['local'] / runs['ray-again']:.2f}x  "
          f"{counts}")
    print(f"   Ray start-up {started:.1f} s (once per process, not in the figures above); overhead per item "
          f"{per_item:.1f} ms (tiny items: local {small['local'] * 1000 / items:.1f} ms/item, "
          f"ray {small['ray'] * 1000 / items:.1f} ms/item)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument("--cpu-items", type=int, default=20)
    parser.add_argument("--words", type=int, default=1500)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--model", default="llama-cpp", help="the ask step's model (mock: no llama.cpp)")
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="imagine-bench-flows-"))
    client = Client()
    print(f"home {client.settings.home}, work in {root}, {os.cpu_count()} CPUs")
    bench_cache(root, args.items, args.model, client)
    if not args.skip_ray:
        bench_executors(root, args.cpu_items, args.words, args.cpus, client)


if __name__ == "__main__":
    main()
