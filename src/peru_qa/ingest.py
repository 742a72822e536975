"""Adding documents: files and texts are loaded and chunked one by one, embedded in shared batches, and each
document is committed on its own (one transaction under the writer lock), then the derived indexes are published.

`Ingest` runs one `KnowledgeBase.add` / `add_texts` call; the knowledge base is the facade that owns the store, the
model and the derived indexes (`Owner` is what this module needs from it)."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from .auth import LOCAL_USER
from .backends import IndexStore, SearchIndexes
from .chunking import PREFIX_TOKENS, Chunk, chunk_document
from .config import SUPPORTED_SUFFIXES, env_float
from .embeddings import Embedder
from .entities import EXTRACTOR_VERSION, DocumentText, assign_chunks, extract
from .errors import (
    ExtractionError,
    IndexBusyError,
    ModelLoadError,
    ModelMismatchError,
    PeruQAError,
)
from .loaders import LoadedDocument, Page, PageProgress, file_hash, load
from .records import ChunkRow, DocumentRecord, MentionRow, now
from .text import detect_language, keyword_tokens

#: Called with (files done, files in total, what is happening now).
ProgressFn = Callable[[int, int, str], None]

#: Extract people, organizations and places while adding (benchmarks/entities.py turns it off to measure its cost;
#: an index added without it gets its mentions on `rebuild`).
EXTRACT_ENTITIES = True


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
    #: entity mentions, None when extraction is off (then `rebuild` fills them in)
    mentions: list[MentionRow] | None = None


def _embed_batch_chunks() -> int:
    """Chunks embedded together across small files (one model call is much faster than many)."""
    return max(1, int(env_float("PERU_QA_EMBED_BATCH", 256)))


def _doc_id(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:12]


class Owner(Protocol):
    """What adding documents needs from the knowledge base it works for (`kb.KnowledgeBase`)."""

    store: IndexStore
    indexes: SearchIndexes
    model_name: str

    @property
    def embedder(self) -> Embedder: ...

    @property
    def companion(self) -> Embedder | None: ...

    def _check_dimension(self) -> None: ...


def document_mentions(pages: list[Page], language: str, metadata: dict, chunks: list) -> list[MentionRow]:
    """The entity mentions of a document's pages, each tied to the chunk that holds it (`chunks` have page, start
    and end: loader chunks or stored rows)."""
    mentions = extract(DocumentText([(p.number, p.text) for p in pages], language, metadata or {}))
    assign_chunks(mentions, [(c.page, c.start, c.end) for c in chunks])
    return mentions


def page_rows(pages: list[Page]) -> list[tuple[int, str, list, dict]]:
    """Pages as `Store.write_document` takes them."""
    return [(p.number, p.text, [list(s) for s in p.sections], p.metadata) for p in pages]


def chunk_rows(title: str, language: str, chunks: list[Chunk]) -> list[ChunkRow]:
    """Chunks as stored, with their keyword terms (the title and section count as words of every chunk)."""
    return [ChunkRow(c.page, c.section, c.start, c.end, c.text,
                     keyword_tokens(f"{title}\n{c.section}\n{c.text}", language)) for c in chunks]


def embedding_text(embedder: Embedder, title: str, section: str, text: str) -> str:
    """What is embedded for a chunk: its title and section (cut to PREFIX_TOKENS tokens), then its text."""
    prefix = title if not section or section == title else f"{title} — {section}".strip(" —")
    if not prefix.strip():
        return text
    spans = embedder.token_spans(prefix)
    if len(spans) > PREFIX_TOKENS:
        prefix = prefix[: spans[PREFIX_TOKENS - 1][1]]
    return f"{prefix}\n{text}"


def embed_chunks(embedder: Embedder, title: str, chunks: list[Chunk]) -> np.ndarray:
    return embedder.encode([embedding_text(embedder, title, c.section, c.text) for c in chunks])


#: The language whose chunks get the companion model's vectors (it is English-only).
COMPANION_LANGUAGE = "en"


def embed_companion(companion: Embedder | None, docs: list[tuple[str, str, list[Chunk]]]) -> list[np.ndarray | None]:
    """The companion model's vectors of each (title, language, chunks) document: English ones only, one batch."""
    picked = [n for n, (_, language, _) in enumerate(docs) if companion is not None and language == COMPANION_LANGUAGE]
    out: list[np.ndarray | None] = [None] * len(docs)
    if not picked:
        return out
    texts = [embedding_text(companion, docs[n][0], c.section, c.text) for n in picked for c in docs[n][2]]
    vectors = companion.encode(texts)
    offset = 0
    for n in picked:
        out[n] = vectors[offset : offset + len(docs[n][2])]
        offset += len(docs[n][2])
    return out


def record_model(owner: Owner) -> None:
    """The first write records the model and dimension; later writes check that the model still fits."""
    store = owner.store
    if not store.meta("model"):
        companion = owner.companion
        with store.transaction():
            store.set_meta("model", owner.model_name)
            store.set_meta("dimension", str(owner.embedder.dim))
            store.set_meta("companion", companion.name if companion is not None else "")
            store.set_meta("companion_dimension", str(companion.dim if companion is not None else 0))
    else:
        owner._check_dimension()


class Ingest:
    """One run of adding files or texts for a knowledge base, on behalf of `user` (recorded in the audit log)."""

    def __init__(self, owner: Owner, user: str = LOCAL_USER):
        self.owner = owner
        self.store = owner.store
        self.user = user

    @property
    def embedder(self) -> Embedder:
        return self.owner.embedder

    def _publish(self) -> None:
        self.owner.indexes.publish()

    def _publish_locked(self) -> None:
        self.owner.indexes.publish_locked()

    def add(self, paths: Iterable[str | Path] | str | Path, *, password: str | None = None,
            progress: ProgressFn | None = None, exclude: Iterable[str] = (),
            on_result: Callable[[FileResult], None] | None = None) -> AddReport:
        """See `KnowledgeBase.add`."""
        if isinstance(paths, (str, Path)):
            paths = [paths]
        files = iter_files(paths, exclude)
        return self._ingest(
            ((str(path), lambda pages, path=path, explicit=explicit: self._prepare_file(path, explicit, password,
                                                                                         pages))
             for path, explicit in files),
            len(files), progress, on_result)

    def add_texts(self, items: Iterable[TextDocument], progress: ProgressFn | None = None) -> AddReport:
        """See `KnowledgeBase.add_texts`."""
        items = list(items)
        return self._ingest(((item.source, lambda pages, item=item: self._prepare_text(item)) for item in items),
                            len(items), progress)

    def _ingest(self, jobs: Iterable[tuple[str, Callable[[PageProgress | None], FileResult | _Pending]]], total: int,
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
            extras = embed_companion(self.owner.companion,
                                     [(p.doc.title, p.doc.language, p.chunks) for _, p in pending])
            offset = 0
            for (slot, item), extra in zip(pending, extras):
                part = vectors[offset : offset + len(item.chunks)]
                offset += len(item.chunks)
                settle(slot, self._guarded(item.shown, lambda item=item, part=part, extra=extra:
                                           self._commit(item, part, extra)))
            pending.clear()

        try:
            for done, (name, prepare) in enumerate(jobs):
                if progress:
                    progress(done, total, Path(name).name)
                pages = _page_reporter(progress, done, total, Path(name).name)
                outcome = self._guarded(name, lambda prepare=prepare, pages=pages: prepare(pages))
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
        except BaseException as exc:
            # Interrupted (lock timeout, Ctrl+C): what was committed stays; publish it only if nobody is writing,
            # otherwise the next reader or writer does (derived files are rebuilt from SQLite when stale).
            if wrote and self.store.try_lock():
                try:
                    self._publish_locked()
                finally:
                    self.store.unlock()
            if isinstance(exc, _ProgressStop):
                raise exc.error from None
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

    def _prepare_file(self, path: Path, explicit: bool, password: str | None,
                      pages: PageProgress | None = None) -> FileResult | _Pending:
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
        cache = self._ocr_cache(content_hash)
        try:
            doc = load(path, password=password, progress=pages, ocr_cache=cache.parent)
            outcome = self._prepare(shown, doc, source, existing, stat.st_size, stat.st_mtime)
        except Exception:
            shutil.rmtree(cache, ignore_errors=True)  # a final failure; an interruption keeps the OCR'd pages
            raise
        if isinstance(outcome, FileResult):
            shutil.rmtree(cache, ignore_errors=True)
        return outcome

    def _ocr_cache(self, content_hash: str) -> Path:
        """Pages OCR'd for a file not yet committed (loaders keys them by content hash, page, dpi, languages):
        an interrupted `add` resumes without redoing them; removed once the file is committed or has failed."""
        return self.store.path / "ocr-cache" / content_hash[:20]

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
        mentions = document_mentions(doc.pages, doc.language, doc.metadata, chunks) if EXTRACT_ENTITIES else None
        return _Pending(shown, doc, source, existing, size, mtime, chunks, mentions)

    def _commit(self, item: _Pending, vectors: np.ndarray, companion: np.ndarray | None = None) -> FileResult:
        doc, chunks = item.doc, item.chunks
        rows = chunk_rows(doc.title, doc.language, chunks)
        doc_id = item.existing.id if item.existing else _doc_id(item.source)
        record = DocumentRecord(
            id=doc_id, source=item.source, title=doc.title, language=doc.language, content_hash=doc.content_hash,
            paged=doc.paged, n_pages=len(doc.pages), n_chunks=len(chunks), file_size=item.size,
            file_mtime=item.mtime, added_at=now(), notes="; ".join(doc.notes), metadata=dict(doc.metadata),
        )
        with self.store.writer():
            self._ensure_model_recorded()
            twin = self.store.document_by_hash(doc.content_hash)
            if twin is not None and twin.source != item.source:  # committed meanwhile by another writer
                return FileResult(item.shown, "unchanged", f"same content as {Path(twin.source).name!r}",
                                  doc_id=twin.id, title=twin.title)
            current = self.store.document_by_source(item.source)
            if item.size is not None:  # a file (not a text): a shared index keeps it for every machine's viewer
                self.store.save_original(doc.content_hash, Path(item.source))
            self.store.write_document(record, page_rows(doc.pages), rows, vectors,
                                      replace_ids=(current.id,) if current else (), companion=companion,
                                      user=self.user, mentions=item.mentions,
                                      extractor=EXTRACTOR_VERSION if item.mentions is not None else None)
        if any(p.metadata.get("ocr") for p in doc.pages):
            shutil.rmtree(self._ocr_cache(doc.content_hash), ignore_errors=True)
        return FileResult(item.shown, "replaced" if item.existing else "added", "; ".join(doc.notes),
                          doc_id=doc_id, title=doc.title, pages=len(doc.pages), chunks=len(chunks))

    def _ensure_model_recorded(self) -> None:
        record_model(self.owner)

    def _embed_chunks(self, title: str, chunks: list[Chunk]) -> np.ndarray:
        return embed_chunks(self.embedder, title, chunks)

    def _embedding_text(self, title: str, section: str, text: str) -> str:
        return embedding_text(self.embedder, title, section, text)


class _ProgressStop(BaseException):
    """An exception raised by a progress callback during a file's OCR: carried past the per-file error
    handling (which would record it as that file's failure) so that it stops the batch like Ctrl+C."""

    def __init__(self, error: BaseException):
        super().__init__(str(error))
        self.error = error


def _page_reporter(progress: ProgressFn | None, done: int, total: int, name: str) -> PageProgress | None:
    """The per-page callback for one file: "scan.pdf: OCR page 12/300" through the per-file progress."""
    if progress is None:
        return None
    shown = name if len(name) <= 32 else f"{name[:20]}…{name[-11:]}"

    def report(pages_done: int, pages_total: int) -> None:
        what = (f"{shown}: OCR page {pages_done + 1}/{pages_total}" if pages_done < pages_total
                else f"{shown}: OCR done, {pages_total} pages")
        try:
            progress(done, total, what)
        except BaseException as exc:
            raise _ProgressStop(exc) from exc

    return report


__all__ = ["Ingest", "AddReport", "FileResult", "TextDocument", "ProgressFn", "iter_files", "document_mentions"]
