"""An index with an image embedder (a tiny CLIP made here): pictures without text are found by picture."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from imagine.client import default_client
from imagine.errors import InputError
from imagine.index import Index

from ..helpers.clip import PROJECTION, tiny_clip

pytest.importorskip("lancedb", reason="needs the index extra: pip install -e '.[index]'")
pytest.importorskip("transformers", reason="needs the hf extra: pip install -e '.[hf]'")
pytest.importorskip("rapidocr", reason="needs the vision extra: pip install -e '.[vision]'")


def _picture(path: Path, colour: tuple[int, int, int], shape: str) -> Path:
    from PIL import Image as PILImage, ImageDraw

    img = PILImage.new("RGB", (60, 60), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    (draw.ellipse if shape == "circle" else draw.rectangle)((8, 8, 52, 52), fill=colour)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    path.write_bytes(buf.getvalue())
    return path


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> Path:
    return tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


def test_pictures_are_found_by_picture(clip_dir, tmp_path):
    folder = tmp_path / "pics"
    folder.mkdir()
    colours = {"red.png": ((220, 20, 20), "square"), "green.png": ((20, 200, 40), "circle"),
               "blue.png": ((30, 40, 220), "square")}
    for name, (colour, shape) in colours.items():
        _picture(folder / name, colour, shape)
    index = Index("pics", default_client(), create=True, image_embedder=f"clip:{clip_dir}")
    report = index.add([folder])
    assert sorted(Path(f).name for f, _ in report.added) == sorted(colours) and not report.failed
    image_chunks = [h for h in index.store.search_vector([1.0] * PROJECTION, 10, space="image")]
    assert len(image_chunks) == 3 and all(h.chunk.space == "image" and h.chunk.box == (0, 0, 60, 60)
                                          for h in image_chunks)
    for name, (colour, shape) in colours.items():
        query = _picture(tmp_path / f"query-{name}", colour, shape)  # the same picture, another file
        hits = index.search(query, 3)
        assert Path(hits[0].chunk.source).name == name
        assert hits[0].similarity is not None and hits[0].similarity > 0.99


def test_a_picture_without_text_needs_an_image_embedder(tmp_path):
    index = Index("plain", default_client(), create=True)
    doc = tmp_path / "doc.txt"
    doc.write_text("Squares have four equal sides.")
    index.add([doc])
    with pytest.raises(InputError, match="no readable text"):
        index.search(_picture(tmp_path / "q.png", (200, 10, 10), "square"), 3)


def test_video_key_frames_are_found_by_picture_with_their_scene(clip_dir, tmp_path):
    from ..helpers.media import make_video

    from PIL import Image as PILImage

    slides = [(2.0, PILImage.new("RGB", (64, 48), (220, 30, 30))), (2.0, PILImage.new("RGB", (64, 48), (30, 40, 220)))]
    video = tmp_path / "slides.mp4"
    video.write_bytes(make_video(slides))
    index = Index("clips", default_client(), create=True, image_embedder=f"clip:{clip_dir}")
    report = index.add([video])
    assert not report.failed and report.added[0][1] == 2  # one key frame per scene, no text, no speech
    query = tmp_path / "blue.png"
    buf = io.BytesIO()
    PILImage.new("RGB", (64, 48), (30, 40, 220)).save(buf, "PNG")
    query.write_bytes(buf.getvalue())
    best = index.search(query, 2)[0].chunk
    assert best.scene == 2 and best.space == "image" and 1.5 <= best.start <= 2.5
