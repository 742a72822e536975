"""Cited answers: retrieve passages for a (possibly follow-up) question and hand them to a reader.

The default reader is extractive (reader.ExtractiveReader), so it works offline and every quoted sentence is a
verbatim substring of its source page. When `PERU_QA_LLM_URL` is set (see `llm.py`), a language model writes the
answer from the same passages instead (reader.LLMReader), and falls back to the extractive answer when it fails.

`KnowledgeBase.ask` reaches this module through a hook registered by the package (`peru_qa/__init__.py`), so
kb.py never imports the answer layer.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from .answer_types import Answer, Evidence, Quote, Retrieved
from .conversation import history_questions, is_follow_up, rewrite_query
from .reader import (
    ABSTAIN_TEXT,
    CALIBRATIONS,
    CLOSEST_K,
    EMPTY_INDEX_TEXT,
    MAX_SENTENCES,
    Calibration,
    ExtractiveReader,
    Index,
    LLMReader,
    calibration_for,
    unmatched_names,
)
from .retrieval import Passage
from .sentences import SentenceCache

if TYPE_CHECKING:
    from .llm import LLMClient

#: Passages retrieved per question; the answer quotes from these.
RETRIEVE_K = 6


class Searchable(Index, Protocol):
    """An index that can also retrieve passages (KnowledgeBase)."""

    def retrieve(self, query: str, k: int = 5) -> list[Passage]: ...


def gather(kb: Searchable, question: str, history: Sequence[Any] | None = None, *, k: int = RETRIEVE_K,
           cache: SentenceCache | None = None) -> Evidence:
    """Retrieve passages for the (rewritten) question and score their sentences (no text written yet)."""
    query = rewrite_query(question, history)
    passages = kb.retrieve(query, k=k)
    return ExtractiveReader(kb, cache).evidence(question, passages, query=query)


def stream(kb: Searchable, question: str, history: Sequence[Any] | None = None, *,
           llm: LLMClient | bool | None = None, k: int = RETRIEVE_K,
           cache: SentenceCache | None = None) -> Iterator[str | Answer]:
    """Yield the answer's text as it grows (str), then the final Answer.

    `llm=None` uses the language model configured by PERU_QA_LLM_URL, if any; `llm=False` never does.
    The final Answer's text may differ from the streamed text: invalid markers are dropped, and a failed
    language model is replaced by the extractive answer."""
    if llm is None:
        from .llm import LLMClient

        llm = LLMClient.from_env()
    query = rewrite_query(question, history)
    passages = kb.retrieve(query, k=k)
    reader = LLMReader(kb, llm, cache) if llm else ExtractiveReader(kb, cache)
    for event in reader.stream(question, passages, query=query, history=history):
        if isinstance(event, Answer):
            if not event.abstained:
                event.unmatched = unmatched_names(kb, event.question, event.citations, event.language)
        yield event


def ask(kb: Searchable, question: str, history: Sequence[Any] | None = None, *,
        llm: LLMClient | bool | None = None, k: int = RETRIEVE_K, cache: SentenceCache | None = None) -> Answer:
    """Answer `question` from the indexed documents, citing each statement; see `stream` for streaming."""
    answer = None
    for event in stream(kb, question, history, llm=llm, k=k, cache=cache):
        if isinstance(event, Answer):
            answer = event
    assert answer is not None
    return answer


__all__ = ["Answer", "Quote", "Evidence", "Retrieved", "SentenceCache", "ask", "stream", "gather", "rewrite_query",
           "is_follow_up", "history_questions", "unmatched_names", "Calibration", "CALIBRATIONS",
           "calibration_for", "ABSTAIN_TEXT", "EMPTY_INDEX_TEXT", "MAX_SENTENCES", "CLOSEST_K", "RETRIEVE_K"]
