"""Language detection, keyword analysis (accents, stop words, stemming) and sentence splitting.

Documents and queries go through the same analysis so that a query typed without accents
("mineria") matches text written with them ("minería").
"""

from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass
from functools import cache, lru_cache

import Stemmer
from bm25s.stopwords import STOPWORDS_EN, STOPWORDS_SPANISH

LANGUAGES = ("en", "es")
_STEMMER_NAMES = {"en": "english", "es": "spanish"}
_WORD = re.compile(r"\w+", re.UNICODE)
_SPANISH_MARKS = re.compile(r"[¿¡ñÑ]|ción\b|ciones\b")


def fold(text: str) -> str:
    """Lowercase and strip accents (ñ becomes n too: users type both)."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


@lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    return frozenset(fold(w) for w in (*STOPWORDS_EN, *STOPWORDS_SPANISH))


@lru_cache(maxsize=65536)
def content_words(text: str) -> tuple[str, ...]:
    """Folded words that carry meaning (no stopwords, figures or words under three letters), each once, in order:
    what the reader compares word by word, across languages too (`reader.soft_coverage`; remembered, as the same
    sentences come back question after question)."""
    return tuple(w for w in dict.fromkeys(_WORD.findall(fold(text))) if is_content(w))


def is_content(word: str) -> bool:
    """A folded word that carries meaning: three letters or more, no figure, not a stopword."""
    return len(word) > 2 and word.isalpha() and word not in _stopwords()


@cache
def _stemmer(language: str) -> Stemmer.Stemmer:
    return Stemmer.Stemmer(_STEMMER_NAMES.get(language, "english"))


_LANGID_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def _langid():
    # Loading takes ~0.7 s (an LZMA model): under a lock, or every chat user's first question loads its own copy.
    with _LANGID_LOCK:
        return _load_langid()


@lru_cache(maxsize=1)
def _load_langid():
    import py3langid

    identifier = py3langid.langid.LanguageIdentifier.from_model_file(py3langid.langid.MODEL_FILE)
    identifier.set_languages(list(LANGUAGES))
    return identifier


def detect_language(text: str) -> str:
    """'es' or 'en'. Short text leans on Spanish-only marks before the statistical model."""
    sample = text[:5000]
    if not _WORD.search(sample):
        return "en"
    words = [fold(w) for w in _WORD.findall(sample[:2000])]
    if len(words) < 8:
        if _SPANISH_MARKS.search(sample):
            return "es"
        es_hits = sum(w in _SPANISH_HINTS for w in words)
        en_hits = sum(w in _ENGLISH_HINTS for w in words)
        if es_hits != en_hits:
            return "es" if es_hits > en_hits else "en"
    lang, _ = _langid().classify(sample)
    return lang if lang in LANGUAGES else "en"


# Frequent function words that exist in only one of the two languages (after folding).
_SPANISH_HINTS = frozenset(
    "el la los las del de que en por para con como donde quien quienes cual cuales cuando "
    "que es son esta estan hay se su sus una uno y o pero sobre entre desde hasta mas".split()
)
_ENGLISH_HINTS = frozenset(
    "the of and to in is are was were what who whom which where when how why does do did "
    "with for by from on about into their they them it its this that these those".split()
)


def keyword_tokens(text: str, language: str) -> list[str]:
    """Tokens for the keyword index: folded, stop words removed, stemmed in the text's language."""
    stop = _stopwords()
    words = [w for w in _WORD.findall(fold(text)) if w not in stop]
    return _stemmer(language).stemWords(words)


def query_tokens(query: str) -> list[str]:
    """A query is stemmed in both languages so that names and cognates match either corpus."""
    stop = _stopwords()
    words = [w for w in _WORD.findall(fold(query)) if w not in stop]
    out: list[str] = []
    for language in LANGUAGES:
        for tok in _stemmer(language).stemWords(words):
            if tok not in out:
                out.append(tok)
    return out


@dataclass(frozen=True)
class Span:
    start: int
    end: int


# Abbreviations after which a period does not end a sentence.
_ABBREVIATIONS = frozenset(
    "sr sra srta dr dra lic ing etc p ej vs no nº núm art arts inc ley fig pp vol ed eds "
    "ee uu u s st mr mrs ms prof gen gral cap cf e g i jr co corp dept est aprox".split()
)
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)»\]]*\s+|\n\s*\n|\n(?=\s*(?:[-*•]|\d+[.)])\s)")


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[Span]:
    """Sentence spans in text[start:end], as offsets into text; whitespace is not part of a span."""
    end = len(text) if end is None else end
    spans: list[Span] = []
    pos = start
    for match in _SENTENCE_END.finditer(text, start, end):
        cut = match.start()
        if text[cut] == ".":
            word = re.search(r"(\w+)$", text[pos:cut])
            if word and word.group(1).lower() in _ABBREVIATIONS:
                continue
        piece_end = match.end()
        _add_span(text, pos, piece_end, spans)
        pos = piece_end
    _add_span(text, pos, end, spans)
    return spans


def _add_span(text: str, start: int, end: int, spans: list[Span]) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if end > start:
        spans.append(Span(start, end))
