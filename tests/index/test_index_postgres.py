"""An Index created while `index_url` points at PostgreSQL lives there: add, search, re-add, ask, drop."""

from __future__ import annotations

import pytest

from imagine.client import Client
from imagine.index import Index

from ..helpers.stores import missing

reason = missing("postgres")
pytestmark = pytest.mark.skipif(reason is not None, reason=reason or "")


def test_an_index_in_postgres_end_to_end(pg_url, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "budget.md").write_text("We decided to cut the travel budget by ten percent next year.\n")
    (docs / "garden.txt").write_text("Tomatoes need six hours of sun and deep watering twice a week.\n")
    client = Client(home=tmp_path / "home", config={"index_url": pg_url})
    index = Index("pg-notes", client, create=True)
    assert index.config.backend == "postgres"
    assert not (index.root / "lance").exists(), "no LanceDB folder for a PostgreSQL index"
    report = index.add([docs])
    assert len(report.added) == 2 and not report.failed
    assert "garden.txt" in index.search("how much sun do tomatoes need?", 1)[0].chunk.source
    rows = client.store.count()
    assert index.add([docs]).unchanged and client.store.count() == rows  # unchanged: no model call
    assert not index.ask("Who painted the Mona Lisa?", "mock").found

    reopened = Index("pg-notes", Client(home=tmp_path / "home", config={"index_url": pg_url}))
    assert reopened.store.count() == 2
    reopened.drop()
    assert not index.root.exists()
    index.close()
