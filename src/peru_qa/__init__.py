"""peru-qa: cited answers about organized crime in Peru from a collection of documents.

    from peru_qa import KnowledgeBase, retrieve
    kb = KnowledgeBase("path/to/index")
    kb.add(["reports/", "notes.md"])
    kb.retrieve("coca cultivation in the VRAEM", k=5)
    retrieve("extortion of bus drivers in Lima")   # the default index, built from documents/
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

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
from .records import Entity, EntityDetail, Filters, Passage
from .retrieval import FusionParams

__version__ = "0.1.0"

# The default reader answers `KnowledgeBase.ask` (a plugin-style hook: kb.py does not import the answer layer).
from .answer import Answer, ask  # noqa: E402

register_answerer(ask)


def open_default(model: str | None = None, progress: ProgressFn | None = None, *,
                 answers: bool = False) -> KnowledgeBase:
    """The default index (index/ or PERU_QA_INDEX), brought up to date with documents/ first (and given the
    English companion vectors and the entities it lacks if it was built before them).

    `answers=True` also reads the sentences of every chunk for the reader (what `ask` does), so that no question
    pays for them; retrieval alone does not need it. The chat does the same work in the background instead
    (`startup.Startup`), so that its page is served at once."""
    from .config import default_documents_path

    kb = KnowledgeBase(model=model)
    bring_up_to_date(kb, default_documents_path(), progress, answers=answers)
    return kb


def bring_up_to_date(kb: KnowledgeBase, documents: str | Path | None = None, progress: ProgressFn | None = None,
                     *, answers: bool = False, phase: Callable[[str], None] | None = None) -> None:
    """What an index needs before it answers as well as it can: `documents` (a folder) synced into it, the
    companion vectors an older index lacks, and with `answers` the reader's sentences. Each step is skipped when
    there is nothing to do; `phase` hears the name of each step that runs ("documents", "companion", "entities",
    "sentences"), so that a caller doing this in the background can say what is going on."""
    if documents is not None and Path(documents).is_dir() and kb.is_stale(documents):
        if phase:
            phase("documents")
        kb.sync_folder(documents, progress=progress or progress_bar())
    if kb.lacks_companion:
        if phase:
            phase("companion")
        kb.rebuild(progress=progress or progress_bar(unit="chunk", desc="adding English vectors"))
    if kb.lacks_entities:  # an index built before entity extraction (issue 33)
        if phase:
            phase("entities")
        kb.extract_entities(progress=progress or progress_bar(unit="document", desc="reading names"))
    if answers:
        if phase:
            phase("sentences")
        prepare_answers(kb, progress)


def prepare_answers(kb: KnowledgeBase, progress: ProgressFn | None = None) -> int:
    """Read and embed, once, the sentences of the chunks the reader has not seen (see `answer.prepare`): answers
    work without it, but the first question about each passage would pay for it."""
    from .answer import prepare

    return prepare(kb, progress=progress or progress_bar(unit="chunk", desc="reading sentences"))


def retrieve(query: str, k: int = 5, filters: Filters | dict | None = None, mode: str = "hybrid") -> list[Passage]:
    """Search the default index; for many queries, keep a `KnowledgeBase` open instead."""
    with open_default() as kb:
        return kb.retrieve(query, k=k, filters=filters, mode=mode)


__all__ = [
    "KnowledgeBase", "TextDocument", "Answer", "ask", "register_answerer",
    "Passage", "Filters", "FusionParams", "AddReport", "FileResult", "CheckReport", "Entity", "EntityDetail",
    "retrieve", "open_default", "bring_up_to_date", "prepare_answers", "PeruQAError", "ExtractionError",
    "UnsupportedFileType", "ModelMismatchError",
    "EmptyQueryError", "IndexBusyError", "DocumentNotFound",
]
