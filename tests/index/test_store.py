"""The chunk store contract, run on every backend (LanceDB and PostgreSQL + pgvector, see conftest.py):
the same adds, searches, filters, deletes and citations must behave the same on both."""

from __future__ import annotations

import dataclasses
import uuid
from urllib.parse import urlsplit

import numpy as np
import pytest

from imagine.errors import ConfigError, EngineUnavailable, InputError
from imagine.index.store import Chunk, ChunkStore, SourceRecord

from ..helpers.stores import StoreFactory, missing

DIM = 16
SOURCES = ("/docs/a.txt", "/docs/b.pdf", "/docs/c.png")
KINDS = ("text", "pdf", "image")
ANIMALS = ("zebra", "otter", "heron", "lynx", "walrus")


def corpus(n: int = 30, seed: int = 0, dim: int = DIM) -> list[Chunk]:
    """n chunks spread over three sources (one kind each), with random unit-ish vectors and a few words."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    return [Chunk(id=f"c{i:04d}", source=SOURCES[i % 3], kind=KINDS[i % 3], vector=vectors[i].tolist(),
                  text=f"note {i}: the {ANIMALS[i % len(ANIMALS)]} sat by the river") for i in range(n)]


def vector_of(chunks: list[Chunk], chunk_id: str) -> np.ndarray:
    return np.asarray(next(c.vector for c in chunks if c.id == chunk_id), dtype=np.float32)


def test_is_a_chunk_store(store: ChunkStore) -> None:
    assert isinstance(store, ChunkStore)


def test_empty_store_answers_nothing(store: ChunkStore) -> None:
    assert store.count() == 0
    assert store.sources() == {}
    assert store.search_vector(np.ones(DIM).tolist(), 5) == []
    assert store.search_text("zebra", 5) == []
    assert store.delete_source("/nowhere") == 0


def test_add_and_count(store: ChunkStore) -> None:
    store.add(corpus(30))
    assert store.count() == 30
    store.add([])
    assert store.count() == 30


def test_vector_search_ranks_the_nearest_first(store: ChunkStore) -> None:
    chunks = corpus(60)
    store.add(chunks)
    rng = np.random.default_rng(1)
    for target in ("c0017", "c0042", "c0003"):
        query = vector_of(chunks, target) + 0.01 * rng.standard_normal(DIM).astype(np.float32)
        hits = store.search_vector(query.tolist(), 5)
        assert len(hits) == 5
        assert hits[0].chunk.id == target
        assert hits[0].score > 0.99 and hits[0].similarity == pytest.approx(hits[0].score)
        assert all(hit.how == "vector" for hit in hits)
        scores = [hit.score for hit in hits]
        assert scores == sorted(scores, reverse=True)
        assert hits[0].chunk.vector == ()  # vectors stay in the store


def test_k_larger_than_the_index_returns_everything(store: ChunkStore) -> None:
    store.add(corpus(5))
    assert len(store.search_vector(np.ones(DIM).tolist(), 10)) == 5


def test_filters_on_source_and_kind(store: ChunkStore) -> None:
    chunks = corpus(60)
    store.add(chunks)
    query = vector_of(chunks, "c0009").tolist()
    hits = store.search_vector(query, 10, where={"source": "/docs/b.pdf"})
    assert len(hits) == 10 and {h.chunk.source for h in hits} == {"/docs/b.pdf"}
    hits = store.search_vector(query, 10, where={"kind": ["text", "image"]})
    assert len(hits) == 10 and {h.chunk.kind for h in hits} <= {"text", "image"}
    assert hits[0].chunk.id == "c0009"  # a text chunk: still the nearest
    both = store.search_vector(query, 50, where={"kind": "pdf", "source": ["/docs/b.pdf", "/docs/a.txt"]})
    assert len(both) == 20 and {h.chunk.id for h in both} == {c.id for c in chunks if c.kind == "pdf"}
    assert store.search_vector(query, 5, where={"source": "/docs/a.txt", "kind": "pdf"}) == []


def test_filter_values_are_data_not_syntax(store: ChunkStore) -> None:
    odd = "/docs/it's \"odd\"; DROP TABLE x; --.txt"
    chunks = [dataclasses.replace(c, source=odd) if c.id == "c0001" else c for c in corpus(10)]
    store.add(chunks)
    hits = store.search_vector(vector_of(chunks, "c0001").tolist(), 5, where={"source": odd})
    assert [h.chunk.id for h in hits] == ["c0001"] and hits[0].chunk.source == odd
    assert [h.chunk.id for h in store.search_text("zebra", 5, where={"source": odd})] == []
    assert store.delete_source(odd) == 1 and store.count() == 9


@pytest.mark.parametrize("where", [{"path": "/docs/a.txt"}, {"source": []}, {"kind": [3]}])
def test_a_bad_filter_is_an_input_error(store: ChunkStore, where: dict) -> None:
    store.add(corpus(6))
    with pytest.raises(InputError):
        store.search_vector(np.ones(DIM).tolist(), 3, where=where)
    with pytest.raises(InputError):
        store.search_text("zebra", 3, where=where)


def test_a_selective_filter_still_returns_hits(store: ChunkStore) -> None:
    """A filter that keeps 1% of the rows must still fill k, not return the few that the unfiltered
    nearest neighbours happened to include."""
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((1000, DIM)).astype(np.float32)
    rare = set(range(0, 1000, 80))  # 13 rows
    store.add([Chunk(id=f"b{i:04d}", source="/docs/rare.pdf" if i in rare else "/docs/bulk.txt",
                     kind="pdf" if i in rare else "text", text=f"row {i}", vector=vectors[i].tolist())
               for i in range(1000)])
    optimize = getattr(store, "optimize", None)
    if optimize is not None:
        optimize()
    query = rng.standard_normal(DIM).astype(np.float32)
    hits = store.search_vector(query.tolist(), 10, where={"kind": "pdf"})
    assert len(hits) == 10 and {h.chunk.kind for h in hits} == {"pdf"}
    cosine = {i: float(vectors[i] @ query / np.linalg.norm(vectors[i]) / np.linalg.norm(query)) for i in rare}
    assert hits[0].chunk.id == f"b{max(cosine, key=cosine.__getitem__):04d}"
    assert len(store.search_vector(query.tolist(), 50, where={"source": "/docs/rare.pdf"})) == 13


def test_text_search_finds_a_word_and_respects_filters(store: ChunkStore) -> None:
    chunks = corpus(30)
    store.add(chunks)
    zebras = {c.id for c in chunks if "zebra" in c.text}
    hits = store.search_text("zebra", 20)
    assert {h.chunk.id for h in hits} == zebras
    assert all(h.how == "text" and h.score > 0 for h in hits)
    hits = store.search_text("zebra", 20, where={"source": "/docs/b.pdf"})
    assert hits and {h.chunk.id for h in hits} == {c.id for c in chunks if c.id in zebras and c.kind == "pdf"}
    assert store.search_text("zebra", 20, where={"kind": "nothing"}) == []
    assert store.search_text("quokka", 5) == []
    assert store.search_text("   ", 5) == []


def test_text_search_ranks_a_chunk_with_more_of_the_words_first(store: ChunkStore) -> None:
    store.add(corpus(30) + [Chunk(id="best", source="/docs/d.txt", kind="text", vector=np.ones(DIM).tolist(),
                                  text="the otter and the heron swam in the river")])
    hits = store.search_text("otter heron", 5)
    assert hits[0].chunk.id == "best"
    assert {h.chunk.id for h in hits[1:]} <= {c.id for c in corpus(30) if "otter" in c.text or "heron" in c.text}


def test_delete_source_removes_its_chunks_and_record(store: ChunkStore) -> None:
    chunks = corpus(30)
    store.add(chunks)
    for source in SOURCES:
        store.set_source(SourceRecord(source, f"hash-{source}", "text", 10))
    assert store.delete_source("/docs/a.txt") == 10
    assert store.count() == 20
    assert set(store.sources()) == {"/docs/b.pdf", "/docs/c.png"}
    assert store.search_vector(vector_of(chunks, "c0000").tolist(), 5, where={"source": "/docs/a.txt"}) == []
    assert all(h.chunk.source != "/docs/a.txt" for h in store.search_text("zebra", 30))
    assert store.delete_source("/docs/a.txt") == 0


def test_set_source_is_an_upsert(store: ChunkStore) -> None:
    store.set_source(SourceRecord("/docs/a.txt", "h1", "text", 3))
    store.set_source(SourceRecord("/docs/b.pdf", "h2", "pdf", 5))
    store.set_source(SourceRecord("/docs/a.txt", "h3", "text", 4))
    assert store.sources() == {"/docs/a.txt": SourceRecord("/docs/a.txt", "h3", "text", 4),
                               "/docs/b.pdf": SourceRecord("/docs/b.pdf", "h2", "pdf", 5)}


def test_set_sources_writes_many_records_at_once_and_upserts(store: ChunkStore) -> None:
    store.set_source(SourceRecord("/docs/a.txt", "old", "text", 1))
    store.set_sources([SourceRecord(f"/docs/{n}.txt", f"h{n}", "text", n) for n in range(50)]
                      + [SourceRecord("/docs/a.txt", "new", "text", 2)])
    store.set_sources([])
    records = store.sources()
    assert len(records) == 51 and records["/docs/a.txt"].hash == "new" and records["/docs/49.txt"].chunks == 49


def test_list_chunks_filters_and_limits(store: ChunkStore) -> None:
    chunks = corpus(30)
    store.add(chunks)
    listed = store.list_chunks({"kind": "pdf"})
    assert {c.id for c in listed} == {c.id for c in chunks if c.kind == "pdf"}
    assert all(c.vector == () for c in listed)
    assert len(store.list_chunks(limit=7)) == 7
    assert store.list_chunks({"source": "/nowhere"}) == []
    with pytest.raises(InputError):
        store.list_chunks({"colour": "red"})


def test_a_new_store_object_sees_the_data(open_store: StoreFactory) -> None:
    chunks = corpus(30)
    first = open_store()
    first.add(chunks)
    first.set_source(SourceRecord("/docs/a.txt", "h1", "text", 10))
    first.close()
    again = open_store()
    assert again.count() == 30
    assert again.sources() == {"/docs/a.txt": SourceRecord("/docs/a.txt", "h1", "text", 10)}
    assert again.search_vector(vector_of(chunks, "c0005").tolist(), 3)[0].chunk.id == "c0005"
    assert {h.chunk.id for h in again.search_text("walrus", 30)} == {c.id for c in chunks if "walrus" in c.text}


def test_writes_from_another_store_object_are_seen(open_store: StoreFactory) -> None:
    reader, writer = open_store(), open_store()
    chunks = corpus(10)
    writer.add(chunks[:5])
    assert len(reader.search_vector(np.ones(DIM).tolist(), 10)) == 5
    writer.add(chunks[5:])
    assert len(reader.search_vector(np.ones(DIM).tolist(), 10)) == 10


def test_a_vector_of_another_width_is_an_input_error(store: ChunkStore) -> None:
    store.add(corpus(6))
    with pytest.raises(InputError, match="16"):
        store.add(corpus(2, seed=3, dim=8))
    assert store.count() == 6
    image = Chunk(id="img", source="/docs/c.png", kind="image", text="", vector=np.ones(8).tolist(), space="image")
    store.add([image])  # another space has its own width
    hits = store.search_vector(np.ones(8).tolist(), 5, space="image")
    assert [h.chunk.id for h in hits] == ["img"] and hits[0].chunk.space == "image"
    assert "img" not in {h.chunk.id for h in store.search_vector(np.ones(DIM).tolist(), 10)}
    assert store.count() == 7
    assert store.delete_source("/docs/c.png") == 3  # both spaces


def test_citations_survive_add_and_search(store: ChunkStore) -> None:
    rng = np.random.default_rng(5)
    full = Chunk(id="cite", source="/media/talk.mp4", kind="video", text="attention weighs every token",
                 vector=rng.standard_normal(DIM).tolist(), page=3, span=(120, 188), box=(10, 20, 200, 60),
                 start=61.5, end=69.25, scene=4, meta={"frame": "00:01:02", "lang": "en", "n": [1, 2]})
    bare = Chunk(id="bare", source="/docs/a.txt", kind="text", text="nothing but words about tokens",
                 vector=rng.standard_normal(DIM).tolist())
    store.add([full, bare])
    for original in (full, bare):
        found = store.search_vector(list(original.vector), 1)[0].chunk
        assert found == dataclasses.replace(original, vector=())
    found = store.search_text("attention", 1)[0].chunk
    assert found == dataclasses.replace(full, vector=())
    assert found.citation() == "talk.mp4 p. 3 box 10,20-200,60 1:01.5-1:09.2 scene 4"


# -- PostgreSQL only: names, URLs and connection failures --------------------------------------------
pg_only = pytest.mark.skipif(missing("postgres") is not None, reason=missing("postgres") or "")


@pg_only
@pytest.mark.parametrize("name", ["", "bad name", "x;drop", "../up", "-lead", "a" * 65])
def test_pg_bad_index_name(name: str) -> None:
    from imagine.index.pgvector import PgVectorStore

    with pytest.raises(InputError, match="bad index name"):
        PgVectorStore("postgresql://nobody@127.0.0.1:1/none", name)


@pg_only
def test_pg_unreachable_server_names_the_url_but_not_the_password() -> None:
    from imagine.index.pgvector import PgVectorStore

    with pytest.raises(EngineUnavailable) as caught:
        PgVectorStore("postgresql://me:s3cret-pw@127.0.0.1:1/db", "docs")
    assert "postgresql://me:***@127.0.0.1:1/db" in str(caught.value)
    assert "s3cret-pw" not in str(caught.value)


@pg_only
def test_pg_malformed_url_is_a_config_error() -> None:
    from imagine.index.pgvector import PgVectorStore

    with pytest.raises(ConfigError) as caught:
        PgVectorStore("host=localhost password=s3cret-pw nonsense=1", "docs")
    assert "s3cret-pw" not in str(caught.value)


@pg_only
def test_pg_a_user_who_cannot_install_pgvector_is_told_how(pg_url: str) -> None:
    import psycopg

    from imagine.index.pgvector import PgVectorStore

    role, database = f"limited_{uuid.uuid4().hex[:8]}", f"noext_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN')
        admin.execute(f'CREATE DATABASE "{database}" OWNER "{role}"')
    host = urlsplit(pg_url).query  # host=/socket/dir
    with pytest.raises(EngineUnavailable, match="CREATE EXTENSION vector"):
        PgVectorStore(f"postgresql://{role}@/{database}?{host}", "docs")


@pg_only
def test_pg_redacts_every_form_of_password() -> None:
    from imagine.index.pgvector import redact_url

    assert redact_url("postgresql://u:p@h:5432/d?sslmode=require") == "postgresql://u:***@h:5432/d?sslmode=require"
    assert redact_url("postgresql://u@h/d?password=p&host=/tmp/s") == "postgresql://u@h/d?password=%2A%2A%2A&host=/tmp/s"
    assert redact_url("host=h password='p w' user=u") == "host=h password=*** user=u"
    assert redact_url("postgresql://postgres:@/postgres?host=/tmp/x") == "postgresql://postgres:***@/postgres?host=/tmp/x"


@pg_only
def test_pg_falls_back_to_an_exact_scan_when_hnsw_comes_back_short(pg_url: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from imagine.index import pgvector
    from imagine.index.pgvector import PgVectorStore

    store = PgVectorStore(pg_url, "fallback")
    try:
        chunks = corpus(300)
        store.add(chunks)
        store.optimize()  # builds the HNSW index
        monkeypatch.setattr(pgvector, "EF_SEARCH_MIN", 5)
        monkeypatch.setattr(pgvector, "EF_SEARCH_MAX", 5)  # HNSW can then return at most 5 rows
        query = vector_of(chunks, "c0100")
        hits = store.search_vector(query.tolist(), 20)
        vectors = np.asarray([c.vector for c in chunks], dtype=np.float32)
        cosine = vectors @ query / np.linalg.norm(vectors, axis=1) / np.linalg.norm(query)
        assert [h.chunk.id for h in hits] == [f"c{i:04d}" for i in np.argsort(-cosine)[:20]]
        assert [h.score for h in hits] == pytest.approx(sorted(cosine, reverse=True)[:20], abs=1e-5)
    finally:
        store.drop()
        store.close()


@pg_only
def test_pg_long_names_get_distinct_schemas(pg_url: str) -> None:
    from imagine.index.pgvector import PgVectorStore

    one, two = PgVectorStore(pg_url, "n" * 63 + "1"), PgVectorStore(pg_url, "n" * 63 + "2")
    try:
        assert one.schema != two.schema and max(len(one.schema), len(two.schema)) <= 63
        one.add(corpus(3))
        assert (one.count(), two.count()) == (3, 0)
        one.drop()
        assert one.count() == 0  # dropped, then made again empty on the next call
    finally:
        one.drop()
        one.close()
        two.close()
