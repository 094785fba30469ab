"""`GET /metrics`: Prometheus text that a scraper accepts, and counters that move with the traffic."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from imagine.server.metrics import Histogram, Metrics, exposition

openai = pytest.importorskip("openai")

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*\})? '
                     r'(-?[0-9.e+-]+|\+Inf|NaN)$')


def parse(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Check the exposition line by line (HELP and TYPE once per family, before its samples; every sample
    well formed and of a declared family) and return name -> [(labels, value)]."""
    assert text.endswith("\n")
    types: dict[str, str] = {}
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name not in types and kind in ("counter", "gauge", "histogram")
            types[name] = kind
            continue
        found = _SAMPLE.match(line)
        assert found, f"bad line: {line!r}"
        name = found.group(1)
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
        assert family in types, f"{name} has no TYPE"
        labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', found.group(2) or ""))
        samples.setdefault(name, []).append((labels, float(found.group(3))))
    return samples


def value(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    return sum(v for got, v in samples.get(name, []) if all(got.get(k) == w for k, w in labels.items()))


def test_histogram_buckets_are_cumulative() -> None:
    hist = Histogram((0.1, 1.0))
    for x in (0.05, 0.1, 0.5, 5.0):
        hist.observe(x)
    lines = list(hist.lines("h", 'route="/x"'))
    assert lines == ['h_bucket{route="/x",le="0.1"} 2', 'h_bucket{route="/x",le="1"} 3',
                     'h_bucket{route="/x",le="+Inf"} 4', 'h_sum{route="/x"} 5.650000', 'h_count{route="/x"} 4']


def test_label_values_are_escaped() -> None:
    metrics = Metrics()
    metrics.observe_tokens('we"ird\\model\n', 3, 0)
    samples = parse(exposition(metrics))
    assert value(samples, "imagine_tokens_total", direction="input") == 3


def test_counters_move_with_requests(server: Any) -> None:
    before = parse(httpx.get(server.url + "/metrics").text)
    client = server.openai()
    client.chat.completions.create(model="mock", messages=[{"role": "user", "content": "one two three"}])
    list(client.chat.completions.create(model="mock", messages=[{"role": "user", "content": "four five"}],
                                        stream=True))
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope:x", messages=[{"role": "user", "content": "x"}])
    httpx.get(server.url + "/no/such/route")
    response = httpx.get(server.url + "/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain; version=0.0.4")
    after = parse(response.text)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    chat = {"route": "/v1/chat/completions", "method": "POST"}
    assert moved("imagine_http_requests_total", status="200", **chat) == 2
    assert moved("imagine_http_requests_total", status="404", **chat) == 1
    assert moved("imagine_http_requests_total", route="other", status="404") == 1  # never the raw path
    assert moved("imagine_http_request_duration_seconds_count", **chat) == 3
    assert moved("imagine_http_request_duration_seconds_bucket", le="+Inf", **chat) == 3
    assert moved("imagine_tokens_total", model="mock:echo", direction="output") == 5
    assert moved("imagine_tokens_total", model="mock:echo", direction="input") == 5
    assert value(after, "imagine_http_requests_in_flight") == 1  # this scrape
    assert value(after, "imagine_queue_depth", model="mock:echo") == 0
    assert value(after, "imagine_generations_in_flight", model="mock:echo") == 0
    buckets = [v for labels, v in after["imagine_http_request_duration_seconds_bucket"]
               if labels["route"] == "/v1/chat/completions"]
    assert buckets == sorted(buckets)


def test_engine_errors_are_counted(server: Any) -> None:
    from imagine.errors import UpstreamError

    server.mock().enqueue(UpstreamError("boom"))
    with pytest.raises(openai.APIStatusError):
        server.openai().chat.completions.create(model="mock", messages=[{"role": "user", "content": "x"}])
    samples = parse(httpx.get(server.url + "/metrics").text)
    assert value(samples, "imagine_engine_errors_total", model="mock:echo", error="UpstreamError") == 1
