"""The embedded chunk store: LanceDB tables in one folder (`$IMAGINE_HOME/index/NAME`), zero configuration.

One Lance table per vector space (`chunks_text`, `chunks_image`: their vectors differ in width) plus
`sources` (file -> content hash). Lance keeps the rows on disk as Arrow and answers full-text search
(BM25) with its own FTS index; vector search goes through `ann.VectorIndex`, built from the table's
vectors on first use and rebuilt when the table's version moves (another process wrote to it).
"""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..errors import EngineUnavailable, InputError
from .ann import VectorIndex
from .store import Chunk, Filter, Hit, SourceRecord, check_filter, sql_literal

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["LanceStore"]

_COLUMNS = ("id", "source", "kind", "text", "page", "span_start", "span_end", "box", "start_s", "end_s",
            "scene", "space", "meta")


def _lancedb() -> Any:
    try:
        import lancedb
    except ImportError:
        raise EngineUnavailable("the embedded index needs LanceDB",
                                hint="pip install 'imagine[index]' (lancedb, pypdf)") from None
    return lancedb


def _schema(dim: int) -> "pa.Schema":
    import pyarrow as pa

    return pa.schema([
        ("id", pa.string()), ("source", pa.string()), ("kind", pa.string()), ("text", pa.string()),
        ("vector", pa.list_(pa.float32(), dim)), ("page", pa.int32()), ("span_start", pa.int64()),
        ("span_end", pa.int64()), ("box", pa.string()), ("start_s", pa.float64()), ("end_s", pa.float64()),
        ("scene", pa.int32()), ("space", pa.string()), ("meta", pa.string())])


_SOURCES_SCHEMA_FIELDS = (("source", "string"), ("hash", "string"), ("kind", "string"), ("chunks", "int64"))


def _arrow_rows(chunks: Sequence[Chunk], dim: int) -> "pa.Table":
    """Chunks as an Arrow table; vectors go in as one float32 block, not as Python float lists."""
    import pyarrow as pa

    records = [c.row(with_vector=False) for c in chunks]
    vectors = np.asarray([c.vector for c in chunks], dtype=np.float32).reshape(len(chunks), dim)
    schema = _schema(dim)
    columns = {name: pa.array([r[name] for r in records], type=schema.field(name).type) for name in _COLUMNS}
    columns["vector"] = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dim)
    return pa.table([columns[f.name] for f in schema], schema=schema)


def _where_sql(where: dict[str, list[str]]) -> str | None:
    clauses = [f"{name} IN ({', '.join(sql_literal(v) for v in values)})" for name, values in where.items()]
    return " AND ".join(clauses) or None


class LanceStore:
    """Chunks of one index in a LanceDB folder. Vectors are searched in memory (see `ann.py`)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        # read_consistency_interval 0: every read sees what another process wrote (~0.1 ms a check)
        self.db = _lancedb().connect(str(self.root), read_consistency_interval=timedelta(0))
        self._lock = threading.Lock()
        self._open: dict[str, Any] = {}  # table name -> opened table (opening costs ~0.4 ms)
        self._ann: dict[str, tuple[int, VectorIndex, "pa.Table"]] = {}  # space -> (version, index, rows)
        self._fts_ready = False

    # -- tables ---------------------------------------------------------------------------------
    def _names(self) -> set[str]:
        listing = self.db.list_tables() if hasattr(self.db, "list_tables") else self.db.table_names()
        names = getattr(listing, "tables", listing)
        return set(names)

    def _opened(self, name: str) -> Any:
        table = self._open.get(name)
        if table is None and name in self._names():
            table = self._open[name] = self.db.open_table(name)
        return table

    def _table(self, space: str, dim: int | None = None) -> Any:
        name = f"chunks_{space}"
        table = self._opened(name)
        if table is not None:
            if dim is not None:
                have = table.schema.field("vector").type.list_size
                if have != dim:
                    raise InputError(f"this index holds {have}-number {space} vectors, the new chunks have {dim}",
                                     hint="use the embedder the index was made with, or a new index name")
            return table
        if dim is None:
            return None
        table = self._open[name] = self.db.create_table(name, schema=_schema(dim))
        return table

    def _sources_table(self, create: bool = False) -> Any:
        import pyarrow as pa

        table = self._opened("sources")
        if table is not None or not create:
            return table
        fields = [(n, pa.string() if t == "string" else pa.int64()) for n, t in _SOURCES_SCHEMA_FIELDS]
        table = self._open["sources"] = self.db.create_table("sources", schema=pa.schema(fields))
        return table

    # -- writes ---------------------------------------------------------------------------------
    def add(self, chunks: Sequence[Chunk]) -> None:
        import pyarrow as pa

        by_space: dict[str, list[Chunk]] = {}
        for chunk in chunks:
            by_space.setdefault(chunk.space, []).append(chunk)
        with self._lock:
            for space, group in by_space.items():
                dim = len(group[0].vector)
                if any(len(c.vector) != dim for c in group):
                    raise InputError("chunks of one space must have vectors of one width")
                table = self._table(space, dim)
                rows = _arrow_rows(group, dim)
                # an id already stored is replaced, not duplicated (the PostgreSQL store behaves the same)
                table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all().execute(rows)

    def delete_source(self, source: str) -> int:
        removed = 0
        with self._lock:
            for name in sorted(self._names()):
                if name.startswith("chunks_"):
                    table = self._opened(name)
                    before = table.count_rows()
                    table.delete(f"source = {sql_literal(source)}")
                    removed += before - table.count_rows()
            sources = self._sources_table()
            if sources is not None:
                sources.delete(f"source = {sql_literal(source)}")
        return removed

    def set_source(self, record: SourceRecord) -> None:
        self.set_sources([record])

    def set_sources(self, records: Sequence[SourceRecord]) -> None:
        """Record (or replace) what each source file was when indexed, in one write."""
        import pyarrow as pa

        if not records:
            return
        with self._lock:
            table = self._sources_table(create=True)
            rows = pa.Table.from_pylist([{"source": r.source, "hash": r.hash, "kind": r.kind, "chunks": r.chunks}
                                         for r in records], schema=table.schema)
            table.merge_insert("source").when_matched_update_all().when_not_matched_insert_all().execute(rows)

    # -- reads ----------------------------------------------------------------------------------
    def sources(self) -> dict[str, SourceRecord]:
        table = self._sources_table()
        if table is None:
            return {}
        return {r["source"]: SourceRecord(r["source"], r["hash"], r["kind"], int(r["chunks"]))
                for r in table.to_arrow().to_pylist()}

    def list_chunks(self, where: Filter | None = None, limit: int = 1000) -> list[Chunk]:
        """Text-space chunks matching the filter, without vectors (for listings such as `memory list`)."""
        table = self._table("text")
        if table is None:
            return []
        search = table.search().select(list(_COLUMNS)).limit(limit)
        sql = _where_sql(check_filter(where))
        if sql:
            search = search.where(sql)
        return [Chunk.from_row(row) for row in search.to_arrow().to_pylist()]

    def count(self) -> int:
        return sum(self._opened(n).count_rows() for n in self._names() if n.startswith("chunks_"))

    def _vector_index(self, space: str) -> tuple[VectorIndex, "pa.Table"] | None:
        """The space's vectors in a VectorIndex and its other columns in memory (a LanceDB lookup of the
        hits by id costs ~10 ms at 100k rows, `take` on the in-memory columns ~0.1 ms); rebuilt when the
        table's version moves."""
        table = self._table(space)
        if table is None:
            return None
        version = table.version
        cached = self._ann.get(space)
        if cached and cached[0] == version:
            return cached[1], cached[2]
        self._ann.pop(space, None)  # let the old index go before the new one is built
        data = table.to_arrow()
        width = data.schema.field("vector").type.list_size
        flat = data.column("vector").combine_chunks().values.to_numpy(zero_copy_only=False)
        vectors = np.asarray(flat, dtype=np.float32).reshape(-1, width)
        rows = data.select(list(_COLUMNS)).combine_chunks()  # `take` over many chunks costs ~2 ms
        del data, flat
        columns = {"source": rows.column("source").to_pylist(), "kind": rows.column("kind").to_pylist()}
        index = VectorIndex(vectors, columns)
        self._ann[space] = (version, index, rows)
        return index, rows

    def search_vector(self, vector: Sequence[float], k: int, where: Filter | None = None,
                      space: str = "text") -> list[Hit]:
        filters = check_filter(where)
        with self._lock:
            built = self._vector_index(space)
            if built is None:
                return []
            index, rows = built
            found = index.search(np.asarray(vector, dtype=np.float32), k, filters)
            records = rows.take([row for row, _ in found]).to_pylist() if found else []
        return [Hit(Chunk.from_row(record), score, "vector", score) for record, (_, score) in zip(records, found)]

    def search_text(self, query: str, k: int, where: Filter | None = None) -> list[Hit]:
        filters = check_filter(where)
        if not query.strip():
            return []
        with self._lock:
            table = self._table("text")
            if table is None or table.count_rows() == 0:
                return []
            self._ensure_fts(table)
            search = table.search(query, query_type="fts").select([*_COLUMNS, "_score"]).limit(k)
            sql = _where_sql(filters)
            if sql:
                search = search.where(sql, prefilter=True)
            rows = search.to_arrow().to_pylist()
        return [Hit(Chunk.from_row(row), float(row.get("_score") or 0.0), "text") for row in rows]

    def _ensure_fts(self, table: Any) -> None:
        """Build the full-text index once per table; rows added later are searched without it until
        `optimize` folds them in (Lance scans unindexed rows), so a write never waits for a rebuild."""
        if self._fts_ready:
            return
        if not any("text" in getattr(ix, "columns", ()) for ix in table.list_indices()):
            from lancedb.index import FTS

            table.create_index("text", config=FTS(), replace=True)
        self._fts_ready = True

    def optimize(self) -> None:
        """Fold new rows into the indexes and compact small files (after an ingest)."""
        with self._lock:
            for name in self._names():
                if name.startswith("chunks_") or name == "sources":
                    self._opened(name).optimize()

    def close(self) -> None:
        self._ann.clear()
        self._open.clear()
