"""Cutting text, OCR lines and transcripts into chunks that keep where they came from.

Text is cut at paragraph, then sentence, then word boundaries into pieces of about `TARGET` characters,
each with its character span and first line; OCR lines are grouped into blocks by vertical distance, each
block with the box around it; timed segments are grouped into spans of at most `MAX_SECONDS`. Small pieces
embed faster and cite more precisely; too small and a chunk loses the context a question needs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from ..parts import Segment

__all__ = ["TARGET", "Piece", "group_lines", "group_segments", "snippet", "split_text"]

TARGET = 500  # characters: ~80-120 MiniLM tokens, inside its 128-token window after tokenization
MAX_CHARS = 800
MAX_SECONDS = 30.0
MAX_PAUSE = 2.0  # seconds of silence that end a spoken chunk: a pause usually ends a thought

_PARAGRAPH = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Piece:
    """Text of a chunk-to-be with its place: span in the text, first line, box, or start/end seconds."""

    text: str
    span: tuple[int, int] | None = None
    line: int | None = None
    page: int | None = None
    box: tuple[int, int, int, int] | None = None
    start: float | None = None
    end: float | None = None
    scene: int | None = None


def _units(text: str) -> Iterable[tuple[int, int]]:
    """Spans of paragraphs; a paragraph past MAX_CHARS is cut into sentences, a sentence past it into words."""
    pos = 0
    for match in [*_PARAGRAPH.finditer(text), None]:
        end = match.start() if match else len(text)
        yield from _fine(text, pos, end)
        pos = match.end() if match else len(text)


def _fine(text: str, start: int, end: int) -> Iterable[tuple[int, int]]:
    if end - start <= MAX_CHARS:
        yield start, end
        return
    pos = start
    for match in [*_SENTENCE_END.finditer(text, start, end), None]:
        stop = match.start() if match else end
        if stop - pos > MAX_CHARS:  # one very long "sentence": cut between words
            while stop - pos > MAX_CHARS:
                cut = text.rfind(" ", pos, pos + MAX_CHARS)
                cut = cut if cut > pos else pos + MAX_CHARS
                yield pos, cut
                pos = cut
        yield pos, stop
        pos = match.end() if match else end


def split_text(text: str, target: int = TARGET) -> list[Piece]:
    """Chunks of about `target` characters on natural boundaries; whitespace-only pieces are dropped."""
    pieces: list[Piece] = []
    lo = hi = None
    for start, end in _units(text):
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if start >= end:
            continue
        if lo is not None and hi is not None and end - lo > target:
            pieces.append(_piece(text, lo, hi))
            lo = None
        lo = start if lo is None else lo
        hi = end
    if lo is not None and hi is not None:
        pieces.append(_piece(text, lo, hi))
    return pieces


def _piece(text: str, start: int, end: int) -> Piece:
    return Piece(text[start:end], span=(start, end), line=text.count("\n", 0, start) + 1)


def snippet(text: str, width: int = 90) -> str:
    """`text` on one line, cut to `width` characters with an ellipsis: for listings and prompts."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[:width - 1] + "…"


def _bounds(points: Sequence[Sequence[float]]) -> tuple[int, int, int, int]:
    xs = [int(p[0]) for p in points]
    ys = [int(p[1]) for p in points]
    return min(xs), min(ys), max(xs), max(ys)


def group_lines(lines: Sequence[dict[str, Any]]) -> list[Piece]:
    """OCR lines (reading order, each with a 4-point `box`) as blocks: a line joins the block above when
    the gap between them is under one line height, so a dialog's title and message stay apart from a
    caption across the picture."""
    blocks: list[list[tuple[str, tuple[int, int, int, int]]]] = []
    for line in lines:
        text = str(line.get("text", "")).strip()
        if not text or not line.get("box"):
            continue
        box = _bounds(line["box"])
        if blocks:
            last = blocks[-1][-1][1]
            height = max(1, last[3] - last[1])
            near = box[1] - last[3] < height and box[0] < last[2] + height * 2 and box[2] > last[0] - height * 2
            if near and sum(len(t) for t, _ in blocks[-1]) + len(text) <= MAX_CHARS:
                blocks[-1].append((text, box))
                continue
        blocks.append([(text, box)])
    pieces = []
    for block in blocks:
        boxes = [b for _, b in block]
        union = (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))
        pieces.append(Piece("\n".join(t for t, _ in block), box=union))
    return pieces


def group_segments(segments: Iterable[Segment], target: int = TARGET, max_seconds: float = MAX_SECONDS) -> list[Piece]:
    """Consecutive timed segments joined while the text stays under `target`, the span under `max_seconds`
    and no pause is longer than MAX_PAUSE; each piece keeps the start of its first and the end of its last
    segment, so a citation points at the second the answer starts being said."""
    pieces: list[Piece] = []
    texts: list[str] = []
    start = end = 0.0
    for seg in segments:
        text = seg.text.strip()
        if not text:
            continue
        if texts and (sum(len(t) + 1 for t in texts) + len(text) > target or seg.end - start > max_seconds
                      or seg.start - end > MAX_PAUSE):
            pieces.append(Piece(" ".join(texts), start=round(start, 3), end=round(end, 3)))
            texts = []
        if not texts:
            start = seg.start
        texts.append(text)
        end = seg.end
    if texts:
        pieces.append(Piece(" ".join(texts), start=round(start, 3), end=round(end, 3)))
    return pieces
