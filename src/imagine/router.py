"""Router: choose engines for a request by capability, privacy, cost and health; run the plan with
fallback and cascade; record every decision.

A *plan* is an ordered list of (engine, model) candidates that can take the request. Running it tries
them in turn: a failure (error, timeout, rate limit, refusal, cut stream) falls back to the next;
with `cascade`, an answer that fails its check (schema, self-check, confidence) escalates to the next.
A stream that restarts on another engine emits `Restart` so consumers drop the text so far. Each decision
(candidates, why each was kept or dropped, attempts, cost) is logged with the response.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Sequence

from .engine import Engine, Request, check_finite
from .errors import (BudgetExceeded, EngineUnavailable, ImagineError, InputError, OptionsError, RateLimited,
                     UpstreamError)
from .events import Done, Event, PartDelta, PartOut, Restart, TextDelta, Usage
from .media.limits import context_error, prompt_bytes
from .parts import Message, Modality
from .registry import BUILTIN_ALIASES, Registry

__all__ = ["Attempt", "Candidate", "CircuitBreaker", "Decision", "Execution", "Policy", "Router", "explain",
           "get_router"]

PREFERENCES = ("auto", "local", "cloud", "cheapest", "fastest", "best")
CHECKS = ("schema", "self_check", "confidence")


@dataclass
class Policy:
    """How to choose. Parse from the CLI/config form: `local_only`, `cheapest`, `cascade,local`, ..."""

    prefer: str = "auto"
    local_only: bool = False
    max_cost: float | None = None  # US dollars per request (estimated before running)
    max_cost_per_day: float | None = None
    fallback: bool = True
    cascade: bool = False
    check: str = "schema"  # what a cascade checks: schema | self_check | confidence
    min_confidence: float = -0.6  # mean token log-prob below this fails the confidence check
    max_retry_wait: float = 5.0  # honour Retry-After up to this many seconds, else move on

    def __post_init__(self) -> None:
        # NaN compares false, so a nan budget would switch the budget off: every number must be finite
        for name in ("max_cost", "max_cost_per_day", "min_confidence", "max_retry_wait"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value)):
                raise InputError(f"policy {name} must be a finite number, not {value!r}")

    @classmethod
    def parse(cls, text: str | None, **overrides: Any) -> "Policy":
        policy = cls(**overrides)
        for word in (text or "").replace(" ", "").split(","):
            if not word:
                continue
            if word in PREFERENCES:
                policy.prefer = word
            elif word == "local_only":
                policy.local_only = True
            elif word == "cascade":
                policy.cascade = True
            elif word in CHECKS:
                policy.cascade, policy.check = True, word
            elif word == "no_fallback":
                policy.fallback = False
            else:
                known = ", ".join([*PREFERENCES, "local_only", "cascade", *CHECKS, "no_fallback"])
                raise InputError(f"unknown policy {word!r}", hint=f"use one or more of: {known}")
        return policy


@dataclass(slots=True)
class Candidate:
    ref: str
    engine_id: str
    model: str
    locality: str
    kept: bool = True
    reason: str = ""
    est_cost: float | None = None
    quality: float = 0.0
    options: Any = None  # the request's options as this engine parsed them (None until judged)

    def record(self) -> dict[str, Any]:
        return {"ref": self.ref, "locality": self.locality, "kept": self.kept, "reason": self.reason,
                "est_cost": self.est_cost}


@dataclass
class Attempt:
    ref: str
    outcome: str  # ok | error | escalated | cancelled
    error: str | None = None
    latency_ms: float = 0.0
    cost: float | None = None


@dataclass
class Decision:
    """What the router considered and did; stored as the `routing` column of the log."""

    requested: str
    policy: Policy
    direct: bool = False  # no policy was given: the named (or configured default) model, no fallback
    candidates: list[Candidate] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    chosen: str | None = None
    plan_ms: float = 0.0

    @property
    def plan(self) -> list[Candidate]:
        return [c for c in self.candidates if c.kept]

    def record(self) -> dict[str, Any]:
        p = self.policy
        return {"strategy": "direct" if self.direct else "router", "requested": self.requested,
                "policy": {"prefer": p.prefer, "local_only": p.local_only, "max_cost": p.max_cost,
                           "cascade": p.cascade, "check": p.check if p.cascade else None},
                "candidates": [c.record() for c in self.candidates], "plan": [c.ref for c in self.plan],
                "attempts": [a.__dict__ for a in self.attempts], "chosen": self.chosen,
                "plan_ms": round(self.plan_ms, 3)}


class CircuitBreaker:
    """Per engine: after `threshold` consecutive failures, skip it for `cooldown` seconds, then let one
    probe through (half-open); a success closes it again."""

    def __init__(self, threshold: int = 3, cooldown: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.threshold, self.cooldown, self.clock = threshold, cooldown, clock
        self._failures: dict[str, int] = {}
        self._opened: dict[str, float] = {}

    def state(self, engine_id: str) -> str:
        opened = self._opened.get(engine_id)
        if opened is None:
            return "closed"
        return "half-open" if self.clock() - opened >= self.cooldown else "open"

    @property
    def has_open(self) -> bool:
        """Cheap pre-check for the planner: is any engine's circuit open (or half-open)?"""
        return bool(self._opened)

    def allow(self, engine_id: str) -> bool:
        return self.state(engine_id) != "open"

    def success(self, engine_id: str) -> None:
        self._failures.pop(engine_id, None)
        self._opened.pop(engine_id, None)

    def failure(self, engine_id: str) -> None:
        count = self._failures.get(engine_id, 0) + 1
        self._failures[engine_id] = count
        if count >= self.threshold or engine_id in self._opened:
            self._opened[engine_id] = self.clock()  # (re)open; a failed half-open probe re-opens


def estimate_tokens(messages: Sequence[Message]) -> int:
    """A cheap size estimate (about 4 characters a token) used only to price a plan before running it."""
    return max(1, sum(len(m.text) for m in messages) // 4 + 8 * len(messages))


@dataclass(frozen=True)
class _Static:
    """What does not change between requests for one (engine, model): looked up once per router."""

    engine_id: str
    model: str
    ref: str
    locality: str
    unavailable: str | None
    inputs: frozenset[Modality]
    outputs: frozenset[Modality]
    features: frozenset[str]
    needs_one_of: frozenset[Modality]
    quality: float
    engine: Engine | None


class Router:
    """Plans and runs requests over the registry's engines.

    Planning must be cheap (it runs on every request), so what is fixed per (engine, model) —
    availability, capabilities, prices — is looked up once per router; per request only the
    request-dependent checks run: modalities, features, options, budget and engine health.
    """

    def __init__(self, registry: Registry, breaker: CircuitBreaker | None = None,
                 spent_today: Callable[[], float] | None = None) -> None:
        self.registry = registry
        self.breaker = breaker or CircuitBreaker()
        self.spent_today = spent_today or (lambda: 0.0)
        self.latency: dict[str, float] = {}  # engine id -> smoothed seconds, for `fastest`
        self._pairs_cache: dict[str, list[_Static]] = {}
        self._fit_cache: dict[tuple[str, frozenset[Modality], Modality, frozenset[str]], str | None] = {}
        # a named model's resolution (requested, inputs, output) -> ENGINE:MODEL, kept only where resolving
        # it again could not come out differently (the engine checks no model file or hub id)
        self._named_cache: dict[tuple[str, frozenset[Modality], Modality], str] = {}
        self._generation = registry.generation

    def _fresh(self) -> None:
        """Drop what was cached about the registry's engines when they changed (register, replace)."""
        if self._generation != self.registry.generation:
            self._pairs_cache.clear()
            self._fit_cache.clear()
            self._named_cache.clear()
            self._generation = self.registry.generation

    def _resolve_named(self, target: str, needed: frozenset[Modality], want: Modality) -> str:
        key = (target, needed, want)
        ref = self._named_cache.get(key)
        if ref is None:
            resolved = self.registry.resolve(target, inputs=needed or {Modality.TEXT}, want=want)
            ref = resolved.ref
            if type(resolved.engine).check_model is Engine.check_model and len(self._named_cache) < 1024:
                self._named_cache[key] = ref
        return ref

    # -- planning -----------------------------------------------------------------------------------
    def _static(self, engine_id: str, model: str) -> _Static:
        cls = self.registry.engine_class(engine_id)
        reason = cls.unavailable_reason()
        if reason:
            return _Static(engine_id, model, f"{engine_id}:{model}", cls.locality, reason, frozenset(), frozenset(),
                           frozenset(), frozenset(), 0.0, None)
        engine = self.registry.engine(engine_id)
        inputs, outputs, features = engine.capabilities(model)
        spec = engine.spec(model)
        quality = (spec.quality if spec is not None and spec.quality is not None
                   else (spec.price_output or 0.0) if spec is not None else 0.0)
        return _Static(engine_id, model, f"{engine_id}:{model}", engine.locality, None, inputs, outputs, features,
                       engine.needs_one_of, quality, engine)

    def _pairs(self, requested: str) -> list[_Static]:
        """Candidates a reference allows: one for ENGINE:MODEL, every known (engine, model) for aliases."""
        cached = self._pairs_cache.get(requested)
        if cached is not None:
            return cached
        target = self.registry.expand(requested, configured=False)
        pairs: list[tuple[str, str]] = []
        if target in BUILTIN_ALIASES:
            for engine_id in self.registry.ids:
                cls = self.registry.engine_class(engine_id)
                if not cls.auto_select:
                    continue
                if target != "auto" and cls.locality != target:
                    continue
                models = [cls.default_model]
                if cls.locality == "cloud" and not cls.unavailable_reason():
                    models = self.registry.engine(engine_id).models()
                pairs.extend((engine_id, m) for m in models if m)
        else:
            engine_id, _, model = target.partition(":")
            pairs.append((engine_id, model or self.registry.engine_class(engine_id).default_model))
        statics = [self._static(e, m) for e, m in pairs]
        self._pairs_cache[requested] = statics
        return statics

    def plan(self, messages: Sequence[Message], requested: str | None, *, want: Modality = Modality.TEXT,
             policy: Policy | None = None, options: dict[str, Any] | None = None,
             schema: dict[str, Any] | None = None, tools: Sequence[dict[str, Any]] = (),
             direct: bool = False) -> Decision:
        """Rank every candidate and say why each was kept or dropped. Runs nothing.

        A named model (`ENGINE:MODEL`, a bare engine id, or an alias of one) is a plan of one candidate,
        checked here the same way with or without a policy: an engine that cannot take the request (its
        inputs, outputs, a feature such as tools or json_schema, an option, the model file) is refused
        with the reason and the way out, never run with part of the request dropped. `direct` (no policy
        given) runs only the first candidate and leaves the circuit breaker out of it."""
        t0 = time.perf_counter()
        check_finite(options)
        policy = policy or Policy(fallback=not direct)
        requested = (requested or "auto").strip() or "auto"
        decision = Decision(requested, policy, direct=direct)
        needed = frozenset(m for msg in messages for m in msg.modalities)
        self._fresh()
        target = self.registry.expand(requested, configured=direct)
        if target not in BUILTIN_ALIASES:  # named: the registry's checks give the specific error and its hint
            requested = decision.requested = self._resolve_named(target, needed, want)
        features = frozenset(({"json_schema"} if schema else set()) | ({"tools"} if tools else set()))
        in_tokens, size = estimate_tokens(messages), prompt_bytes(messages)
        try:
            out_tokens = int((options or {}).get("max_tokens") or 512)
        except (TypeError, ValueError):  # not a number: the engine's option check says so
            out_tokens = 512
        budget_left = None
        if policy.max_cost_per_day is not None:
            budget_left = policy.max_cost_per_day - self.spent_today()
        kept: list[Candidate] = []
        dropped: list[Candidate] = []
        for static in self._pairs(requested):
            cand = Candidate(static.ref, static.engine_id, static.model, static.locality)
            cand.kept, cand.reason = self._judge(static, cand, needed, want, features, policy, options,
                                                 in_tokens, out_tokens, budget_left, direct, size)
            (kept if cand.kept else dropped).append(cand)
        if target not in BUILTIN_ALIASES and dropped:
            self._refuse(dropped[0], options, needed, want, size)
        kept.sort(key=self._ranking(policy))
        decision.candidates = kept + dropped
        decision.plan_ms = (time.perf_counter() - t0) * 1000
        return decision

    def _judge(self, static: _Static, cand: Candidate, needed: frozenset[Modality], want: Modality,
               features: frozenset[str], policy: Policy, options: dict[str, Any] | None,
               in_tokens: int, out_tokens: int, budget_left: float | None, direct: bool = False,
               size: int = 0) -> tuple[bool, str]:
        if policy.local_only and static.locality != "local":
            return False, "local_only: would leave the device"
        if static.unavailable or static.engine is None:
            return False, f"unavailable: {static.unavailable}"
        if not direct and self.breaker.has_open and not self.breaker.allow(static.engine_id):
            return False, "circuit open after repeated failures"
        fit_key = (static.ref, needed, want, features)
        if fit_key not in self._fit_cache:
            self._fit_cache[fit_key] = self._misfit(static, needed, want, features)
        misfit = self._fit_cache[fit_key]
        if misfit:
            return False, misfit
        try:  # parsed once per candidate; the request and the context check take this same object
            cand.options = static.engine.parse_options(options or {})
        except OptionsError as exc:
            return False, f"options: {exc.message}"
        too_long = context_error(static.engine, static.model, cand.options, size)
        if too_long is not None:  # a prompt that cannot fit the window is refused before anything runs
            return False, f"too long: {too_long.message}"
        cand.est_cost = static.engine.estimate_cost(static.model, in_tokens, out_tokens)
        cand.quality = static.quality
        if policy.max_cost is not None and (cand.est_cost is None or cand.est_cost > policy.max_cost):
            return False, f"over budget: ~${cand.est_cost if cand.est_cost is not None else '?'} > ${policy.max_cost}"
        if budget_left is not None and (cand.est_cost is None or cand.est_cost > budget_left):
            return False, f"over the daily budget (${max(budget_left, 0):.4f} left)"
        return True, "capable"

    def _refuse(self, cand: Candidate, options: dict[str, Any] | None, needed: frozenset[Modality],
                want: Modality, size: int = 0) -> None:
        """Raise the caller's error for a named model the plan had to drop for the request's own sake
        (an option, a feature, a modality); policy reasons (local_only, budget) are left to `build`."""
        engine = self.registry.engine(cand.engine_id)
        if cand.reason.startswith("options:"):
            engine.parse_options(options or {})  # raises the OptionsError naming the field
        if cand.reason.startswith("too long:") and (too_long := context_error(engine, cand.model, options, size)):
            raise too_long
        if cand.reason.startswith("lacks "):
            lacking = cand.reason.removeprefix("lacks ").split(", ")
            what = {"json_schema": "constrain output to a schema", "tools": "call tools (tools=)",
                    "seed": "take a seed"}
            raise InputError(f"engine {engine.id} cannot {' or '.join(what.get(f, f) for f in lacking)}"
                             + ("" if cand.model == engine.default_model else f" with model {cand.model}"),
                             hint=f"pick an engine with the {'/'.join(lacking)} feature (see `imagine models`)")
        if cand.reason.startswith(("does not", "needs ")):
            engine.explain_misfit(cand.model, needed, want)
            raise InputError(f"{cand.ref} {cand.reason}", hint="see `imagine models ENGINE` for what it takes")

    @staticmethod
    def _misfit(static: _Static, needed: frozenset[Modality], want: Modality, features: frozenset[str]) -> str | None:
        """Why this (engine, model) cannot take a request of this shape, or None when it can."""
        if not needed <= static.inputs:
            return f"does not take {', '.join(sorted(m.value for m in needed - static.inputs))}"
        if static.needs_one_of and not needed & static.needs_one_of:
            return f"needs {' or '.join(sorted(m.value for m in static.needs_one_of))} input"
        if want not in static.outputs:
            return f"does not produce {want.value}"
        if not features <= static.features:
            return f"lacks {', '.join(sorted(features - static.features))}"
        return None

    def _ranking(self, policy: Policy) -> Callable[[Candidate], Any]:
        cost = lambda c: c.est_cost if c.est_cost is not None else float("inf")  # noqa: E731
        local_first = lambda c: 0 if c.locality == "local" else 1  # noqa: E731
        if policy.prefer == "cloud":
            return lambda c: (-local_first(c), cost(c))
        if policy.prefer == "cheapest" or policy.cascade:
            return lambda c: (cost(c), local_first(c))
        if policy.prefer == "fastest":
            return lambda c: (self.latency.get(c.engine_id, 0.5 if c.locality == "local" else 1.0),)
        if policy.prefer == "best":
            return lambda c: (-c.quality, local_first(c))
        return lambda c: (local_first(c), cost(c))  # auto / local: stay on the device when it can

    # -- running ------------------------------------------------------------------------------------
    def build(self, decision: Decision, request: Request) -> "Execution":
        if not decision.plan:
            dropped = "; ".join(f"{c.ref}: {c.reason}" for c in decision.candidates[:6]) or "no engines"
            if any(c.reason.startswith("over") for c in decision.candidates):
                raise BudgetExceeded(f"no engine fits the budget ({dropped})", hint="raise max_cost or pick a cheaper model")
            if decision.requested not in BUILTIN_ALIASES and decision.candidates:
                raise InputError(f"{decision.requested} cannot take this request: {decision.candidates[0].reason}")
            raise EngineUnavailable(f"no engine can take this request ({dropped})",
                                    hint="see `imagine route ... --explain` and `imagine models`")
        return Execution(self, decision, request)


class Execution(Engine):
    """The one executor: runs a Decision's plan as one event stream. Every request goes through it — a
    named model is a plan of one — and fallback, retry, budgets and cascade are layers of its one loop."""

    id = "plan"

    def __init__(self, router: Router, decision: Decision, request: Request) -> None:
        super().__init__()
        self.router, self.decision, self.template = router, decision, request

    def _request_for(self, cand: Candidate, engine: Engine) -> Request:
        policy = self.decision.policy
        logprobs = policy.cascade and policy.check == "confidence" and "logprobs" in engine.Options.model_fields
        template = self.template
        if not logprobs and cand.model == template.model and type(template.options) is engine.Options:
            return template  # the plan's first candidate: its options were parsed once, at planning
        raw = template.options.model_dump(exclude_unset=True)
        if logprobs:
            raw.setdefault("logprobs", True)  # the confidence check reads the mean token log-probability
        return Request(messages=self.template.messages, model=cand.model, options=engine.parse_options(raw),
                       schema=self.template.schema, want=self.template.want, tools=self.template.tools,
                       limits=self.template.limits)

    async def stream(self, request: Request) -> AsyncIterator[Event]:
        plan = self.decision.plan if self.decision.policy.fallback or self.decision.policy.cascade \
            else self.decision.plan[:1]
        last_error: ImagineError | None = None
        emitted = False
        for index, cand in enumerate(plan):
            engine = self.router.registry.engine(cand.engine_id)
            has_next = index + 1 < len(plan)
            retried = False
            while True:
                attempt = Attempt(cand.ref, "ok")
                self.decision.attempts.append(attempt)
                if emitted:
                    yield Restart(f"{self.decision.attempts[-2].ref} failed or was escalated; now {cand.ref}"
                                  if len(self.decision.attempts) > 1 else "")
                t0 = time.perf_counter()
                text: list[str] = []
                usage = Usage()
                finish: str | None = None
                try:
                    try:
                        async for event in engine.stream(self._request_for(cand, engine)):
                            if isinstance(event, TextDelta):
                                text.append(event.text)
                            if isinstance(event, Usage):
                                usage = usage + event
                            if isinstance(event, Done):
                                finish = finish or event.finish_reason
                                continue  # the executor says when the whole plan is done
                            emitted = emitted or isinstance(event, (TextDelta, PartDelta, PartOut))
                            yield event
                    except (ImagineError, asyncio.CancelledError, GeneratorExit):
                        raise
                    except Exception as exc:  # an engine bug or library failure: a failure of this candidate
                        raise UpstreamError(f"engine {engine.id} failed: {type(exc).__name__}: {exc}") from None
                except (UpstreamError, EngineUnavailable) as exc:
                    attempt.outcome, attempt.error = "error", str(exc)
                    attempt.latency_ms = round((time.perf_counter() - t0) * 1000, 1)
                    if not self.decision.direct:
                        self.router.breaker.failure(cand.engine_id)
                    last_error = exc
                    wait = exc.retry_after if isinstance(exc, RateLimited) else None
                    if wait is not None and wait <= self.decision.policy.max_retry_wait and not retried \
                            and not self.decision.direct:  # a named model alone: the caller decides
                        retried = True
                        await asyncio.sleep(wait)
                        continue
                    break
                except (asyncio.CancelledError, GeneratorExit):
                    attempt.outcome = "cancelled"
                    raise
                elapsed = time.perf_counter() - t0
                attempt.latency_ms, attempt.cost = round(elapsed * 1000, 1), usage.cost
                self.router.breaker.success(cand.engine_id)
                previous = self.router.latency.get(cand.engine_id, elapsed)
                self.router.latency[cand.engine_id] = 0.7 * previous + 0.3 * elapsed
                if self.decision.policy.cascade and has_next:
                    verdict = await self._check("".join(text), usage, cand)
                    if verdict:
                        attempt.outcome, attempt.error = "escalated", verdict
                        break
                self.decision.chosen = cand.ref
                yield Done(finish or "stop")
                return
            if not has_next:
                break
        if last_error is not None and self.decision.chosen is None and \
                all(a.outcome != "escalated" for a in self.decision.attempts):
            raise last_error
        # every cascade step failed its check: keep the last answer (already streamed) as the result
        self.decision.chosen = plan[-1].ref if plan else None
        yield Done("stop")

    async def _check(self, text: str, usage: Usage, cand: Candidate) -> str | None:
        """None when the answer passes the cascade check, else why it failed."""
        policy = self.decision.policy
        if self.template.schema is not None:  # an answer that breaks the schema always escalates
            import jsonschema

            try:
                jsonschema.validate(json.loads(text), self.template.schema)
            except (json.JSONDecodeError, jsonschema.ValidationError) as exc:
                return f"schema check failed: {str(exc).splitlines()[0][:120]}"
        if policy.check == "confidence":
            confidence = usage.extra.get("mean_logprob")
            if confidence is None:
                return None  # the engine gives no log-probs: nothing to judge by
            return None if confidence >= policy.min_confidence else f"low confidence ({confidence:.2f})"
        if policy.check == "self_check":
            engine = self.router.registry.engine(cand.engine_id)
            question = (f"Question: {self.template.messages[-1].text}\nAnswer: {text}\n"
                        "Is this answer correct and complete? Reply with only YES or NO.")
            raw = self.template.options.model_dump(exclude_unset=True)
            raw = {k: v for k, v in raw.items() if k in ("temperature", "seed")}
            req = Request(messages=(Message.user(question),), model=cand.model,
                          options=engine.parse_options({**raw, "max_tokens": 3}))
            reply = "".join([e.text async for e in engine.stream(req) if isinstance(e, TextDelta)])
            return None if "yes" in reply.lower() else f"self-check said {reply.strip()[:20]!r}"
        return None


def explain(decision: Decision) -> list[tuple[str, str, str, str]]:
    """Rows for `imagine route --explain`: (rank or '-', candidate, where, why)."""
    rows = []
    rank = 0
    for cand in decision.candidates:
        if cand.kept:
            rank += 1
        cost = "free" if cand.est_cost == 0 else ("price unknown" if cand.est_cost is None else f"~${cand.est_cost:.5f}")
        where = f"{cand.locality}, {cost}" if cand.kept else cand.locality
        rows.append((str(rank) if cand.kept else "-", cand.ref, where, cand.reason))
    return rows



_router: Router | None = None


def get_router(registry: Registry, spent_today: Callable[[], float] | None = None) -> Router:
    """The process-wide router for this registry (its circuit breakers and latency stats persist);
    `spent_today` tells the daily budget what the log has spent (the default client passes its store's)."""
    global _router
    if _router is None or _router.registry is not registry:
        _router = Router(registry, spent_today=spent_today)
    elif spent_today is not None:
        _router.spent_today = spent_today
    return _router
