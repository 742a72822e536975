"""The quotable sentences of a passage and what each one carries, computed once per chunk and cached.

A sentence is quotable when it is prose: not a heading, a metadata line ("Written: November 2026. Based on
public sources up to 2025."), a figure or table caption, a table-of-contents line, a PDF running header or
footer ("Page 2 of 5"), or a reference list entry. Spans are offsets into the page text, so every quote is a
verbatim slice of its page.

What a sentence carries (a number, a date, a name, a place, a definition, a reason) is found here, once, so
that a question only compares labels. Dates come from `dateparser` (its search handles Spanish and English
dates such as "22 de octubre de 2025" and "in April 2024"); it costs 2-30 ms per sentence, which is why it only
runs on sentences that have a digit or a month name, and only once per chunk (SentenceCache).
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from syntok import segmenter as syntok_segmenter

from .text import Span, _stopwords, fold, keyword_tokens, split_sentences

_MIN_SENTENCE_CHARS = 30
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
#: A markdown run-in heading ("**VRAEM.** The valley…"): not quoted, though its names still tell what the
#: sentence is about.
_RUN_IN = re.compile(r"(?:\*\*|__)[^*_\n]{1,80}(?:\*\*|__)[.:]?[ \t]+(?=\S)")
_SOURCE_HEADINGS = frozenset({"sources", "fuentes", "references", "referencias", "bibliografia", "bibliography",
                              "notes", "notas", "further reading", "lecturas"})
#: A line that does not end like a sentence: a heading (new section).
_HEADING_LIKE = re.compile(r"[^.!?…:;)\]\"'”»]\s*$")
#: Lines that describe the document, not its subject.
_METADATA_LINE = re.compile(
    r"^[\s*_>#-]*(written|redactado|escrito|checked|revisado|updated|actualizado|last updated|"
    r"ultima actualizacion|based on|basado en|prepared by|elaborado por|author|autor|date|fecha|version|"
    r"status|estado del documento)\b[^\n]{0,80}?(:|public sources|fuentes publicas)", re.IGNORECASE)
#: "Page 2 of 5", "Página 3", "- 4 -", a bare page number: running footers of PDFs.
_FOOTER_LINE = re.compile(
    r"^\s*(?:(?:page|pagina|pag\.?|p\.)\s*\d+(?:\s*(?:of|de|/)\s*\d+)?|[-–]?\s*\d{1,4}\s*[-–]?)\s*$", re.IGNORECASE)
#: "Figure 2:", "Cuadro 1.", "Source: …": captions and table notes.
_CAPTION_LINE = re.compile(r"^\s*[*_]*(figure|fig\.|figura|table|tabla|cuadro|grafico|chart|map|mapa|"
                           r"illustration|ilustracion|photo|foto|source|fuente|nota|note)\s*\d*\s*[:.]", re.IGNORECASE)
#: Dot leaders or a trailing page number after a gap: a table-of-contents line.
_TOC_LINE = re.compile(r"(\.{4,}|…{2,}|\s{3,})\s*\d{1,4}\s*$|^\s*(contents|contenido|indice|table of contents)\s*$",
                       re.IGNORECASE)
_URL = re.compile(r"https?://|www\.", re.IGNORECASE)
#: 'El Comercio, "Title" (agosto de 2024)': an outlet, a quoted title and a date — a reference entry.
_REFERENCE = re.compile(r"^[^.]{2,60},\s*[\"“«][^\"”»]{5,}[\"”»].{0,80}\(\D{0,20}\d{4}\)")

_MONTH_NUMBER = {name: i % 12 + 1 for i, name in enumerate(
    "january february march april may june july august september october november december "
    "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre".split())}
_MONTH_NUMBER["setiembre"] = 9
_MONTHS = frozenset(_MONTH_NUMBER)


def months(text: str) -> frozenset[int]:
    """The months a text names, in English or Spanish, as numbers ("marzo de 2025", "March 2025" → {3}). English
    "may" counts only next to a number ("in May 2024", "3 May")."""
    folded = fold(text)
    found = set()
    for word in set(re.findall(r"[a-z]+", folded)) & _MONTH_NUMBER.keys():
        if word == "may" and not re.search(r"\bmay\s+(?:of\s+)?\d|\d(?:st|nd|rd|th)?\s+(?:of\s+)?may\b", folded):
            continue
        found.add(_MONTH_NUMBER[word])
    return frozenset(found)


#: Words that state a count (a quantity without digits: "four men", "cuatro hombres", "millions").
_NUMBER_WORDS = frozenset(fold(w) for w in (
    "two three four five six seven eight nine ten eleven twelve fifteen twenty thirty forty fifty hundred hundreds "
    "thousand thousands million millions billion billions dozen dozens half third quarter percent "
    "dos tres cuatro cinco seis siete ocho nueve diez once doce quince veinte treinta cuarenta cincuenta cien "
    "ciento cientos mil miles millon millones billon docena docenas mitad tercio cuarto porcentaje ciento").split())
_LEGAL_NUMBER = re.compile(r"\b(?:ley|law|decreto|decree|n[°º]|no\.|art(?:iculo|icle)?\.?|resolucion|d\.s\.|"
                           r"d\.leg\.|legislativo|supremo)\s*[\w-]*\d[\w-]*", re.IGNORECASE)
_NUMBER = re.compile(r"(?<![\w-])\d[\d.,]*(?:\s*%)?(?![\w-])|\d+\s*%")
_YEAR = re.compile(r"(?<!\d)(1[5-9]\d\d|20\d\d)(?!\d)")
_DEFINITION = re.compile(
    r"\b(is|are|was|were|means|refers to|stands for|known as|called|defined as|es|son|era|eran|significa|"
    r"se refiere|se conoce como|llamad[oa]s?|denominad[oa]s?|consiste en|se define)\b", re.IGNORECASE)
_REASON = re.compile(
    r"\b(because|due to|owing to|as a result|caused|causes|led to|leads to|so that|in order to|which is why|"
    r"through|by (?:\w+ing)|thanks to|since|reason|porque|debido a|a causa de|ya que|por eso|por lo que|gracias a|"
    r"para|mediante|a traves de|lo que|provoco|provoca|causa|razon|con el fin de)\b", re.IGNORECASE)
_ROLE = re.compile(
    r"\b(led by|leader|head(?:ed)? by|chief|boss|founder|founded by|run by|commander|alias|president|minister|"
    r"prosecutor|judge|director|dirigid[oa] por|lider|liderad[oa] por|jefe|cabecilla|fundador|fundad[oa] por|"
    r"cabeza|mando|presidente|ministro|fiscal|juez|director)\b", re.IGNORECASE)
_PLACE = re.compile(
    r"\b(in|at|near|from|to|into|across|on the|en|cerca de|desde|hacia|hasta|por|entre)\s+(?:the\s+|el\s+|la\s+|"
    r"los\s+|las\s+)?[A-ZÁÉÍÓÚÑ]\w+|\b(port|puerto|region|region|city|ciudad|district|distrito|province|provincia|"
    r"border|frontera|valley|valle|river|rio|department|departamento|country|pais)\b")
_NAME = re.compile(r"(?<![\w.])[A-ZÁÉÍÓÚÑ][\wáéíóúñ-]+(?:\s+(?:de(?:l| la| los)?\s+)?[A-ZÁÉÍÓÚÑ][\wáéíóúñ-]+)*")
_ACRONYM = re.compile(r"\b[A-ZÁÉÍÓÚÑ]{2,}\b")
#: Openings that point back to the sentence before: a pronoun, a demonstrative, "the group", "ese mismo mes".
_LEANS_BACK = re.compile(
    r"^[\s\"“«(]*(it|its|they|their|them|he|she|his|her|this|these|that|those|there|then|the group|the gang|"
    r"the organization|the organisation|the network|the law|the operation|the company|the same|such|"
    r"él|ella|ellos|ellas|su|sus|este|esta|estos|estas|ese|esa|esos|esas|dicho|dicha|dichos|dichas|"
    r"el grupo|la banda|la organizacion|la red|la ley|la operacion|la empresa|alli|ahi|entonces|"
    r"ademas|tambien|also|however|sin embargo|no obstante)\b"
    r"|\b(ese mismo|esa misma|that same|the same (?:month|year|day)|el mismo (?:mes|año|dia)|"
    r"that year|that month|ese año|ese mes|a year later|un año después|months later|meses después)\b",
    re.IGNORECASE)


#: Spanish drops the subject: a sentence that opens with a finite verb ("Fue capturado en Medellín…", "Murieron
#: siete policías…", "Salió del Perú…") is about what the sentence before names.
_SPANISH_VERB = re.compile(r"^[\s\"“«(]*(?:(?:se|lo|la|los|las|le|les) )?(?:fue|fueron|era|eran|habia|habian|ha|han|"
                           r"estaba|estaban|esta|estan|tenia|tenian|seria|serian|sera|seran|hubo|dijo|dijeron|"
                           r"\w+(?:aron|ieron|yeron|aba|aban))\b")
_CLITICS = frozenset(("se", "lo", "la", "los", "las", "le", "les"))


def _opens_with_verb(text: str) -> bool:
    words = re.match(r"[\s\"“«(]*(\w+)(?: (\w+))?", text)
    if words is None:
        return False
    verb = words.group(2) or "" if fold(words.group(1)) in _CLITICS else words.group(1)
    # A preterite's written accent ("Salió", "Se entregó", "Anunció"); nouns rarely end in a stressed -ó.
    return verb.endswith("ó") or bool(_SPANISH_VERB.match(fold(text[:40])))


@dataclass(frozen=True)
class SentenceInfo:
    """A quotable sentence of a chunk: its span in the page text and what it carries."""

    start: int
    end: int
    text: str
    carries: frozenset[str]
    leans_back: bool
    #: Folded names, acronyms and numbers in the sentence (compared across languages: names are not translated).
    names: frozenset[str]
    #: Values of the quantities the sentence states ("2,126" → 2126.0), for conflicting figures.
    values: tuple[float, ...]


def _line_ranges(page: str) -> list[tuple[int, int]]:
    out, pos = [], 0
    for line in page.split("\n"):
        out.append((pos, pos + len(line)))
        pos += len(line) + 1
    return out


def _bad_line(line: str, next_line: str) -> bool:
    """Metadata, footers, captions, TOC lines and headings (including PDF headings hard-wrapped from prose)."""
    stripped = line.strip()
    if not stripped:
        return False
    folded = fold(stripped)
    if stripped.startswith("#") or _FOOTER_LINE.match(folded) or _METADATA_LINE.match(folded) \
            or _CAPTION_LINE.match(folded) or _TOC_LINE.search(folded):
        return True
    if fold(stripped.strip("*_ :")) in _SOURCE_HEADINGS:
        return True
    # A PDF heading: short, no closing punctuation, and the next line starts a new sentence.
    nxt = next_line.lstrip(" -•*\"“«(")
    if len(stripped) < 70 and _HEADING_LIKE.search(stripped) and nxt[:1].isupper() \
            and not stripped.startswith(("-", "•", "*")):
        last = re.findall(r"\w+", folded)[-1:] or [""]
        if last[0] not in _stopwords() and not stripped.endswith(","):
            return True
    return False


@lru_cache(maxsize=256)
def _bad_lines(page: str) -> tuple[tuple[int, int], ...]:
    ranges = _line_ranges(page)
    lines = [page[a:b] for a, b in ranges]
    return tuple(r for i, r in enumerate(ranges) if _bad_line(lines[i], lines[i + 1] if i + 1 < len(lines) else ""))


def _trim(page: str, start: int, end: int, bad: tuple[tuple[int, int], ...]) -> tuple[int, int]:
    """The longest run of the span's lines that are not bad lines (a PDF sentence glued to a heading above or a
    page footer below keeps its prose)."""
    pieces: list[tuple[int, int]] = []
    pos = start
    cuts = sorted((max(a, start), min(b, end)) for a, b in bad if a < end and b > start)
    for a, b in cuts:
        if a > pos:
            pieces.append((pos, a))
        pos = max(pos, b)
    if pos < end:
        pieces.append((pos, end))
    if not pieces:
        return start, start
    a, b = max(pieces, key=lambda p: len(page[p[0]:p[1]].strip()))
    while a < b and page[a].isspace():
        a += 1
    while b > a and page[b - 1].isspace():
        b -= 1
    return a, b


def _quotable(text: str) -> bool:
    """A real sentence or list item: long enough, not a bare heading, not a reference entry."""
    if len(text) < _MIN_SENTENCE_CHARS or len(re.findall(r"\w+", text)) < 5:
        return False
    if _URL.search(text) or _REFERENCE.search(text.lstrip("-•* ")):
        return False
    if not _HEADING_LIKE.search(text) or text.lstrip().startswith(("-", "•", "*")):
        return True
    return len(text) >= 100  # a sentence that lacks its final period, not a heading


def _still_in_sources(text: str, in_sources: bool) -> bool:
    """A "Sources"/"Fuentes" heading opens a reference list (not answers); another heading closes it."""
    if fold(text).strip(" :#*") in _SOURCE_HEADINGS:
        return True
    if _HEADING_LIKE.search(text) and not text.lstrip().startswith(("-", "•", "*")):
        return False if "\n" not in text and len(text) < 120 else in_sources
    return in_sources


def _dates(text: str, language: str) -> list[str]:
    """Date expressions (with a digit or a month name) found by dateparser's search."""
    folded = fold(text)
    if not any(c.isdigit() for c in text) and not (_MONTHS & set(re.findall(r"\w+", folded))):
        return []
    from dateparser.search import search_dates

    try:
        found = search_dates(text, languages=[language, "en" if language == "es" else "es"],
                             settings={"RETURN_AS_TIMEZONE_AWARE": False}) or []
    except Exception:  # dateparser raises on odd inputs (overflowing numbers); a date is then just not found
        found = []
    out = []
    for phrase, _ in found:
        words = set(re.findall(r"\w+", fold(phrase)))
        if any(c.isdigit() for c in phrase) and (_YEAR.search(phrase) or words & _MONTHS) or words & _MONTHS:
            out.append(phrase)
    return out


def _values(text: str) -> tuple[float, ...]:
    out = []
    for match in _NUMBER.finditer(text):
        raw = match.group().rstrip("%").strip().rstrip(".,")
        if _YEAR.fullmatch(raw):
            continue
        digits = raw.replace(",", "") if re.fullmatch(r"\d{1,3}(,\d{3})+(\.\d+)?", raw) else \
            raw.replace(".", "").replace(",", ".") if re.fullmatch(r"\d{1,3}(\.\d{3})+(,\d+)?", raw) else \
            raw.replace(",", ".")
        try:
            out.append(float(digits))
        except ValueError:
            continue
    return tuple(out)


def analyse(text: str, language: str) -> tuple[frozenset[str], bool, frozenset[str], tuple[float, ...]]:
    """(kinds of answer carried, leans on the previous sentence, names, quantity values) of one sentence."""
    carries = set()
    dates = _dates(text, language)
    if dates or _YEAR.search(text):
        carries.add("date")
    rest = text
    for phrase in dates:
        rest = rest.replace(phrase, " ")
    rest = _LEGAL_NUMBER.sub(" ", _YEAR.sub(" ", rest))
    values = _values(rest)
    words = set(re.findall(r"\w+", fold(rest)))
    if values or "%" in rest or words & _NUMBER_WORDS:
        carries.add("quantity")
    body = text[1:]  # a capital that opens the sentence is not a name
    names = [m.group() for m in _NAME.finditer(body)] + _ACRONYM.findall(text)
    # A person or a group: a role word ("led by", "alias", "líder"), a name of two or more words ("Carlos
    # Arteaga", "Los Pulpos") or an acronym (SINADEF); a single capitalised word is as often a place.
    if _ROLE.search(fold(text)) or _ACRONYM.search(text) or any(len(n.split()) >= 2 for n in names):
        carries.add("who")
    if _PLACE.search(text) or _PLACE.search(fold(text)):
        carries.add("place")
    if _DEFINITION.search(fold(text)[:160]):
        carries.add("definition")
    if _REASON.search(fold(text)):
        carries.add("reason")
    if _LEGAL_NUMBER.search(text):  # "Ley 27693", "Decreto Supremo 100-2024-PCM": the answer to "which law…?"
        carries.add("law")
    folded_names = {fold(w) for n in names for w in re.findall(r"\w+", n) if len(w) > 2}
    folded_names |= {m.group().rstrip('.,% ') for m in _NUMBER.finditer(text)}
    leans = bool(_LEANS_BACK.search(fold(text[:60]))) or (language == "es" and _opens_with_verb(text))
    return frozenset(carries), leans, frozenset(folded_names), values


#: A span ending in a word of one or two letters and a period: where syntok's reading is asked (it also merges
#: "siglo XIX. Asimilados" and "(0,4 %). Esto", which are sentence ends).
_INITIAL = re.compile(r"(?<!\w)\w{1,2}\.$")


def _syntok_ends(text: str, offset: int) -> set[int]:
    """Where syntok ends sentences in `text` (as offsets + `offset`)."""
    ends: set[int] = set()
    for paragraph in syntok_segmenter.analyze(text):
        for sentence in paragraph:
            last = sentence[-1] if sentence else None
            if last is not None:
                ends.add(offset + last.offset + len(last.value))
    return ends


def reader_spans(page: str, start: int, end: int) -> list[Span]:
    """`split_sentences`'s spans (which chunking shares), with the cuts after a period that syntok does not read
    as a sentence end joined again: initials ("John C. Messenger"), "Brown v. Board", "et al.". The chunker's
    cuts cost the reader the answer of 1.1% of XQuAD questions (the gold answer spans two sentences), syntok's
    0.2% (benchmarks/RESULTS.md); paragraph and list-item breaks are kept."""
    spans = split_sentences(page, start, end)
    if not any(_INITIAL.search(page, s.start, s.end) for s in spans[:-1]):
        return spans  # no cut after an initial: nothing for syntok to read
    ends = _syntok_ends(page[start:end], start)
    out = [spans[0]]
    for span in spans[1:]:
        prev = out[-1]
        gap = page[prev.end:span.start]
        ended = any(prev.end - 1 <= e <= span.start for e in ends)
        if _INITIAL.search(page, prev.start, prev.end) and not ended and "\n\n" not in gap \
                and not _BULLET.match(page[span.start:span.end]):
            out[-1] = Span(prev.start, span.end)
        else:
            out.append(span)
    return out


def split_passage(page: str, base: int, length: int, section: str, language: str) -> list[SentenceInfo]:
    """The quotable sentences of page[base:base+length] (a chunk), as page offsets with their analysis."""
    out: list[SentenceInfo] = []
    in_sources = fold(section).strip() in _SOURCE_HEADINGS
    # The page before the chunk decides whether it starts inside a reference list (a PDF's "Fuentes"
    # heading often sits in the previous chunk, and PDF pages carry no sections).
    for span in split_sentences(page, 0, base):
        in_sources = _still_in_sources(page[span.start:span.end], in_sources)
    bad = _bad_lines(page)
    for span in reader_spans(page, base, base + length):
        text = page[span.start:span.end]
        in_sources = _still_in_sources(text, in_sources)
        if in_sources:
            continue
        start, end = _trim(page, span.start, span.end, bad)
        bullet = _BULLET.match(page[start:end])  # quote a list item without its bullet (still verbatim)
        start += bullet.end() if bullet else 0
        heading = _RUN_IN.match(page, start, end)
        analysed = page[start:end]
        start = heading.end() if heading else start
        text = page[start:end]
        if end <= start or not _quotable(text):
            continue
        carries, leans, names, values = analyse(analysed, language)
        out.append(SentenceInfo(start, end, text, carries, leans, names, values))
    return out


@lru_cache(maxsize=65536)
def sentence_tokens(title: str, text: str, language: str) -> frozenset[str]:
    return frozenset(keyword_tokens(f"{title} {text}", language))


class SentenceStore:
    """Sentences and their vectors per chunk, on disk beside the index (reader-sentences.sqlite), so they are
    computed once per chunk, not once per process. Chunk ids are never reused by the index's store, so
    (model, chunk id) identifies a chunk's text. Best effort: a read-only or busy file just means recomputing."""

    FILE = "reader-sentences.sqlite"
    #: Bumped when sentence boundaries change (2: `reader_spans`; 3: without markdown run-in headings): stored
    #: sentences are then computed again.
    VERSION = 3
    #: Bumped when `analyse` changes: stored sentences are then re-analysed on load (their vectors stay valid).
    #: 3: the "law" kind; Spanish sentences that open with a verb lean on the sentence before.
    ANALYSIS = 3

    def __init__(self, folder: Path):
        self.path = Path(folder) / self.FILE
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._failed = False

    def _connect(self) -> sqlite3.Connection | None:
        if self._db is None and not self._failed:
            try:
                if not self.path.parent.is_dir():
                    raise OSError("no index folder")
                db = sqlite3.connect(self.path, timeout=2.0, check_same_thread=False)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("CREATE TABLE IF NOT EXISTS sentences (model TEXT, chunk_id INTEGER, version INTEGER, "
                           "infos TEXT, vectors BLOB, PRIMARY KEY (model, chunk_id))")
                columns = {row[1] for row in db.execute("PRAGMA table_info(sentences)")}
                if "analysis" not in columns:
                    db.execute("ALTER TABLE sentences ADD COLUMN analysis INTEGER DEFAULT 1")
                db.execute("CREATE TABLE IF NOT EXISTS words (model TEXT, word TEXT, vector BLOB, "
                           "PRIMARY KEY (model, word))")
                db.commit()
                self._db = db
            except (OSError, sqlite3.Error):
                self._failed = True
        return self._db

    def get_many(self, model: str, chunk_ids: list[int], language_of=None
                 ) -> dict[int, tuple[list[SentenceInfo], np.ndarray]]:
        """Stored chunks; `language_of(chunk_id)` gives a chunk's language when its analysis must be redone."""
        out: dict[int, tuple[list[SentenceInfo], np.ndarray]] = {}
        stale: dict[int, list[SentenceInfo]] = {}
        with self._lock:
            db = self._connect()
            if db is None or not chunk_ids:
                return out
            marks = ",".join("?" * len(chunk_ids))
            try:
                rows = db.execute(f"SELECT chunk_id, infos, vectors, analysis FROM sentences WHERE model = ? "
                                  f"AND version = ? AND chunk_id IN ({marks})",
                                  (model, self.VERSION, *chunk_ids)).fetchall()
            except sqlite3.Error:
                return out
        for chunk_id, infos, blob, analysis in rows:
            items = [SentenceInfo(i[0], i[1], i[2], frozenset(i[3]), bool(i[4]),
                                  frozenset(n.rstrip('.,% ') for n in i[5]), tuple(i[6]))
                     for i in json.loads(infos)]
            if analysis != self.ANALYSIS:
                language = language_of(chunk_id) if language_of else "en"
                items = [SentenceInfo(i.start, i.end, i.text, *analyse(i.text, language)) for i in items]
                stale[int(chunk_id)] = items
            vectors = np.frombuffer(blob, dtype=np.float32)
            vectors = vectors.reshape(len(items), -1) if items else np.zeros((0, 1), np.float32)
            out[int(chunk_id)] = (items, vectors)
        if stale and language_of:
            self.put_many(model, {cid: out[cid] for cid in stale})
        return out

    def put_many(self, model: str, items: dict[int, tuple[list[SentenceInfo], np.ndarray]]) -> None:
        rows = [(model, chunk_id, self.VERSION, self.ANALYSIS,
                 json.dumps([[i.start, i.end, i.text, sorted(i.carries), i.leans_back, sorted(i.names),
                              list(i.values)] for i in infos], ensure_ascii=False),
                 np.ascontiguousarray(vectors, dtype=np.float32).tobytes())
                for chunk_id, (infos, vectors) in items.items()]
        self._write("INSERT OR REPLACE INTO sentences (model, chunk_id, version, analysis, infos, vectors) "
                    "VALUES (?, ?, ?, ?, ?, ?)", rows)

    def _write(self, sql: str, rows: list[tuple]) -> None:
        """Best effort: a read-only or busy store just means computing again later."""
        with self._lock:
            db = self._connect()
            if db is None or not rows:
                return
            try:
                with db:
                    db.executemany(sql, rows)
            except sqlite3.Error:
                pass

    def _word_rows(self, model: str, words: list[str], columns: str) -> list[tuple]:
        """`columns` of the stored rows of `words` (900 per query: SQLite's limit on parameters)."""
        with self._lock:
            db = self._connect()
            if db is None or not words:
                return []
            rows: list[tuple] = []
            try:
                for start in range(0, len(words), 900):
                    part = words[start:start + 900]
                    rows += db.execute(f"SELECT {columns} FROM words WHERE model = ? AND word IN "
                                       f"({','.join('?' * len(part))})", (model, *part)).fetchall()
            except sqlite3.Error:
                return []
            return rows

    def get_words(self, model: str, words: list[str]) -> dict[str, np.ndarray]:
        """Stored vectors of single words (embedded as one-word questions)."""
        return {w: np.frombuffer(blob, dtype=np.float32) for w, blob in self._word_rows(model, words, "word, vector")}

    def known_words(self, model: str, words: list[str]) -> set[str]:
        """Which of `words` have a stored vector."""
        return {w for (w,) in self._word_rows(model, words, "word")}

    def put_words(self, model: str, vectors: dict[str, np.ndarray]) -> None:
        self._write("INSERT OR REPLACE INTO words (model, word, vector) VALUES (?, ?, ?)",
                    [(model, w, np.ascontiguousarray(v, dtype=np.float32).tobytes()) for w, v in vectors.items()])


class SentenceCache:
    """Per-chunk sentences, their analysis and embeddings in memory (LRU), backed by each index's SentenceStore,
    so repeated passages are not re-read or re-embedded.

    Chunk ids are never reused by the store, so (index path, model, chunk id) identifies the text."""

    def __init__(self, size: int = 4096):
        self.size = size
        self._items: OrderedDict[tuple, object] = OrderedDict()
        self._lock = threading.Lock()
        self._stores: dict[str, SentenceStore] = {}

    def store_for(self, folder: Path) -> SentenceStore:
        with self._lock:
            store = self._stores.get(str(folder))
            if store is None:
                store = self._stores[str(folder)] = SentenceStore(folder)
            return store

    def get(self, key: tuple):
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: tuple, value) -> None:
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def query_vector(self, index, query: str) -> np.ndarray:
        """The query's embedding, remembered: retrieval just embedded the same text (and examples repeat)."""
        key = ("query", index.model_name, query)
        vector = self.get(key)
        if vector is None:
            vector = index.embedder.encode([query], kind="query")[0]
            self.put(key, vector)
        return vector


__all__ = ["SentenceInfo", "SentenceCache", "SentenceStore", "split_passage", "analyse", "sentence_tokens"]
