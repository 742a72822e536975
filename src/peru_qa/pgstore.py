"""The PostgreSQL backend: one index in a database that a whole team shares (PostgreSQL >= 15, pgvector >= 0.7).

Everything lives in the database, nothing in per-process files: documents, page texts, chunks, their vectors in a
pgvector column with an HNSW cosine index (typed `vector(dim)` once the first document fixes the dimension), and
keyword search as BM25 computed in SQL over a (term, chunk, tf) table filled from the same analysed terms the
embedded backend gives bm25s, with the same Lucene formula and parameters — so both backends rank alike (exactly
while a query's terms have at most `PgKeyword.POSTINGS` postings in all; past that only a term's best postings
are read, and each chunk's stored impacts, also kept as a pgvector sparse vector, order the candidates).

Every document is written in one transaction, so readers never see half of one; writers take an advisory lock
around each commit (the twin check of `Ingest._commit` needs it), searches never wait for it. Connections come from
a pool that replaces dead ones, so a restarted server is picked up without restarting peru-qa; a server that is
down or a wrong URL gives a one-line `IndexUnavailableError`.

What the embedded backend keeps in its folder for one machine only (the OCR resume cache, the reader's sentence
cache) goes to a local cache folder named after the database's index id."""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .config import is_url, redact
from .entities import CO_MENTION_SAMPLE, lookup_forms, mention_order, summarise_mentions
from .errors import BadDocumentError, IndexBusyError, PeruQAError
from .keyword import BM25_PARAMS
from .records import (
    AuditEntry,
    ChunkRow,
    CoMention,
    DocumentRecord,
    Entity,
    EntityMention,
    Filters,
    MentionRow,
    Warmed,
    audit_action,
    check_document,
    now,
)
from .store import lock_timeout

SCHEMA_VERSION = 4
#: advisory lock keys (arbitrary, fixed): schema migration, and the one-writer-commits-at-a-time lock
_MIGRATE_KEY = 7_451_015_001
_WRITER_KEY = 7_451_015_002

# Numbered migrations: MIGRATIONS[i] takes the schema from version i to i + 1 (meta.schema_version).
MIGRATIONS: list[str] = [
    """
    CREATE EXTENSION IF NOT EXISTS vector;
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    INSERT INTO meta(key, value) VALUES ('index_id', md5(random()::text || clock_timestamp()::text)),
                                        ('generation', '0');
    CREATE TABLE documents (
        id TEXT PRIMARY KEY,
        source TEXT NOT NULL UNIQUE,
        title TEXT NOT NULL,
        language TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        paged BOOLEAN NOT NULL,
        n_pages INTEGER NOT NULL,
        n_chunks INTEGER NOT NULL,
        file_size BIGINT,
        file_mtime DOUBLE PRECISION,
        added_at TEXT NOT NULL,
        notes TEXT NOT NULL DEFAULT '',
        metadata JSONB NOT NULL DEFAULT '{}'
    );
    CREATE INDEX documents_hash ON documents(content_hash);
    CREATE TABLE pages (
        doc_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
        page INTEGER NOT NULL,
        text TEXT NOT NULL,
        sections JSONB NOT NULL,
        metadata JSONB NOT NULL DEFAULT '{}',
        PRIMARY KEY (doc_id, page)
    );
    CREATE TABLE chunks (
        id BIGSERIAL PRIMARY KEY,
        doc_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
        page INTEGER NOT NULL,
        section TEXT NOT NULL,
        start INTEGER NOT NULL,
        "end" INTEGER NOT NULL,
        text TEXT NOT NULL,
        terms TEXT NOT NULL,
        n_terms INTEGER NOT NULL,
        embedding vector NOT NULL
    );
    CREATE INDEX chunks_doc ON chunks(doc_id);
    CREATE TABLE chunk_terms (
        term TEXT NOT NULL,
        chunk_id BIGINT NOT NULL REFERENCES chunks(id) ON DELETE CASCADE,
        tf INTEGER NOT NULL,
        PRIMARY KEY (term, chunk_id)
    );
    CREATE INDEX chunk_terms_chunk ON chunk_terms(chunk_id);
    """,
    # 2: chunk and term totals kept by every write, so that a search does not count a million rows for BM25's
    # collection statistics (number of chunks, average chunk length).
    """
    CREATE TABLE totals (one BOOLEAN PRIMARY KEY DEFAULT true CHECK (one), chunks BIGINT NOT NULL,
                         terms BIGINT NOT NULL);
    INSERT INTO totals(one, chunks, terms) SELECT true, count(*), COALESCE(sum(n_terms), 0) FROM chunks;
    """,
    # 3: keyword search that stays fast at a million chunks (benchmarks/RESULTS.md "Scale"): each term's document
    # frequency kept by every write (no count over its postings per search), and each posting's BM25 term-frequency
    # part ("impact", with the collection's average length when it was written) indexed per term, so a frequent
    # term's best postings are read first instead of all of them.
    f"""
    CREATE TABLE term_df (term TEXT PRIMARY KEY, df BIGINT NOT NULL);
    INSERT INTO term_df(term, df) SELECT term, count(*) FROM chunk_terms GROUP BY term;
    ALTER TABLE chunk_terms ADD COLUMN impact REAL;
    UPDATE chunk_terms t SET impact = t.tf / (t.tf + {BM25_PARAMS["k1"]} * (1 - {BM25_PARAMS["b"]} + {BM25_PARAMS["b"]}
        * c.n_terms / GREATEST(s.terms::float8 / GREATEST(s.chunks, 1), 1)))
        FROM chunks c, totals s WHERE c.id = t.chunk_id;
    ALTER TABLE chunk_terms ALTER COLUMN impact SET NOT NULL;
    CREATE INDEX chunk_terms_impact ON chunk_terms(term, impact DESC) INCLUDE (chunk_id);
    """,
    # 4: the indexed files themselves, by content, so that every chat server of the team can show a cited page as
    # an image and offer the file, whichever machine added it.
    """
    CREATE TABLE originals (content_hash TEXT PRIMARY KEY, name TEXT NOT NULL, data BYTEA NOT NULL);
    """,
    # 5: each chunk's stored impacts as one pgvector sparse vector over hashed terms (`term_slot`), so that keyword
    # search fills in the terms a candidate chunk was not among the best postings of with one inner product per
    # chunk instead of one postings probe per chunk and term (benchmarks/RESULTS.md "Scale"). Needs pgvector >= 0.7.
    f"""
    DO $$ BEGIN
        IF to_regtype('sparsevec') IS NULL THEN
            RAISE EXCEPTION 'peru-qa needs pgvector 0.7 or later (sparsevec); this server has pgvector %',
                (SELECT extversion FROM pg_extension WHERE extname = 'vector');
        END IF;
    END $$;
    CREATE TABLE chunk_bags (chunk_id BIGINT PRIMARY KEY REFERENCES chunks(id) ON DELETE CASCADE,
                             bag sparsevec NOT NULL);
    INSERT INTO chunk_bags(chunk_id, bag)
        SELECT chunk_id, ('{{' || string_agg(slot || ':' || s, ',') || '}}/{1 << 28}')::sparsevec
        FROM (SELECT chunk_id, ('x' || substr(md5(term), 1, 7))::bit(28)::int + 1 AS slot, sum(impact) AS s
              FROM chunk_terms GROUP BY 1, 2) x
        GROUP BY chunk_id;
    """,
    # 6: a second, English-only model's vector for each chunk of an English document (NULL elsewhere): the index
    # model's companion (config.COMPANION_MODELS); typed and indexed (HNSW) once its dimension is recorded.
    """
    ALTER TABLE chunks ADD COLUMN companion vector;
    """,
    # 7: the audit log: who added, replaced or removed which file, and when; written in the same transaction as
    # the change it records. No foreign key: an entry outlives the document it names. IF NOT EXISTS: a schema
    # version set back by hand (tests/test_backends.py does) keeps the log it has.
    """
    CREATE TABLE IF NOT EXISTS audit (
        id BIGSERIAL PRIMARY KEY,
        at TEXT NOT NULL,
        user_name TEXT NOT NULL,
        action TEXT NOT NULL,
        file TEXT NOT NULL,
        doc_id TEXT NOT NULL,
        title TEXT NOT NULL
    );
    """,
    # 8: people, organizations and places named in each chunk (peru_qa.entities), with offsets into the page text
    # like chunks', the sentence around each as offsets too, and a date; written with their document and deleted
    # with it. mentions_summary covers an entity's summary and timeline, so that its panel reads one index range
    # (≤ 200 ms at 100k chunks, benchmarks/RESULTS.md "Entities"). entity_runs records which documents were
    # extracted, and by which version of the extractor, so that `rebuild` fills in an index built before
    # extraction. IF NOT EXISTS: see 7.
    """
    CREATE TABLE IF NOT EXISTS mentions (
        id BIGSERIAL PRIMARY KEY,
        doc_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
        chunk_id BIGINT REFERENCES chunks(id) ON DELETE CASCADE,
        page INTEGER NOT NULL,
        start INTEGER NOT NULL,
        "end" INTEGER NOT NULL,
        text TEXT NOT NULL,
        type TEXT NOT NULL,
        entity TEXT NOT NULL,
        key TEXT NOT NULL,
        norm TEXT NOT NULL,
        sent_start INTEGER NOT NULL,
        sent_end INTEGER NOT NULL,
        date TEXT,
        date_source TEXT
    );
    CREATE INDEX IF NOT EXISTS mentions_key ON mentions(key, chunk_id);
    CREATE INDEX IF NOT EXISTS mentions_summary ON mentions(key, type, entity, text, doc_id, date);
    CREATE INDEX IF NOT EXISTS mentions_chunk ON mentions(chunk_id, key);
    CREATE INDEX IF NOT EXISTS mentions_doc ON mentions(doc_id);
    CREATE INDEX IF NOT EXISTS mentions_norm ON mentions(norm);
    CREATE TABLE IF NOT EXISTS entity_runs (
        doc_id TEXT PRIMARY KEY REFERENCES documents(id) ON DELETE CASCADE,
        extractor TEXT NOT NULL
    );
    """,
]

#: sparse-vector slots of hashed terms (md5's first 28 bits + 1, the same in SQL and in `term_slot`)
SLOTS = 1 << 28


@lru_cache(maxsize=1 << 17)
def term_slot(term: str) -> int:
    """A term's slot in the chunks' sparse vectors (migration 5 computes the same in SQL)."""
    return int(hashlib.md5(term.encode("utf-8")).hexdigest()[:7], 16) + 1


def bag_text(weights: dict[str, float]) -> str:
    """pgvector's text form of a sparse vector over the terms' slots (colliding terms add up)."""
    slots: dict[int, float] = {}
    for term, weight in weights.items():
        slot = term_slot(term)
        slots[slot] = slots.get(slot, 0.0) + weight
    return "{" + ",".join(f"{k}:{v:.7g}" for k, v in sorted(slots.items())) + f"}}/{SLOTS}"


class IndexUnavailableError(PeruQAError):
    """The database cannot be reached (server down, wrong URL, refused login)."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _vector_text(v: np.ndarray) -> str:
    # 9 significant digits round-trip a float32 exactly: a copied index keeps its vectors bit for bit.
    return "[" + ",".join(f"{x:.9g}" for x in v.tolist()) + "]"


def _parse_vector(text: str) -> np.ndarray:
    # parsed in C (a list of 384 Python strings per vector was 17 ms of a hybrid retrieve at 1M chunks)
    return np.fromstring(text[1:-1], dtype=np.float32, sep=",")


@dataclass
class PgDerived:
    """What `retrieval.rank` searches: live views onto the database (no files, nothing to rebuild)."""

    generation: int
    vectors: PgVectors
    keyword: PgKeyword
    #: The companion model's vectors (English chunks only); None when the index has no companion.
    companion: PgVectors | None = None
    #: searches are round trips to a server: `retrieval.rank` runs them at once
    remote: bool = True


#: What a question reads, most read first: the vector graphs (the companion's for English questions); each chunk's
#: impacts (candidates' order); term statistics and postings by impact (keyword candidates); the (term, chunk) keys
#: and the postings' rows (exact BM25 of each candidate, one probe per term); the chunks' rows and the values stored
#: out of line (vectors of keyword candidates, lengths, languages, texts).
WARM_RELATIONS = ("chunks_embedding_hnsw", "chunks_companion_hnsw", "chunk_bags_pkey", "chunk_bags", "term_df_pkey",
                  "term_df", "chunk_terms_impact", "chunk_terms_pkey", "chunk_terms", "chunks_pkey", "chunks")


def _with_toast(conn, names: tuple[str, ...]) -> list[str]:
    """The relations that exist, each table followed by its TOAST table and that table's index (values stored out of
    line: the chunks' vectors and texts)."""
    out: list[str] = []
    for name in names:
        row = conn.execute("SELECT c.reltoastrelid::regclass::text AS toast FROM pg_class c "
                           "WHERE c.oid = to_regclass(%s)", (name,)).fetchone()
        if row is None:
            continue
        out.append(name)
        if row["toast"] and row["toast"] != "-":
            out.append(row["toast"])
            if conn.execute("SELECT to_regclass(%s) IS NOT NULL AS ok", (row["toast"] + "_index",)).fetchone()["ok"]:
                out.append(row["toast"] + "_index")
    return out


class PgStore:
    """The PostgreSQL counterpart of `store.Store` (same methods, same records)."""

    def __init__(self, url: str, create: bool = True):
        try:
            import psycopg
            from psycopg.rows import dict_row
            from psycopg_pool import ConnectionPool
        except ImportError as exc:
            raise PeruQAError("a postgresql:// index needs psycopg: pip install 'peru-qa[postgres]'") from exc
        self.url = url
        self.location = redact(url)
        self._psycopg = psycopg
        self._local = threading.local()
        timeout = _connect_timeout()
        try:
            with psycopg.connect(url, connect_timeout=int(timeout), autocommit=True) as conn:
                self._migrate(conn, create)
                index_id = conn.execute("SELECT value FROM meta WHERE key = 'index_id'").fetchone()[0]
        except psycopg.Error as exc:
            raise IndexUnavailableError(f"cannot open PostgreSQL index {self.location}: {_first_line(exc)}") from None
        self.path = _cache_root() / "postgres" / index_id
        self.path.mkdir(parents=True, exist_ok=True)
        self._pool = ConnectionPool(url, min_size=1, max_size=int(os.environ.get("PERU_QA_PG_POOL", "4")),
                                    kwargs={"autocommit": True, "row_factory": dict_row,
                                            "connect_timeout": int(timeout)},
                                    check=ConnectionPool.check_connection, timeout=timeout, open=True,
                                    name="peru-qa")

    # --- connections ----------------------------------------------------------------------------
    def close(self) -> None:
        self._pool.close()

    @contextmanager
    def _conn(self) -> Iterator:
        """This thread's pinned connection (inside `writer`/`transaction`), else one from the pool."""
        pinned = getattr(self._local, "conn", None)
        if pinned is not None:
            yield pinned
            return
        from psycopg_pool import PoolTimeout

        try:
            with self._pool.connection() as conn:
                yield conn
        except (self._psycopg.OperationalError, PoolTimeout) as exc:
            raise IndexUnavailableError(
                f"PostgreSQL index {self.location} is unavailable: {_first_line(exc)} "
                "(peru-qa reconnects when the server is back)") from None

    @contextmanager
    def _pinned(self) -> Iterator:
        pinned = getattr(self._local, "conn", None)
        if pinned is not None:
            yield pinned
            return
        with self._conn() as conn:
            self._local.conn = conn
            try:
                yield conn
            finally:
                self._local.conn = None

    def _migrate(self, conn, create: bool) -> None:
        exists = conn.execute("SELECT to_regclass('meta') IS NOT NULL").fetchone()[0]
        if not exists and not create:
            raise PeruQAError(f"no peru-qa index in {self.location} "
                              f"(create one with `peru-qa add FILES --index {self.location}`)")
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_KEY,))
            version = 0
            # a catalog query, not to_regclass: an advisory lock does not refresh the catalog cache, so
            # to_regclass can miss a meta table that a concurrent creator committed while we waited
            if conn.execute("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_tables "
                            "WHERE schemaname = current_schema() AND tablename = 'meta')").fetchone()[0]:
                row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
                version = int(row[0]) if row else 1
            if version > len(MIGRATIONS):
                raise PeruQAError(f"index schema v{version} is newer than this peru-qa (v{len(MIGRATIONS)}): "
                                  "upgrade peru-qa")
            if 0 < version < len(MIGRATIONS):  # an existing index: filling new tables can take minutes at 1M chunks
                print(f"peru-qa: updating {self.location} from schema v{version} to v{len(MIGRATIONS)} "
                      "(once) ...", file=sys.stderr, flush=True)
            for number in range(version, len(MIGRATIONS)):
                conn.execute(MIGRATIONS[number])
                conn.execute("INSERT INTO meta(key, value) VALUES ('schema_version', %s) "
                             "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", (str(number + 1),))

    @contextmanager
    def transaction(self) -> Iterator:
        """All or nothing; nested calls become savepoints of the outer transaction."""
        with self._pinned() as conn, conn.transaction():
            yield conn

    @contextmanager
    def writer(self, timeout: float | None = None) -> Iterator[None]:
        """One committing writer at a time, across processes (a session advisory lock); searches never wait."""
        depth = getattr(self._local, "writer_depth", 0)
        if depth:
            self._local.writer_depth = depth + 1
            try:
                yield
            finally:
                self._local.writer_depth = depth
            return
        timeout = lock_timeout() if timeout is None else timeout
        with self._pinned() as conn:
            got = conn.execute("SELECT pg_try_advisory_lock(%s) AS ok", (_WRITER_KEY,)).fetchone()["ok"]
            if not got:
                print(f"peru-qa: waiting for another process writing to {self.location} ...", file=sys.stderr,
                      flush=True)
                deadline = time.monotonic() + timeout
                while not got:
                    if time.monotonic() > deadline:
                        raise IndexBusyError(f"index {self.location} is locked by another peru-qa process writing "
                                             f"to it; gave up after {timeout:.0f} s (raise PERU_QA_LOCK_TIMEOUT)")
                    time.sleep(0.05)
                    got = conn.execute("SELECT pg_try_advisory_lock(%s) AS ok", (_WRITER_KEY,)).fetchone()["ok"]
            self._local.writer_depth = 1
            try:
                yield
            finally:
                self._local.writer_depth = 0
                try:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (_WRITER_KEY,))
                except self._psycopg.Error:
                    pass  # the connection died: the server dropped the lock with it

    @contextmanager
    def bulk_load(self) -> Iterator[dict]:
        """Many documents at once (a copy into an empty database, the scale benchmark): the writer lock is held
        throughout, the vector index and the postings' indexes and foreign key are dropped, rows go in by COPY
        without waiting for each commit to reach the disk, and the indexes are built once at the end with a large
        `maintenance_work_mem` (PERU_QA_PG_BUILD_MEM, default 4GB) and parallel workers — an HNSW index built row
        by row is many times slower. Searches meanwhile are slow, not wrong. Yields a dict that gets the build's
        timings."""
        timings: dict = {}
        with self.writer(), self._pinned() as conn:
            with conn.transaction():
                for sql in ("DROP INDEX IF EXISTS chunks_embedding_hnsw", "DROP INDEX IF EXISTS chunks_companion_hnsw",
                            "DROP INDEX IF EXISTS chunk_terms_impact",
                            "DROP INDEX IF EXISTS chunk_terms_chunk",
                            "ALTER TABLE chunk_terms DROP CONSTRAINT IF EXISTS chunk_terms_chunk_id_fkey",
                            "ALTER TABLE chunk_terms DROP CONSTRAINT IF EXISTS chunk_terms_pkey",
                            "ALTER TABLE chunk_bags DROP CONSTRAINT IF EXISTS chunk_bags_chunk_id_fkey",
                            "ALTER TABLE chunk_bags DROP CONSTRAINT IF EXISTS chunk_bags_pkey"):
                    conn.execute(sql)
            conn.execute("SET synchronous_commit = off")
            self._local.bulk = True
            try:
                yield timings
            finally:
                self._local.bulk = False
                conn.execute("RESET synchronous_commit")
                self._build_indexes(conn, timings)

    def _build_indexes(self, conn, timings: dict) -> None:
        conn.execute("SELECT set_config('maintenance_work_mem', %s, false)",
                     (os.environ.get("PERU_QA_PG_BUILD_MEM", "4GB"),))
        conn.execute("SELECT set_config('max_parallel_maintenance_workers', %s, false)",
                     (str(max(0, (os.cpu_count() or 1) - 1)),))
        try:
            started = time.perf_counter()
            with conn.transaction():
                conn.execute("ALTER TABLE chunk_terms ADD CONSTRAINT chunk_terms_pkey PRIMARY KEY (term, chunk_id)")
                conn.execute("CREATE INDEX chunk_terms_chunk ON chunk_terms(chunk_id)")
                conn.execute("CREATE INDEX chunk_terms_impact ON chunk_terms(term, impact DESC) INCLUDE (chunk_id)")
                conn.execute("ALTER TABLE chunk_terms ADD CONSTRAINT chunk_terms_chunk_id_fkey FOREIGN KEY (chunk_id) "
                             "REFERENCES chunks(id) ON DELETE CASCADE")
                conn.execute("ALTER TABLE chunk_bags ADD CONSTRAINT chunk_bags_pkey PRIMARY KEY (chunk_id)")
                conn.execute("ALTER TABLE chunk_bags ADD CONSTRAINT chunk_bags_chunk_id_fkey FOREIGN KEY (chunk_id) "
                             "REFERENCES chunks(id) ON DELETE CASCADE")
            timings["keyword_index_seconds"] = round(time.perf_counter() - started, 1)
            started = time.perf_counter()
            dim = int(self.meta("dimension") or 0)
            typed = _embedding_type(conn)
            if dim and typed == f"vector({dim})":
                _create_hnsw(conn)
            companion_dim = int(self.meta("companion_dimension") or 0)
            if companion_dim and _column_type(conn, "companion") == f"vector({companion_dim})":
                _create_hnsw(conn, "companion")
            timings["vector_index_seconds"] = round(time.perf_counter() - started, 1)
            started = time.perf_counter()
            # index-only scans need the visibility map
            conn.execute("VACUUM ANALYZE chunks, chunk_terms, chunk_bags, term_df")
            timings["vacuum_seconds"] = round(time.perf_counter() - started, 1)
        finally:
            conn.execute("RESET maintenance_work_mem")
            conn.execute("RESET max_parallel_maintenance_workers")

    def try_lock(self) -> bool:
        return True  # nothing to publish on this backend (see PgIndexes)

    def unlock(self) -> None:
        pass

    # --- meta -----------------------------------------------------------------------------------
    def meta(self, key: str, default: str | None = None) -> str | None:
        with self._conn() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = %s", (key,)).fetchone()
        return row["value"] if row else default

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as conn:
            conn.execute("INSERT INTO meta(key, value) VALUES (%s, %s) "
                         "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", (key, value))
            if key == "dimension":
                self._type_vectors(conn, int(value))
            elif key == "companion_dimension" and int(value or 0):
                self._type_companion(conn, int(value))

    def _type_vectors(self, conn, dim: int) -> None:
        """Fix the vector column's dimension and build the HNSW index, once the first write knows the model."""
        current = _embedding_type(conn)
        if current == f"vector({dim})":
            return
        conn.execute("DROP INDEX IF EXISTS chunks_embedding_hnsw")
        if conn.execute("SELECT EXISTS (SELECT 1 FROM chunks) AS e").fetchone()["e"]:
            conn.execute("ALTER TABLE chunks ALTER COLUMN embedding TYPE vector")  # re-embedding: typed later
            return
        conn.execute(f"ALTER TABLE chunks ALTER COLUMN embedding TYPE vector({dim})")
        if not getattr(self._local, "bulk", False):  # a bulk load builds it at its end
            _create_hnsw(conn)

    def _type_companion(self, conn, dim: int) -> None:
        """Fix the companion column's dimension (its stored vectors all have it) and index it (HNSW)."""
        if _column_type(conn, "companion") != f"vector({dim})":
            conn.execute("DROP INDEX IF EXISTS chunks_companion_hnsw")
            conn.execute(f"ALTER TABLE chunks ALTER COLUMN companion TYPE vector({dim})")
        if not getattr(self._local, "bulk", False):
            _create_hnsw(conn, "companion")

    @property
    def generation(self) -> int:
        return int(self.meta("generation", "0"))

    def _bump(self, conn) -> None:
        conn.execute("INSERT INTO meta(key, value) VALUES ('generation', '1') "
                     "ON CONFLICT (key) DO UPDATE SET value = (meta.value::bigint + 1)::text")
        conn.execute("INSERT INTO meta(key, value) VALUES ('updated_at', %s) "
                     "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", (now(),))

    # --- documents ------------------------------------------------------------------------------
    _DOC_COLUMNS = ("id, source, title, language, content_hash, paged, n_pages, n_chunks, file_size, file_mtime, "
                    "added_at, notes, metadata")

    def _docs(self, where: str, args: tuple) -> list[DocumentRecord]:
        with self._conn() as conn:
            rows = conn.execute(f"SELECT {self._DOC_COLUMNS} FROM documents {where}", args).fetchall()
        return [DocumentRecord(**{**r, "metadata": r["metadata"] or {}}) for r in rows]

    def documents(self) -> list[DocumentRecord]:
        return self._docs("ORDER BY lower(title), source", ())

    def document(self, doc_id: str) -> DocumentRecord | None:
        return next(iter(self._docs("WHERE id = %s", (doc_id,))), None)

    def document_by_source(self, source: str) -> DocumentRecord | None:
        return next(iter(self._docs("WHERE source = %s", (source,))), None)

    def document_by_hash(self, content_hash: str) -> DocumentRecord | None:
        return next(iter(self._docs("WHERE content_hash = %s LIMIT 1", (content_hash,))), None)

    def counts(self) -> tuple[int, int]:
        with self._conn() as conn:
            row = conn.execute("SELECT (SELECT count(*) FROM documents) AS d, (SELECT count(*) FROM chunks) AS c"
                               ).fetchone()
        return int(row["d"]), int(row["c"])

    def pages(self, doc_id: str) -> list[tuple[int, str, list[tuple[int, str]], dict]]:
        with self._conn() as conn:
            rows = conn.execute("SELECT page, text, sections, metadata FROM pages WHERE doc_id = %s ORDER BY page",
                                (doc_id,)).fetchall()
        return [(r["page"], r["text"], [tuple(s) for s in r["sections"]], r["metadata"]) for r in rows]

    def page_metadata(self, doc_id: str, page: int) -> dict:
        with self._conn() as conn:
            row = conn.execute("SELECT metadata FROM pages WHERE doc_id = %s AND page = %s", (doc_id, page)).fetchone()
        return row["metadata"] if row else {}

    def page_text(self, doc_id: str, page: int) -> str:
        with self._conn() as conn:
            row = conn.execute("SELECT text FROM pages WHERE doc_id = %s AND page = %s", (doc_id, page)).fetchone()
        return row["text"] if row else ""

    def _check_write(self, record: DocumentRecord, chunks: list[ChunkRow], vectors: np.ndarray,
                     companion: np.ndarray | None, replace_ids: tuple[str, ...]) -> None:
        """Refuse a bad document before the transaction starts (`records.check_document`), and a source that
        another document holds unless the write replaces it: the same refusals on both backends."""
        check_document(record, chunks, vectors, int(self.meta("dimension") or 0) or None, companion,
                       int(self.meta("companion_dimension") or 0) or None)
        holder = self.document_by_source(record.source)
        if holder is not None and holder.id not in replace_ids:
            raise BadDocumentError(f"source {record.source!r} is already indexed as document {holder.id} "
                                   "(replace it, or give another source)")

    def write_document(self, record: DocumentRecord, pages: list[tuple[int, str, list, dict]], chunks: list[ChunkRow],
                       vectors: np.ndarray, replace_ids: tuple[str, ...] = (),
                       companion: np.ndarray | None = None, user: str | None = None,
                       mentions: list[MentionRow] | None = None, extractor: str | None = None) -> None:
        """Insert one document with its chunks and vectors (and the companion model's, for an English document),
        replacing older versions, in one transaction. With `user`, the audit log records who added or replaced
        it, in that transaction (None: not a person's change, e.g. re-embedding or copying an index). With
        `extractor`, its entity `mentions` go in the same transaction (None: not extracted; `rebuild` does it)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self._check_write(record, chunks, vectors, companion, replace_ids)
        with self.transaction() as conn:
            if user is not None:
                self._audit(conn, user, audit_action(replace_ids), [(record.source, record.id, record.title)])
            if replace_ids:
                self._delete(conn, list(replace_ids))
            conn.execute(
                f"INSERT INTO documents({self._DOC_COLUMNS}) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                (record.id, record.source, record.title, record.language, record.content_hash, bool(record.paged),
                 record.n_pages, record.n_chunks, record.file_size, record.file_mtime, record.added_at,
                 record.notes, json.dumps(record.metadata, ensure_ascii=False)))
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO pages(doc_id, page, text, sections, metadata) VALUES (%s,%s,%s,%s,%s)",
                    [(record.id, number, text, json.dumps(sections, ensure_ascii=False),
                      json.dumps(meta, ensure_ascii=False)) for number, text, sections, meta in pages])
                ids = self._insert_chunks(cur, record.id, chunks, vectors, companion)
                if extractor is not None:
                    self._insert_mentions(cur, record.id, mentions or [], extractor, ids)
            conn.execute("UPDATE totals SET chunks = chunks + %s, terms = terms + %s",
                         (len(chunks), sum(len(c.terms) for c in chunks)))
            self._bump(conn)
        return ids

    @staticmethod
    def _insert_mentions(cur, doc_id: str, mentions: list[MentionRow], extractor: str,
                         chunk_ids: list[int]) -> None:
        """A document's mentions by COPY (chunk indexes become its chunks' ids) and its extraction run."""
        cur.execute("DELETE FROM mentions WHERE doc_id = %s", (doc_id,))
        with cur.copy('COPY mentions(doc_id, chunk_id, page, start, "end", text, type, entity, key, norm, '
                      "sent_start, sent_end, date, date_source) FROM STDIN") as copy:
            for m in mentions:
                copy.write_row((doc_id, chunk_ids[m.chunk] if 0 <= m.chunk < len(chunk_ids) else None, m.page,
                                m.start, m.end, m.text, m.type, m.entity, m.key, m.norm, m.sent_start, m.sent_end,
                                m.date, m.date_source))
        cur.execute("INSERT INTO entity_runs(doc_id, extractor) VALUES (%s, %s) ON CONFLICT (doc_id) "
                    "DO UPDATE SET extractor = EXCLUDED.extractor", (doc_id, extractor))

    def set_mentions(self, doc_id: str, mentions: list[MentionRow], extractor: str) -> None:
        """Replace a document's mentions (filling an index built before extraction, or by an older extractor)."""
        with self.transaction() as conn, conn.cursor() as cur:
            if cur.execute("SELECT 1 FROM documents WHERE id = %s FOR UPDATE", (doc_id,)).fetchone():
                ids = [r["id"] for r in cur.execute("SELECT id FROM chunks WHERE doc_id = %s ORDER BY id",
                                                    (doc_id,)).fetchall()]
                self._insert_mentions(cur, doc_id, mentions, extractor, ids)

    def documents_lacking_mentions(self, extractor: str) -> list[str]:
        """Ids of the documents not yet extracted by this version of the extractor."""
        with self._conn() as conn:
            rows = conn.execute("SELECT d.id FROM documents d LEFT JOIN entity_runs r ON r.doc_id = d.id "
                                "WHERE r.extractor IS DISTINCT FROM %s ORDER BY d.id", (extractor,)).fetchall()
        return [r["id"] for r in rows]

    def document_mentions(self, doc_id: str) -> list[MentionRow]:
        """A document's mentions as written (copying an index keeps them), chunk as the index among its chunks."""
        with self._conn() as conn:
            order = {r["id"]: n for n, r in enumerate(conn.execute(
                "SELECT id FROM chunks WHERE doc_id = %s ORDER BY id", (doc_id,)).fetchall())}
            rows = conn.execute('SELECT chunk_id, page, start, "end", text, type, entity, key, norm, sent_start, '
                                "sent_end, date, date_source FROM mentions WHERE doc_id = %s ORDER BY id",
                                (doc_id,)).fetchall()
        return [MentionRow(r["page"], r["start"], r["end"], r["text"], r["type"], r["entity"], r["key"], r["norm"],
                           r["sent_start"], r["sent_end"], r["date"], r["date_source"], order.get(r["chunk_id"], -1))
                for r in rows]

    def entity_summaries(self, type: str | None = None, keys: list[str] | None = None,
                         chunk_ids: np.ndarray | None = None) -> list[Entity]:
        """Every entity (or those of `type`, `keys`, or named in `chunk_ids`) with its names, documents and count.
        Grouped on the covering index `mentions_summary` first, joined to the documents after."""
        sql = "SELECT key, entity, type, text, doc_id, count(*) AS n FROM mentions WHERE true"
        args: list = []
        if keys is not None:
            sql += " AND key = ANY(%s)"
            args.append(list(keys))
        if type is not None:
            sql += " AND type = %s"
            args.append(type)
        if chunk_ids is not None:
            sql += " AND chunk_id = ANY(%s)"
            args.append([int(i) for i in chunk_ids])
        with self._conn() as conn:
            rows = conn.execute(
                f"SELECT g.key, g.entity, g.type, g.text, d.source, g.n FROM ({sql} GROUP BY key, type, entity, "
                "text, doc_id) g JOIN documents d ON d.id = g.doc_id", args).fetchall()
        return summarise_mentions([(r["key"], r["entity"], r["type"], r["text"], r["source"], r["n"]) for r in rows])

    def resolve_entity(self, name: str) -> str | None:
        """The merge key a name refers to: its own key when stored, else the key its surface form is most
        often given (a short form, an alias), else None."""
        keys, norms = lookup_forms(name)
        with self._conn() as conn:
            for key in keys:
                if conn.execute("SELECT 1 FROM mentions WHERE key = %s LIMIT 1", (key,)).fetchone():
                    return key
            row = conn.execute("SELECT key, count(*) AS n FROM mentions WHERE norm = ANY(%s) GROUP BY key "
                               "ORDER BY n DESC LIMIT 1", (norms,)).fetchone()
        return row["key"] if row else None

    def entity_mentions(self, key: str, limit: int = 200) -> tuple[list[EntityMention], int]:
        """The first `limit` mentions of an entity in index order (document, page, sentence, date), sorted by
        document title, and how many there are."""
        with self._conn() as conn:
            total = conn.execute("SELECT count(*) AS n FROM mentions WHERE key = %s", (key,)).fetchone()["n"]
            rows = conn.execute(
                'SELECT m.doc_id, d.source, d.title, d.paged, m.page, m.start, m."end", m.text, '
                "substr(p.text, m.sent_start + 1, m.sent_end - m.sent_start) AS sentence, m.date, m.date_source "
                "FROM (SELECT * FROM mentions WHERE key = %s ORDER BY chunk_id LIMIT %s) m "
                "JOIN documents d ON d.id = m.doc_id JOIN pages p ON p.doc_id = m.doc_id AND p.page = m.page",
                (key, int(limit))).fetchall()
        found = [EntityMention(r["doc_id"], Path(r["source"]).name, r["title"], r["page"] if r["paged"] else None,
                               r["start"], r["end"], r["text"], r["sentence"], r["date"], r["date_source"])
                 for r in rows]
        return sorted(found, key=mention_order), int(total)

    def co_mentions(self, key: str, limit: int = 30, sample: int = CO_MENTION_SAMPLE
                    ) -> tuple[list[CoMention], int, int]:
        """Entities named in the same chunks as `key`, with the number of chunks they share, most first; and how
        many of the entity's chunks were looked at, of how many name it (an entity named in more than `sample`
        chunks is counted over `sample` of them, spread evenly: its panel stays fast at 100k chunks)."""
        with self._conn() as conn:
            passages = conn.execute("SELECT count(DISTINCT chunk_id) AS n FROM mentions WHERE key = %s "
                                    "AND chunk_id IS NOT NULL", (key,)).fetchone()["n"]
            step = max(1, -(-int(passages) // max(1, sample)))
            rows = conn.execute(
                "WITH c AS (SELECT chunk_id, row_number() OVER (ORDER BY chunk_id) AS r FROM (SELECT DISTINCT "
                "chunk_id FROM mentions WHERE key = %s AND chunk_id IS NOT NULL) x) "
                "SELECT o.key, max(o.entity) AS entity, max(o.type) AS type, count(DISTINCT o.chunk_id) AS n "
                "FROM mentions o WHERE o.chunk_id IN (SELECT chunk_id FROM c WHERE (r - 1) %% %s = 0) "
                "AND o.key <> %s GROUP BY o.key ORDER BY n DESC, o.key LIMIT %s",
                (key, step, key, int(limit))).fetchall()
        counted = -(-int(passages) // step)
        return [CoMention(r["entity"], r["type"], int(r["n"]), r["key"]) for r in rows], counted, int(passages)

    def entity_timeline(self, key: str) -> list[tuple[str, int]]:
        """(date, mentions) of an entity's dated mentions, oldest first."""
        with self._conn() as conn:
            rows = conn.execute("SELECT date, count(*) AS n FROM mentions WHERE key = %s AND date IS NOT NULL "
                                "GROUP BY date ORDER BY date", (key,)).fetchall()
        return [(r["date"], int(r["n"])) for r in rows]

    def _insert_chunks(self, cur, doc_id: str, chunks: list[ChunkRow], vectors: np.ndarray,
                       companion: np.ndarray | None = None) -> list[int]:
        """Chunks and their postings by COPY (ids drawn from the sequence first), and the terms' document
        frequencies; a posting's impact uses the average chunk length with this document counted."""
        if not chunks:
            return []
        ids = [r["id"] for r in cur.execute("SELECT nextval('chunks_id_seq') AS id FROM generate_series(1, %s)",
                                            (len(chunks),)).fetchall()]
        with cur.copy('COPY chunks(id, doc_id, page, section, start, "end", text, terms, n_terms, embedding, '
                      "companion) FROM STDIN") as copy:
            for n, (cid, c, v) in enumerate(zip(ids, chunks, vectors)):
                copy.write_row((cid, doc_id, c.page, c.section, c.start, c.end, c.text, " ".join(c.terms),
                                len(c.terms), _vector_text(v),
                                _vector_text(companion[n]) if companion is not None else None))
        total = cur.execute("SELECT chunks, terms FROM totals").fetchone()
        avgdl = max(1.0, (total["terms"] + sum(len(c.terms) for c in chunks)) / (total["chunks"] + len(chunks)))
        k1, b = BM25_PARAMS["k1"], BM25_PARAMS["b"]
        df: Counter[str] = Counter()
        bags: list[str] = []
        with cur.copy("COPY chunk_terms (term, chunk_id, tf, impact) FROM STDIN") as copy:
            for cid, c in zip(ids, chunks):
                norm = k1 * (1 - b + b * len(c.terms) / avgdl)
                counts = Counter(c.terms)
                df.update(counts.keys())
                impacts = {term: tf / (tf + norm) for term, tf in counts.items()}
                for term, tf in counts.items():
                    copy.write_row((term, cid, tf, impacts[term]))
                bags.append(bag_text(impacts))
        with cur.copy("COPY chunk_bags (chunk_id, bag) FROM STDIN") as copy:
            for cid, bag in zip(ids, bags):
                copy.write_row((cid, bag))
        if df:  # in term order: concurrent writers lock the same rows in the same order
            terms = sorted(df)
            cur.execute("INSERT INTO term_df(term, df) SELECT * FROM unnest(%s::text[], %s::bigint[]) "
                        "ON CONFLICT (term) DO UPDATE SET df = term_df.df + EXCLUDED.df",
                        (terms, [df[t] for t in terms]))
        return ids

    def update_source(self, doc_id: str, source: str, file_size: int | None, file_mtime: float | None) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE documents SET source = %s, file_size = %s, file_mtime = %s WHERE id = %s",
                         (source, file_size, file_mtime, doc_id))
            self._bump(conn)

    def touch(self, doc_id: str, file_size: int | None, file_mtime: float | None) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE documents SET file_size = %s, file_mtime = %s WHERE id = %s",
                         (file_size, file_mtime, doc_id))

    def delete_documents(self, doc_ids: list[str], user: str | None = None) -> None:
        """Delete documents; with `user`, the audit log records who removed them, in the same transaction."""
        with self.transaction() as conn:
            if user is not None:
                gone = conn.execute("SELECT source, id, title FROM documents WHERE id = ANY(%s) ORDER BY id",
                                    (list(doc_ids),)).fetchall()
                self._audit(conn, user, "removed", [(r["source"], r["id"], r["title"]) for r in gone])
            self._delete(conn, list(doc_ids))
            self._bump(conn)

    @staticmethod
    def _audit(conn, user: str, action: str, files: list[tuple[str, str, str]]) -> None:
        """Audit entries for (source, doc id, title) of each file, inside the caller's transaction."""
        if not files:
            return
        at = now()
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO audit(at, user_name, action, file, doc_id, title) "
                            "VALUES (%s,%s,%s,%s,%s,%s)",
                            [(at, user, action, source, doc_id, title) for source, doc_id, title in files])

    def events(self, limit: int | None = None) -> list[AuditEntry]:
        """The audit log, newest first (the last `limit` entries when given)."""
        with self._conn() as conn:
            rows = conn.execute("SELECT at, user_name, action, file, doc_id, title FROM audit ORDER BY id DESC "
                                "LIMIT %s", (None if limit is None else max(0, int(limit)),)).fetchall()
        return [AuditEntry(r["at"], r["user_name"], r["action"], r["file"], r["doc_id"], r["title"]) for r in rows]

    @staticmethod
    def _delete(conn, doc_ids: list[str]) -> None:
        """Delete documents (their pages, chunks and terms cascade) and take their chunks off the totals."""
        conn.execute("UPDATE totals SET chunks = totals.chunks - s.n, terms = totals.terms - s.t FROM "
                     "(SELECT count(*) AS n, COALESCE(sum(n_terms), 0) AS t FROM chunks WHERE doc_id = ANY(%s)) s",
                     (doc_ids,))
        terms = conn.execute("SELECT t.term, count(*) AS n FROM chunk_terms t JOIN chunks c ON c.id = t.chunk_id "
                             "WHERE c.doc_id = ANY(%s) GROUP BY t.term ORDER BY t.term", (doc_ids,)).fetchall()
        if terms:
            rows = [(r["term"], r["n"]) for r in terms]
            names = [t for t, _ in rows]
            conn.execute("UPDATE term_df SET df = term_df.df - g.n FROM unnest(%s::text[], %s::bigint[]) AS g(term, n) "
                         "WHERE term_df.term = g.term", (names, [n for _, n in rows]))
            conn.execute("DELETE FROM term_df WHERE term = ANY(%s) AND df <= 0", (names,))
        conn.execute("DELETE FROM documents WHERE id = ANY(%s)", (doc_ids,))
        conn.execute("DELETE FROM originals o WHERE NOT EXISTS "
                     "(SELECT 1 FROM documents d WHERE d.content_hash = o.content_hash)")

    def chunk_count(self) -> int:
        """Number of chunks, from the totals every write keeps (no count over the table)."""
        with self._conn() as conn:
            return int(conn.execute("SELECT chunks FROM totals").fetchone()["chunks"])

    # --- chunks ---------------------------------------------------------------------------------
    def document_chunks(self, doc_id: str) -> tuple[list[ChunkRow], np.ndarray]:
        """A document's chunks as written and their vectors, in order (copying an index to another backend)."""
        with self._conn() as conn:
            rows = conn.execute('SELECT page, section, start, "end", text, terms, embedding::text AS v '
                                "FROM chunks WHERE doc_id = %s ORDER BY id", (doc_id,)).fetchall()
        chunks = [ChunkRow(r["page"], r["section"], r["start"], r["end"], r["text"], r["terms"].split())
                  for r in rows]
        dim = int(self.meta("dimension") or 0)
        vectors = np.stack([_parse_vector(r["v"]) for r in rows]) if rows else np.zeros((0, dim), np.float32)
        return chunks, vectors

    def chunk_ids(self) -> np.ndarray:
        with self._conn() as conn:
            rows = conn.execute("SELECT id FROM chunks ORDER BY id").fetchall()
        return np.fromiter((r["id"] for r in rows), dtype=np.int64, count=len(rows))

    def all_vectors(self, dim: int) -> tuple[np.ndarray, np.ndarray]:
        with self._conn() as conn:
            rows = conn.execute("SELECT id, embedding::text AS v FROM chunks ORDER BY id").fetchall()
        ids = np.fromiter((r["id"] for r in rows), dtype=np.int64, count=len(rows))
        matrix = np.stack([_parse_vector(r["v"]) for r in rows]) if rows else np.zeros((0, dim), np.float32)
        return ids, matrix

    def companion_ids(self) -> np.ndarray:
        with self._conn() as conn:
            rows = conn.execute("SELECT id FROM chunks WHERE companion IS NOT NULL ORDER BY id").fetchall()
        return np.fromiter((r["id"] for r in rows), dtype=np.int64, count=len(rows))

    def companion_vectors(self, ids: np.ndarray | None, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, matrix) of the companion vectors of `ids` (all of them when None)."""
        with self._conn() as conn:
            if ids is None:
                rows = conn.execute("SELECT id, companion::text AS v FROM chunks WHERE companion IS NOT NULL "
                                    "ORDER BY id").fetchall()
            else:
                rows = conn.execute("SELECT id, companion::text AS v FROM chunks WHERE id = ANY(%s) "
                                    "AND companion IS NOT NULL ORDER BY id", ([int(i) for i in ids],)).fetchall()
        out = np.fromiter((r["id"] for r in rows), dtype=np.int64, count=len(rows))
        matrix = np.stack([_parse_vector(r["v"]) for r in rows]) if rows else np.zeros((0, dim), np.float32)
        return out, matrix

    def chunks_lacking_companion(self, language: str = "en") -> list[tuple[int, str, str, str]]:
        """(id, document title, section, text) of the chunks of `language` documents without a companion vector."""
        with self._conn() as conn:
            rows = conn.execute("SELECT c.id, d.title, c.section, c.text FROM chunks c JOIN documents d "
                                "ON d.id = c.doc_id WHERE d.language = %s AND c.companion IS NULL ORDER BY c.id",
                                (language,)).fetchall()
        return [(r["id"], r["title"], r["section"], r["text"]) for r in rows]

    def set_companion(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Store companion vectors of existing chunks (filling an index built before it had a companion)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        with self.transaction() as conn:
            with conn.cursor() as cur:
                cur.executemany("UPDATE chunks SET companion = %s::vector WHERE id = %s",
                                [(_vector_text(vectors[n]), int(i)) for n, i in enumerate(ids)])
            self._bump(conn)

    def all_terms(self) -> tuple[np.ndarray, list[list[str]]]:
        with self._conn() as conn:
            rows = conn.execute("SELECT id, terms FROM chunks ORDER BY id").fetchall()
        ids = np.fromiter((r["id"] for r in rows), dtype=np.int64, count=len(rows))
        return ids, [r["terms"].split() for r in rows]

    def chunk_rows(self, ids: list[int]) -> dict[int, dict]:
        with self._conn() as conn:
            rows = conn.execute(
                'SELECT c.id, c.doc_id, c.page, c.section, c.start, c."end", c.text, d.title, d.source, d.language, '
                "d.paged, d.metadata::text AS doc_metadata, COALESCE(p.metadata::text, '{}') AS page_metadata "
                "FROM chunks c JOIN documents d ON d.id = c.doc_id "
                "LEFT JOIN pages p ON p.doc_id = c.doc_id AND p.page = c.page WHERE c.id = ANY(%s)",
                ([int(i) for i in ids],)).fetchall()
        return {r["id"]: r for r in rows}

    def chunk_sources(self) -> dict[int, str]:
        with self._conn() as conn:
            rows = conn.execute("SELECT c.id, d.source FROM chunks c JOIN documents d ON d.id = c.doc_id "
                                "ORDER BY c.id").fetchall()
        return {int(r["id"]): r["source"] for r in rows}

    def chunk_languages(self, ids: np.ndarray) -> list[str]:
        wanted = [int(i) for i in ids]
        with self._conn() as conn:
            found = {r["id"]: r["language"] for r in conn.execute(
                "SELECT c.id, d.language FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE c.id = ANY(%s)",
                (wanted,))}
        return [found.get(i, "") for i in wanted]

    def chunk_texts(self) -> list[tuple[str, str, str]]:
        with self._conn() as conn:
            rows = conn.execute("SELECT d.title, c.section, c.text FROM chunks c JOIN documents d "
                                "ON d.id = c.doc_id ORDER BY c.id").fetchall()
        return [(r["title"], r["section"], r["text"]) for r in rows]

    def chunk_ids_where(self, filters: Filters) -> np.ndarray:
        sql = "SELECT c.id FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE true"
        args: list = []
        if filters.doc_ids is not None:
            sql += " AND c.doc_id = ANY(%s)"
            args.append(list(filters.doc_ids))
        if filters.languages is not None:
            sql += " AND d.language = ANY(%s)"
            args.append(list(filters.languages))
        with self._conn() as conn:
            if filters.date_from is not None or filters.date_to is not None:
                rows = conn.execute("SELECT id, metadata ->> %s AS v FROM documents", (filters.date_field,))
                sql += " AND c.doc_id = ANY(%s)"
                args.append([r["id"] for r in rows if filters.date_matches(r["v"])])
            if filters.entities is not None:
                # documents that mention any of the entities: by their merge key, or by a name they were found under
                forms = [lookup_forms(name) for name in filters.entities]
                sql += (" AND c.doc_id IN (SELECT doc_id FROM mentions WHERE key = ANY(%s) "
                        "OR key IN (SELECT key FROM mentions WHERE norm = ANY(%s)))")
                args += [[k for ks, _ in forms for k in ks], [n for _, ns in forms for n in ns]]
            rows = conn.execute(sql, args).fetchall()
        return np.fromiter((r["id"] for r in rows), dtype=np.int64, count=len(rows))

    def integrity_problems(self) -> tuple[list[str], int]:
        problems: list[str] = []
        dim = int(self.meta("dimension") or 0)
        with self._conn() as conn:
            bad = conn.execute("SELECT count(*) AS n FROM chunks WHERE vector_dims(embedding) != %s",
                               (dim,)).fetchone()["n"] if dim else 0
            mismatched = conn.execute(
                "SELECT count(*) AS n FROM documents d "
                "WHERE n_chunks != (SELECT count(*) FROM chunks c WHERE c.doc_id = d.id)").fetchone()["n"]
            no_terms = conn.execute(
                "SELECT count(*) AS n FROM chunks c WHERE n_terms > 0 AND (NOT EXISTS "
                "(SELECT 1 FROM chunk_terms t WHERE t.chunk_id = c.id) OR NOT EXISTS "
                "(SELECT 1 FROM chunk_bags g WHERE g.chunk_id = c.id))").fetchone()["n"]
            totals = conn.execute("SELECT t.chunks = (SELECT count(*) FROM chunks) AND t.terms = "
                                  "(SELECT COALESCE(sum(n_terms), 0) FROM chunks) AS ok FROM totals t").fetchone()["ok"]
        if bad:
            problems.append(f"{bad} stored vectors have the wrong size")
        if mismatched:
            problems.append(f"{mismatched} documents have a chunk count that does not match their chunks")
        if no_terms:
            problems.append(f"{no_terms} chunks have no keyword entries")
        if not totals:
            problems.append("the chunk totals do not match the chunks")
        return problems, int(bad)

    # --- the indexed files -------------------------------------------------------------------------
    def save_original(self, content_hash: str, path: Path, data: bytes | None = None) -> None:
        """Keep an indexed file's bytes (`data`, else read from `path`) in the database, once per content, for
        every machine's viewer. Files over PERU_QA_PG_MAX_ORIGINAL_MB (256) are not kept (text view only)."""
        limit = int(os.environ.get("PERU_QA_PG_MAX_ORIGINAL_MB", "256")) * 1024 * 1024
        if data is None:
            if not path.is_file() or path.stat().st_size > limit:
                return
            data = path.read_bytes()
        if len(data) > limit:
            return
        with self.transaction() as conn:
            conn.execute("INSERT INTO originals(content_hash, name, data) VALUES (%s, %s, %s) "
                         "ON CONFLICT (content_hash) DO NOTHING", (content_hash, path.name, data))

    def original_bytes(self, content_hash: str) -> bytes | None:
        with self._conn() as conn:
            row = conn.execute("SELECT data FROM originals WHERE content_hash = %s", (content_hash,)).fetchone()
        return bytes(row["data"]) if row else None

    def size_bytes(self) -> int:
        with self._conn() as conn:
            return int(conn.execute(
                "SELECT COALESCE(sum(pg_total_relation_size(c.oid)), 0) AS n FROM pg_class c "
                "WHERE c.relname IN ('meta', 'documents', 'pages', 'chunks', 'chunk_terms', 'chunk_bags', 'totals', "
                "'originals') "
                "AND c.relkind = 'r'"
            ).fetchone()["n"])

    def warm(self, progress: Callable[[Warmed], None] | None = None) -> list[Warmed]:
        """Read what questions read into the server's memory (pg_prewarm, 'read': the operating system's cache),
        most used first, up to the cache size the server declares (effective_cache_size): a million-chunk index
        just after a reboot answered hybrid questions at p95 373 ms, reading postings from disk, against 79 ms warm
        (benchmarks/RESULTS.md). Needs the pg_prewarm extension (PostgreSQL's contrib)."""
        out: list[Warmed] = []
        with self._conn() as conn:
            try:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
            except self._psycopg.Error as exc:
                raise PeruQAError(f"cannot warm {self.location}: {_first_line(exc)} (a superuser can run "
                                  "CREATE EXTENSION pg_prewarm in this database once)") from None
            budget = int(conn.execute("SELECT pg_size_bytes(current_setting('effective_cache_size')) AS n"
                                      ).fetchone()["n"])
            used = 0
            for name in _with_toast(conn, WARM_RELATIONS):
                size, start = int(conn.execute("SELECT pg_relation_size(%s::regclass) AS n", (name,)
                                               ).fetchone()["n"]), time.perf_counter()
                skipped = used + size > budget
                if not skipped:
                    conn.execute("SELECT pg_prewarm(%s::regclass, 'read')", (name,))
                    used += size
                out.append(Warmed(name, size, time.perf_counter() - start, skipped))
                if progress:
                    progress(out[-1])
        return out

    # --- "derived" state: none; what maintenance.check and is_stale compare ----------------------
    def manifest(self) -> dict:
        docs, chunks = self.counts()
        return {"generation": self.generation, "documents": docs, "chunks": chunks}

    def manifest_stamp(self) -> int:
        return 0

    def load_derived(self, current_only: bool = True) -> PgDerived:
        companion = PgVectors(self, "companion") if int(self.meta("companion_dimension") or 0) else None
        return PgDerived(self.generation, PgVectors(self), PgKeyword(self), companion)

    def build_derived(self, dim: int, previous=None) -> PgDerived:
        self._retype_after_reembedding(dim)
        return self.load_derived()

    def _retype_after_reembedding(self, dim: int) -> None:
        with self.transaction() as conn:
            self._type_vectors_force(conn, dim)

    def _type_vectors_force(self, conn, dim: int) -> None:
        current = _embedding_type(conn)
        if current != f"vector({dim})":
            conn.execute(f"ALTER TABLE chunks ALTER COLUMN embedding TYPE vector({dim})")
        _create_hnsw(conn)


def _create_hnsw(conn, column: str = "embedding") -> None:
    """The HNSW index on the vectors: graph degree `m` 32 and build depth `ef_construction` 128, twice pgvector's
    defaults — at 1M chunks dense recall@10 was 0.872 with 16/64 and 0.950 with 32/128 (HNSW build 868 s;
    benchmarks/RESULTS.md "Scale"). PERU_QA_PG_HNSW_M, PERU_QA_PG_HNSW_EF_CONSTRUCTION override them."""
    m = int(os.environ.get("PERU_QA_PG_HNSW_M", "32"))
    ef_construction = max(2 * m, int(os.environ.get("PERU_QA_PG_HNSW_EF_CONSTRUCTION", "128")))
    conn.execute(f"CREATE INDEX IF NOT EXISTS chunks_{column}_hnsw ON chunks USING hnsw ({column} vector_cosine_ops) "
                 f"WITH (m = {m}, ef_construction = {ef_construction})")


class PgVectors:
    """Dense search in SQL: pgvector's HNSW index on cosine distance (vectors are normalised: cosine = dot)."""

    def __init__(self, store: PgStore, column: str = "embedding"):
        """`column`: "embedding" (the index model's vectors) or "companion" (English chunks only)."""
        self.store = store
        self.column = column
        self.approximate = True

    def __len__(self) -> int:
        if self.column == "embedding":
            return self.store.chunk_count()
        return len(self.store.companion_ids())

    def ids(self) -> np.ndarray:
        return self.store.chunk_ids() if self.column == "embedding" else self.store.companion_ids()

    def similarity(self, query: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Cosine computed in the server: a float per chunk comes back instead of its vector as text. NaN for a
        chunk without a vector in this column (another language for the companion) or no longer stored, as
        `vectors.VectorIndex.similarity` gives."""
        ids = np.asarray(ids, dtype=np.int64)
        with self.store._conn() as conn:
            rows = conn.execute(f"SELECT id, 1 - ({self.column} <=> %s::vector) AS s FROM chunks WHERE id = ANY(%s)",
                                (_vector_text(np.asarray(query, dtype=np.float32).ravel()),
                                 [int(i) for i in ids])).fetchall()
        found = {r["id"]: (np.nan if r["s"] is None else r["s"]) for r in rows}
        return np.asarray([found.get(int(i), np.nan) for i in ids], dtype=np.float64)

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        if k <= 0 or (allowed is not None and len(allowed) == 0):
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        q = _vector_text(np.asarray(query, dtype=np.float32).ravel())
        where, args = ("" if self.column == "embedding" else f"WHERE {self.column} IS NOT NULL"), [q]
        if allowed is not None:
            where = f"{where} AND id = ANY(%s)" if where else "WHERE id = ANY(%s)"
            args.append([int(i) for i in allowed])
        with self.store.transaction() as conn:
            # ef_search bounds what HNSW returns (default 40): at least the candidates asked for, with margin;
            # 800 by default (PERU_QA_PG_EF_SEARCH): at 1M chunks (m 32, ef_construction 128) dense recall@10 was
            # 0.938 at 400 and 0.972 at 800, p95 38 ms either way (benchmarks/RESULTS.md "Scale", stop 23).
            ef = max(2 * k, int(os.environ.get("PERU_QA_PG_EF_SEARCH", "800")))
            conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(min(1000, ef)),))
            conn.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)")
            rows = conn.execute(
                f"SELECT id, 1 - ({self.column} <=> %s::vector) AS s FROM chunks {where} "
                f"ORDER BY {self.column} <=> %s::vector LIMIT %s", [*args, q, k]).fetchall()
        rows.sort(key=lambda r: (-r["s"], r["id"]))
        return (np.asarray([r["id"] for r in rows], dtype=np.int64),
                np.asarray([r["s"] for r in rows], dtype=np.float32))


@dataclass
class _Terms:
    """What `PgKeyword.scores` returns: the query terms the index knows, their weights and document frequencies,
    and the collection's average chunk length (chunk scores are computed in SQL)."""

    terms: list[str]
    idf: list[float]
    df: list[int]
    avgdl: float

    @property
    def max_df(self) -> int:
        return max(self.df)


class PgKeyword:
    """BM25 (Lucene variant, bm25s's parameters) computed in SQL over the chunk_terms table.

    Exact while the query's terms have at most `POSTINGS` postings in all (the same ranking as bm25s). Past that,
    each term contributes its `POSTINGS` best postings by stored impact (an index-only scan; a term with fewer is
    read whole); the best `POOL`·k chunks by those partial scores are ordered by their full stored-impact score (one
    inner product of the chunk's sparse vector of impacts, chunk_bags, with the query's idf weights), and the best
    `RESCORE`·k of those get their exact BM25 score. A chunk can be missed only if none of its terms puts it among
    a term's best postings, or if the stored impacts (written with the average chunk length of their time) order
    it far from its exact score (benchmarks/RESULTS.md "Scale")."""

    POSTINGS = 2000
    POOL = 10
    RESCORE = 2
    #: When keyword search is the whole ranking (mode "keyword") nothing makes up for a chunk it misses: deeper.
    #: At 1M chunks (benchmarks/pg_keyword.py, 60 questions): recall@10 against exact BM25 0.865 → 0.955 at p95
    #: 48 → 78 ms. Hybrid keeps the shallower setting (its recall@10 is 0.98 with it).
    ALONE = (5000, 30, 1)

    # The query's terms with their BM25 weight (qtf · idf) and document frequency, and the collection's average
    # length come in as parameters (computed once per query by `scores`), so the planner sees a handful of terms
    # and probes the postings' indexes instead of joining whole tables.
    _W = ("WITH w AS (SELECT * FROM unnest(%(terms)s::text[], %(idf)s::float8[], %(df)s::bigint[]) "
          "AS w(term, idf, df))")
    #: every posting of the query's terms (optionally among some chunks)
    _ALL = _W + """
        SELECT t.chunk_id AS id, sum(w.idf * t.tf / (t.tf + %(k1)s * (1 - %(b)s + %(b)s * c.n_terms
                                                                         / %(avgdl)s::float8))) AS s
        FROM w JOIN chunk_terms t ON t.term = w.term JOIN chunks c ON c.id = t.chunk_id {where}
        GROUP BY t.chunk_id ORDER BY s DESC, t.chunk_id {limit}"""
    #: exact scores of the chunks of CTE p: one probe of the (term, chunk) key per chunk and term (a scalar
    #: subquery, which the planner cannot turn into a join: as a join it read every posting of every candidate
    #: chunk, 44 of 52 ms of a query at 100k chunks; OFFSET 0 keeps it from being run once per use of `tf`), the
    #: chunk's length read once
    _EXACT = """
        SELECT id, sum(idf * tf / (tf + %(k1)s * (1 - %(b)s + %(b)s * n_terms / %(avgdl)s::float8))) AS s
        FROM (SELECT p.chunk_id AS id, c.n_terms, w.idf,
                     (SELECT t.tf FROM chunk_terms t WHERE t.term = w.term AND t.chunk_id = p.chunk_id) AS tf
              FROM p JOIN chunks c ON c.id = p.chunk_id CROSS JOIN w OFFSET 0) x
        WHERE tf IS NOT NULL GROUP BY id ORDER BY s DESC, id {limit}"""
    _LOOKUP = _W + ", p AS (SELECT DISTINCT unnest(%(ids)s::bigint[]) AS chunk_id)" + _EXACT.format(limit="")
    _TOP = _W + """,
        top AS MATERIALIZED (SELECT w.term, x.chunk_id, w.idf * x.impact AS s FROM w CROSS JOIN LATERAL
              (SELECT chunk_id, impact FROM chunk_terms t WHERE t.term = w.term ORDER BY impact DESC
               LIMIT %(postings)s) x),
        pool AS MATERIALIZED (SELECT chunk_id FROM top GROUP BY chunk_id ORDER BY sum(s) DESC, chunk_id
              LIMIT %(pool)s),
        p AS MATERIALIZED (SELECT pool.chunk_id FROM pool JOIN chunk_bags g USING (chunk_id)
              ORDER BY g.bag <#> %(bag)s::sparsevec, pool.chunk_id LIMIT %(rescore)s)
        """ + _EXACT.format(limit="LIMIT %(k)s")

    def __init__(self, store: PgStore):
        self.store = store

    def __len__(self) -> int:
        return self.store.chunk_count()

    @property
    def chunk_ids(self) -> np.ndarray:
        return self.store.chunk_ids()

    def _run(self, sql: str, scores: _Terms, **params) -> tuple[np.ndarray, np.ndarray]:
        params = {"k1": BM25_PARAMS["k1"], "b": BM25_PARAMS["b"], "terms": scores.terms, "idf": scores.idf,
                  "df": scores.df, "avgdl": scores.avgdl, **params}
        with self.store._conn() as conn:
            rows = conn.execute(sql, params).fetchall()
        return (np.asarray([r["id"] for r in rows], dtype=np.int64),
                np.asarray([r["s"] for r in rows], dtype=np.float32))

    def scores(self, tokens: list[str]) -> _Terms | None:
        """The query terms the index knows with their BM25 weights (Lucene idf × times in the query)."""
        if not tokens:
            return None
        with self.store._conn() as conn:
            rows = conn.execute("SELECT term, df, (SELECT chunks FROM totals) AS n, (SELECT terms FROM totals) AS t "
                                "FROM term_df WHERE term = ANY(%s) AND df > 0", (list(set(tokens)),)).fetchall()
        if not rows:
            return None
        n = float(rows[0]["n"])
        avgdl = float(rows[0]["t"]) / n if n > 0 else 1.0
        qtf = Counter(tokens)
        terms = sorted(r["term"] for r in rows)
        df = {r["term"]: float(r["df"]) for r in rows}
        idf = [qtf[t] * math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5)) for t in terms]
        return _Terms(terms, idf, [int(df[t]) for t in terms], avgdl)

    def share(self, token: str) -> float:
        with self.store._conn() as conn:
            row = conn.execute("SELECT COALESCE((SELECT df FROM term_df WHERE term = %s), 0)::float8 / "
                               "GREATEST((SELECT chunks FROM totals), 1) AS s", (token,)).fetchone()
        return float(row["s"])

    def lookup(self, scores: _Terms | None, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        if scores is None or len(ids) == 0:
            return np.zeros(len(ids), np.float32)
        found_ids, found = self._run(self._LOOKUP, scores, ids=[int(i) for i in ids])
        by_id = dict(zip(found_ids.tolist(), found.tolist()))
        return np.asarray([by_id.get(int(i), 0.0) for i in ids], dtype=np.float32)

    def search(self, tokens: list[str], k: int, allowed: np.ndarray | None = None,
               scores: _Terms | None = None, alone: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (chunk ids, BM25 scores); `alone`: the keyword search is the whole ranking (see ALONE)."""
        scores = self.scores(tokens) if scores is None else scores
        if scores is None or k <= 0 or (allowed is not None and len(allowed) == 0):
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        if allowed is not None:
            return self._run(self._ALL.format(where="WHERE t.chunk_id = ANY(%(ids)s)", limit="LIMIT %(k)s"),
                             scores, k=k, ids=[int(i) for i in allowed])
        postings, pool, rescore = self.ALONE if alone else (self.POSTINGS, self.POOL, self.RESCORE)
        if sum(scores.df) <= postings:
            return self._run(self._ALL.format(where="", limit="LIMIT %(k)s"), scores, k=k)
        return self._run(self._TOP, scores, k=k, postings=postings, pool=max(200, pool * k),
                         rescore=max(k, 50, rescore * k), bag=bag_text(dict(zip(scores.terms, scores.idf))))


class PgIndexes:
    """`derived.DerivedIndexes` for PostgreSQL: the database is searched directly, so there is nothing to
    publish or rebuild; every search sees every committed document of every process at once."""

    def __init__(self, store: PgStore):
        self.store = store

    def publish(self) -> None:
        pass

    def publish_locked(self) -> None:
        pass

    def save(self, derived: PgDerived) -> None:
        pass

    def swap(self, derived: PgDerived) -> None:
        pass

    def build(self, previous=None) -> PgDerived:
        dim = int(self.store.meta("dimension") or 0)
        return self.store.build_derived(dim) if dim else self.store.load_derived()

    def current(self) -> PgDerived:
        return self.store.load_derived()

    def stored(self) -> PgDerived:
        return self.store.load_derived()


def _embedding_type(conn) -> str:
    """The chunks' vector column type as declared ("vector(384)", or "vector" while untyped)."""
    return _column_type(conn, "embedding")


def _column_type(conn, column: str) -> str:
    return conn.execute("SELECT format_type(atttypid, atttypmod) AS t FROM pg_attribute "
                        "WHERE attrelid = 'chunks'::regclass AND attname = %s", (column,)).fetchone()["t"]


def _connect_timeout() -> float:
    try:
        return max(1.0, float(os.environ.get("PERU_QA_PG_TIMEOUT", "10")))
    except ValueError:
        return 10.0


def _cache_root() -> Path:
    env = os.environ.get("PERU_QA_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "peru-qa"


__all__ = ["PgStore", "PgIndexes", "IndexUnavailableError", "is_url", "redact"]
