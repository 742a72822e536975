"""peru-qa: cited answers about organized crime in Peru from a collection of documents.

    from peru_qa import KnowledgeBase, retrieve
    kb = KnowledgeBase("path/to/index")
    kb.add(["reports/", "notes.md"])
    kb.retrieve("coca cultivation in the VRAEM", k=5)
    retrieve("extortion of bus drivers in Lima")   # the default index, built from documents/
"""

from __future__ import annotations

from .errors import (
    DocumentNotFound,
    EmptyQueryError,
    ExtractionError,
    IndexBusyError,
    ModelMismatchError,
    PeruQAError,
    UnsupportedFileType,
)
from .kb import AddReport, CheckReport, FileResult, KnowledgeBase, ProgressFn, TextDocument, register_answerer
from .progress import progress_bar
from .retrieval import Filters, FusionParams, Passage

__version__ = "0.1.0"

# The default reader answers `KnowledgeBase.ask` (a plugin-style hook: kb.py does not import the answer layer).
from .answer import Answer, ask  # noqa: E402

register_answerer(ask)


def open_default(model: str | None = None, progress: ProgressFn | None = None) -> KnowledgeBase:
    """The default index (index/ or PERU_QA_INDEX), brought up to date with documents/ first."""
    from .config import default_documents_path

    kb = KnowledgeBase(model=model)
    documents = default_documents_path()
    if documents.is_dir() and kb.is_stale(documents):
        kb.sync_folder(documents, progress=progress or progress_bar())
    # The reader's sentences (and their vectors) for chunks not read yet, so that no question pays for them.
    from .answer import prepare

    prepare(kb, progress=progress or progress_bar(unit="chunk", desc="reading sentences"))
    return kb


def retrieve(query: str, k: int = 5, filters: Filters | dict | None = None, mode: str = "hybrid") -> list[Passage]:
    """Search the default index; for many queries, keep a `KnowledgeBase` open instead."""
    with open_default() as kb:
        return kb.retrieve(query, k=k, filters=filters, mode=mode)


__all__ = [
    "KnowledgeBase", "TextDocument", "Answer", "ask", "register_answerer",
    "Passage", "Filters", "FusionParams", "AddReport", "FileResult", "CheckReport",
    "retrieve", "open_default", "PeruQAError", "ExtractionError", "UnsupportedFileType", "ModelMismatchError",
    "EmptyQueryError", "IndexBusyError", "DocumentNotFound",
]
