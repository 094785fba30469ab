"""One real uvicorn server per test module (tests/helpers/server.py starts it)."""

from __future__ import annotations

from typing import Iterator

import pytest

from ..helpers.server import Served, served


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with served(tmp_path_factory.mktemp("serve-home")) as running:
        yield running
