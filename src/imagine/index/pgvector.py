"""The server chunk store: PostgreSQL + pgvector, for an index that has outgrown one machine.

Each index is one schema (`imagine_NAME`): a table per vector space (`chunks_text`, `chunks_image`: the
vector column's width is fixed when the table is made) and `sources` (file -> content hash). Vector search
is an HNSW index (cosine; built by `optimize` after an ingest) with the filters in the WHERE clause; words are found through a generated
tsvector column with a GIN index, ranked by `ts_rank_cd`. A schema per index keeps names unambiguous and
makes dropping an index one statement. Identifiers are quoted with `psycopg.sql`; values are always
parameters. psycopg is imported only when a PostgreSQL index is opened (the `postgres` extra).
"""

from __future__ import annotations

import hashlib
import re
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator, Sequence
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np

from ..errors import ConfigError, EngineUnavailable, InputError, StoreError
from .store import Chunk, Filter, Hit, SourceRecord, check_filter

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql as psql

__all__ = ["PgVectorStore", "redact_url"]

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
SPACE = re.compile(r"^[a-z][a-z0-9]{0,30}$")
TS_CONFIG = "english"  # stemming and stop words: "explains" finds "explained"
HNSW_MAX_DIM = 2000  # pgvector's HNSW limit for `vector`; wider spaces are searched exactly
EF_SEARCH_MAX = 1000  # pgvector's ceiling for hnsw.ef_search
EF_SEARCH_MIN = 100  # recall@10 0.98 at ~2 ms on 5,000 random 64-d rows (pgvector's default 40: 0.90)
MAX_QUERY_WORDS = 64
DDL_LOCK = 0x696D6167  # advisory lock key ("imag"): two processes creating the same tables wait in turn
INSTALL_HINT = "pip install 'imagine[postgres]' (psycopg, pgvector)"

_COLUMNS = ("id", "source", "kind", "text", "page", "span_start", "span_end", "box", "start_s", "end_s",
            "scene", "space")
_WRITE_COLUMNS = (*_COLUMNS, "vector", "meta")


def _psycopg() -> Any:
    try:
        import psycopg
        import pgvector.psycopg  # noqa: F401
    except ImportError:
        raise EngineUnavailable("the PostgreSQL index needs psycopg and pgvector", hint=INSTALL_HINT) from None
    return psycopg


def redact_url(url: str) -> str:
    """The URL as it may be shown: the password (in the authority, a query or a conninfo string) masked."""
    if "://" in url:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            user, has_password, _ = userinfo.partition(":")
            netloc = f"{user}:***@{host}" if has_password else f"{user}@{host}"
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        query = urlencode([(k, "***" if k == "password" else v) for k, v in pairs], safe="/")
        return urlunsplit(parts._replace(netloc=netloc, query=query))
    return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", url)


def _password(url: str) -> str | None:
    if "://" in url:
        parts = urlsplit(url)
        found = dict(parse_qsl(parts.query)).get("password")
        return parts.password or found
    match = re.search(r"password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", url)
    return match.group(1).strip("'") if match else None


def _schema_name(name: str) -> str:
    """`imagine_NAME`, shortened with a hash past PostgreSQL's 63-byte identifiers (it would truncate them
    silently, so two long names could meet)."""
    if not isinstance(name, str) or not NAME.match(name):
        raise InputError(f"bad index name {name!r}",
                         hint="use letters, digits, '-' and '_' (at most 64, starting with a letter or digit)")
    full = f"imagine_{name}"
    if len(full) <= 63:
        return full
    return f"{full[:54]}_{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def _check_space(space: str) -> str:
    if not isinstance(space, str) or not SPACE.match(space):
        raise InputError(f"bad vector space {space!r}", hint="a space is a short lower-case word: text, image")
    return space


class PgVectorStore:
    """Chunks of one index in PostgreSQL. One connection per store (autocommit; multi-statement work runs
    in explicit transactions), guarded by a lock so threads take turns."""

    def __init__(self, url: str, name: str) -> None:
        self.url = url
        self.name = name
        self.schema = _schema_name(name)
        self._psycopg = _psycopg()
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._iterative = False
        with self._session():
            pass  # connect and create the schema now, so a bad URL fails at open, not at first search

    # -- connection -----------------------------------------------------------------------------
    def _connect(self) -> "psycopg.Connection[Any]":
        pg = self._psycopg
        from pgvector.psycopg import register_vector

        shown = redact_url(self.url)
        try:
            conn = pg.connect(self.url, autocommit=True, connect_timeout=10)
        except pg.ProgrammingError as err:  # libpq could not parse the URL
            raise ConfigError(f"bad PostgreSQL URL {shown}: {self._scrub(err)}",
                              hint="postgresql://USER:PASSWORD@HOST:PORT/DATABASE") from None
        except pg.OperationalError as err:
            raise EngineUnavailable(f"cannot connect to PostgreSQL at {shown}: {self._scrub(err)}",
                                    hint="is the server running, and are host, port, user and password right?") \
                from None
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (DDL_LOCK,))
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                self._create_schema(conn)
            register_vector(conn)
            row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        except BaseException as err:
            conn.close()
            if isinstance(err, pg.errors.InsufficientPrivilege):
                raise EngineUnavailable(f"PostgreSQL at {shown} refused to set up the index: {self._scrub(err)}",
                                        hint="a superuser runs CREATE EXTENSION vector in that database once, "
                                             "and the user needs CREATE on it") from None
            if isinstance(err, pg.errors.UndefinedFile):  # the server has no pgvector installed
                raise EngineUnavailable(f"PostgreSQL at {shown} has no pgvector: {self._scrub(err)}",
                                        hint="install pgvector on the server (github.com/pgvector/pgvector)") \
                    from None
            raise
        # pgvector >= 0.8 keeps scanning the HNSW graph until a filtered query has its k rows.
        version = tuple(int(p) for p in re.findall(r"\d+", row[0] if row else "0")[:2])
        self._iterative = version >= (0, 8)
        return conn

    def _scrub(self, err: BaseException) -> str:
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        password = _password(self.url)
        return text.replace(password, "***") if password else text

    def _create_schema(self, conn: "psycopg.Connection[Any]") -> None:
        sql = self._psycopg.sql
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
        conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (source text PRIMARY KEY, hash text NOT NULL, "
                             "kind text NOT NULL, chunks bigint NOT NULL)").format(self._ident("sources")))

    @contextmanager
    def _session(self) -> Iterator["psycopg.Connection[Any]"]:
        """The live connection, under the lock; reconnects after a dropped connection, and turns a
        connection lost mid-call into a StoreError that names the server."""
        pg = self._psycopg
        with self._lock:
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._conn = self._connect()
            try:
                yield self._conn
            except pg.OperationalError as err:
                raise StoreError(f"PostgreSQL at {redact_url(self.url)} failed: {self._scrub(err)}") from None

    def _ident(self, table: str) -> "psql.Composable":
        sql = self._psycopg.sql
        return sql.Identifier(self.schema, table)

    # -- tables ---------------------------------------------------------------------------------
    def _spaces(self, conn: "psycopg.Connection[Any]") -> dict[str, int]:
        """{space: vector width} of the chunk tables this index has (read from the catalog, so another
        process's new table is seen)."""
        rows = conn.execute(
            "SELECT c.relname, a.atttypmod FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'vector' AND NOT a.attisdropped "
            "WHERE n.nspname = %s AND c.relkind = 'r' AND starts_with(c.relname, 'chunks_')",
            (self.schema,)).fetchall()
        return {relname.removeprefix("chunks_"): int(width) for relname, width in rows}

    def _create_table(self, conn: "psycopg.Connection[Any]", space: str, dim: int) -> None:
        sql = self._psycopg.sql
        table = self._ident(f"chunks_{space}")
        conn.execute(sql.SQL(
            "CREATE TABLE IF NOT EXISTS {table} (id text PRIMARY KEY, source text NOT NULL, kind text NOT NULL, "
            "text text NOT NULL, vector vector({dim}) NOT NULL, page integer, span_start bigint, span_end bigint, "
            "box text, start_s double precision, end_s double precision, scene integer, space text NOT NULL, "
            "meta jsonb NOT NULL DEFAULT '{{}}', "
            "tsv tsvector GENERATED ALWAYS AS (to_tsvector({config}::regconfig, text)) STORED)"
        ).format(table=table, dim=sql.Literal(int(dim)), config=sql.Literal(TS_CONFIG)))
        for column in ("source", "kind"):
            conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
                sql.Identifier(f"chunks_{space}_{column}"), table, sql.Identifier(column)))
        conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING gin (tsv)").format(
            sql.Identifier(f"chunks_{space}_tsv"), table))

    def _where(self, filters: dict[str, list[str]]) -> tuple["psql.Composable", list[Any]]:
        sql = self._psycopg.sql
        clauses = [sql.SQL("{} = ANY(%s)").format(sql.Identifier(name)) for name in filters]
        if not clauses:
            return sql.SQL("TRUE"), []
        return sql.SQL(" AND ").join(clauses), [list(values) for values in filters.values()]

    def _select_columns(self) -> "psql.Composable":
        sql = self._psycopg.sql
        return sql.SQL(", ").join([*(sql.Identifier(c) for c in _COLUMNS), sql.SQL("meta::text AS meta")])

    # -- writes ---------------------------------------------------------------------------------
    def add(self, chunks: Sequence[Chunk]) -> None:
        sql = self._psycopg.sql
        by_space: dict[str, dict[str, Chunk]] = {}
        for chunk in chunks:  # the last of one id wins, as one upsert cannot touch a row twice
            by_space.setdefault(_check_space(chunk.space), {})[chunk.id] = chunk
        if not by_space:
            return
        with self._session() as conn, conn.transaction():
            have = self._spaces(conn)
            for space, group in by_space.items():
                dim = len(next(iter(group.values())).vector)
                if dim == 0 or any(len(c.vector) != dim for c in group.values()):
                    raise InputError("chunks of one space must have non-empty vectors of one width")
                if space not in have:
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (DDL_LOCK,))
                    have = self._spaces(conn)  # another process may have made it while we waited
                    if space not in have:
                        self._create_table(conn, space, dim)
                        have[space] = dim
                if have[space] != dim:
                    raise InputError(f"this index holds {have[space]}-number {space} vectors, the new chunks have "
                                     f"{dim}", hint="use the embedder the index was made with, or a new index name")
                names = [sql.Identifier(c) for c in _WRITE_COLUMNS]
                values = [sql.Placeholder() for _ in _COLUMNS] + [sql.Placeholder(), sql.SQL("%s::jsonb")]
                updates = [sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in _WRITE_COLUMNS if c != "id"]
                statement = sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT (id) DO UPDATE SET {}").format(
                    self._ident(f"chunks_{space}"), sql.SQL(", ").join(names), sql.SQL(", ").join(values),
                    sql.SQL(", ").join(updates))
                params = []
                for chunk in group.values():
                    row = chunk.row()
                    params.append([*(row[c] for c in _COLUMNS), np.asarray(row["vector"], dtype=np.float32),
                                   row["meta"]])
                with conn.cursor() as cursor:
                    cursor.executemany(statement, params)

    def delete_source(self, source: str) -> int:
        sql = self._psycopg.sql
        removed = 0
        with self._session() as conn, conn.transaction():
            for space in sorted(self._spaces(conn)):
                cursor = conn.execute(sql.SQL("DELETE FROM {} WHERE source = %s").format(
                    self._ident(f"chunks_{space}")), (source,))
                removed += max(cursor.rowcount, 0)
            conn.execute(sql.SQL("DELETE FROM {} WHERE source = %s").format(self._ident("sources")), (source,))
        return removed

    def set_source(self, record: SourceRecord) -> None:
        self.set_sources([record])

    def set_sources(self, records: Sequence[SourceRecord]) -> None:
        """Record (or replace) what each source file was when indexed, in one transaction."""
        if not records:
            return
        sql = self._psycopg.sql
        statement = sql.SQL(
            "INSERT INTO {} (source, hash, kind, chunks) VALUES (%s, %s, %s, %s) ON CONFLICT (source) "
            "DO UPDATE SET hash = EXCLUDED.hash, kind = EXCLUDED.kind, chunks = EXCLUDED.chunks"
        ).format(self._ident("sources"))
        with self._session() as conn, conn.cursor() as cursor:
            cursor.executemany(statement, [(r.source, r.hash, r.kind, int(r.chunks)) for r in records])

    # -- reads ----------------------------------------------------------------------------------
    def sources(self) -> dict[str, SourceRecord]:
        sql = self._psycopg.sql
        with self._session() as conn:
            rows = conn.execute(sql.SQL("SELECT source, hash, kind, chunks FROM {}").format(
                self._ident("sources"))).fetchall()
        return {source: SourceRecord(source, digest, kind, int(chunks)) for source, digest, kind, chunks in rows}

    def list_chunks(self, where: Filter | None = None, limit: int = 1000) -> list[Chunk]:
        """Text-space chunks matching the filter, without vectors (for listings such as `memory list`)."""
        from psycopg.rows import dict_row

        sql = self._psycopg.sql
        filters = check_filter(where)
        with self._session() as conn:
            if "text" not in self._spaces(conn):
                return []
            condition, params = self._where(filters)
            with conn.cursor(row_factory=dict_row) as cursor:
                cursor.execute(sql.SQL("SELECT {} FROM {} WHERE {} ORDER BY id LIMIT %s").format(
                    self._select_columns(), self._ident("chunks_text"), condition), [*params, max(0, limit)])
                rows = cursor.fetchall()
        return [Chunk.from_row(row) for row in rows]

    def count(self) -> int:
        sql = self._psycopg.sql
        with self._session() as conn:
            total = 0
            for space in self._spaces(conn):
                row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(self._ident(f"chunks_{space}"))).fetchone()
                total += int(row[0]) if row else 0
        return total

    def search_vector(self, vector: Sequence[float], k: int, where: Filter | None = None,
                      space: str = "text") -> list[Hit]:
        """The k nearest chunks by cosine. HNSW answers first (ef_search raised, so a filter that drops
        most candidates still leaves k); if it still comes back short, an exact scan makes sure. Before
        `optimize` has built the HNSW index, every search is exact."""
        sql = self._psycopg.sql
        filters = check_filter(where)
        _check_space(space)
        if k <= 0:
            return []
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        with self._session() as conn:
            dim = self._spaces(conn).get(space)
            if dim is None:
                return []
            if len(query) != dim:
                raise InputError(f"the query vector has {len(query)} numbers, this index's {space} vectors have {dim}",
                                 hint="search with the embedder the index was made with")
            condition, params = self._where(filters)
            statement = sql.SQL(
                "SELECT {columns}, 1 - (vector <=> %s) AS similarity FROM {table} WHERE {where} "
                "ORDER BY vector <=> %s LIMIT %s").format(columns=self._select_columns(),
                                                          table=self._ident(f"chunks_{space}"), where=condition)
            args = [query, *params, query, k]
            ef = EF_SEARCH_MAX if filters else min(EF_SEARCH_MAX, max(EF_SEARCH_MIN, 4 * k))
            rows = self._query(conn, statement, args, {"hnsw.ef_search": str(ef)}, iterative=True)
            if len(rows) < k and (filters or k > ef):
                rows = self._query(conn, statement, args, {"enable_indexscan": "off"})
        return [Hit(Chunk.from_row(row), float(row["similarity"]), "vector", float(row["similarity"]))
                for row in rows]

    def _query(self, conn: "psycopg.Connection[Any]", statement: "psql.Composed", args: Sequence[Any],
               settings: dict[str, str], iterative: bool = False) -> list[dict[str, Any]]:
        from psycopg.rows import dict_row

        if iterative and self._iterative:
            settings = {**settings, "hnsw.iterative_scan": "strict_order"}
        with conn.transaction(), conn.cursor(row_factory=dict_row) as cursor:
            for key, value in settings.items():  # set_config(..., true): SET LOCAL, with parameters
                cursor.execute("SELECT set_config(%s, %s, true)", (key, value))
            cursor.execute(statement, args)
            return cursor.fetchall()

    def search_text(self, query: str, k: int, where: Filter | None = None) -> list[Hit]:
        """Chunks holding any of the query's words (OR, like BM25 search), best covered first."""
        sql = self._psycopg.sql
        filters = check_filter(where)
        words = re.findall(r"\w+", query)[:MAX_QUERY_WORDS]
        if not words or k <= 0:
            return []
        with self._session() as conn:
            if "text" not in self._spaces(conn):
                return []
            tsquery = sql.SQL(" || ").join([sql.SQL("plainto_tsquery({}::regconfig, %s)").format(
                sql.Literal(TS_CONFIG)) for _ in words])
            condition, params = self._where(filters)
            statement = sql.SQL(
                "SELECT {columns}, ts_rank_cd(tsv, q.query, 1) AS rank FROM {table}, (SELECT {tsquery} AS query) q "
                "WHERE tsv @@ q.query AND {where} ORDER BY rank DESC, id LIMIT %s").format(
                columns=self._select_columns(), table=self._ident("chunks_text"), tsquery=tsquery, where=condition)
            rows = self._query(conn, statement, [*words, *params, k], {})
        return [Hit(Chunk.from_row(row), float(row["rank"]), "text") for row in rows]

    # -- upkeep ---------------------------------------------------------------------------------
    def optimize(self) -> None:
        """After an ingest: build the HNSW index where a table has none yet, then ANALYZE, so the planner
        weighs HNSW against the filters' btrees with true row counts. The HNSW index is built here rather
        than with the table because building it over loaded rows is ~10x faster than growing it row by
        row (measured: 5,000 x 64 rows in ~1 s vs ~10 s on 2 cores); later adds extend it."""
        sql = self._psycopg.sql
        with self._session() as conn:
            for space, dim in self._spaces(conn).items():
                table = self._ident(f"chunks_{space}")
                if dim <= HNSW_MAX_DIM:
                    conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING hnsw (vector vector_cosine_ops)")
                                 .format(sql.Identifier(f"chunks_{space}_hnsw"), table))
                conn.execute(sql.SQL("ANALYZE {}").format(table))
            conn.execute(sql.SQL("ANALYZE {}").format(self._ident("sources")))

    def drop(self) -> None:
        """Delete the whole index: its schema and every table in it."""
        sql = self._psycopg.sql
        with self._session() as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.schema)))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
