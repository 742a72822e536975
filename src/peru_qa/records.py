"""The records every layer shares: a stored document and its chunks, a retrieved passage, search filters, an entry
of the audit log, and the clock that stamps them.

A leaf: it imports nothing of the package but its error classes (errors.py, itself a leaf), so the stores, retrieval,
the readers, the UI and users' code can all use these records without importing one another."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

import numpy as np

from .errors import BadDocumentError, BadFilterError


def now() -> str:
    """The time stamped on documents, index updates and audit entries: UTC, ISO 8601, to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class DocumentRecord:
    id: str
    source: str
    title: str
    language: str
    content_hash: str
    paged: bool
    n_pages: int
    n_chunks: int
    file_size: int | None
    file_mtime: float | None
    added_at: str
    notes: str
    #: Facts about the document as a whole (JSON object in the database), e.g. {"checked": "2026-11"}.
    metadata: dict = field(default_factory=dict)


@dataclass
class Warmed:
    """One part of an index read into memory by `warm` (a file, or a PostgreSQL table or index)."""

    name: str
    size: int  # bytes
    seconds: float
    #: Left out: it would not fit in the memory the server says it caches (PostgreSQL's effective_cache_size).
    skipped: bool = False


@dataclass
class AuditEntry:
    """One change of the index's documents, as the audit log keeps it (both backends)."""

    time: str  # ISO 8601, UTC, to the second
    user: str  # the logged-in user, or "local" (CLI, Python API, a chat without accounts)
    action: str  # added | replaced | removed
    file: str  # the document's source: a file path, or the key of a text added with add_texts
    doc_id: str
    title: str

    def to_dict(self) -> dict:
        return asdict(self)


def audit_action(replace_ids: tuple[str, ...]) -> str:
    """What writing a document records: a new version of one already indexed is a replacement."""
    return "replaced" if replace_ids else "added"


@dataclass
class ChunkRow:
    page: int
    section: str
    start: int
    end: int
    text: str
    terms: list[str]


@dataclass
class MentionRow:
    """A person, organization or place named in a document, as extraction finds it and the stores keep it.

    Offsets are into the page's stored text, like a chunk's `start`/`end`; `chunk` is the index of the document's
    chunk (in `write_document`'s list) that holds it, -1 when none does."""

    page: int
    start: int
    end: int
    text: str
    type: str  # person | organization | place
    #: the canonical name of the entity it refers to, and that name's merge key (`entities.entity_key`)
    entity: str
    key: str
    #: the mention's own surface form, normalised (how a name typed by a user finds it)
    norm: str
    #: the sentence around it, as offsets into the same page text
    sent_start: int
    sent_end: int
    #: "YYYY", "YYYY-MM" or "YYYY-MM-DD": the date the sentence states, else the document's "checked" date
    date: str | None = None
    date_source: str | None = None  # sentence | checked
    chunk: int = -1


@dataclass
class Entity:
    """One entity across the index: merged mentions of its names in either language."""

    name: str
    type: str  # person | organization | place
    #: the other names it appears under (surface forms, Spanish and English)
    aliases: list[str]
    #: the indexed file names of the documents that mention it
    documents: list[str]
    #: how many mentions
    mentions: int
    key: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class EntityMention:
    """Where an entity is named: document, page, the sentence, and the date it carries."""

    doc_id: str
    document: str  # the indexed file name
    title: str
    page: int | None
    start: int
    end: int
    text: str
    sentence: str
    date: str | None = None
    date_source: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class CoMention:
    """Another entity named in the same chunks, and in how many."""

    name: str
    type: str
    count: int
    key: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class EntityDetail:
    """An entity's page: its mentions (a first few hundred), who and what appear with it, and its dated mentions
    counted per date."""

    entity: Entity
    mentions: list[EntityMention]
    co_mentions: list[CoMention]
    #: (date, mentions on that date), oldest first
    timeline: list[tuple[str, int]]
    #: passages (chunks) that name it, and how many of them the co-mention counts were taken over (all of them up
    #: to a few thousand; an even sample beyond, so that the panel stays fast on a large index)
    passages: int = 0
    co_mention_passages: int = 0

    def to_dict(self) -> dict:
        return {"entity": self.entity.to_dict(), "mentions": [m.to_dict() for m in self.mentions],
                "co_mentions": [c.to_dict() for c in self.co_mentions],
                "timeline": [{"date": d, "mentions": n} for d, n in self.timeline], "passages": self.passages,
                "co_mention_passages": self.co_mention_passages}


@dataclass
class Passage:
    """One retrieved chunk, with everything needed to cite and quote it."""

    text: str
    chunk_id: int
    doc_id: str
    title: str
    source: str
    #: Page number in the original PDF; None for formats without pages.
    page: int | None
    section: str
    language: str
    #: Character offsets of `text` in the page's stored text.
    start: int
    end: int
    score: float
    dense_score: float | None = None
    keyword_score: float | None = None
    #: The document's metadata (e.g. {"checked": "2026-11"}) and its page's (e.g. {"ocr": true, "confidence": 88}).
    metadata: dict = field(default_factory=dict)
    page_metadata: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Filters:
    """What a search may look at: documents, languages, and a date range on a document metadata field.

    Dates are compared as ISO prefixes at their common precision, so a document "checked" in "2024-11" falls in
    the range "2024".."2024" and in "2024-11-05".."2025"; a document without the field is left out when a date
    bound is given."""

    doc_ids: list[str] | None = None
    languages: list[str] | None = None
    #: Inclusive bounds, "YYYY", "YYYY-MM" or "YYYY-MM-DD"; None means open on that side.
    date_from: str | None = None
    date_to: str | None = None
    #: Which key of the document's metadata holds its date (the corpus writes "checked" from "Checked:" lines).
    date_field: str = "checked"
    #: Documents that mention any of these entities (names in either language, any alias).
    entities: list[str] | None = None

    def __post_init__(self) -> None:
        for name in ("date_from", "date_to"):
            value = getattr(self, name)
            if value is not None:
                value = str(value).strip()
                if value and not _DATE.fullmatch(value):
                    raise BadFilterError(f"{name.replace('_', ' ')} {value!r} is not a date: use YYYY, YYYY-MM or "
                                     "YYYY-MM-DD")
                setattr(self, name, value or None)
        if not _FIELD.fullmatch(self.date_field):
            raise BadFilterError(f"date field {self.date_field!r} must be a plain metadata key (letters, digits, _)")

    @classmethod
    def coerce(cls, value: Filters | dict | None) -> Filters | None:
        """Accept a Filters, or a dict like {"language": "es", "doc_id": ["a1b2"], "date_from": "2020"}."""
        if value is None or isinstance(value, Filters):
            return value
        if not isinstance(value, dict):
            raise TypeError("filters must be a Filters or a dict")
        known = {"doc_id", "doc_ids", "document", "documents", "language", "languages", "date_from", "date_to",
                 "from", "to", "date_field", "entities", "entity", "mentioning"}
        unknown = set(value) - known
        if unknown:
            raise BadFilterError(f"unknown filter(s) {sorted(unknown)}: use doc_id, language, date_from, date_to, "
                             "date_field and/or mentioning")

        def listify(*keys: str) -> list[str] | None:
            for key in keys:
                if value.get(key) is not None:
                    v = value[key]
                    return [v] if isinstance(v, str) else list(v)
            return None

        def first(*keys: str) -> str | None:
            return next((str(value[k]) for k in keys if value.get(k) not in (None, "")), None)

        return cls(doc_ids=listify("doc_id", "doc_ids", "document", "documents"),
                   languages=listify("language", "languages"), date_from=first("date_from", "from"),
                   date_to=first("date_to", "to"), date_field=str(value.get("date_field") or "checked"),
                   entities=listify("mentioning", "entities", "entity"))

    @property
    def empty(self) -> bool:
        return (self.doc_ids is None and self.languages is None and self.date_from is None and self.date_to is None
                and self.entities is None)

    def date_matches(self, value: str | None) -> bool:
        """Whether a document's date (its metadata field) lies in the range, compared at common precision."""
        if self.date_from is None and self.date_to is None:
            return True
        if not value:
            return False
        value = str(value)
        for bound, ok in ((self.date_from, lambda a, b: a >= b), (self.date_to, lambda a, b: a <= b)):
            if bound is not None:
                n = min(len(value), len(bound))
                if not ok(value[:n], bound[:n]):
                    return False
        return True

    def describe(self, titles: dict[str, str] | None = None) -> str:
        """One line naming the filters that are on ('' when none): shown with answers searched under them."""
        parts = []
        if self.doc_ids is not None:
            names = [(titles or {}).get(d, d) for d in self.doc_ids]
            parts.append(("documents: " if len(names) != 1 else "document: ") + "; ".join(names))
        if self.languages is not None:
            parts.append("language: " + ", ".join(self.languages))
        if self.date_from is not None or self.date_to is not None:
            parts.append(f"{self.date_field}: {self.date_from or '…'} to {self.date_to or '…'}")
        if self.entities is not None:
            parts.append("mentioning: " + "; ".join(self.entities))
        return " · ".join(parts)

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None and not (k == "date_field" and
                                                                               self.date_from is None and
                                                                               self.date_to is None)}


_DATE = re.compile(r"\d{4}(-\d{2}(-\d{2})?)?")
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

def check_document(record: DocumentRecord, chunks: list[ChunkRow], vectors, dimension: int | None,
                   companion=None, companion_dimension: int | None = None) -> None:
    """Refuse, before anything is written, a document whose parts do not fit together or the index: every store
    calls this first, so a bad write fails the same way on both backends with a message that names the problem
    (tests/contract: bad input). `vectors` and `companion` are 2-d float arrays, one row per chunk."""
    if not isinstance(record.title, str):  # "" is a title (a text added without one), None is not
        raise BadDocumentError(f"document {record.source!r} has no title (a string, possibly empty)")
    if not str(record.source or "").strip():
        raise BadDocumentError("a document needs a source (its file path or key)")
    try:
        metadata_ok = isinstance(record.metadata, dict) and bool(json.dumps(record.metadata, allow_nan=False))
    except (TypeError, ValueError):
        metadata_ok = False
    if not metadata_ok:
        raise BadDocumentError(f"metadata of {record.source!r} is not a JSON object: {record.metadata!r}"[:300])
    for name, matrix, dim in (("vectors", vectors, dimension), ("companion vectors", companion, companion_dimension)):
        if matrix is None:
            continue
        shape = getattr(matrix, "shape", ())
        if len(shape) != 2 or shape[0] != len(chunks):
            raise BadDocumentError(f"{record.source!r}: {shape[0] if shape else 0} {name} for {len(chunks)} chunks "
                                   "(one vector per chunk)")
        if dim and shape[1] != dim:
            raise BadDocumentError(f"{record.source!r}: {name} of dimension {shape[1]}, the index holds {dim}-d ones")
        if not np.isfinite(matrix).all():
            raise BadDocumentError(f"{record.source!r}: {name} hold NaN or infinite values")


__all__ = ["DocumentRecord", "ChunkRow", "Warmed", "Passage", "Filters", "AuditEntry", "audit_action", "now",
           "MentionRow", "Entity", "EntityMention", "CoMention", "EntityDetail", "check_document"]
