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


def open_default(model: str | None = None, progress: ProgressFn | None = None, *,
                 answers: bool = False) -> KnowledgeBase:
    """The default index (index/ or PERU_QA_INDEX), brought up to date with documents/ first (and given the
    English companion vectors it lacks if it was built before them).

    `answers=True` also reads the sentences of every chunk for the reader (what the chat and `ask` do), so that
    no question pays for them; retrieval alone does not need it."""
    from .config import default_documents_path

    kb = KnowledgeBase(model=model)
    documents = default_documents_path()
    if documents.is_dir() and kb.is_stale(documents):
        kb.sync_folder(documents, progress=progress or progress_bar())
    if kb.lacks_companion:
        kb.rebuild(progress=progress or progress_bar(unit="chunk", desc="adding English vectors"))
    if answers:
        prepare_answers(kb, progress)
    return kb


def prepare_answers(kb: KnowledgeBase, progress: ProgressFn | None = None) -> int:
    """Read and embed, once, the sentences of the chunks the reader has not seen (see `answer.prepare`)."""
    from .answer import prepare

    return prepare(kb, progress=progress or progress_bar(unit="chunk", desc="reading sentences"))


def retrieve(query: str, k: int = 5, filters: Filters | dict | None = None, mode: str = "hybrid") -> list[Passage]:
    """Search the default index; for many queries, keep a `KnowledgeBase` open instead."""
    with open_default() as kb:
        return kb.retrieve(query, k=k, filters=filters, mode=mode)


__all__ = [
    "KnowledgeBase", "TextDocument", "Answer", "ask", "register_answerer",
    "Passage", "Filters", "FusionParams", "AddReport", "FileResult", "CheckReport",
    "retrieve", "open_default", "prepare_answers", "PeruQAError", "ExtractionError", "UnsupportedFileType",
    "ModelMismatchError",
    "EmptyQueryError", "IndexBusyError", "DocumentNotFound",
]
