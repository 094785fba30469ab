"""`Index`: a named, persistent collection of cited chunks over a person's files, and its search.

An index lives in `$IMAGINE_HOME/index/NAME/` (`index.json` says which embedders and backend it uses;
the LanceDB tables sit beside it) or, when `index_url` is set at creation, in PostgreSQL + pgvector.
Adding a file hashes it first: an unchanged file costs nothing, a changed one replaces its old chunks,
a bad one is reported and skipped while the rest go in.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Sequence

from pydantic import BaseModel, ConfigDict

from ..errors import ImagineError, InputError
from ..parts import Image, Vector, load_part
from .chunking import Piece
from .ingest import Extracted, expand_paths, extract
from .store import Chunk, ChunkStore, Filter, Hit, SourceRecord, fuse

if TYPE_CHECKING:
    from ..client import Client

__all__ = ["AddReport", "Index", "IndexConfig", "index_names", "open_store"]

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
EMBED_BATCH = 256  # texts gathered across files before one embed call (sorted by length inside: less padding)
WRITE_BATCH = 1024  # chunks gathered across files before one store write
Progress = Callable[[int, int, str], None]
Mode = Literal["hybrid", "vector", "text"]


def _kept(extracted: Extracted) -> list[Piece]:
    """The pieces worth a vector: those with some text."""
    return [p for p in extracted.pieces if p.text.strip()]


class IndexConfig(BaseModel):
    """What an index was made with; fixed at creation, because vectors of another embedder don't compare."""

    model_config = ConfigDict(extra="forbid")
    backend: Literal["lance", "postgres"] = "lance"
    embedder: str = "minilm"
    image_embedder: str | None = None
    ocr_model: str | None = None
    asr_model: str | None = None


@dataclass
class AddReport:
    """What `Index.add` did: files added (with their chunk counts), unchanged, failed (with the reason)."""

    added: list[tuple[str, int]] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    embedded: int = 0  # chunks sent to an embedder in this call

    @property
    def chunks(self) -> int:
        return sum(n for _, n in self.added)


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise InputError(f"bad index name {name!r}",
                         hint="use letters, digits, '-' and '_' (at most 64, starting with a letter or digit)")
    return name


def index_names(client: "Client") -> list[str]:
    root = client.settings.home / "index"
    return sorted(p.name for p in root.iterdir() if (p / "index.json").is_file()) if root.is_dir() else []


def open_store(config: IndexConfig, root: Path, name: str, url: str | None) -> ChunkStore:
    if config.backend == "postgres":
        from .pgvector import PgVectorStore

        if not url:
            raise InputError(f"index {name!r} lives in PostgreSQL but no index_url is set",
                             hint="set IMAGINE_INDEX_URL=postgresql://... (or index_url in config.toml)")
        return PgVectorStore(url, name)
    from .lance import LanceStore

    return LanceStore(root / "lance")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Index:
    """One named index. `Index(name, client)` opens it (creating it with `create=True`)."""

    def __init__(self, name: str, client: "Client | None" = None, *, create: bool = False,
                 embedder: str | None = None, image_embedder: str | None = None, backend: str | None = None,
                 root: Path | None = None) -> None:
        from ..client import default_client

        self.name = _check_name(name)
        self.client = client or default_client()
        self.root = root or self.client.settings.home / "index" / self.name  # `root`: the memory's own folder
        path = self.root / "index.json"
        if path.is_file():
            self.config = IndexConfig.model_validate_json(path.read_text())
        elif create:
            chosen = backend or ("postgres" if self.client.settings.index_url else "lance")
            self.config = IndexConfig(backend=chosen, embedder=embedder or "minilm",  # type: ignore[arg-type]
                                      image_embedder=image_embedder)
            self.root.mkdir(parents=True, exist_ok=True)
            path.write_text(self.config.model_dump_json(indent=2))
        else:
            known = ", ".join(index_names(self.client)) or "none yet"
            raise InputError(f"no index named {name!r} (indexes: {known})",
                             hint=f"create it: imagine index add {name} FILES...")
        self._store: ChunkStore | None = None

    @property
    def store(self) -> ChunkStore:
        if self._store is None:
            self._store = open_store(self.config, self.root, self.name, self.client.settings.index_url)
        return self._store

    # -- embedding ------------------------------------------------------------------------------
    def _embed(self, items: Sequence[str | Image], model: str | None) -> list[list[float]]:
        from ..tasks import embed

        vectors: list[list[float]] = []
        calls = -(-len(items) // EMBED_BATCH)  # equal calls: 300 texts go as 150 + 150, not 256 + a short 44
        size = -(-len(items) // calls) if items else 1
        for start in range(0, len(items), size):
            batch = list(items[start:start + size])
            parts = [p for p in embed(batch, model, client=self.client).parts if isinstance(p, Vector)]
            if len(parts) != len(batch):
                raise ImagineError(f"the embedder returned {len(parts)} vectors for {len(batch)} inputs")
            vectors.extend(list(p.values) for p in parts)
        return vectors

    # -- writes ---------------------------------------------------------------------------------
    def add(self, paths: Sequence[str | Path], *, progress: Progress | None = None) -> AddReport:
        """Index files, folders and globs. Unchanged files are skipped before any model runs.

        Work is batched across files, not done per file: the texts of several files go to the embedder
        together (about EMBED_BATCH; it sorts them by length, so padding stays small, and a folder of
        one-paragraph notes is not a thousand one-text calls), and new chunks and source records are
        written about WRITE_BATCH chunks at a time (each LanceDB write is a new table version, and one
        per small file cost as much as embedding it). A file's record is written with (after) its
        chunks, so a run that dies part way re-reads the files whose records it did not write."""
        report = AddReport()
        files, missing = expand_paths([str(p) for p in paths])
        report.failed.extend(missing)
        known = self.store.sources()
        say = progress or (lambda done, total, label: None)
        chunks_due: list[Chunk] = []
        records_due: list[SourceRecord] = []
        extracted_due: list[tuple[str, str, Extracted, list[Piece]]] = []  # (source, hash, extracted, kept)
        texts_due = 0  # kept pieces in extracted_due: the texts the next embed call gets

        def write() -> None:
            if chunks_due:
                self.store.add(chunks_due)
            if records_due:
                self.store.set_sources(records_due)
            chunks_due.clear()
            records_due.clear()

        def embed_due() -> None:
            nonlocal texts_due
            texts = [p.text for _, _, _, kept in extracted_due for p in kept]
            texts_due = 0
            try:
                vectors = self._embed(texts, self.config.embedder) if texts else []
            except ImagineError as exc:  # the embedder failed on this batch: its files are reported, not lost
                report.failed.extend((source, exc.message or str(exc)) for source, _, _, _ in extracted_due)
                extracted_due.clear()
                return
            at = 0
            for source, digest, extracted, kept in extracted_due:
                count = len(kept)
                try:
                    chunks = self._chunks(source, digest, extracted, kept, vectors[at:at + count])
                except (ImagineError, OSError) as exc:
                    report.failed.append((source, getattr(exc, "message", None) or str(exc)))
                    continue
                finally:
                    at += count
                if source in known:
                    self.store.delete_source(source)  # a changed file: its old chunks go
                chunks_due.extend(chunks)
                records_due.append(SourceRecord(source, digest, extracted.kind, len(chunks)))
                report.added.append((source, len(chunks)))
                report.embedded += len(chunks)
            extracted_due.clear()
            if len(chunks_due) >= WRITE_BATCH:
                write()

        for done, path in enumerate(files):
            say(done, len(files), path.name)
            source = str(path)
            try:
                digest = _sha256(path)
                if source in known and known[source].hash == digest:
                    report.unchanged.append(source)
                    continue
                extracted = extract(path, self.client, image_vectors=self.config.image_embedder is not None,
                                    ocr_model=self.config.ocr_model, asr_model=self.config.asr_model)
            except (ImagineError, OSError) as exc:
                report.failed.append((source, getattr(exc, "message", None) or str(exc)))
                continue
            kept = _kept(extracted)
            extracted_due.append((source, digest, extracted, kept))
            texts_due += len(kept)
            if texts_due >= EMBED_BATCH:
                embed_due()
        embed_due()
        write()
        say(len(files), len(files), "done")
        optimize = getattr(self.store, "optimize", None)
        if report.added and optimize is not None:
            optimize()
        return report

    def _chunks(self, source: str, digest: str, extracted: Extracted, kept: list[Piece],
                text_vectors: list[list[float]]) -> list[Chunk]:
        """A file's chunks: its kept text pieces with their vectors, then its images (embedded here)."""
        chunks = [self._chunk(source, digest, extracted, n, piece, vector, "text")
                  for n, (piece, vector) in enumerate(zip(kept, text_vectors))]
        if extracted.images and self.config.image_embedder:
            image_vectors = self._embed([image for _, image in extracted.images], self.config.image_embedder)
            chunks.extend(self._chunk(source, digest, extracted, len(chunks) + n, piece, vector, "image")
                          for n, ((piece, _), vector) in enumerate(zip(extracted.images, image_vectors)))
        return chunks

    @staticmethod
    def _chunk(source: str, digest: str, extracted: Extracted, n: int, piece: Piece, vector: list[float],
               space: str) -> Chunk:
        meta: dict[str, Any] = {"line": piece.line} if piece.line is not None else {}
        return Chunk(id=f"{digest[:16]}-{space[0]}{n}", source=source, kind=extracted.kind, text=piece.text,
                     vector=vector, page=piece.page, span=piece.span, box=piece.box, start=piece.start,
                     end=piece.end, scene=piece.scene, space=space, meta=meta)

    def add_text(self, source: str, text: str, *, kind: str = "note", meta: dict[str, Any] | None = None) -> Chunk:
        """Index one piece of text that is not a file (a memory, a note); `source` names it for deletion."""
        if not text.strip():
            raise InputError("nothing to index: the text is empty")
        vector = self._embed([text], self.config.embedder)[0]
        digest = hashlib.sha256(f"{source}\n{text}".encode()).hexdigest()
        chunk = Chunk(id=f"{digest[:16]}-t0", source=source, kind=kind, text=text, vector=vector, meta=meta or {})
        self.store.add([chunk])
        self.store.set_source(SourceRecord(source, digest, kind, 1))
        return chunk

    def remove(self, paths: Sequence[str | Path]) -> int:
        """Forget files (their chunks and their source record); returns the chunks removed."""
        known = self.store.sources()
        removed = 0
        for raw in paths:
            source = str(Path(raw).resolve())
            if source not in known and str(raw) in known:
                source = str(raw)
            if source not in known:
                raise InputError(f"{raw} is not in index {self.name!r}", hint=f"imagine index show {self.name}")
            removed += self.store.delete_source(source)
        return removed

    def drop(self) -> None:
        """Delete the whole index (its folder; its tables in PostgreSQL)."""
        drop = getattr(self.store, "drop", None)
        if drop is not None:
            drop()
        self.close()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- reads ----------------------------------------------------------------------------------
    def sources(self) -> dict[str, SourceRecord]:
        return self.store.sources()

    def search(self, query: str | Image | Path, k: int = 5, *, where: Filter | None = None,
               mode: Mode = "hybrid") -> list[Hit]:
        """Ranked hits for a text query, or for an image (by its image vector when the index has an image
        embedder, and by the text read from it)."""
        if isinstance(query, Path):
            part = load_part(query, limits=self.client.settings.part_limits())
            if not isinstance(part, Image):
                query = getattr(part, "text", "")
            else:
                query = part
        if isinstance(query, Image):
            return self._search_image(query, k, where)
        if not isinstance(query, str) or not query.strip():
            raise InputError("the search query is empty", hint="give a few words, or -a IMAGE to search by image")
        rankings: list[list[Hit]] = []
        if mode in ("hybrid", "vector"):
            vector = self._embed([query], self.config.embedder)[0]
            rankings.append(self.store.search_vector(vector, k * 2 if mode == "hybrid" else k, where))
        if mode in ("hybrid", "text"):
            rankings.append(self.store.search_text(query, k * 2 if mode == "hybrid" else k, where))
        return fuse(rankings, k) if mode == "hybrid" else rankings[0][:k]

    def _search_image(self, image: Image, k: int, where: Filter | None) -> list[Hit]:
        from ..tasks import read_text

        rankings: list[list[Hit]] = []
        if self.config.image_embedder:
            vector = self._embed([image], self.config.image_embedder)[0]
            rankings.append(self.store.search_vector(vector, k * 2, where, space="image"))
        words = read_text(image, self.config.ocr_model, client=self.client).text().strip()
        if words:
            rankings.append(self.search(words, k * 2, where=where))
        if not rankings:
            raise InputError("the image has no readable text and this index has no image embedder",
                             hint="search with words, or make an index with --image-model clip:MODEL")
        return fuse(rankings, k)

    def ask(self, question: str, model: str | None = None, *, k: int = 5, **kwargs: Any) -> Any:
        """Answer from this index with numbered citations (see `rag.answer`); returns an `Answer`."""
        from .rag import answer

        return answer(self, question, model, k=k, **kwargs)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def info(self) -> dict[str, Any]:
        sources = self.sources()
        return {"name": self.name, **json.loads(self.config.model_dump_json()), "files": len(sources),
                "chunks": self.store.count()}
