"""The chunk store protocol every index backend implements, and the pieces they share.

A chunk is a piece of one source file that keeps where it came from (page, character span, image box,
start/end seconds, scene), so a hit can be cited. A backend stores chunks with one vector each in one
vector space (text vectors and image vectors live in separate stores of one index), searches them by
vector or by words, filters on a few plain columns, and remembers which version of each source it holds.
Backends: LanceDB (`lance.py`, the embedded default) and PostgreSQL + pgvector (`pgvector.py`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Protocol, Sequence, runtime_checkable

from ..errors import InputError

__all__ = ["FILTER_FIELDS", "Chunk", "ChunkStore", "Filter", "Hit", "SourceRecord", "check_filter", "fuse",
           "sql_literal"]

# Columns a search may filter on; each is a plain string column in every backend.
FILTER_FIELDS = ("source", "kind")

Filter = Mapping[str, "str | Sequence[str]"]


@dataclass(frozen=True)
class Chunk:
    """One searchable piece of a source, with the place it came from."""

    id: str  # stable: source hash + position, so re-adding the same file yields the same ids
    source: str  # the file's absolute path (or a memory's conversation id)
    kind: str  # text, pdf, image, audio, video, memory
    text: str
    vector: Sequence[float]
    page: int | None = None  # 1-based PDF page
    span: tuple[int, int] | None = None  # character span in the file's (or page's) text
    box: tuple[int, int, int, int] | None = None  # x0, y0, x1, y1 in the image's pixels
    start: float | None = None  # seconds into the audio or video
    end: float | None = None
    scene: int | None = None  # video scene number (1-based)
    space: str = "text"  # what the vector embeds: the chunk's text or its image
    meta: Mapping[str, Any] = field(default_factory=dict)

    def row(self, with_vector: bool = True) -> dict[str, Any]:
        """The flat record backends store (nulls where a field does not apply)."""
        vector = {"vector": [float(v) for v in self.vector]} if with_vector else {}
        return {"id": self.id, "source": self.source, "kind": self.kind, "text": self.text, **vector,
                "page": self.page,
                "span_start": self.span[0] if self.span else None, "span_end": self.span[1] if self.span else None,
                "box": json.dumps(list(self.box)) if self.box else None, "start_s": self.start, "end_s": self.end,
                "scene": self.scene, "space": self.space, "meta": json.dumps(dict(self.meta), sort_keys=True)}

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "Chunk":
        span = (int(row["span_start"]), int(row["span_end"])) if row.get("span_start") is not None else None
        box_text = row.get("box")
        box = tuple(json.loads(box_text)) if box_text else None
        return cls(id=row["id"], source=row["source"], kind=row["kind"], text=row["text"], vector=(),
                   page=_opt_int(row.get("page")), span=span, box=box,  # type: ignore[arg-type]
                   start=_opt_float(row.get("start_s")), end=_opt_float(row.get("end_s")),
                   scene=_opt_int(row.get("scene")), space=row.get("space") or "text",
                   meta=json.loads(row.get("meta") or "{}"))

    def citation(self) -> str:
        """Where the chunk is: `notes.pdf p. 3`, `shot.png box 10,20-200,60`, `talk.wav 1:02.5-1:09.0`."""
        from pathlib import Path

        where = Path(self.source).name if "/" in self.source or "\\" in self.source else self.source
        if self.page is None and self.box is None and self.start is None and self.meta.get("line"):
            where += f":{self.meta['line']}"
        if self.page is not None:
            where += f" p. {self.page}"
        if self.box is not None:
            x0, y0, x1, y1 = self.box
            where += f" box {x0},{y0}-{x1},{y1}"
        if self.start is not None:
            where += f" {_clock(self.start)}-{_clock(self.end if self.end is not None else self.start)}"
        if self.scene is not None:
            where += f" scene {self.scene}"
        return where


def _opt_int(value: Any) -> int | None:
    return None if value is None or value != value else int(value)  # NaN from Arrow nulls


def _opt_float(value: Any) -> float | None:
    return None if value is None or value != value else float(value)


def _clock(seconds: float) -> str:
    minutes, rest = divmod(max(0.0, seconds), 60)
    return f"{int(minutes)}:{rest:04.1f}"


@dataclass(frozen=True)
class Hit:
    """A chunk found by a search, with its score (higher is better) and how it was found."""

    chunk: Chunk
    score: float
    how: str  # vector, text or hybrid
    similarity: float | None = None  # cosine to the query vector, when a vector search found it


@dataclass(frozen=True)
class SourceRecord:
    """What the store holds of one source: its content hash, so an unchanged file is not read again."""

    source: str
    hash: str
    kind: str
    chunks: int


@runtime_checkable
class ChunkStore(Protocol):
    """One index's storage. Implementations are synchronous (they are disk or socket bound) and safe to
    reopen from another process; `close` releases connections."""

    def add(self, chunks: Sequence[Chunk]) -> None: ...

    def delete_source(self, source: str) -> int: ...

    def search_vector(self, vector: Sequence[float], k: int, where: Filter | None = None,
                      space: str = "text") -> list[Hit]: ...

    def search_text(self, query: str, k: int, where: Filter | None = None) -> list[Hit]: ...

    def sources(self) -> dict[str, SourceRecord]: ...

    def list_chunks(self, where: Filter | None = None, limit: int = 1000) -> list[Chunk]: ...

    def set_source(self, record: SourceRecord) -> None: ...

    def set_sources(self, records: Sequence[SourceRecord]) -> None: ...

    def count(self) -> int: ...

    def close(self) -> None: ...


def check_filter(where: Filter | None) -> dict[str, list[str]]:
    """The filter as {field: allowed values}; an unknown field is an InputError naming the valid ones."""
    out: dict[str, list[str]] = {}
    for key, value in (where or {}).items():
        if key not in FILTER_FIELDS:
            raise InputError(f"unknown filter field {key!r}", hint=f"filter on one of: {', '.join(FILTER_FIELDS)}")
        values = [value] if isinstance(value, str) else list(value)
        if not values or not all(isinstance(v, str) for v in values):
            raise InputError(f"filter {key!r} needs a string or a list of strings")
        out[key] = values
    return out


def sql_literal(value: str) -> str:
    """A single-quoted SQL string literal (quotes doubled); for LanceDB's filter language, which takes no
    parameters. Values come from imagine's own columns (paths, kinds), never a bare user expression."""
    if "\x00" in value:
        raise InputError("a filter value cannot contain a NUL character")
    return "'" + value.replace("'", "''") + "'"


def fuse(rankings: Iterable[Sequence[Hit]], k: int, constant: int = 60) -> list[Hit]:
    """Reciprocal-rank fusion of several ranked lists (vector and text hits): robust to their scores
    being on different scales, which is why hybrid search uses it instead of adding scores."""
    scores: dict[str, float] = {}
    chunks: dict[str, Chunk] = {}
    similarity: dict[str, float] = {}
    for hits in rankings:
        for rank, hit in enumerate(hits):
            scores[hit.chunk.id] = scores.get(hit.chunk.id, 0.0) + 1.0 / (constant + rank + 1)
            chunks.setdefault(hit.chunk.id, hit.chunk)
            if hit.similarity is not None:
                similarity[hit.chunk.id] = max(hit.similarity, similarity.get(hit.chunk.id, -1.0))
    best = sorted(scores, key=lambda cid: -scores[cid])[:k]
    return [Hit(chunks[cid], scores[cid], "hybrid", similarity.get(cid)) for cid in best]
