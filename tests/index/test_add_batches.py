"""`Index.add` batches embedding across files: many small files are a few embed calls, not one each, and
an embedder that fails on one batch costs only that batch's files (reported), never the others."""

from __future__ import annotations

from pathlib import Path

import pytest

import imagine.index.index as index_module
from imagine.client import Client
from imagine.errors import ImagineError
from imagine.index import Index

pytest.importorskip("lancedb", reason="needs the index extra: pip install -e '.[index]'")

FACTS = [f"Note {n}: the {animal} in pen {n} eats {food} at dawn." for n, (animal, food) in enumerate(
    [("goat", "hay"), ("otter", "fish"), ("parrot", "seeds"), ("tortoise", "lettuce"), ("fox", "eggs"),
     ("badger", "worms"), ("heron", "frogs"), ("mole", "grubs"), ("stoat", "mice"), ("hare", "clover"),
     ("owl", "voles"), ("seal", "herring")])]


def _notes(folder: Path) -> Path:
    folder.mkdir()
    for n, fact in enumerate(FACTS):
        (folder / f"note{n:02d}.txt").write_text(fact)
    return folder


def test_small_files_share_embed_calls(tmp_path):
    notes = _notes(tmp_path / "notes")
    with Client(home=tmp_path / "home") as client:
        index = Index("notes", client, create=True)
        logged = client.store.count()
        report = index.add([notes])
        assert len(report.added) == len(FACTS) and report.embedded == len(FACTS) and not report.failed
        assert client.store.count() - logged == 1, "each file went to the embedder on its own"
        hit = index.search("what does the otter eat?", 1)[0]
        assert hit.chunk.text == FACTS[1] and Path(hit.chunk.source).name == "note01.txt"
        index.close()


def test_an_embedder_failure_costs_only_its_batch(tmp_path, monkeypatch):
    notes = _notes(tmp_path / "notes")
    monkeypatch.setattr(index_module, "EMBED_BATCH", 5)  # 12 one-text files: batches of 5, 5 and 2
    real_embed = Index._embed
    calls: list[int] = []

    def flaky(self, items, model):
        calls.append(len(items))
        if len(calls) == 2:
            raise ImagineError("the embedder ran out of memory")
        return real_embed(self, items, model)

    monkeypatch.setattr(Index, "_embed", flaky)
    with Client(home=tmp_path / "home") as client:
        index = Index("notes", client, create=True)
        report = index.add([notes])
        assert calls == [5, 5, 2]
        failed = sorted(Path(f).name for f, _ in report.failed)
        assert failed == [f"note{n:02d}.txt" for n in range(5, 10)]
        assert all("out of memory" in reason for _, reason in report.failed)
        assert sorted(Path(f).name for f, _ in report.added) == [f"note{n:02d}.txt" for n in (0, 1, 2, 3, 4, 10, 11)]
        assert index.store.count() == 7 and len(index.sources()) == 7
        # the failed files were not recorded, so adding again embeds exactly them
        monkeypatch.setattr(Index, "_embed", real_embed)
        again = index.add([notes])
        assert sorted(Path(f).name for f, _ in again.added) == failed and len(again.unchanged) == 7
        index.close()
