"""Files to pieces: what each kind of file says, and where it says it.

Text and markdown are split on paragraphs; PDFs page by page (pypdf); images by their OCR lines grouped
into boxed blocks (and, when the index has an image embedder, the whole picture as an image-space piece);
audio by its transcript in timed spans; video by `watch`'s timeline (on-screen text per scene, speech in
timed spans). Every model call goes through the normal task path, so each is logged like any other.
"""

from __future__ import annotations

import glob
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..errors import InputError
from ..parts import Audio, Data, Image, Segment, Segments, Text, Video, load_part, read_file
from .chunking import Piece, group_lines, group_segments, split_text

if TYPE_CHECKING:
    from ..client import Client

__all__ = ["Extracted", "expand_paths", "extract"]

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst", ".org", ".csv", ".tsv", ".json", ".jsonl", ".yaml", ".yml",
                 ".html", ".htm", ".xml", ".tex", ".log", ".py", ".js", ".ts", ".go", ".rs", ".java", ".c",
                 ".h", ".cpp", ".sh", ".toml", ".ini", ".srt", ".vtt"}
MEDIA_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".wav", ".flac", ".mp3",
                  ".ogg", ".m4a", ".opus", ".mp4", ".webm", ".mov", ".mkv", ".avi", ".pdf"}


@dataclass
class Extracted:
    """The pieces of one file: text pieces (embedded with the text embedder) and image pieces (the
    picture itself, embedded with the image embedder when the index has one)."""

    kind: str
    pieces: list[Piece] = field(default_factory=list)
    images: list[tuple[Piece, Image]] = field(default_factory=list)


def expand_paths(paths: Sequence[str | os.PathLike[str]]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files named, found under folders (recursively, hidden ones skipped) or matched by globs, each once
    and in a stable order; names that match nothing come back as (name, reason)."""
    files: dict[Path, None] = {}
    missing: list[tuple[str, str]] = []
    for raw in paths:
        text = os.fspath(raw)
        matches = [Path(m) for m in sorted(glob.glob(text, recursive=True))] if glob.has_magic(text) else [Path(text)]
        if not matches or not matches[0].exists():
            missing.append((text, "no such file or folder" if not glob.has_magic(text) else "the pattern matches nothing"))
            continue
        for match in matches:
            if match.is_dir():
                for found in sorted(match.rglob("*")):
                    rel = found.relative_to(match).parts
                    if found.is_file() and not any(p.startswith(".") for p in rel) and _indexable(found):
                        files.setdefault(found.resolve(), None)
            elif match.is_file():
                files.setdefault(match.resolve(), None)
    return list(files), missing


def _indexable(path: Path) -> bool:
    """Inside a folder, only files of a kind the index reads (a named file is always tried)."""
    suffix = path.suffix.lower()
    return suffix in TEXT_SUFFIXES or suffix in MEDIA_SUFFIXES


def extract(path: Path, client: "Client", *, image_vectors: bool = False, ocr_model: str | None = None,
            asr_model: str | None = None) -> Extracted:
    """Read one file into pieces. Raises InputError (or an engine's error) for a file it cannot use."""
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head.startswith(b"%PDF-"):
        return _pdf(path, client)
    part = load_part(path, limits=client.settings.part_limits())
    if isinstance(part, Text):
        return Extracted("text", split_text(part.text))
    if isinstance(part, Image):
        return _image(part, client, image_vectors=image_vectors, ocr_model=ocr_model)
    if isinstance(part, Video):
        return _video(part, client, image_vectors=image_vectors, ocr_model=ocr_model, asr_model=asr_model)
    if isinstance(part, Audio):
        return Extracted("audio", group_segments(_transcript(part, client, asr_model)))
    raise InputError(f"cannot index {path.name}: {part.modality.value} files are not indexed")


def _pdf(path: Path, client: "Client") -> Extracted:
    try:
        from pypdf import PdfReader
        from pypdf.errors import PdfReadError
    except ImportError:
        from ..errors import EngineUnavailable

        raise EngineUnavailable("indexing PDFs needs pypdf", hint="pip install 'imagine[index]'") from None
    data = read_file(path, client.settings.part_limits())  # the size rule every input follows
    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"cannot read {path.name} as a PDF: {exc}") from None
    out = Extracted("pdf")
    for number, text in enumerate(pages, start=1):
        for piece in split_text(text):
            out.pieces.append(Piece(piece.text, span=piece.span, line=piece.line, page=number))
    return out


def _image(image: Image, client: "Client", *, image_vectors: bool, ocr_model: str | None) -> Extracted:
    from ..tasks import read_text

    response = read_text(image, ocr_model, client=client)
    lines = [line for part in response.parts if isinstance(part, Data) and isinstance(part.value, dict)
             for line in part.value.get("lines", [])]
    out = Extracted("image", group_lines(lines))
    if image_vectors:
        width, height = image.size
        out.images.append((Piece("", box=(0, 0, width, height)), image))
    return out


def _transcript(media: Audio | Video, client: "Client", model: str | None) -> list[Segment]:
    from ..tasks import transcribe

    response = transcribe(media, model, client=client)
    return [seg for part in response.parts if isinstance(part, Segments) for seg in part.items]


def _video(video: Video, client: "Client", *, image_vectors: bool, ocr_model: str | None,
           asr_model: str | None) -> Extracted:
    from ..timeline import watch

    timeline = watch(video, ocr_model=ocr_model, asr_model=asr_model, client=client)
    out = Extracted("video")
    speech: list[Segment] = []
    scenes: list[Segment] = []
    for seg in timeline.items:
        if seg.meta.get("kind") == "scene":
            scenes.append(seg)
            if seg.text.strip():
                out.pieces.append(Piece(seg.text.replace(" / ", "\n"), start=seg.start, end=seg.end,
                                        scene=int(seg.meta.get("scene", 0)) or len(scenes)))
        else:
            speech.append(seg)
    out.pieces.extend(group_segments(speech))
    if image_vectors and scenes:
        out.images.extend(_key_frames(video, scenes, client))
    return out


def _key_frames(video: Video, scenes: list[Segment], client: "Client") -> list[tuple[Piece, Image]]:
    """The first frame of each scene as a picture, for an index with an image embedder (one more decoding
    pass over the video, at the timeline's sampling rate)."""
    wanted = [(seg.start, seg) for seg in scenes]
    frames: list[tuple[Piece, Image]] = []
    for time, frame in video.frames(0.5, limits=client.settings.part_limits()):
        while wanted and time + 0.25 >= wanted[0][0]:
            _, seg = wanted.pop(0)
            buf = io.BytesIO()
            frame.save(buf, format="PNG")
            width, height = frame.size
            piece = Piece("", box=(0, 0, width, height), start=seg.start, end=seg.end,
                          scene=int(seg.meta.get("scene", 0)) or None)
            frames.append((piece, Image(buf.getvalue(), mime="image/png")))
        if not wanted:
            break
    return frames

