"""The short answer an extractive answer opens with: when the question asks for a number, a date, a name or a place
and the opening quote holds exactly one of that kind about the question's subject, one line gives it before the
quotes ("**92,784 hectares** in 2023 (DEVIDA) [1]"); otherwise there is no line.

It only reads what the reader already knows about a sentence (sentences.py: its quantities, its dates found by
dateparser, its names) and takes the value verbatim from the quoted sentence, so the line never says more than the
quote under it. When a sentence holds several values of the asked kind and nothing tells which one is asked (the
counted noun for "how many", a role word for "who", a place preposition for "where"), no line is shown: a short
answer is only worth showing when it is the right one (benchmarks/reader.py measures how often it is shown and how
often it holds the gold answer).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .questions import Question, counted, states_counted
from .sentences import _ACRONYM, _LEGAL_NUMBER, _NAME, _YEAR, _dates, months
from .text import _stopwords, fold, keyword_tokens

#: Whether a window of a sentence states what a quantity question counts ("homicidios" / "2,126 homicides"): the
#: reader passes one that also reads translations (reader.names_counted).
Counts = Callable[[str, str], bool]

#: Kinds of question that get a short answer.
SHORT_KINDS = frozenset({"quantity", "date", "who", "place"})

_SCALE = r"(?:\s+(?:million|millions|billion|billions|thousand|trillion|mil millones|millones|millón|millon|mil|bn|m))?"
#: Spelled-out counts ("seven police officers", "nueve policías"); "one"/"uno" is too often not a count.
_COUNT_WORDS = (r"two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|"
                r"seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|hundreds|thousands|dozens|dos|tres|cuatro|"
                r"cinco|seis|siete|ocho|nueve|diez|once|doce|trece|catorce|quince|dieciséis|diecisiete|dieciocho|"
                r"diecinueve|veinte|treinta|cuarenta|cincuenta|cientos|miles|decenas|docenas")
#: What precedes a figure and belongs to it: "more than 70,000", "unas 900 hectáreas", "around 250".
_QUALIFIER = (r"(?:(?:more than|over|about|around|nearly|almost|some|roughly|approximately|at least|up to|fewer than|"
              r"less than|más de|menos de|unos|unas|cerca de|alrededor de|casi|hasta|aproximadamente|al menos)\s+)?")
_AMOUNT = re.compile(_QUALIFIER + r"(?:(?:(?:US\$|USD|S/\.?|\$|€|£)\s?)?(?<![\w.,-])\d[\d.,]*(?<![.,])"
                     r"(?:[ \u00a0\u202f]\d{3}(?!\d))*(?:\s?%)?"
                     + _SCALE + r"(?![\w-])|\b(?:" + _COUNT_WORDS + r")\b)", re.IGNORECASE)
#: Up to three lowercase words after a figure say what it counts ("hectares", "private dwellings", "toneladas"),
#: up to the first stop word or punctuation.
_UNIT_WORD = re.compile(r"[ \t]+([a-záéíóúñü]+)")
_PERCENT = re.compile(r"%|\bpercent|\bper cent|\bpor ciento")
#: Whole dates the way briefs and XQuAD write them ("7 de octubre de 2018", "12 September 1992", "March 3, 2015",
#: "marzo de 2025"), beside dateparser's phrases, which sometimes stop at the year.
_MONTH_NAMES = ("january|february|march|april|may|june|july|august|september|october|november|december|enero|"
                "febrero|marzo|abril|mayo|junio|julio|agosto|septiembre|setiembre|octubre|noviembre|diciembre")
_FULL_DATE = re.compile(rf"\b(?:\d{{1,2}}(?:\s+de)?\s+(?:{_MONTH_NAMES})(?:\s+de)?,?\s+\d{{4}}|(?:{_MONTH_NAMES})\s+"
                        rf"\d{{1,2}},\s+\d{{4}}|(?:{_MONTH_NAMES})(?:\s+de)?\s+\d{{4}}|\d{{1,2}}(?:\s+de)?\s+"
                        rf"(?:{_MONTH_NAMES}))\b", re.IGNORECASE)
_SOURCE = re.compile(r"\b(?i:according to|as reported by|reported by|estimated by|según|de acuerdo con)\s+"
                     r"(?i:the\s+|el\s+|la\s+)?"
                     r"([A-ZÁÉÍÓÚÑ][\w-]+(?:\s+[A-ZÁÉÍÓÚÑ][\w-]+){0,3})")
_SUBJECT = re.compile(r"[\s\"“«(]*([A-ZÁÉÍÓÚÑ]{3,})\b(?!\s*[-–:])")
_ROLE_BEFORE = re.compile(r"(?:led by|headed by|founded by|run by|alias|known as|leader|boss|founder|chief|"
                          r"commander|president|minister|prosecutor|judge|director|dirigid[oa] por|liderad[oa] por|"
                          r"fundad[oa] por|conocido como|lider|líder|jefe|cabecilla|fundador|presidente|ministro|"
                          r"fiscal|juez|by|por)[\s\"“«]+(?:the\s+|el\s+|la\s+|los\s+|las\s+)?$", re.IGNORECASE)
_PLACE_BEFORE = re.compile(r"(?:\bin|\bat|\bnear|\bfrom|\binto|\ben|\bcerca de|\bdesde|\bhacia)\s+"
                           r"(?:the\s+|el\s+|la\s+|los\s+|las\s+)?$", re.IGNORECASE)
_OF_NAME = re.compile(r"\s+of\s+(?:the\s+)?[A-ZÁÉÍÓÚÑ][\w-]+(?:\s+[A-ZÁÉÍÓÚÑ][\w-]+)*")
_WEEKDAYS_MONTHS = frozenset(fold(w) for w in (
    "monday tuesday wednesday thursday friday saturday sunday lunes martes miércoles jueves viernes sábado domingo "
    "january february march april may june july august september october november december enero febrero marzo "
    "abril mayo junio julio agosto septiembre setiembre octubre noviembre diciembre").split())


def _blank(text: str, spans: list[tuple[int, int]]) -> str:
    """The text with the spans blanked out (same length, so offsets hold)."""
    chars = list(text)
    for a, b in spans:
        chars[a:b] = " " * (b - a)
    return "".join(chars)


def _date_spans(text: str, language: str) -> list[tuple[int, int, str]]:
    out = []
    for phrase in _dates(text, language):
        at = text.find(phrase)
        if at >= 0:
            out.append((at, at + len(phrase), phrase))
    return out


def _unit_end(text: str, end: int) -> int:
    for _ in range(3):
        word = _UNIT_WORD.match(text, end)
        if not word or fold(word.group(1)) in _stopwords() or len(word.group(1)) < 3:
            break
        end = word.end()
    return end


def _near_question(text: str, a: int, b: int, question: Question) -> int:
    """How many of the question's words sit within eight words of text[a:b] ("10,923 came from banks")."""
    window = " ".join(re.findall(r"\w+", text[:a])[-8:] + re.findall(r"\w+", text[b:])[:8])
    stems = set(keyword_tokens(window, "en")) | set(keyword_tokens(window, "es"))
    return sum(1 for word in question.words if word & stems)


def quantity(text: str, language: str, question: Question, counts: Counts | None = None) -> str:
    """The figure of `text` that answers a quantity question, with what it counts ("92,784 hectares", "more than
    70,000 works", "siete policías"), or ''. Several figures: those that state what the question counts (`counts`
    also reads translations), then the one nearest the question's other words; a tie shows nothing."""
    dates = _date_spans(text, language)
    legal = [(m.start(), m.end()) for m in _LEGAL_NUMBER.finditer(text)]
    rest = _blank(text, [(a, b) for a, b, _ in dates] + legal)
    asked = fold(question.text)
    found = []
    for match in _AMOUNT.finditer(rest):
        value = match.group().strip()
        bare = re.sub(r"^\D+", "", value) or value
        if _YEAR.fullmatch(bare):
            continue
        if re.search(rf"(?<![\w.,]){re.escape(fold(bare))}(?![\w.,])", asked):
            continue  # the question's own number
        end = match.end() if "%" in value else _unit_end(rest, match.end())
        found.append((match.start(), end))
    if not found:
        return ""
    what = counted(question.text)
    if what == "%":
        chosen = [(a, b) for a, b in found if _PERCENT.search(text[a:b + 12])]
    elif what:
        test = counts or states_counted
        chosen = [(a, b) for a, b in found if test(what, text[a:b + 30])]
    else:
        chosen = []
    if not chosen:
        chosen = found if len(found) == 1 else []
    if len(chosen) > 1:
        near = [_near_question(text, a, b, question) for a, b in chosen]
        best = max(near)
        chosen = [c for c, n in zip(chosen, near) if n == best]
    if len(chosen) != 1:
        return ""
    a, b = chosen[0]
    return text[a:b].strip()


def date(text: str, language: str, question: Question) -> str:
    """The date of `text` that answers a "when" question ("7 de octubre de 2018", "April 2024"), or ''."""
    asked_years = set(_YEAR.findall(question.text))
    candidates = []
    for _, _, phrase in _date_spans(text, language):
        phrase = re.sub(r"^(?:in|on|since|by|from|en|el|desde|de)\s+|\s+(?:and|or|y|e|o|to|a)$", "",
                        phrase.strip(" ,.;"), flags=re.IGNORECASE).strip(" ,.;")
        years = set(_YEAR.findall(phrase))
        if not phrase or (years and years <= asked_years and not months(phrase) - months(question.text)):
            continue
        if phrase not in candidates:
            candidates.append(phrase)
    for match in _FULL_DATE.finditer(text):
        phrase = match.group()
        if phrase not in candidates and not (set(_YEAR.findall(phrase)) <= asked_years and
                                             not months(phrase) - months(question.text)):
            candidates.append(phrase)
    if not candidates:
        years = [y for y in dict.fromkeys(_YEAR.findall(text)) if y not in asked_years]
        candidates = years
    if len(candidates) != 1:
        # Several dates: one whose year is not a part of another ("2018" in "7 de octubre de 2018").
        whole = [c for c in candidates if not any(c != o and c in o for o in candidates)]
        if len(whole) != 1:
            return ""
        candidates = whole
    return candidates[0]


def _new_names(text: str, question: Question) -> list[tuple[int, int]]:
    """Names and acronyms of `text` that the question does not give (not a month or a weekday), as spans."""
    given = question.names | {w for stems in question.words for w in stems}
    asked = fold(question.text)
    spans = []
    opening = [m for m in _NAME.finditer(text) if m.start() == 0 and len(m.group().split()) >= 2][:1]
    for m in opening + list(_NAME.finditer(text, 1)) + list(_ACRONYM.finditer(text)):
        a, b = m.start(), m.end()
        tail = _OF_NAME.match(text, b)  # "Parliament of Victoria", "Bank of England"
        if tail:
            b = tail.end()
        words = [fold(w) for w in re.findall(r"\w+", text[a:b])]
        content = [w for w in words if w not in ("de", "del", "la", "los", "las", "the")]
        if not content or all(w in _WEEKDAYS_MONTHS for w in content):
            continue
        if any(w in given or re.search(rf"\b{re.escape(w)}\b", asked) for w in content):
            continue
        if any(x <= a and b <= y for x, y in spans):
            continue
        spans.append((a, b))
    return sorted(spans)


def name(text: str, question: Question, kind: str) -> str:
    """The name of `text` that answers a "who" (or "where") question, or '': the only new name, else the only one
    after a role word ("led by", "alias", "líder") or, for places, after a place preposition ("in", "en")."""
    spans = _new_names(text, question)
    if kind == "place":
        spans = [(a, b) for a, b in spans if not _ACRONYM.fullmatch(text[a:b]) or len(spans) == 1]
        cue = _PLACE_BEFORE
    else:
        cue = _ROLE_BEFORE
    if len(spans) > 1:  # the first after a cue ("led by Carlos Arteaga, alias…")
        spans = [(a, b) for a, b in spans if cue.search(text[max(0, a - 40):a])][:1]
    if len(spans) != 1:
        return ""
    a, b = spans[0]
    return text[a:b].strip()


def short_value(kind: str, text: str, language: str, question: Question, counts: Counts | None = None) -> str:
    if kind == "quantity":
        return quantity(text, language, question, counts)
    if kind == "date":
        return date(text, language, question)
    if kind in ("who", "place"):
        return name(text, question, kind)
    return ""


def short_line(kind: str, text: str, language: str, question: Question, n: int, counts: Counts | None = None) -> str:
    """"**value** [context] [n]", or '' when `text` holds no single value of the asked kind. A figure gets its year
    and its source when the sentence names them ("**92,784 hectares** in 2023 (DEVIDA) [1]")."""
    if kind not in SHORT_KINDS:
        return ""
    value = short_value(kind, text, language, question, counts)
    if not value:
        return ""
    context = ""
    if kind == "quantity":
        years = [y for y in dict.fromkeys(_YEAR.findall(text)) if y not in value]
        if len(years) == 1:
            context += f" {'en' if language == 'es' else 'in'} {years[0]}"
        source = _SOURCE.search(text)
        subject = _SUBJECT.match(text)  # "DEVIDA counted…": who counted
        if source and source.group(1) not in value:
            context += f" ({source.group(1)})"
        elif subject and subject.group(1) not in value:
            context += f" ({subject.group(1)})"
    return f"**{value}**{context} [{n}]"


__all__ = ["SHORT_KINDS", "short_line", "short_value"]
