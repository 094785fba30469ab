"""Router benchmark: decision overhead, and what a cascade keeps local.

1. Overhead: `Router.plan` for one request over 50 registered engines, against the direct path
   (`Registry.resolve` of one named engine) and a whole request to the mock engine, in one run.
   Goal: < 0.1 ms per decision.
2. Cascade: the bundled SmolLM2-135M (llama-cpp) is the "local" engine; the "cloud" one is a
   stand-in that solves this task set exactly (a program, not a model: we have no second model
   offline). On 20 checkable tasks (10 arithmetic, 10 JSON extractions, from a seed) it prints the
   accuracy of each alone and, for cascades with the schema check and the self-check, the share of
   requests kept local and the accuracy kept.

    .venv/bin/python bench/router.py [--calls 2000] [--tasks 20] [--skip-llm]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import tempfile
import time
from typing import Any, AsyncIterator

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("IMAGINE_HOME", tempfile.mkdtemp(prefix="imagine-bench-"))

import imagine  # noqa: E402
from imagine.config import ModelSpec  # noqa: E402
from imagine.engine import Engine, Request  # noqa: E402
from imagine.engines.cloud._cloud import CloudOptions  # noqa: E402
from imagine.events import Done, Event, TextDelta, Usage  # noqa: E402
from imagine.parts import Message, Modality  # noqa: E402
from imagine.registry import Registry  # noqa: E402
from imagine.router import Policy, Router  # noqa: E402


# -- 1. decision overhead -------------------------------------------------------------------------

class Synthetic(Engine):
    features = frozenset({"stream", "json_schema"})
    default_model = "m"
    price = 0.0

    def estimate_cost(self, model: str, input_tokens: int, output_tokens: int, images: int = 0,
                      audio_seconds: float = 0.0) -> float | None:
        return (input_tokens + output_tokens) * self.price

    async def stream(self, request: Request) -> AsyncIterator[Event]:
        yield TextDelta("ok")
        yield Done()


def overhead(calls: int) -> None:
    registry = Registry()  # the real plugins (llama-cpp, whisper, ..., mock) ...
    rng = random.Random(0)
    modality_sets = [(Modality.TEXT,), (Modality.TEXT, Modality.IMAGE), (Modality.AUDIO,), (Modality.IMAGE,)]
    while len(registry.ids) < 50:  # ... plus synthetic ones up to 50 engines
        n = len(registry.ids)
        registry.register(type(f"E{n}", (Synthetic,), {
            "id": f"engine-{n:02d}", "locality": rng.choice(["local", "cloud"]), "price": rng.random() * 1e-5,
            "inputs": frozenset(rng.choice(modality_sets)), "outputs": frozenset({Modality.TEXT})}))
    messages = [Message.user("Summarise the meeting notes in three bullet points.")]
    policies = [Policy(), Policy(prefer="cheapest"), Policy(local_only=True), Policy(prefer="best", max_cost=0.001)]
    # cold: a new router each time (a new Client, a CLI run): every (engine, model) is looked up afresh
    cold_runs = max(20, calls // 100)
    t0 = time.perf_counter()
    for i in range(cold_runs):
        Router(registry).plan(messages, "auto", policy=policies[i % len(policies)], options={"temperature": 0})
    cold_ms = (time.perf_counter() - t0) / cold_runs * 1000
    router = Router(registry)
    for policy in policies:  # warm the per-router caches, as a long-running process would be
        router.plan(messages, "auto", policy=policy, options={"temperature": 0})

    t0 = time.perf_counter()
    for i in range(calls):
        decision = router.plan(messages, "auto", policy=policies[i % len(policies)], options={"temperature": 0})
    plan_ms = (time.perf_counter() - t0) / calls * 1000

    t0 = time.perf_counter()
    for _ in range(calls):
        registry.resolve("mock:echo")
    resolve_ms = (time.perf_counter() - t0) / calls * 1000
    t0 = time.perf_counter()
    for _ in range(calls):  # a named model is a plan of one: what every direct request now pays
        router.plan(messages, "mock:echo", options={"seed": 1}, direct=True)
    named_ms = (time.perf_counter() - t0) / calls * 1000

    imagine.registry.reset_registry(registry)
    t0 = time.perf_counter()
    n_requests = max(50, calls // 20)
    for _ in range(n_requests):
        imagine.ask("hello", "mock", log=False).text()
    request_ms = (time.perf_counter() - t0) / n_requests * 1000
    imagine.registry.reset_registry()

    kept = len(decision.plan)
    print(f"[overhead] {len(registry.ids)} engines ({len(decision.candidates)} candidates, {kept} kept in the last plan)")
    print(f"  Router.plan, warm    : {plan_ms:.4f} ms per decision   (goal < 0.1 ms)")
    print(f"  Router.plan, cold    : {cold_ms:.4f} ms (a new router: first plan of a process or Client)")
    print(f"  plan of one (named)  : {named_ms:.4f} ms (-m mock:echo, the direct path)")
    print(f"  Registry.resolve     : {resolve_ms:.4f} ms (direct, one named engine)  ratio plan/resolve {plan_ms / resolve_ms:.1f}")
    print(f"  mock request, e2e    : {request_ms:.4f} ms                            plan is {plan_ms / request_ms:.1%} of it")


# -- 2. cascade --------------------------------------------------------------------------------------

FIRST = ["Maria", "John", "Aiko", "Pedro", "Fatima", "Lukas", "Chen", "Olga", "Samuel", "Nadia"]
LAST = ["Lopez", "Smith", "Tanaka", "Silva", "Haddad", "Becker", "Wang", "Ivanova", "Okafor", "Rossi"]
CITIES = ["Lisbon", "Boston", "Osaka", "Recife", "Cairo", "Hamburg", "Shanghai", "Kazan", "Lagos", "Turin"]
ARITH = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
PERSON = {"type": "object", "properties": {"name": {"type": "string", "minLength": 3},
                                           "age": {"type": "integer", "minimum": 1, "maximum": 110}},
          "required": ["name", "age"]}


def tasks(n: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if i % 2 == 0:
            a, b = rng.randint(2, 60), rng.randint(2, 60)
            op = rng.choice(["+", "-", "*"])
            value = {"+": a + b, "-": a - b, "*": a * b}[op]
            out.append({"prompt": f"What is {a} {op} {b}? Reply in JSON.", "schema": ARITH, "truth": {"answer": value}})
        else:
            name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
            age, city = rng.randint(18, 90), rng.choice(CITIES)
            out.append({"prompt": f"Extract the person's name and age as JSON: '{name} is {age} years old "
                                  f"and lives in {city}.'", "schema": PERSON, "truth": {"name": name, "age": age}})
    return out


class Oracle(Engine):
    """The 'cloud' stand-in: solves exactly these tasks by parsing them (priced like a small cloud model)."""

    id = "oracle"
    locality = "cloud"
    features = frozenset({"stream", "json_schema"})
    default_model = "exact"
    Options = CloudOptions  # accepts temperature, seed, max_tokens like an API

    def estimate_cost(self, model: str, input_tokens: int, output_tokens: int, images: int = 0,
                      audio_seconds: float = 0.0) -> float | None:
        return (input_tokens * 0.15 + output_tokens * 0.60) / 1e6

    def spec(self, model: str) -> ModelSpec:
        return ModelSpec(price_input=0.15, price_output=0.60, quality=100)

    async def stream(self, request: Request) -> AsyncIterator[Event]:
        text = request.messages[-1].text
        if m := re.search(r"What is (-?\d+) ([+\-*]) (-?\d+)\?", text):
            a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
            answer: dict[str, Any] = {"answer": {"+": a + b, "-": a - b, "*": a * b}[op]}
        elif m := re.search(r": '(.+?) is (\d+) years old", text):
            answer = {"name": m.group(1), "age": int(m.group(2))}
        else:
            answer = {}
        body = json.dumps(answer)
        yield TextDelta(body)
        yield Usage(len(text) // 4, len(body) // 4, cost=self.estimate_cost("exact", len(text) // 4, len(body) // 4))
        yield Done()


def run(task_set: list[dict[str, Any]], **kwargs: Any) -> tuple[float, float, float]:
    """(accuracy, share answered locally, seconds) for the task set under one configuration."""
    correct = local = 0
    t0 = time.perf_counter()
    for task in task_set:
        response = imagine.ask(task["prompt"], schema=task["schema"], temperature=0, seed=1, max_tokens=48,
                               log=False, **kwargs)
        try:
            value = response.json()
        except imagine.ImagineError:
            value = None
        correct += value == task["truth"]
        routing = response.routing
        chosen = routing["chosen"] if routing else f"{response.engine.id}:"
        local += chosen.startswith("llama-cpp:")
    n = len(task_set)
    return correct / n, local / n, time.perf_counter() - t0


def cascade(n_tasks: int) -> None:
    registry = Registry()
    registry.register(Oracle)
    imagine.registry.reset_registry(registry)
    task_set = tasks(n_tasks)
    print(f"[cascade] {len(task_set)} tasks: {len(task_set) - len(task_set) // 2} arithmetic, "
          f"{len(task_set) // 2} JSON extraction; local = llama-cpp:smollm2, cloud = oracle stand-in")
    rows = [("local only", dict(model="llama-cpp")),
            ("cloud only", dict(model="oracle")),
            ("cascade, schema check", dict(model="auto", policy=Policy(cascade=True, check="schema"))),
            ("cascade, self-check", dict(model="auto", policy=Policy(cascade=True, check="self_check"))),
            ("cascade, confidence", dict(model="auto", policy=Policy(cascade=True, check="confidence")))]
    for label, kwargs in rows:
        accuracy, share, seconds = run(task_set, **kwargs)
        print(f"  {label:<22}: accuracy {accuracy:5.0%}   kept local {share:5.0%}   {seconds:5.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--skip-llm", action="store_true", help="only the overhead part")
    args = parser.parse_args()
    overhead(args.calls)
    if not args.skip_llm:
        cascade(args.tasks)


if __name__ == "__main__":
    main()
