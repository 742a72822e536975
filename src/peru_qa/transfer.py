"""`peru-qa copy SRC DST`: an index copied to another location or backend (a folder into PostgreSQL and back).

Documents, page texts, chunks, their keyword terms and their vectors are copied as stored, not re-read or
re-embedded (except the English companion vectors, `config.COMPANION_MODELS`, which are made again at the
destination once the documents are in); each document is one transaction at the destination. Documents
the destination already holds with the same content are skipped, so an interrupted copy can simply be run
again."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from .entities import EXTRACTOR_VERSION
from .errors import ModelMismatchError, PeruQAError
from .ingest import ProgressFn
from .kb import KnowledgeBase
from .maintenance import fill_companion


@dataclass
class CopyReport:
    copied: int
    skipped: int
    chunks: int
    model: str

    def summary(self) -> str:
        return (f"{self.copied} documents copied ({self.chunks} chunks), {self.skipped} already there; "
                f"model {self.model}")


def copy_index(source: str | Path, destination: str | Path, progress: ProgressFn | None = None) -> CopyReport:
    """Copy every document of the index at `source` into the one at `destination` (created if needed)."""
    with KnowledgeBase(source, create=False) as src:
        model, dim = src.store.meta("model"), src.store.meta("dimension")
        if not model:
            raise PeruQAError(f"index {src.shown} is empty: nothing to copy")
        with KnowledgeBase(destination, model=model) as dst:
            if dst.store.meta("dimension") not in (None, dim):
                raise ModelMismatchError(f"index {dst.shown} holds {dst.store.meta('dimension')}-d vectors, "
                                         f"{src.shown} {dim}-d ones")
            docs = src.store.documents()
            # Into an empty database: one bulk load (the indexes built once after it, not row by row).
            bulk = getattr(dst.store, "bulk_load", None)
            with bulk() if bulk is not None and dst.store.counts()[1] == 0 else nullcontext():
                copied, skipped, chunks_total = _copy_documents(src, dst, docs, model, dim, progress)
            if dst.lacks_companion:
                fill_companion(dst, progress)
            if copied:
                dst.indexes.publish()
            if progress:
                progress(len(docs), len(docs), "done")
    return CopyReport(copied, skipped, chunks_total, model)


def _original(src: KnowledgeBase, record) -> bytes | None:
    """The indexed file's bytes, from the source index (a database keeps them) or from disk if unchanged."""
    if record.file_size is None:
        return None
    data = src.store.original_bytes(record.content_hash)
    if data is not None:
        return data
    path = Path(record.source)
    if path.is_file():
        from .loaders import file_hash

        if file_hash(path) == record.content_hash:
            return path.read_bytes()
    return None


def _copy_documents(src: KnowledgeBase, dst: KnowledgeBase, docs: list, model: str, dim: str,
                    progress: ProgressFn | None) -> tuple[int, int, int]:
    """(copied, skipped, chunks copied); each document one transaction at the destination."""
    copied = skipped = chunks_total = 0
    unextracted = set(src.store.documents_lacking_mentions(EXTRACTOR_VERSION))
    for n, record in enumerate(docs):
        if progress:
            progress(n, len(docs), record.title)
        current = dst.store.document_by_source(record.source)
        if current is not None and current.content_hash == record.content_hash:
            skipped += 1
            continue
        pages = [(number, text, [list(s) for s in sections], meta)
                 for number, text, sections, meta in src.store.pages(record.id)]
        chunks, vectors = src.store.document_chunks(record.id)
        # entity mentions travel with their document (an unextracted one gets them on the destination's rebuild)
        extracted = record.id not in unextracted
        mentions = src.store.document_mentions(record.id) if extracted else None
        original = _original(src, record)
        with dst.store.writer():
            if original is not None:
                dst.store.save_original(record.content_hash, Path(record.source), original)
            if not dst.store.meta("model"):
                with dst.store.transaction():
                    dst.store.set_meta("model", model)
                    dst.store.set_meta("dimension", dim)
            dst.store.write_document(record, pages, chunks, vectors,
                                     replace_ids=(current.id,) if current else (), mentions=mentions,
                                     extractor=EXTRACTOR_VERSION if extracted else None)
        copied += 1
        chunks_total += len(chunks)
    return copied, skipped, chunks_total


__all__ = ["copy_index", "CopyReport"]
