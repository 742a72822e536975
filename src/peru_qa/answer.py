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
from .records import Filters, Passage
from .sentences import SentenceCache, SentenceStore
from .text import detect_language

if TYPE_CHECKING:
    from .llm import LLMClient

#: Passages retrieved per question; the answer quotes from these. 8, not 6: on the dev questions of
#: tests/data/answers.jsonl the fact is in the top 6 passages for 91/119, in the top 8 for 99/119.
RETRIEVE_K = 8
#: Passages in the other language added to the reader's RETRIEVE_K, taken from the top POOL_K of the same
#: ranking. Keyword search cannot match across languages, so on a bilingual index evidence in the other language
#: ranks low: on the dev questions of tests/data/answers.jsonl whose evidence is only in the other language, the
#: fact was in the top 8 for 0.70 of them, in the top 20 for 0.93 (benchmarks/RESULTS.md, reader section).
#: Dev: top 16 / 24 / 40 → cross-lingual answers 0.64 / 0.67 / 0.67 (6 or 10 extra: the same); extra passages
#: from a dense-only ranking did worse (0.66).
OTHER_LANGUAGE_K = 6
POOL_K = 24
#: Used when the caller passes no cache: sentences of a chunk are read and embedded once per process (and once
#: per index on disk, see sentences.SentenceStore), not once per question.
_SHARED_CACHE = SentenceCache()


class Searchable(Index, Protocol):
    """An index that can also retrieve passages (KnowledgeBase)."""

    def retrieve(self, query: str, k: int = 5, filters: Filters | dict | None = None) -> list[Passage]: ...


def passages_for(kb: Searchable, query: str, k: int = RETRIEVE_K, filters: Filters | dict | None = None,
                 language: str | None = None) -> list[Passage]:
    """The k best passages, then up to OTHER_LANGUAGE_K more in languages other than the question's from the top
    POOL_K of the same ranking (unless the caller filtered by language)."""
    filt = Filters.coerce(filters)
    if OTHER_LANGUAGE_K <= 0 or (filt is not None and filt.languages):
        return kb.retrieve(query, k=k, filters=filt)
    language = language or detect_language(query)
    pool = kb.retrieve(query, k=max(k, POOL_K), filters=filt)
    extra = [p for p in pool[k:] if p.language != language][:OTHER_LANGUAGE_K]
    return pool[:k] + extra


def gather(kb: Searchable, question: str, history: Sequence[Any] | None = None, *, k: int = RETRIEVE_K,
           cache: SentenceCache | None = None, filters: Filters | dict | None = None) -> Evidence:
    """Retrieve passages for the (rewritten) question and score their sentences (no text written yet)."""
    query = rewrite_query(question, history)
    passages = passages_for(kb, query, k, filters, detect_language(question))
    return ExtractiveReader(kb, cache or _SHARED_CACHE).evidence(question, passages, query=query)


def stream(kb: Searchable, question: str, history: Sequence[Any] | None = None, *,
           llm: LLMClient | bool | None = None, k: int = RETRIEVE_K,
           cache: SentenceCache | None = None, filters: Filters | dict | None = None) -> Iterator[str | Answer]:
    """Yield the answer's text as it grows (str), then the final Answer.

    `llm=None` uses the language model configured by PERU_QA_LLM_URL, if any; `llm=False` never does.
    The final Answer's text may differ from the streamed text: invalid markers are dropped, and a failed
    language model is replaced by the extractive answer."""
    if llm is None:
        from .llm import LLMClient

        llm = LLMClient.from_env()
    query = rewrite_query(question, history)
    passages = passages_for(kb, query, k, filters, detect_language(question))
    cache = cache or _SHARED_CACHE
    reader = LLMReader(kb, llm, cache) if llm else ExtractiveReader(kb, cache)
    for event in reader.stream(question, passages, query=query, history=history):
        if isinstance(event, Answer):
            if not event.abstained:
                event.unmatched = unmatched_names(kb, event.question, event.citations, event.language)
        yield event


def prepare(kb: Any, progress: Any = None, batch: int = 128) -> int:
    """Read and embed the sentences of every chunk of `kb` that the index's sentence store lacks, so that no
    question pays for them (the chat app and benchmarks call this once; answers work without it). Returns the
    number of chunks prepared."""
    import json

    from .reader import sentences_for
    from .text import content_words

    store = _SHARED_CACHE.store_for(kb.path)
    ids = [int(i) for i in kb.store.chunk_ids()]
    known: set[int] = set()
    vocabulary: dict[str, None] = {}  # every content word of the index's sentences, for `prepare_words`
    for start in range(0, len(ids), 500):
        found = store.get_many(kb.model_name, ids[start:start + 500])
        known |= set(found)
        vocabulary.update(dict.fromkeys(w for infos, _ in found.values() for info in infos
                                        for w in content_words(info.text)))
    todo = [i for i in ids if i not in known]
    for done in range(0, len(todo), batch):
        if progress:
            progress(done, len(todo), "reading sentences")
        rows = kb.store.chunk_rows(todo[done:done + batch])
        passages = [Passage(text=r["text"], chunk_id=cid, doc_id=r["doc_id"], title=r["title"], source=r["source"],
                            page=r["page"] if r["paged"] else None, section=r["section"], language=r["language"],
                            start=r["start"], end=r["end"], score=0.0, metadata=json.loads(r["doc_metadata"]))
                    for cid, r in rows.items()]
        for infos, _ in sentences_for(kb, passages, _SHARED_CACHE, batch_size=32):
            vocabulary.update(dict.fromkeys(w for info in infos for w in content_words(info.text)))
    if progress and todo:
        progress(len(todo), len(todo), "done")
    prepare_words(kb, store, list(vocabulary), progress, batch * 4)
    return len(todo)


def prepare_words(kb: Any, store: SentenceStore, words: list[str], progress: Any = None, batch: int = 512) -> int:
    """Embed, once, the `words` (content words of the index's sentences) that the store lacks: the reader compares
    the question's words with them (`reader.soft_coverage`). Returns the number of words embedded."""
    known = store.known_words(kb.model_name, words)
    todo = [w for w in words if w not in known]
    for done in range(0, len(todo), batch):
        if progress:
            progress(done, len(todo), "embedding words")
        part = todo[done:done + batch]
        store.put_words(kb.model_name, dict(zip(part, kb.embedder.encode(part, kind="query", batch_size=128))))
    if progress and todo:
        progress(len(todo), len(todo), "done")
    return len(todo)


def ask(kb: Searchable, question: str, history: Sequence[Any] | None = None, *,
        llm: LLMClient | bool | None = None, k: int = RETRIEVE_K, cache: SentenceCache | None = None,
        filters: Filters | dict | None = None) -> Answer:
    """Answer `question` from the indexed documents, citing each statement; see `stream` for streaming."""
    answer = None
    for event in stream(kb, question, history, llm=llm, k=k, cache=cache, filters=filters):
        if isinstance(event, Answer):
            answer = event
    assert answer is not None
    return answer


__all__ = ["Answer", "Quote", "Evidence", "Retrieved", "SentenceCache", "ask", "stream", "gather", "prepare",
           "rewrite_query",
           "is_follow_up", "history_questions", "unmatched_names", "Calibration", "CALIBRATIONS",
           "calibration_for", "ABSTAIN_TEXT", "EMPTY_INDEX_TEXT", "MAX_SENTENCES", "CLOSEST_K", "RETRIEVE_K"]
