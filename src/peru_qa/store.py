"""The index folder: SQLite (source of truth), derived FAISS + BM25 files, a readable manifest.

Layout of an index folder::

    manifest.json        schema version, model, dimension, counts, current generation (JSON)
    peru_qa.sqlite       documents, page texts, chunks, their keyword terms and vectors
    derived/<gen>/       vectors.faiss + keyword/ (bm25s arrays), rebuilt from SQLite when stale
    .lock                held by the one process writing

Every change is one SQLite transaction that bumps `generation`; derived files for that
generation are written to a new folder and the manifest is replaced last. A crash at any point
leaves SQLite at the last committed state, and stale or missing derived files are rebuilt
from SQLite on the next open, without the original documents.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from filelock import FileLock
from filelock import Timeout as LockTimeout

from .config import env_float
from .entities import CO_MENTION_SAMPLE, lookup_forms, mention_order, summarise_mentions
from .errors import BadDocumentError, IndexBusyError, IndexCorruptError, PeruQAError
from .keyword import KeywordIndex
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
from .vectors import VectorIndex, ann_min_vectors

SCHEMA_VERSION = 2
DB_NAME = "peru_qa.sqlite"
MANIFEST_NAME = "manifest.json"
T = TypeVar("T")

# Numbered migrations: MIGRATIONS[i] takes the database from user_version i to i + 1.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE documents (
        id TEXT PRIMARY KEY,
        source TEXT NOT NULL UNIQUE,
        title TEXT NOT NULL,
        language TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        paged INTEGER NOT NULL,
        n_pages INTEGER NOT NULL,
        n_chunks INTEGER NOT NULL,
        file_size INTEGER,
        file_mtime REAL,
        added_at TEXT NOT NULL,
        notes TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX documents_hash ON documents(content_hash);
    CREATE TABLE pages (
        doc_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
        page INTEGER NOT NULL,
        text TEXT NOT NULL,
        sections TEXT NOT NULL,
        PRIMARY KEY (doc_id, page)
    );
    CREATE TABLE chunks (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        doc_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
        page INTEGER NOT NULL,
        section TEXT NOT NULL,
        start INTEGER NOT NULL,
        end INTEGER NOT NULL,
        text TEXT NOT NULL,
        terms TEXT NOT NULL,
        vector BLOB NOT NULL
    );
    CREATE INDEX chunks_doc ON chunks(doc_id);
    """,
    # 2: document metadata (e.g. {"checked": "2026-11"} from a brief's "Checked:" line) and per-page metadata
    # (e.g. {"ocr": true, "confidence": 91.2} for a page whose text came from OCR). JSON objects, '{}' if none.
    """
    ALTER TABLE documents ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE pages ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}';
    """,
    # 3: a second, English-only model's vector for each chunk of an English document (NULL elsewhere): the
    # index model's companion (config.COMPANION_MODELS, weighed by retrieval.FusionParams.companion_weight).
    """
    ALTER TABLE chunks ADD COLUMN companion BLOB;
    """,
    # 4: the audit log: who added, replaced or removed which file, and when; written in the same transaction as
    # the change it records. No foreign key: an entry outlives the document it names.
    """
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        user_name TEXT NOT NULL,
        action TEXT NOT NULL,
        file TEXT NOT NULL,
        doc_id TEXT NOT NULL,
        title TEXT NOT NULL
    );
    """,
    # 5: people, organizations and places named in each chunk (peru_qa.entities), with offsets into the page text
    # like chunks', the sentence around each as offsets too, and a date; written with their document and deleted
    # with it. mentions_summary covers an entity's summary and timeline, so that its panel reads one index range
    # (≤ 200 ms at 100k chunks, benchmarks/RESULTS.md "Entities"). entity_runs records which documents were
    # extracted, and by which version of the extractor, so that `rebuild` fills in an index built before
    # extraction (or by an older extractor).
    """
    CREATE TABLE mentions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        doc_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
        chunk_id INTEGER REFERENCES chunks(id) ON DELETE CASCADE,
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
    CREATE INDEX mentions_key ON mentions(key, chunk_id);
    CREATE INDEX mentions_summary ON mentions(key, type, entity, text, doc_id, date);
    CREATE INDEX mentions_chunk ON mentions(chunk_id, key);
    CREATE INDEX mentions_doc ON mentions(doc_id);
    CREATE INDEX mentions_norm ON mentions(norm);
    CREATE TABLE entity_runs (
        doc_id TEXT PRIMARY KEY REFERENCES documents(id) ON DELETE CASCADE,
        extractor TEXT NOT NULL
    );
    """,
]


@dataclass
class Derived:
    generation: int
    vectors: VectorIndex
    keyword: KeywordIndex
    #: The companion model's vectors (English chunks only); None when the index has no companion.
    companion: VectorIndex | None = None


def _refreshed(previous: VectorIndex | None, db_ids: np.ndarray, dim: int,
               vectors_for: Callable[[np.ndarray], np.ndarray],
               everything: Callable[[], tuple[np.ndarray, np.ndarray]]) -> VectorIndex:
    """A vector index holding exactly `db_ids`: a copy of `previous` with the difference applied when it can be
    reused (searches may still be using it), else built from all stored vectors."""
    approximate = len(db_ids) >= ann_min_vectors()
    if previous is not None and previous.dim == dim and previous.approximate == approximate:
        vectors = previous.copy()
        have = vectors.ids()
        vectors.remove(np.setdiff1d(have, db_ids, assume_unique=True))
        missing = np.setdiff1d(db_ids, have, assume_unique=True)
        vectors.add(missing, vectors_for(missing))
        return vectors
    # first build, or the index crossed the size where search turns approximate (or back)
    ids, matrix = everything()
    return VectorIndex.build(dim, ids, matrix)



def atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def lock_timeout() -> float:
    """Seconds a writer waits for another one (PERU_QA_LOCK_TIMEOUT, default 120)."""
    return max(1.0, env_float("PERU_QA_LOCK_TIMEOUT", 120.0))


def _is_locked(exc: sqlite3.OperationalError) -> bool:
    message = str(exc).lower()
    return "locked" in message or "busy" in message


class Store:
    def __init__(self, path: Path, create: bool = True):
        self.path = Path(path)
        if not (self.path / DB_NAME).exists():
            if not create:
                raise PeruQAError(f"no index at {self.path} (create one with `peru-qa add FILES --index {self.path}`)")
            self.path.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path / DB_NAME, timeout=lock_timeout(), check_same_thread=False,
                                  isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self._lock = FileLock(str(self.path / ".lock"))
        self._depth = 0
        try:
            self._open()
        except sqlite3.DatabaseError as exc:
            self.db.close()
            if isinstance(exc, sqlite3.OperationalError) and _is_locked(exc):
                raise IndexBusyError(
                    f"index database {self.path / DB_NAME} stayed locked by another process for "
                    f"{lock_timeout():.0f} s (try again, or raise PERU_QA_LOCK_TIMEOUT)") from exc
            raise IndexCorruptError(f"index database {self.path / DB_NAME} is unreadable: {exc}") from exc
        except BaseException:
            self.db.close()
            raise

    def _open(self) -> None:
        """Create or migrate the database under the writer lock, so that processes opening a new index together
        queue instead of failing: switching to WAL needs an exclusive lock that sqlite's busy timeout does not
        wait for, and two processes migrating at once would both try to create the tables."""
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA foreign_keys=ON")
        journal, version = _while_locked(self._header)
        if version > len(MIGRATIONS):
            raise PeruQAError(
                f"index schema v{version} is newer than this peru-qa (v{len(MIGRATIONS)}): upgrade peru-qa")
        if journal != "wal" or version < len(MIGRATIONS):
            with self.writer():
                _while_locked(lambda: self.db.execute("PRAGMA journal_mode=WAL").fetchone())
                _while_locked(self._migrate)

    def _header(self) -> tuple[str, int]:
        """(journal mode, schema version), read without changing anything."""
        journal = str(self.db.execute("PRAGMA journal_mode").fetchone()[0]).lower()
        return journal, self._schema_version()

    def close(self) -> None:
        self.db.close()

    # --- schema -------------------------------------------------------------------------------
    def _schema_version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        """Apply the migrations this database lacks (caller holds the writer lock; re-reads the version)."""
        for number in range(self._schema_version(), len(MIGRATIONS)):
            # One script = one transaction: the schema and its version change together.
            try:
                self.db.executescript(
                    f"BEGIN IMMEDIATE;{MIGRATIONS[number]};PRAGMA user_version={number + 1};COMMIT;"
                )
            except BaseException:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                raise

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All or nothing; nested calls become savepoints of the outer transaction."""
        depth = self._depth
        self._depth += 1
        begin, commit, rollback = (("BEGIN IMMEDIATE", "COMMIT", "ROLLBACK") if depth == 0 else
                                   (f"SAVEPOINT s{depth}", f"RELEASE s{depth}", f"ROLLBACK TO s{depth}"))
        self.db.execute(begin)
        try:
            yield self.db
        except BaseException:
            self.db.execute(rollback)
            if depth:
                self.db.execute(f"RELEASE s{depth}")
            raise
        else:
            self.db.execute(commit)
        finally:
            self._depth -= 1

    # --- meta ---------------------------------------------------------------------------------
    def meta(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    @property
    def generation(self) -> int:
        return int(self.meta("generation", "0"))

    def _bump(self) -> None:
        self.set_meta("generation", str(self.generation + 1))
        self.set_meta("updated_at", now())

    # --- locking ------------------------------------------------------------------------------
    @contextmanager
    def writer(self, timeout: float | None = None) -> Iterator[None]:
        """Exclusive writer lock; waits (saying so once on stderr) and gives up with a clear error."""
        timeout = lock_timeout() if timeout is None else timeout
        try:
            self._lock.acquire(timeout=0)
        except LockTimeout:
            print(f"peru-qa: waiting for another process writing to {self.path} ...", file=sys.stderr, flush=True)
            try:
                self._lock.acquire(timeout=timeout)
            except LockTimeout as exc:
                raise IndexBusyError(
                    f"index {self.path} is locked by another peru-qa process writing to it; gave up after "
                    f"{timeout:.0f} s (try again when it finishes, or raise PERU_QA_LOCK_TIMEOUT)"
                ) from exc
        try:
            yield
        finally:
            self._lock.release()

    def try_lock(self) -> bool:
        try:
            self._lock.acquire(timeout=0)
            return True
        except LockTimeout:
            return False

    def unlock(self) -> None:
        self._lock.release()

    # --- documents ----------------------------------------------------------------------------
    def documents(self) -> list[DocumentRecord]:
        rows = self.db.execute("SELECT * FROM documents ORDER BY title COLLATE NOCASE, source").fetchall()
        return [_doc(r) for r in rows]

    def document(self, doc_id: str) -> DocumentRecord | None:
        row = self.db.execute("SELECT * FROM documents WHERE id=?", (doc_id,)).fetchone()
        return _doc(row) if row else None

    def document_by_source(self, source: str) -> DocumentRecord | None:
        row = self.db.execute("SELECT * FROM documents WHERE source=?", (source,)).fetchone()
        return _doc(row) if row else None

    def document_by_hash(self, content_hash: str) -> DocumentRecord | None:
        row = self.db.execute("SELECT * FROM documents WHERE content_hash=? LIMIT 1", (content_hash,)).fetchone()
        return _doc(row) if row else None

    def counts(self) -> tuple[int, int]:
        docs = self.db.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
        chunks = self.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        return int(docs), int(chunks)

    def pages(self, doc_id: str) -> list[tuple[int, str, list[tuple[int, str]], dict]]:
        """(page number, text, sections, page metadata) of every stored page of a document, in order."""
        rows = self.db.execute(
            "SELECT page, text, sections, metadata FROM pages WHERE doc_id=? ORDER BY page", (doc_id,)
        ).fetchall()
        return [(r["page"], r["text"], [tuple(s) for s in json.loads(r["sections"])], json.loads(r["metadata"]))
                for r in rows]

    def page_metadata(self, doc_id: str, page: int) -> dict:
        row = self.db.execute("SELECT metadata FROM pages WHERE doc_id=? AND page=?", (doc_id, page)).fetchone()
        return json.loads(row[0]) if row else {}

    def save_original(self, content_hash: str, path: Path, data: bytes | None = None) -> None:
        """Nothing to do: an index folder points at its files where they are (see `pgstore` for the database)."""

    def original_bytes(self, content_hash: str) -> bytes | None:
        return None

    def warm(self, progress: Callable[[Warmed], None] | None = None) -> list[Warmed]:
        """Read the index's files once, so that the first questions after a reboot do not wait on the disk (the
        derived vector index is read whole when a process opens the index; SQLite is read page by page)."""
        out: list[Warmed] = []
        for folder, _dirs, files in os.walk(self.path):
            for name in sorted(files):
                path = Path(folder) / name
                start = time.perf_counter()
                try:
                    with path.open("rb") as handle:
                        size = 0
                        while block := handle.read(1 << 23):
                            size += len(block)
                except OSError:  # a staging file that vanished while publishing
                    continue
                out.append(Warmed(str(path.relative_to(self.path)), size, time.perf_counter() - start))
                if progress:
                    progress(out[-1])
        return out

    def size_bytes(self) -> int:
        """Bytes the index folder takes on disk. Another process may be publishing meanwhile (staging folders
        appear and vanish): what disappears during the walk is not counted, never an error."""
        total = 0
        for folder, _dirs, files in os.walk(self.path):  # os.walk ignores folders that vanish
            for name in files:
                try:
                    total += os.stat(os.path.join(folder, name)).st_size
                except OSError:
                    pass
        return total

    def page_text(self, doc_id: str, page: int) -> str:
        row = self.db.execute("SELECT text FROM pages WHERE doc_id=? AND page=?", (doc_id, page)).fetchone()
        return row[0] if row else ""

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
        replacing older versions, atomically. With `user`, the audit log records who added or replaced it, in
        the same transaction (None: not a person's change, e.g. re-embedding or copying an index). With
        `extractor`, its entity `mentions` go in the same transaction (None: not extracted; `rebuild` does it)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        extra = np.ascontiguousarray(companion, dtype=np.float32) if companion is not None else None
        self._check_write(record, chunks, vectors, extra, replace_ids)
        with self.transaction() as db:
            if user is not None:
                self._audit(db, user, audit_action(replace_ids), [(record.source, record.id, record.title)])
            for old in replace_ids:
                db.execute("DELETE FROM documents WHERE id=?", (old,))
            db.execute(
                "INSERT INTO documents(id, source, title, language, content_hash, paged, n_pages, n_chunks, "
                "file_size, file_mtime, added_at, notes, metadata) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (record.id, record.source, record.title, record.language, record.content_hash, int(record.paged),
                 record.n_pages, record.n_chunks, record.file_size, record.file_mtime, record.added_at,
                 record.notes, json.dumps(record.metadata, ensure_ascii=False)),
            )
            db.executemany(
                "INSERT INTO pages(doc_id, page, text, sections, metadata) VALUES (?,?,?,?,?)",
                [(record.id, number, text, json.dumps(sections, ensure_ascii=False),
                  json.dumps(meta, ensure_ascii=False)) for number, text, sections, meta in pages],
            )
            db.executemany(
                "INSERT INTO chunks(doc_id, page, section, start, end, text, terms, vector, companion) "
                "VALUES (?,?,?,?,?,?,?,?,?)",
                [(record.id, c.page, c.section, c.start, c.end, c.text, " ".join(c.terms), vectors[i].tobytes(),
                  extra[i].tobytes() if extra is not None else None) for i, c in enumerate(chunks)],
            )
            if extractor is not None:
                self._insert_mentions(db, record.id, mentions or [], extractor)
            self._bump()

    def _insert_mentions(self, db: sqlite3.Connection, doc_id: str, mentions: list[MentionRow],
                         extractor: str) -> None:
        """A document's mentions (chunk indexes become the ids its chunks were given) and its extraction run."""
        chunk_ids = [r[0] for r in db.execute("SELECT id FROM chunks WHERE doc_id=? ORDER BY id", (doc_id,))]
        db.execute("DELETE FROM mentions WHERE doc_id=?", (doc_id,))
        db.executemany(
            'INSERT INTO mentions(doc_id, chunk_id, page, start, "end", text, type, entity, key, norm, sent_start, '
            "sent_end, date, date_source) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [(doc_id, chunk_ids[m.chunk] if 0 <= m.chunk < len(chunk_ids) else None, m.page, m.start, m.end, m.text,
              m.type, m.entity, m.key, m.norm, m.sent_start, m.sent_end, m.date, m.date_source) for m in mentions])
        db.execute("INSERT OR REPLACE INTO entity_runs(doc_id, extractor) VALUES (?, ?)", (doc_id, extractor))

    def set_mentions(self, doc_id: str, mentions: list[MentionRow], extractor: str) -> None:
        """Replace a document's mentions (filling an index built before extraction, or by an older extractor)."""
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM documents WHERE id=?", (doc_id,)).fetchone():
                self._insert_mentions(db, doc_id, mentions, extractor)

    def documents_lacking_mentions(self, extractor: str) -> list[str]:
        """Ids of the documents not yet extracted by this version of the extractor."""
        rows = self.db.execute("SELECT d.id FROM documents d LEFT JOIN entity_runs r ON r.doc_id = d.id "
                               "WHERE r.extractor IS NULL OR r.extractor != ? ORDER BY d.id", (extractor,))
        return [r[0] for r in rows]

    def document_mentions(self, doc_id: str) -> list[MentionRow]:
        """A document's mentions as written (copying an index keeps them), chunk as the index among its chunks."""
        order = {r[0]: n for n, r in enumerate(self.db.execute("SELECT id FROM chunks WHERE doc_id=? ORDER BY id",
                                                               (doc_id,)))}
        rows = self.db.execute('SELECT chunk_id, page, start, "end", text, type, entity, key, norm, sent_start, '
                               "sent_end, date, date_source FROM mentions WHERE doc_id=? ORDER BY id", (doc_id,))
        return [MentionRow(r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12],
                           order.get(r[0], -1)) for r in rows]

    def entity_summaries(self, type: str | None = None, keys: list[str] | None = None,
                         chunk_ids: np.ndarray | None = None) -> list[Entity]:
        """Every entity (or those of `type`, `keys`, or named in `chunk_ids`) with its names, documents and count.
        Grouped on the covering index `mentions_summary` first, joined to the documents after."""
        sql = "SELECT key, entity, type, text, doc_id, count(*) AS n FROM mentions WHERE 1=1"
        args: list = []
        if keys is not None:
            sql += f" AND key IN ({','.join('?' * len(keys))})"
            args += list(keys)
        if type is not None:
            sql += " AND type = ?"
            args.append(type)
        if chunk_ids is not None:
            sql += " AND chunk_id IN (SELECT value FROM json_each(?))"
            args.append(json.dumps([int(i) for i in chunk_ids]))
        rows = self.db.execute(
            f"SELECT g.key, g.entity, g.type, g.text, d.source, g.n FROM ({sql} GROUP BY key, type, entity, text, "
            "doc_id) g JOIN documents d ON d.id = g.doc_id", args).fetchall()
        return summarise_mentions([tuple(r) for r in rows])

    def resolve_entity(self, name: str) -> str | None:
        """The merge key a name refers to: its own key when stored, else the key its surface form is most
        often given (a short form, an alias), else None."""
        keys, norms = lookup_forms(name)
        for key in keys:
            if self.db.execute("SELECT 1 FROM mentions WHERE key=? LIMIT 1", (key,)).fetchone():
                return key
        row = self.db.execute("SELECT key, count(*) AS n FROM mentions WHERE norm IN (SELECT value FROM json_each(?)) "
                              "GROUP BY key ORDER BY n DESC LIMIT 1", (json.dumps(norms),)).fetchone()
        return row[0] if row else None

    def entity_mentions(self, key: str, limit: int = 200) -> tuple[list[EntityMention], int]:
        """The first `limit` mentions of an entity in index order (document, page, sentence, date), sorted by
        document title, and how many there are."""
        total = self.db.execute("SELECT count(*) FROM mentions WHERE key=?", (key,)).fetchone()[0]
        rows = self.db.execute(
            'SELECT m.doc_id, d.source, d.title, d.paged, m.page, m.start, m."end", m.text, '
            "substr(p.text, m.sent_start + 1, m.sent_end - m.sent_start), m.date, m.date_source "
            "FROM (SELECT * FROM mentions WHERE key = ? ORDER BY chunk_id LIMIT ?) m "
            "JOIN documents d ON d.id = m.doc_id JOIN pages p ON p.doc_id = m.doc_id AND p.page = m.page",
            (key, int(limit))).fetchall()
        found = [EntityMention(r[0], Path(r[1]).name, r[2], r[4] if r[3] else None, r[5], r[6], r[7], r[8], r[9],
                               r[10]) for r in rows]
        return sorted(found, key=mention_order), int(total)

    def co_mentions(self, key: str, limit: int = 30, sample: int = CO_MENTION_SAMPLE
                    ) -> tuple[list[CoMention], int, int]:
        """Entities named in the same chunks as `key`, with the number of chunks they share, most first; and how
        many of the entity's chunks were looked at, of how many name it (an entity named in more than `sample`
        chunks is counted over `sample` of them, spread evenly: its panel stays fast at 100k chunks)."""
        passages = self.db.execute("SELECT count(DISTINCT chunk_id) FROM mentions WHERE key = ? "
                                   "AND chunk_id IS NOT NULL", (key,)).fetchone()[0]
        step = max(1, -(-int(passages) // max(1, sample)))
        rows = self.db.execute(
            "WITH c AS (SELECT chunk_id, row_number() OVER (ORDER BY chunk_id) AS r FROM (SELECT DISTINCT chunk_id "
            "FROM mentions WHERE key = ? AND chunk_id IS NOT NULL)) "
            "SELECT o.key, max(o.entity), max(o.type), count(DISTINCT o.chunk_id) AS n FROM mentions o "
            "WHERE o.chunk_id IN (SELECT chunk_id FROM c WHERE (r - 1) % ? = 0) AND o.key != ? "
            "GROUP BY o.key ORDER BY n DESC, o.key LIMIT ?", (key, step, key, int(limit))).fetchall()
        counted = -(-int(passages) // step)
        return [CoMention(r[1], r[2], int(r[3]), r[0]) for r in rows], counted, int(passages)

    def entity_timeline(self, key: str) -> list[tuple[str, int]]:
        """(date, mentions) of an entity's dated mentions, oldest first (read from the covering index)."""
        rows = self.db.execute("SELECT date, count(*) FROM mentions INDEXED BY mentions_summary WHERE key = ? "
                               "AND date IS NOT NULL GROUP BY date ORDER BY date", (key,)).fetchall()
        return [(r[0], int(r[1])) for r in rows]

    def update_source(self, doc_id: str, source: str, file_size: int | None, file_mtime: float | None) -> None:
        with self.transaction() as db:
            db.execute("UPDATE documents SET source=?, file_size=?, file_mtime=? WHERE id=?",
                       (source, file_size, file_mtime, doc_id))
            self._bump()

    def touch(self, doc_id: str, file_size: int | None, file_mtime: float | None) -> None:
        """Record a new mtime for unchanged content, so the next staleness check skips hashing."""
        with self.transaction() as db:
            db.execute("UPDATE documents SET file_size=?, file_mtime=? WHERE id=?", (file_size, file_mtime, doc_id))

    def delete_documents(self, doc_ids: list[str], user: str | None = None) -> None:
        """Delete documents; with `user`, the audit log records who removed them, in the same transaction."""
        with self.transaction() as db:
            if user is not None:
                gone = [(r["source"], r["id"], r["title"]) for d in doc_ids for r in
                        db.execute("SELECT id, source, title FROM documents WHERE id=?", (d,)).fetchall()]
                self._audit(db, user, "removed", gone)
            db.executemany("DELETE FROM documents WHERE id=?", [(d,) for d in doc_ids])
            self._bump()

    @staticmethod
    def _audit(db: sqlite3.Connection, user: str, action: str, files: list[tuple[str, str, str]]) -> None:
        """Audit entries for (source, doc id, title) of each file, inside the caller's transaction."""
        if not files:
            return
        at = now()
        db.executemany("INSERT INTO audit(at, user_name, action, file, doc_id, title) VALUES (?,?,?,?,?,?)",
                       [(at, user, action, source, doc_id, title) for source, doc_id, title in files])

    def events(self, limit: int | None = None) -> list[AuditEntry]:
        """The audit log, newest first (the last `limit` entries when given)."""
        rows = self.db.execute("SELECT at, user_name, action, file, doc_id, title FROM audit ORDER BY id DESC "
                               "LIMIT ?", (-1 if limit is None else max(0, int(limit)),)).fetchall()
        return [AuditEntry(*tuple(r)) for r in rows]

    # --- chunks -------------------------------------------------------------------------------
    def document_chunks(self, doc_id: str) -> tuple[list[ChunkRow], np.ndarray]:
        """A document's chunks as written and their vectors, in order (copying an index to another backend)."""
        rows = self.db.execute('SELECT page, section, start, "end", text, terms, vector FROM chunks '
                               "WHERE doc_id=? ORDER BY id", (doc_id,)).fetchall()
        chunks = [ChunkRow(r[0], r[1], r[2], r[3], r[4], r[5].split()) for r in rows]
        dim = int(self.meta("dimension") or 0)
        vectors = (np.stack([np.frombuffer(r[6], dtype=np.float32) for r in rows]) if rows
                   else np.zeros((0, dim), np.float32))
        return chunks, vectors

    def chunk_ids(self) -> np.ndarray:
        rows = self.db.execute("SELECT id FROM chunks ORDER BY id").fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def vectors_for(self, ids: np.ndarray, dim: int) -> np.ndarray:
        out = np.zeros((len(ids), dim), dtype=np.float32)
        position = {int(i): n for n, i in enumerate(ids)}
        for batch in _batches([int(i) for i in ids], 900):
            marks = ",".join("?" * len(batch))
            for row in self.db.execute(f"SELECT id, vector FROM chunks WHERE id IN ({marks})", batch):
                out[position[row[0]]] = np.frombuffer(row[1], dtype=np.float32)
        return out

    def all_vectors(self, dim: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self.db.execute("SELECT id, vector FROM chunks ORDER BY id").fetchall()
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        blob = b"".join(r[1] for r in rows)
        vectors = np.frombuffer(blob, dtype=np.float32)
        if vectors.size != len(ids) * dim:
            raise IndexCorruptError("stored vectors do not match the index dimension; run `peru-qa rebuild`")
        return ids, vectors.reshape(len(ids), dim)

    def companion_ids(self) -> np.ndarray:
        rows = self.db.execute("SELECT id FROM chunks WHERE companion IS NOT NULL ORDER BY id").fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def companion_vectors(self, ids: np.ndarray | None, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, matrix) of the companion vectors of `ids` (all of them when None)."""
        if ids is None:
            rows = self.db.execute("SELECT id, companion FROM chunks WHERE companion IS NOT NULL "
                                   "ORDER BY id").fetchall()
        else:
            rows = []
            for batch in _batches([int(i) for i in ids], 900):
                marks = ",".join("?" * len(batch))
                rows += self.db.execute(f"SELECT id, companion FROM chunks WHERE id IN ({marks}) "
                                        "AND companion IS NOT NULL", batch).fetchall()
        out_ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32)
        if matrix.size != len(rows) * dim:
            raise IndexCorruptError("stored companion vectors do not match their dimension; run `peru-qa rebuild`")
        return out_ids, matrix.reshape(len(rows), dim)

    def _companion_rows(self, ids: np.ndarray, dim: int) -> np.ndarray:
        """The companion vectors of `ids` (all of which have one), row for row."""
        found, matrix = self.companion_vectors(ids, dim)
        row = {int(i): n for n, i in enumerate(found)}
        return matrix[[row[int(i)] for i in ids]] if len(ids) else matrix

    def chunks_lacking_companion(self, language: str = "en") -> list[tuple[int, str, str, str]]:
        """(id, document title, section, text) of the chunks of `language` documents without a companion vector."""
        return [tuple(r) for r in self.db.execute(
            "SELECT c.id, d.title, c.section, c.text FROM chunks c JOIN documents d ON d.id = c.doc_id "
            "WHERE d.language = ? AND c.companion IS NULL ORDER BY c.id", (language,))]

    def set_companion(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Store companion vectors of existing chunks (filling an index built before it had a companion)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        with self.transaction() as db:
            db.executemany("UPDATE chunks SET companion=? WHERE id=?",
                           [(vectors[n].tobytes(), int(i)) for n, i in enumerate(ids)])
            self._bump()

    def all_terms(self) -> tuple[np.ndarray, list[list[str]]]:
        rows = self.db.execute("SELECT id, terms FROM chunks ORDER BY id").fetchall()
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        return ids, [r[1].split() for r in rows]

    def chunk_rows(self, ids: list[int]) -> dict[int, sqlite3.Row]:
        out: dict[int, sqlite3.Row] = {}
        for batch in _batches(ids, 900):
            marks = ",".join("?" * len(batch))
            for row in self.db.execute(
                "SELECT c.id, c.doc_id, c.page, c.section, c.start, c.end, c.text, d.title, d.source, d.language, "
                "d.paged, d.metadata AS doc_metadata, COALESCE(p.metadata, '{}') AS page_metadata "
                "FROM chunks c JOIN documents d ON d.id = c.doc_id "
                f"LEFT JOIN pages p ON p.doc_id = c.doc_id AND p.page = c.page WHERE c.id IN ({marks})",
                batch,
            ):
                out[row["id"]] = row
        return out

    def chunk_sources(self) -> dict[int, str]:
        """Chunk id → its document's source, in chunk id order (maps a chunk ranking to documents cheaply)."""
        rows = self.db.execute("SELECT c.id, d.source FROM chunks c JOIN documents d ON d.id = c.doc_id ORDER BY c.id")
        return {int(cid): source for cid, source in rows}

    def chunk_languages(self, ids: np.ndarray) -> list[str]:
        """Each chunk's document language ("" for an id no longer stored), aligned with `ids` (cross-lingual fusion)."""
        wanted = [int(i) for i in ids]
        found: dict[int, str] = {}
        for part in _batches(wanted, 900):  # SQLite's bound-parameter limit
            marks = ",".join("?" * len(part))
            found.update(self.db.execute(
                f"SELECT c.id, d.language FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE c.id IN ({marks})",
                part).fetchall())
        return [found.get(i, "") for i in wanted]

    def integrity_problems(self) -> tuple[list[str], int]:
        """What is wrong inside the database itself (derived files aside), and how many vectors have the wrong
        size (those cannot be repaired by rebuilding: they need re-embedding)."""
        problems: list[str] = []
        dim = int(self.meta("dimension") or 0)
        bad_vectors = self.db.execute(
            "SELECT COUNT(*) FROM chunks WHERE length(vector) != ?", (dim * 4,)).fetchone()[0] if dim else 0
        if bad_vectors:
            problems.append(f"{bad_vectors} stored vectors have the wrong size")
        orphans = self.db.execute(
            "SELECT COUNT(*) FROM chunks WHERE doc_id NOT IN (SELECT id FROM documents)").fetchone()[0]
        if orphans:
            problems.append(f"{orphans} chunks belong to no document")
        mismatched = self.db.execute(
            "SELECT COUNT(*) FROM documents d WHERE n_chunks != (SELECT COUNT(*) FROM chunks c WHERE c.doc_id = d.id)"
        ).fetchone()[0]
        if mismatched:
            problems.append(f"{mismatched} documents have a chunk count that does not match their chunks")
        return problems, int(bad_vectors)

    def chunk_texts(self) -> list[tuple[str, str, str]]:
        """(document title, section, text) of every chunk, in chunk id order."""
        rows = self.db.execute(
            "SELECT d.title, c.section, c.text FROM chunks c JOIN documents d ON d.id = c.doc_id ORDER BY c.id")
        return [(r[0], r[1], r[2]) for r in rows]

    def chunk_ids_where(self, filters: Filters) -> np.ndarray:
        """Ids of the chunks a search may return under `filters` (documents, languages, metadata date range)."""
        sql = "SELECT c.id FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE 1=1"
        args: list[str] = []
        if filters.doc_ids is not None:
            sql += f" AND c.doc_id IN ({','.join('?' * len(filters.doc_ids))})"
            args += filters.doc_ids
        if filters.languages is not None:
            sql += f" AND d.language IN ({','.join('?' * len(filters.languages))})"
            args += filters.languages
        if filters.date_from is not None or filters.date_to is not None:
            # Few documents, free-form dates: the range test is Filters.date_matches, run on each document.
            rows = self.db.execute("SELECT id, json_extract(metadata, '$.' || ?) FROM documents",
                                   (filters.date_field,)).fetchall()
            dated = [r[0] for r in rows if filters.date_matches(r[1])]
            sql += f" AND c.doc_id IN ({','.join('?' * len(dated))})"
            args += dated
        if filters.entities is not None:
            # documents that mention any of the entities: by their merge key, or by a name they were found under
            forms = [lookup_forms(name) for name in filters.entities]
            keys = json.dumps([k for ks, _ in forms for k in ks])
            norms = json.dumps([n for _, ns in forms for n in ns])
            sql += (" AND c.doc_id IN (SELECT doc_id FROM mentions WHERE key IN (SELECT value FROM json_each(?)) "
                    "OR key IN (SELECT key FROM mentions WHERE norm IN (SELECT value FROM json_each(?))))")
            args += [keys, norms]
        rows = self.db.execute(sql, args).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    # --- manifest and derived files -------------------------------------------------------------
    def manifest(self) -> dict:
        try:
            return json.loads((self.path / MANIFEST_NAME).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            return {"damaged": True}

    def manifest_stamp(self) -> int:
        try:
            return (self.path / MANIFEST_NAME).stat().st_mtime_ns
        except FileNotFoundError:
            return 0

    def load_derived(self, current_only: bool = True) -> Derived | None:
        """The derived files the manifest points to, or None when missing, damaged or (by default) stale."""
        manifest = self.manifest()
        if not manifest.get("derived") or (current_only and manifest.get("generation") != self.generation):
            return None
        folder = self.path / manifest["derived"]
        try:
            vectors = VectorIndex.load(folder / "vectors.faiss")
            keyword = KeywordIndex.load(folder / "keyword")
            companion = (VectorIndex.load(folder / "companion.faiss")
                         if manifest.get("companion_chunks") is not None else None)
        except Exception:  # missing or damaged: the caller rebuilds from SQLite
            return None
        if len(vectors) != manifest.get("chunks") or len(keyword) != manifest.get("chunks"):
            return None
        if companion is not None and len(companion) != manifest["companion_chunks"]:
            return None
        return Derived(manifest["generation"], vectors, keyword, companion)

    def build_derived(self, dim: int, previous: Derived | None = None) -> Derived:
        """Derived indexes matching SQLite now; reuses `previous` vectors where it can."""
        generation = self.generation
        vectors = _refreshed(previous.vectors if previous else None, self.chunk_ids(), dim,
                             lambda ids: self.vectors_for(ids, dim), lambda: self.all_vectors(dim))
        companion = None
        companion_dim = int(self.meta("companion_dimension") or 0)
        if companion_dim:
            companion = _refreshed(previous.companion if previous else None, self.companion_ids(), companion_dim,
                                   lambda ids: self._companion_rows(ids, companion_dim),
                                   lambda: self.companion_vectors(None, companion_dim))
        ids, terms = self.all_terms()
        keyword = KeywordIndex.build(ids, terms)
        return Derived(generation, vectors, keyword, companion)

    def save_derived(self, derived: Derived, info: dict) -> None:
        """Write derived files to a new folder, then point the manifest at it (caller holds the lock)."""
        root = self.path / "derived"
        root.mkdir(exist_ok=True)
        final = root / f"{derived.generation:08d}"
        staging = Path(tempfile.mkdtemp(dir=root, prefix=".staging-"))
        try:
            derived.vectors.save(staging / "vectors.faiss")
            derived.keyword.save(staging / "keyword")
            if derived.companion is not None:
                derived.companion.save(staging / "companion.faiss")
            _fsync_tree(staging)
            if final.exists():
                shutil.rmtree(final)
            os.replace(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        docs, chunks = self.counts()
        manifest = {
            "schema_version": SCHEMA_VERSION,
            **info,
            "generation": derived.generation,
            "documents": docs,
            "chunks": chunks,
            "derived": f"derived/{final.name}",
            **({"companion_chunks": len(derived.companion)} if derived.companion is not None else {}),
            "keyword": {"library": "bm25s", "analysis": "fold accents, es+en stop words, Snowball stem"},
            "updated_at": now(),
        }
        atomic_write_text(self.path / MANIFEST_NAME, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
        self._prune(root, keep=final.name)

    def _prune(self, root: Path, keep: str) -> None:
        # Keep the previous generation a while: a reader may be loading it right now.
        # Staging folders older than that are leftovers of a killed writer (we hold the lock).
        cutoff = time.time() - 60
        for child in root.iterdir():
            try:
                if child.name != keep and child.stat().st_mtime < cutoff:
                    shutil.rmtree(child, ignore_errors=True)
            except FileNotFoundError:
                pass


def _doc(row: sqlite3.Row) -> DocumentRecord:
    return DocumentRecord(
        id=row["id"], source=row["source"], title=row["title"], language=row["language"],
        content_hash=row["content_hash"], paged=bool(row["paged"]), n_pages=row["n_pages"],
        n_chunks=row["n_chunks"], file_size=row["file_size"], file_mtime=row["file_mtime"],
        added_at=row["added_at"], notes=row["notes"], metadata=json.loads(row["metadata"] or "{}"),
    )


def _while_locked(step: Callable[[], T]) -> T:
    """Run `step`, retrying while sqlite reports the database locked (cases its busy timeout does not cover,
    such as another process switching the journal mode), up to the lock timeout."""
    deadline = time.monotonic() + lock_timeout()
    pause = 0.01
    while True:
        try:
            return step()
        except sqlite3.OperationalError as exc:
            if not _is_locked(exc) or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.5)


def _batches(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
