"""`/metrics` counters: requests by route and status, latency histograms, tokens, queue depth, in flight.

Prometheus text format written by hand (a few dozen lines; prometheus_client would add a dependency
and a lock per observation for what is, here, one event loop per process). Every observation is a dict
lookup and an integer add on the server's loop, so the per-request cost stays in the microseconds the
overhead benchmark allows. With `--workers N` each worker process counts its own requests: scrape each,
or run one worker when the numbers matter.

Routes are labelled by their template (`/v1/chat/completions`), never by the raw path, so a scanner
trying random URLs adds one `other` series instead of thousands."""

from __future__ import annotations

import bisect
import time
from typing import Any, Awaitable, Callable, Iterable, MutableMapping

__all__ = ["Histogram", "Metrics", "MetricsMiddleware", "exposition"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Histogram:
    """Cumulative-bucket histogram: counts per upper bound, the sum and the count."""

    __slots__ = ("bounds", "counts", "sum", "count")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str, labels: str) -> Iterable[str]:
        total = 0
        sep = "," if labels else ""
        for bound, count in zip(self.bounds, self.counts):
            total += count
            yield f'{name}_bucket{{{labels}{sep}le="{bound:g}"}} {total}'
        yield f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.count}'
        yield f"{name}_sum{{{labels}}} {self.sum:.6f}" if labels else f"{name}_sum {self.sum:.6f}"
        yield f"{name}_count{{{labels}}} {self.count}" if labels else f"{name}_count {self.count}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: str) -> str:
    return ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())


class Metrics:
    """The server's counters. Mutated only on the server's event loop."""

    def __init__(self) -> None:
        self.started = time.time()
        self.requests: dict[tuple[str, str, int], int] = {}
        self.latency: dict[tuple[str, str], Histogram] = {}
        self.in_flight = 0
        self.tokens: dict[tuple[str, str], int] = {}  # (model, "input"|"output") -> tokens
        self.engine_errors: dict[tuple[str, str], int] = {}  # (model, error type) -> count
        self.queue_wait: dict[str, Histogram] = {}
        self.queue_rejected: dict[str, int] = {}
        self.depth: Callable[[], dict[str, tuple[int, int, int]]] = dict  # Admission.depth, set by the app

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        hist = self.latency.get((route, method))
        if hist is None:
            hist = self.latency[(route, method)] = Histogram()
        hist.observe(seconds)

    def observe_tokens(self, model: str, input_tokens: int, output_tokens: int) -> None:
        for kind, n in (("input", input_tokens), ("output", output_tokens)):
            if n:
                self.tokens[(model, kind)] = self.tokens.get((model, kind), 0) + n

    def observe_error(self, model: str, kind: str) -> None:
        self.engine_errors[(model, kind)] = self.engine_errors.get((model, kind), 0) + 1

    def observe_wait(self, lane: str, seconds: float) -> None:
        hist = self.queue_wait.get(lane)
        if hist is None:
            hist = self.queue_wait[lane] = Histogram()
        hist.observe(seconds)

    def rejected(self, lane: str) -> None:
        self.queue_rejected[lane] = self.queue_rejected.get(lane, 0) + 1

    def observe_responses(self, responses: Iterable[Any]) -> None:
        """Tokens and engine errors of finished imagine Responses (usage events, `error`)."""
        for response in responses:
            try:
                model = response.answered_ref
            except Exception:
                model = response.model_ref or "unknown"
            usage_in = usage_out = 0
            for event in response.events_seen:
                if type(event).__name__ == "Usage":
                    usage_in += event.input_tokens or 0
                    usage_out += event.output_tokens or 0
            self.observe_tokens(model, usage_in, usage_out)
            if response.error is not None:
                self.observe_error(model, type(response.error).__name__)


def exposition(metrics: Metrics) -> str:
    """The Prometheus text format (version 0.0.4)."""
    out: list[str] = []

    def family(name: str, kind: str, help: str) -> None:
        out.append(f"# HELP {name} {help}")
        out.append(f"# TYPE {name} {kind}")

    family("imagine_http_requests_total", "counter", "HTTP requests answered, by route template, method and status.")
    for (route, method, status), n in sorted(metrics.requests.items()):
        out.append(f"imagine_http_requests_total{{{_labels(route=route, method=method, status=str(status))}}} {n}")
    family("imagine_http_request_duration_seconds", "histogram",
           "Time from request to the end of the response (a streamed answer: its last byte).")
    for (route, method), hist in sorted(metrics.latency.items()):
        out.extend(hist.lines("imagine_http_request_duration_seconds", _labels(route=route, method=method)))
    family("imagine_http_requests_in_flight", "gauge", "Requests being answered now.")
    out.append(f"imagine_http_requests_in_flight {metrics.in_flight}")
    family("imagine_tokens_total", "counter", "Tokens read (input) and written (output), by model.")
    for (model, kind), n in sorted(metrics.tokens.items()):
        out.append(f"imagine_tokens_total{{{_labels(model=model, direction=kind)}}} {n}")
    family("imagine_engine_errors_total", "counter", "Requests an engine failed, by model and error type.")
    for (model, kind), n in sorted(metrics.engine_errors.items()):
        out.append(f"imagine_engine_errors_total{{{_labels(model=model, error=kind)}}} {n}")
    depth = metrics.depth()
    family("imagine_queue_depth", "gauge", "Requests waiting for a local model's slot.")
    for lane, (waiting, _, _) in sorted(depth.items()):
        out.append(f"imagine_queue_depth{{{_labels(model=lane)}}} {waiting}")
    family("imagine_generations_in_flight", "gauge", "Generations a local model is running now.")
    for lane, (_, running, _) in sorted(depth.items()):
        out.append(f"imagine_generations_in_flight{{{_labels(model=lane)}}} {running}")
    family("imagine_queue_rejected_total", "counter", "Requests refused with 429 because a local model's queue was full.")
    for lane, n in sorted(metrics.queue_rejected.items()):
        out.append(f"imagine_queue_rejected_total{{{_labels(model=lane)}}} {n}")
    family("imagine_queue_wait_seconds", "histogram", "Time a request waited for a local model's slot.")
    for lane, hist in sorted(metrics.queue_wait.items()):
        out.extend(hist.lines("imagine_queue_wait_seconds", _labels(model=lane)))
    family("imagine_start_time_seconds", "gauge", "When this server process started (unix time).")
    out.append(f"imagine_start_time_seconds {metrics.started:.3f}")
    return "\n".join(out) + "\n"


class MetricsMiddleware:
    """ASGI middleware around the whole app: counts each HTTP request with its route template, status
    and duration (to the last byte sent). Two clock reads and a few dict operations per request."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        metrics = self.metrics
        start = time.perf_counter()
        status = 499  # no response started: the client left first (nginx's "client closed request")
        metrics.in_flight += 1

        async def counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counted)
        finally:
            metrics.in_flight -= 1
            route = scope.get("route")
            path = getattr(route, "path", None) or "other"
            metrics.observe_request(path, scope.get("method", ""), status, time.perf_counter() - start)
