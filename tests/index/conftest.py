"""Fixtures for the store tests: one real PostgreSQL with pgvector for the whole session (the `pgserver`
package, on a unix socket in a temp dir, stopped at the end), and a fresh store of each backend per test,
so every store test runs on LanceDB and on PostgreSQL alike."""

from __future__ import annotations

import uuid
import warnings
from pathlib import Path
from typing import Iterator

import pytest

from imagine.index.store import ChunkStore

from ..helpers.stores import BACKENDS, StoreFactory, missing


@pytest.fixture(scope="session")
def pg_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL server for this test session, reached through its unix socket."""
    with warnings.catch_warnings():  # pgserver reads platformdirs' runtime dir at import; unset here
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
        import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("pg") / "data", cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@pytest.fixture(params=BACKENDS)
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Opens (again) this test's one index: each call is a new store object over the same data."""
    backend: str = request.param
    reason = missing(backend)
    if reason:
        pytest.skip(reason)
    opened: list[ChunkStore] = []
    if backend == "lance":
        from imagine.index.lance import LanceStore

        def make() -> ChunkStore:
            opened.append(LanceStore(tmp_path / "lance"))
            return opened[-1]
    else:
        from imagine.index.pgvector import PgVectorStore

        url: str = request.getfixturevalue("pg_url")
        name = f"test-{uuid.uuid4().hex[:12]}"

        def make() -> ChunkStore:
            opened.append(PgVectorStore(url, name))
            return opened[-1]
    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: StoreFactory) -> ChunkStore:
    return open_store()
