"""Router: plans by capability, privacy, cost and health; falls back, cascades, and logs every decision."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from typing import Any, AsyncIterator

import pytest

import imagine
from imagine import BudgetExceeded, EngineNotFound, InputError, TextDelta, Usage
from imagine.config import ModelSpec
from imagine.engine import Engine, Request
from imagine.errors import RateLimited, UpstreamError, UpstreamTimeout
from imagine.events import Done, Event, Restart
from imagine.parts import Modality
from imagine.registry import Registry
from imagine.router import CircuitBreaker, Policy, Router, explain


class Scripted(Engine):
    """A test engine whose answers are scripted: "ok:<text>", "fail", "timeout", "ratelimit:<s>", "cut:<text>"."""

    features = frozenset({"stream", "json_schema"})
    default_model = "m"
    price = 0.0

    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        super().__init__(settings)
        self.script: deque[str] = deque()
        self.calls = 0

    def estimate_cost(self, model: str, input_tokens: int, output_tokens: int, images: int = 0,
                      audio_seconds: float = 0.0) -> float | None:
        return (input_tokens + output_tokens) * self.price

    async def stream(self, request: Request) -> AsyncIterator[Event]:
        self.calls += 1
        step = self.script.popleft() if self.script else f"ok:{self.id} answer"
        kind, _, arg = step.partition(":")
        await asyncio.sleep(0)
        if kind == "fail":
            raise UpstreamError(f"{self.id} returned 500")
        if kind == "timeout":
            raise UpstreamTimeout(f"{self.id} timed out")
        if kind == "ratelimit":
            raise RateLimited(f"{self.id} rate limited", retry_after=float(arg))
        if kind == "cut":
            yield TextDelta(arg)
            raise UpstreamError(f"stream from {self.id} ended before the answer was complete")
        for word in arg.split(" "):
            yield TextDelta(word + " ")
        yield Usage(3, len(arg.split()), cost=self.price * 100)
        yield Done()


def engine_class(engine_id: str, locality: str = "local", price: float = 0.0, inputs=(Modality.TEXT,)) -> type:
    return type(engine_id.title().replace("-", ""), (Scripted,),
                {"id": engine_id, "locality": locality, "price": price, "inputs": frozenset(inputs)})


@pytest.fixture
def setup():
    """A registry with: small (local, free), vision (local, free, takes images), cloud-a (cheap), cloud-b (dear).
    Ties keep registry order, so `small` comes before `vision` among the free local engines."""
    registry = Registry(load_plugins=False)
    for cls in (engine_class("small"), engine_class("vision", inputs=(Modality.TEXT, Modality.IMAGE)),
                engine_class("cloud-a", "cloud", price=1e-6), engine_class("cloud-b", "cloud", price=1e-4)):
        registry.register(cls)
    imagine.registry.reset_registry(registry)
    engines = {i: registry.engine(i) for i in registry.ids}
    return registry, engines


def ask(prompt: str, **kwargs: Any):
    return imagine.ask(prompt, **kwargs)


def test_policy_parsing():
    p = Policy.parse("cheapest,local_only,cascade")
    assert (p.prefer, p.local_only, p.cascade) == ("cheapest", True, True)
    with pytest.raises(InputError, match="unknown policy 'cheap'"):
        Policy.parse("cheap")


def test_local_only_never_calls_cloud(setup):
    registry, engines = setup
    engines["small"].script.append("fail")
    engines["vision"].script.append("fail")
    with pytest.raises(UpstreamError):
        ask("hi", policy="local_only").text()
    assert engines["cloud-a"].calls == 0 and engines["cloud-b"].calls == 0
    decision = Router(registry).plan([imagine.Message.user("hi")], "auto", policy=Policy.parse("local_only"))
    dropped = {c.ref: c.reason for c in decision.candidates if not c.kept}
    assert dropped["cloud-a:m"].startswith("local_only")


@pytest.mark.parametrize("failure", ["fail", "timeout", "cut:half an ans"])
def test_failures_fall_back_and_the_log_shows_both_attempts(setup, failure):
    registry, engines = setup
    engines["small"].script.append(failure)
    response = ask("hi", policy="local")
    assert response.text() == "vision answer "
    events = list(response.events())
    if failure.startswith("cut"):
        assert any(isinstance(e, Restart) for e in events)  # the consumer is told to start over
    row = imagine.get_store().get(response.id)
    attempts = row["routing"]["attempts"]
    assert [a["ref"] for a in attempts] == ["small:m", "vision:m"]
    assert attempts[0]["outcome"] == "error" and attempts[1]["outcome"] == "ok"
    assert row["engine"] == "vision" and row["routing"]["chosen"] == "vision:m"
    assert row["output_text"] == "vision answer "


def test_rate_limit_honours_retry_after_then_succeeds(setup):
    registry, engines = setup
    engines["small"].script.extend(["ratelimit:0.2", "ok:after waiting"])
    response = ask("hi", policy="local")
    assert response.text() == "after waiting "
    attempts = response.routing["attempts"]
    assert [a["ref"] for a in attempts] == ["small:m", "small:m"]


def test_long_retry_after_moves_on(setup):
    registry, engines = setup
    engines["small"].script.append("ratelimit:60")
    assert ask("hi", policy="local").text() == "vision answer "


def test_preferences_order_the_plan(setup):
    registry, _ = setup
    router = Router(registry)
    msgs = [imagine.Message.user("hi")]
    plan = lambda p: [c.ref for c in router.plan(msgs, "auto", policy=Policy.parse(p)).plan]  # noqa: E731
    assert plan("cloud")[:2] == ["cloud-a:m", "cloud-b:m"]
    assert plan("cheapest")[-1] == "cloud-b:m"
    assert plan("local")[:2] in (["small:m", "vision:m"], ["vision:m", "small:m"])
    image_plan = router.plan([imagine.Message.user("x", imagine.Image(_png()))], "auto", policy=Policy())
    assert [c.ref for c in image_plan.plan] == ["vision:m"]
    assert "does not take image" in {c.ref: c.reason for c in image_plan.candidates}["small:m"]


SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


def test_cascade_escalates_exactly_when_the_schema_check_fails(setup):
    registry, engines = setup
    engines["small"].script.append('ok:{"n": 4}')
    ok = ask("2+2 as JSON", policy="cascade", schema=SCHEMA)
    assert ok.parsed == {"n": 4} and engines["cloud-a"].calls == 0
    assert ok.routing["chosen"] == "small:m"

    engines["small"].script.append("ok:four")  # not JSON: fails the check
    engines["vision"].script.append('ok:{"n": "four"}')  # wrong type: fails too
    engines["cloud-a"].script.append('ok:{"n": 4}')
    escalated = ask("2+2 as JSON", policy="cascade", schema=SCHEMA)
    assert escalated.parsed == {"n": 4}
    outcomes = [(a["ref"], a["outcome"]) for a in escalated.routing["attempts"]]
    assert outcomes == [("small:m", "escalated"), ("vision:m", "escalated"), ("cloud-a:m", "ok")]
    assert engines["cloud-b"].calls == 0


def test_confidence_cascade_asks_for_logprobs_and_escalates_on_low_confidence():
    """The router turns on `logprobs` for engines whose options have it; a low mean log-probability
    escalates, and a schema-breaking answer escalates whatever its confidence."""
    from pydantic import BaseModel, ConfigDict

    class LogprobOptions(BaseModel):
        model_config = ConfigDict(extra="forbid")
        logprobs: bool = False
        temperature: float | None = None

    class Unsure(Scripted):
        id, locality, seen = "unsure", "local", []
        Options = LogprobOptions  # type: ignore[assignment]

        async def stream(self, request: Request) -> AsyncIterator[Event]:
            self.seen.append(request.options.logprobs)
            yield TextDelta('{"n": 5}')
            yield Usage(3, 4, cost=0.0, extra={"mean_logprob": -2.5} if request.options.logprobs else {})
            yield Done()

    registry = Registry(load_plugins=False)
    registry.register(Unsure)
    registry.register(engine_class("cloud-a", "cloud", price=1e-6))
    imagine.registry.reset_registry(registry)
    answer = ask("2+2?", model="auto", policy=Policy(cascade=True, check="confidence"))
    assert answer.text().strip() == "cloud-a answer"
    outcomes = [(a["ref"], a["outcome"], a.get("error")) for a in answer.routing["attempts"]]
    assert outcomes[0][:2] == ("unsure:m", "escalated") and "low confidence (-2.50)" in outcomes[0][2]
    assert Unsure.seen == [True]  # the router asked for log-probabilities
    plain = ask("2+2?", model="unsure", temperature=0)
    plain.text()
    assert Unsure.seen == [True, False]  # and only when the confidence check needs them


def test_budget_refuses_before_spending(setup):
    registry, engines = setup
    with pytest.raises(BudgetExceeded, match="budget"):
        ask("hi " * 50, policy=Policy(prefer="cloud", max_cost=1e-9, local_only=False), model="cloud")
    assert engines["cloud-a"].calls == 0 and engines["cloud-b"].calls == 0
    # a budget that fits the cheap cloud engine but not the dear one
    decision = Router(registry).plan([imagine.Message.user("hi")], "cloud", policy=Policy(max_cost=0.01))
    assert [c.ref for c in decision.plan] == ["cloud-a:m"]


def test_daily_budget_counts_logged_spend(setup):
    registry, engines = setup
    router = Router(registry, spent_today=lambda: 0.999)
    decision = router.plan([imagine.Message.user("hi")], "cloud", policy=Policy(max_cost_per_day=1.0))
    assert [c.ref for c in decision.plan] == ["cloud-a:m"]  # cloud-b's estimate exceeds what is left


def test_circuit_breaker_opens_and_recovers():
    now = [0.0]
    breaker = CircuitBreaker(threshold=3, cooldown=30, clock=lambda: now[0])
    for _ in range(3):
        assert breaker.allow("x")
        breaker.failure("x")
    assert breaker.state("x") == "open" and not breaker.allow("x")
    now[0] = 31
    assert breaker.state("x") == "half-open" and breaker.allow("x")
    breaker.failure("x")  # the probe fails: open again
    assert not breaker.allow("x")
    now[0] = 62
    breaker.success("x")
    assert breaker.state("x") == "closed"


def test_breaker_skips_a_failing_engine_in_plans(setup):
    registry, engines = setup
    for _ in range(3):
        engines["small"].script.append("fail")
        ask("hi", policy="local").text()
    from imagine.router import get_router

    decision = get_router(registry).plan([imagine.Message.user("hi")], "auto", policy=Policy(prefer="local"))
    reasons = {c.ref: c.reason for c in decision.candidates}
    assert reasons["small:m"] == "circuit open after repeated failures"
    calls = engines["small"].calls
    ask("hi", policy="local").text()
    assert engines["small"].calls == calls  # skipped, not called


def test_explain_and_errors(setup):
    registry, _ = setup
    decision = Router(registry).plan([imagine.Message.user("hi")], "auto", policy=Policy(local_only=True))
    rows = explain(decision)
    assert rows[0][0] == "1" and any(r[0] == "-" and "local_only" in r[3] for r in rows)
    with pytest.raises(EngineNotFound, match="unknown model or engine 'smal'"):
        Router(registry).plan([imagine.Message.user("hi")], "smal:x")
    audio = imagine.Audio.from_samples([0.0] * 1600, 16000)
    with pytest.raises(imagine.EngineUnavailable, match="no engine can take this request"):
        ask(None, attach=[audio], policy="auto").text()


def test_explicit_cloud_model_under_local_only_is_refused(setup):
    with pytest.raises(InputError, match="local_only"):
        ask("hi", model="cloud-a:m", policy="local_only")


def _png() -> bytes:
    from .helpers.media import png_bytes

    return png_bytes()
