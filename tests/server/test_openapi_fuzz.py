"""schemathesis over the server's own OpenAPI document: whatever a client sends, the answer is never a 5xx
and always matches the schema the server publishes (odd input is a 4xx in OpenAI's error shape).

The app runs in-process (ASGI) over the mock engine, which is also the configured default model, so a
generated request never reaches a slow engine. The number of examples per operation is small for CI;
IMAGINE_FUZZ_EXAMPLES=500 runs a deeper search."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error, response_schema_conformance  # noqa: E402

EXAMPLES = int(os.environ.get("IMAGINE_FUZZ_EXAMPLES", "15"))
SLOW = ("/v1/audio", "/v1/images")  # media engines: real models, seconds per call; their own tests cover them


def _app(home: Path) -> Any:
    from imagine import Client
    from imagine.server.app import create_app
    from imagine.server.settings import ServerSettings

    client = Client(home=home, config={"model": "mock", "aliases": {"local": "mock", "auto": "mock"}})
    return create_app(client, settings=ServerSettings(allowed_hosts=["testserver"], max_body_bytes=1 << 20))


_HOME = Path(tempfile.mkdtemp(prefix="imagine-fuzz-"))
APP = _app(_HOME)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP).exclude(path_regex="^(" + "|".join(SLOW) + ")")
schema.config.generation.modes = list(GenerationMode)  # valid requests, and ones that break the schema


@pytest.fixture(scope="module", autouse=True)
def _cleanup() -> Iterator[None]:
    yield
    APP.state.client.close()
    shutil.rmtree(_HOME, ignore_errors=True)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_server_errors_and_answers_match_the_schema(case: Any) -> None:
    response = case.call()
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
    kind = "".join(response.headers.get("content-type", [""]))
    if response.status_code >= 400 and kind.startswith("application/json"):
        error = response.json().get("error")
        assert isinstance(error, dict) and isinstance(error.get("message"), str), response.text
