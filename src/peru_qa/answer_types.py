"""What answering produces: `Answer` (text + the passages its [n] markers point to) and `Evidence` (what
retrieval and reading found before any text is written).

A leaf module: it imports nothing of kb, reader or llm, so the CLI, the app, the readers and users' code can all
depend on it without import cycles.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .records import Passage


@dataclass
class Quote:
    """One quoted sentence: a verbatim slice page_text[start:end] of the passage cited as [n]."""

    text: str
    n: int
    start: int
    end: int


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
    #: How well the best answer-bearing sentence matched the question (compared to the calibrated threshold).
    support: float = 0.0
    #: Names and numbers of the question that none of the cited passages contains ("Arequipa" when the
    #: sources give national figures): the answer may be about something close to, not exactly, what was asked.
    unmatched: list[str] = field(default_factory=list)
    #: The quoted sentences of an extractive answer, in the order of `text` (empty for LLM answers).
    quotes: list[Quote] = field(default_factory=list)
    #: One line, in the question's language, saying that quoted sources are in the other language ('' if not).
    language_note: str = ""
    #: One line saying that the cited sources give different values for the asked figure, citing each ('' if not).
    conflict: str = ""
    #: What the question asks for: quantity, date, who, place, definition, reason, law or other.
    asks: str = "other"
    #: Set when the answer quotes the closest statements but none clearly states what was asked.
    hedge: str = ""
    #: The short answer the text opens with, one line ("**92.784 hectáreas** en 2023 (DEVIDA) [1]"), when the
    #: question asks for a number, date, name or place and the opening quote holds one of that kind ('' if not).
    short: str = ""

    @property
    def caveat(self) -> str:
        """What the sources lack, as one line in the question's language ('' when there is nothing to say): the
        reader's hedge (no sentence clearly states what was asked) and the question's names no source mentions."""
        lines = [self.hedge] if self.hedge else []
        if self.unmatched:
            names = ", ".join(self.unmatched)
            lines.append(f"Las fuentes citadas no mencionan: {names}." if self.language == "es"
                         else f"The cited sources do not mention: {names}.")
        return " ".join(lines)

    def to_dict(self) -> dict:
        return {
            "question": self.question, "text": self.text, "abstained": self.abstained,
            "language": self.language, "query": self.query, "mode": self.mode, "notice": self.notice,
            "flagged": self.flagged, "support": round(self.support, 4), "unmatched": self.unmatched,
            "asks": self.asks, "hedge": self.hedge, "language_note": self.language_note, "conflict": self.conflict,
            "short": self.short,
            "quotes": [{"text": q.text, "n": q.n, "start": q.start, "end": q.end} for q in self.quotes],
            "citations": [{"n": n, **p.to_dict()} for n, p in enumerate(self.citations, 1)],
        }


@dataclass
class Sentence:
    """A quotable sentence of a retrieved passage and how well it answers the question."""

    passage: int  # index into Evidence.passages
    start: int  # offsets in the page text
    end: int
    text: str
    vector: np.ndarray
    tokens: frozenset[str]
    language: str
    #: Kinds of answer the sentence carries ("quantity", "date", "who", "place", "definition", "reason").
    carries: frozenset[str] = frozenset()
    #: Its subject or time sits in the sentence before ("ese mismo mes", "The group").
    leans_back: bool = False
    dense: float = 0.0
    lexical: float = 0.0
    score: float = 0.0
    #: It carries the kind of answer asked, about the question's subject.
    answers: bool = False
    #: One of the question's names or numbers is in it, in the sentence it leans on, or in its passage's title.
    about: bool = True
    #: What the sentence ranker sees (reader.RANK_FEATURES order) and its output: the order in which sentences are
    #: quoted. `score` stays the calibrated support (abstention, caveat); `rank` only orders.
    features: tuple[float, ...] = ()
    rank: float = 0.0
    #: The cross-encoder's score of the sentence as an answer to the question (cross_encoder.py), when it read it.
    reading: float | None = None


@dataclass
class Evidence:
    """What retrieval and reading found for a question, before any text is written."""

    question: str
    query: str
    language: str
    passages: list[Passage]
    sentences: list[Sentence]
    support: float
    threshold: float
    asks: str = "other"
    #: How close the closest sentence is to the question at all (see reader.Calibration.relevance); below
    #: `relevance_floor` the documents are about something else and the answer abstains.
    relevance: float = 1.0
    relevance_floor: float | None = None
    #: Share of the question's content words that no indexed chunk contains ("tomates", "maceta" in a corpus on
    #: organized crime): with a middling relevance, the question is about something else.
    unknown_words: float = 0.0
    off_topic: bool = False
    #: Sentences carry a fitted ranker's `rank` (reader.ranker_for): quote in that order.
    ranked: bool = False
    #: A quantity was asked and the opening sentence gives a figure of something else ("dollars" for "tonnes").
    uncounted: bool = False

    @property
    def answerable(self) -> bool:
        """Whether to answer at all: the question is about what the documents cover."""
        if not self.passages:
            return False
        if self.relevance_floor is None:  # a model without a relevance calibration: support decides
            return self.support >= self.threshold
        return self.relevance >= self.relevance_floor and not self.off_topic

    @property
    def confident(self) -> bool:
        """Whether a sentence carries the kind of answer asked, about the question's subject, strongly enough to
        answer without a caveat."""
        return self.answerable and self.support >= self.threshold and not self.uncounted


#: The old name (benchmarks and users' code).
Retrieved = Evidence

__all__ = ["Answer", "Quote", "Sentence", "Evidence", "Retrieved"]
