"""Keeping an index sound: mirror a folder (sync), rebuild the derived indexes or re-embed with another model
from the stored page texts (no original files needed), and check that every chunk has exactly one vector and one
keyword entry."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from .auth import LOCAL_USER
from .chunking import chunk_document
from .config import COMPANION_MODELS, SUPPORTED_SUFFIXES
from .embeddings import get_embedder
from .entities import EXTRACTOR_VERSION
from .ingest import (
    COMPANION_LANGUAGE,
    AddReport,
    FileResult,
    Owner,
    ProgressFn,
    chunk_rows,
    document_mentions,
    embed_chunks,
    embed_companion,
    embedding_text,
    iter_files,
    page_rows,
)
from .loaders import LoadedDocument, Page


@dataclass
class CheckReport:
    problems: list[str]
    repaired: list[str]
    documents: int
    chunks: int

    @property
    def ok(self) -> bool:
        return not self.problems


class Maintained(Owner, Protocol):
    """What maintenance needs from the knowledge base beyond what adding needs."""

    def add(self, paths, *, progress: ProgressFn | None = None, exclude: Iterable[str] = ()) -> AddReport: ...

    def rebuild(self, model: str | None = None, progress: ProgressFn | None = None) -> dict: ...


def sync_folder(kb: Maintained, folder: str | Path, progress: ProgressFn | None = None,
                exclude: Iterable[str] = ("README.md",)) -> AddReport:
    """Make the index mirror a folder: add new and changed files, drop files that vanished."""
    folder = Path(folder).resolve()
    report = kb.add([folder], progress=progress, exclude=exclude)
    gone = [d for d in kb.store.documents()
            if Path(d.source).is_relative_to(folder) and not Path(d.source).exists()]
    if gone:
        with kb.store.writer():
            kb.store.delete_documents([d.id for d in gone], user=LOCAL_USER)  # the folder's owner, as `add` records
        kb.indexes.publish()
        report.results += [FileResult(d.source, "removed", "file no longer exists", doc_id=d.id,
                                      title=d.title) for d in gone]
    return report


def is_stale(kb: Maintained, folder: str | Path, exclude: Iterable[str] = ("README.md",)) -> bool:
    """Cheap check (file sizes and times) whether `sync_folder` would change anything."""
    folder = Path(folder).resolve()
    known = {d.source: d for d in kb.store.documents() if Path(d.source).is_relative_to(folder)}
    seen = 0
    for path, _ in iter_files([folder], exclude):
        if path.suffix.lower() not in SUPPORTED_SUFFIXES:
            continue
        doc = known.get(str(path.resolve()))
        stat = path.stat()
        if doc is None or doc.file_size != stat.st_size or doc.file_mtime != stat.st_mtime:
            return True
        seen += 1
    return seen != len(known) or kb.store.manifest().get("generation") != kb.store.generation


def fill_mentions(kb: Owner, progress: ProgressFn | None = None) -> int:
    """Extract the entities of documents stored before extraction existed (or by an older extractor), from their
    stored page texts, one document per transaction. Returns how many documents were extracted."""
    store = kb.store
    missing = store.documents_lacking_mentions(EXTRACTOR_VERSION)
    for n, doc_id in enumerate(missing):
        record = store.document(doc_id)
        if record is None:  # removed meanwhile
            continue
        if progress:
            progress(n, len(missing), f"entities: {record.title}")
        pages = [Page(number, text, sections, meta) for number, text, sections, meta in store.pages(doc_id)]
        chunks, _ = store.document_chunks(doc_id)
        mentions = document_mentions(pages, record.language, record.metadata, chunks)
        with store.writer():
            store.set_mentions(doc_id, mentions, EXTRACTOR_VERSION)
    if progress and missing:
        progress(len(missing), len(missing), "done")
    return len(missing)


def reindex(kb: Owner) -> dict:
    """Rebuild the derived indexes from the stored vectors and terms (same model)."""
    with kb.store.writer():
        derived = kb.indexes.build()
        kb.indexes.save(derived)
    return {"model": kb.model_name, "re_embedded": 0, "chunks": len(derived.vectors)}


#: Chunks embedded per step when filling in companion vectors (each step is one progress report).
FILL_BATCH = 256


def fill_companion(kb: Owner, progress: ProgressFn | None = None) -> int:
    """Give an index built before companion vectors existed its model's companion (`config.COMPANION_MODELS`):
    embed the English chunks that lack one, then record the companion. Returns how many chunks were embedded."""
    store = kb.store
    name = COMPANION_MODELS.get(kb.model_name)
    if name is None:
        return 0
    rows = store.chunks_lacking_companion(COMPANION_LANGUAGE)
    if not rows and store.meta("companion") == name:
        return 0
    companion = get_embedder(name)
    for start in range(0, len(rows), FILL_BATCH):
        if progress:
            progress(start, len(rows), f"English vectors ({name})")
        batch = rows[start : start + FILL_BATCH]
        vectors = companion.encode([embedding_text(companion, title, section, text)
                                    for _, title, section, text in batch])
        with store.writer():
            store.set_companion(np.asarray([r[0] for r in batch], dtype=np.int64), vectors)
    with store.writer(), store.transaction():
        store.set_meta("companion", name)
        store.set_meta("companion_dimension", str(companion.dim))
    if progress:
        progress(len(rows), len(rows), "done")
    return len(rows)


def re_embed(kb: Owner, progress: ProgressFn | None = None) -> dict:
    """Re-cut every document's chunks for `kb.embedder`'s tokenizer and re-embed them from the stored page texts.

    The caller has switched `kb` to the new model already."""
    store, embedder = kb.store, kb.embedder
    name = COMPANION_MODELS.get(kb.model_name)
    companion = get_embedder(name) if name else None
    docs = store.documents()
    prepared = []
    for n, record in enumerate(docs):
        if progress:
            progress(n, len(docs), record.title)
        pages = [Page(number, text, sections, meta) for number, text, sections, meta in store.pages(record.id)]
        doc = LoadedDocument(Path(record.source), record.title, pages, record.language,
                             record.content_hash, record.paged, metadata=record.metadata)
        chunks = chunk_document(doc, embedder)
        extra = embed_companion(companion, [(record.title, record.language, chunks)])[0]
        prepared.append((record, pages, chunks, embed_chunks(embedder, record.title, chunks), extra))
    # One transaction: a crash leaves the index wholly on the old model or wholly on the new one.
    with store.writer():
        with store.transaction():
            store.set_meta("model", kb.model_name)
            store.set_meta("dimension", str(embedder.dim))
            store.set_meta("companion", companion.name if companion is not None else "")
            store.set_meta("companion_dimension", str(companion.dim if companion is not None else 0))
            for record, pages, chunks, vectors, extra in prepared:
                record.n_chunks = len(chunks)
                store.write_document(record, page_rows(pages), chunk_rows(record.title, record.language, chunks),
                                     vectors, replace_ids=(record.id,), companion=extra,
                                     mentions=document_mentions(pages, record.language, record.metadata, chunks),
                                     extractor=EXTRACTOR_VERSION)
        derived = kb.indexes.build()
        kb.indexes.save(derived)
    if progress:
        progress(len(docs), len(docs), "done")
    return {"model": kb.model_name, "re_embedded": sum(len(p[2]) for p in prepared), "chunks": len(derived.vectors)}


def check(kb: Maintained, repair: bool = True) -> CheckReport:
    """Every chunk has exactly one vector and one keyword entry; counts match the manifest.

    Problems of the derived files are repaired (rebuilt from the database) when `repair`; problems of the
    database itself are only reported."""
    store = kb.store
    db_ids = store.chunk_ids()
    docs, chunks = store.counts()
    problems, bad_vectors = store.integrity_problems()
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
    derived = kb.indexes.stored()
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
        kb.rebuild()
        repaired = derived_problems
        derived_problems = []
    return CheckReport(problems + derived_problems, repaired, docs, chunks)


__all__ = ["CheckReport", "sync_folder", "is_stale", "reindex", "re_embed", "fill_companion", "fill_mentions",
           "check"]
