"""Issue 16 end to end on a corpus made here: text, a PDF, pictures with text, speech and a video go into
one index through the bundled engines; questions whose right chunk is known find it, with its citation."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from imagine.client import Client
from imagine.index import Index

from ..helpers.corpus import AUDIO, QUESTIONS, write_corpus
from ..helpers.speech import needs_espeak

pytest.importorskip("lancedb", reason="needs the index extra: pip install -e '.[index]'")
pytest.importorskip("pypdf", reason="needs the index extra: pip install -e '.[index]'")
pytest.importorskip("faster_whisper", reason="needs the speech extra: pip install -e '.[speech]'")
pytest.importorskip("rapidocr", reason="needs the vision extra: pip install -e '.[vision]'")
pytestmark = needs_espeak


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def built(corpus, tmp_path_factory):
    """One client and one index over the whole corpus for the module (ingest runs Whisper and OCR once)."""
    client = Client(home=tmp_path_factory.mktemp("home"))
    index = Index("corpus", client, create=True)
    report = index.add([corpus])
    yield client, index, report
    index.close()
    client.close()


def _name(hit) -> str:
    return Path(hit.chunk.source).name


def test_every_file_kind_is_indexed(built, corpus):
    _, index, report = built
    assert not report.failed
    added = {Path(f).name: n for f, n in report.added}
    assert set(added) == {p.name for p in corpus.iterdir()}
    assert all(n >= 1 for n in added.values())
    kinds = {record.kind for record in index.sources().values()}
    assert kinds == {"text", "pdf", "image", "audio", "video"}


def test_recall_at_5_over_text_pdf_ocr_and_transcripts(built):
    _, index, _ = built
    found = [q for q in QUESTIONS if q.file in [_name(h) for h in index.search(q.text, 5)]]
    missed = [q.text for q in QUESTIONS if q not in found]
    assert len(found) / len(QUESTIONS) >= 0.9, f"missed: {missed}"


def _best(index, question):
    return next(h for h in index.search(question.text, 5) if _name(h) == question.file)


def test_citations_carry_page_box_and_seconds(built):
    _, index, _ = built
    for q in QUESTIONS:
        hit = _best(index, q)
        chunk = hit.chunk
        if q.page is not None:
            assert chunk.page == q.page, (q.text, chunk.citation())
            assert f"p. {q.page}" in chunk.citation()
        if q.point is not None:
            x0, y0, x1, y1 = chunk.box
            assert x0 <= q.point[0] <= x1 and y0 <= q.point[1] <= y1, (q.text, chunk.box)
        if q.second is not None and q.file.endswith(".wav"):
            assert abs(chunk.start - q.second) <= 0.5, (q.text, chunk.start, q.second)
            assert chunk.end > chunk.start
        if q.second is not None and q.file.endswith(".mp4"):
            assert chunk.start - 0.5 <= q.second <= chunk.end, (q.text, chunk.start, chunk.end)


def test_video_scenes_are_cited_by_number(built):
    _, index, _ = built
    hits = index.search("Attention heads", 5, where={"kind": "video"})
    scene = next(h.chunk for h in hits if h.chunk.scene is not None)
    assert scene.scene == 2 and 3.5 <= scene.start <= 4.5
    assert all(h.chunk.kind == "video" for h in hits)


def test_readding_unchanged_files_calls_no_engine(built, corpus):
    client, index, _ = built
    rows = client.store.count()
    report = index.add([corpus])
    assert report.added == [] and len(report.unchanged) == len(list(corpus.iterdir()))
    assert client.store.count() == rows, "an unchanged file was read by a model again"


def test_a_changed_file_replaces_its_chunks_and_a_removed_one_leaves(built, tmp_path):
    client, index, _ = built
    doc = tmp_path / "changing.txt"
    doc.write_text("The submarine is painted bright yellow.")
    index.add([doc])
    assert _name(index.search("what colour is the submarine?", 1)[0]) == "changing.txt"
    doc.write_text("The lighthouse keeper feeds three cats every morning.")
    report = index.add([doc])
    assert [Path(f).name for f, _ in report.added] == ["changing.txt"]
    texts = [h.chunk.text for h in index.search("submarine yellow", 10) if _name(h) == "changing.txt"]
    assert texts and all("submarine" not in t for t in texts), "the old chunk survived the change"
    before = index.store.count()
    removed = index.remove([doc])
    assert removed == 1 and index.store.count() == before - 1
    assert all(_name(h) != "changing.txt" for h in index.search("lighthouse keeper cats", 10))
    assert str(doc.resolve()) not in index.sources()


def test_bad_files_are_reported_and_the_rest_go_in(built, tmp_path):
    _, index, _ = built
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png")
    (tmp_path / "fine.txt").write_text("Otters hold hands while they sleep so they do not drift apart.")
    (tmp_path / "fake.pdf").write_bytes(b"%PDF-1.4 this is not a pdf at all")
    report = index.add([tmp_path, tmp_path / "missing.txt"])
    failed = {Path(f).name for f, _ in report.failed}
    assert failed == {"broken.png", "fake.pdf", "missing.txt"}
    assert all(reason for _, reason in report.failed)
    assert [Path(f).name for f, _ in report.added] == ["fine.txt"]
    assert _name(index.search("why do otters hold hands?", 1)[0]) == "fine.txt"
    index.remove([tmp_path / "fine.txt"])


def test_search_by_image_finds_the_screenshot(built, corpus, tmp_path):
    _, index, _ = built
    from .. helpers.corpus import picture

    query = tmp_path / "query.png"
    query.write_bytes(picture([("disk full error 0x42", (20, 20))], size=(420, 120)))
    hits = index.search(query, 3)
    assert _name(hits[0]) == "dialog.png"


def test_filters_narrow_the_search(built):
    _, index, _ = built
    hits = index.search("revenue", 5, where={"kind": ["pdf", "image"]})
    assert hits and all(h.chunk.kind in ("pdf", "image") for h in hits)
    spoken = AUDIO["earnings.wav"][0][1]
    audio_hits = index.search(spoken, 3, where={"kind": "audio"})
    assert _name(audio_hits[0]) == "earnings.wav"


def test_ask_with_nothing_relevant_says_so_without_asking_a_model(built):
    client, index, _ = built
    rows = client.store.count()
    result = index.ask("Who won the 1998 football world cup final?", "mock")
    assert not result.found and "nothing relevant" in result.text()
    assert result.sources == []
    assert client.store.count() == rows + 1, "only the question's embedding was computed"


def test_ask_numbers_its_sources_and_they_resolve(built):
    client, index, _ = built
    mock = client.registry.engine("mock")
    mock.enqueue("The revolution began in 1789 [1].")
    result = index.ask("When did the French Revolution begin?", "mock")
    assert result.found and result.text() == "The revolution began in 1789 [1]."
    assert result.cited() == [1]
    first = result.sources[0].chunk
    assert Path(first.source).name == "notes.pdf" and first.page == 2
    prompt = mock.requests[-1].messages[-1].text
    assert "[1] (notes.pdf p. 2)" in prompt and "storming of the Bastille" in prompt
    payload = result.payload()
    assert payload["sources"][0]["page"] == 2 and payload["cited"] == [1]


def test_a_copy_of_the_index_folder_opens_elsewhere(built, tmp_path):
    client, index, _ = built
    other = Client(home=tmp_path / "home2")
    shutil.copytree(index.root, other.settings.home / "index" / "copy")
    copy = Index("copy", other)
    assert copy.store.count() == index.store.count()
    assert _name(copy.search("why do volcanoes erupt?", 1)[0]) == "notes.pdf"
    copy.close()
    other.close()
