"""What a question asks for (a quantity, a date, a person or group, a place, a definition, a reason) and what it is
about (its content words and names), in English and Spanish."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .text import _stopwords, fold, keyword_tokens

#: Kinds of answer, in the order they are tested: "how many people were killed when…" asks for a quantity. "law":
#: which law, decree or resolution (the answer is its number: "Ley 27693", "Decreto Supremo 100-2024-PCM").
KINDS = ("quantity", "date", "who", "place", "definition", "reason", "law")

_PATTERNS = {
    "quantity": r"\b(how many|how much|what share|what percentage|what proportion|what fraction|what number|"
                r"number of|how large|how big|how high|how long|how far|how old|what (?:was|is|were|are) the (?:figure|"
                r"number|amount|total|count|rate|price|value|area|size)|cuant[oa]s?|que porcentaje|que proporcion|"
                r"que cantidad|que parte|que numero|numero de|cifra|que tan grande|que extension|(?:el|la) "
                r"(?:monto|total|tasa|precio|valor|area|superficie) de)\b",
    "date": r"\b(when|what year|which year|what date|since when|until when|in what year|what month|cuando|"
            r"en que ano|que ano|en que fecha|que fecha|desde cuando|hasta cuando|en que mes|que dia)\b",
    "who": r"\b(who|whom|whose|which (?:group|groups|organi[sz]ation|gang|gangs|company|agency|institution|body|"
           r"faction|party|network|cartel|clan|official|officials|person|people|court|unit|ministry)|what (?:group|"
           r"organi[sz]ation|gang|company|agency|institution|body|network|unit|ministry)|quien|quienes|"
           r"que (?:grupo|grupos|organizacion|organizaciones|banda|bandas|empresa|entidad|institucion|organismo|"
           r"faccion|partido|red|clan|funcionario|persona|personas|tribunal|unidad|ministerio)|cual (?:grupo|"
           r"organizacion|banda|empresa|entidad|institucion|organismo))\b",
    "place": r"\b(where|from where|which (?:city|cities|region|regions|country|countries|port|ports|district|"
             r"province|department|valley|border|river|route|routes)|what (?:city|region|country|port|district|"
             r"province|department|valley|route)|donde|adonde|de donde|en que (?:ciudad|region|pais|puerto|"
             r"distrito|provincia|departamento|valle|lugar|zona)|que (?:ciudad|region|pais|puerto|distrito|"
             r"provincia|departamento|valle|ruta|rutas|zona|zonas))\b",
    "definition": r"^\W*(what (?:is|are|was|were) (?:the |an? )?\w+\??$|what (?:is|are) (?:the |an? )?[\w\s-]{0,40}"
                  r"\?$|what does \S+(?: \S+){0,4} (?:mean|stand for)|define|que (?:es|son|significa|significan|"
                  r"fue|era) |que quiere decir|a que se refiere)",
    "reason": r"\b(why|for what reason|what caused|what led|how (?:does|do|did|is|are|was|were|can|could)|"
              r"por que|por que razon|para que|como (?:se|es|son|fue|funciona|opera|operan|afecta|logra)|como\b|"
              r"what explains|que explica|a que se debe|que provoco|que causo)\b",
}
_COMPILED = {kind: re.compile(pattern) for kind, pattern in _PATTERNS.items()}

#: How questions are asked, not what they are about ("does", "stand", "cuántos").
QUESTION_WORDS = frozenset(fold(w) for w in (
    "what which who whom whose where when why how much many do does did done can could would should shall "
    "may might must has have had having been being were am i you we me my our your us please tell know "
    "give list explain describe some any there here about stand mean means meaning share percentage proportion "
    "number year date month since until "
    "cuánto cuánta cuántos cuántas dónde adónde qué cuál cuáles quién quiénes cómo cuándo por favor dime "
    "díganos explique describa significa significan año fecha mes número cifra porcentaje desde hasta").split())

_NAME_WORD = r"(?:[A-ZÁÉÍÓÚÑ][\w-]*|\w*\d[\w-]*)"
_NAME = re.compile(rf"(?<!\w){_NAME_WORD}(?:\s+(?:de(?:l| la| los)?\s+)?{_NAME_WORD})*")


@dataclass(frozen=True)
class Question:
    """A question, analysed once."""

    text: str
    language: str
    asks: str
    #: Each content word as its set of stems in both languages.
    words: tuple[frozenset[str], ...]
    #: Names, acronyms and numbers of the question (folded words), which match across languages.
    names: frozenset[str]


#: What the noun after "which/what/qué/cuál" names, when the patterns above do not tell ("Which two Callao
#: prosecutors…", "¿Qué dirigente de Saweto…?", "In which Andean village…", "What was the prison occupancy
#: rate…"): people and named things (the answer is a name), places, amounts. Folded, singular and plural.
_HEAD_KINDS = {
    "who": "person persons people man men woman women leader leaders head boss bosses commander commanders chief "
           "chiefs founder founders prosecutor prosecutors judge judges minister ministers president presidents "
           "official officials officer officers lawyer lawyers journalist journalists singer singers "
           "governor governors congressman congressmen lawmaker lawmakers businessman "
           "businessmen lord lords trafficker traffickers alias nickname name names orchestra band bands "
           "programme program programs programmes project projects operation operations firm firms "
           "dirigente dirigentes lider lideres jefe jefes cabecilla cabecillas fundador fundadores fiscal fiscales "
           "juez jueces ministro ministra ministros presidente presidenta funcionario funcionarios policia "
           "abogado abogados periodista periodistas cantante cantantes alcalde alcaldes gobernador congresista "
           "congresistas empresario empresarios narcotraficante narcotraficantes capo capos apodo nombre "
           "orquesta programa programas proyecto proyectos operativo operacion",
    "place": "city cities town towns village villages district districts province provinces region regions "
             "department departments country countries port ports valley valleys border river rivers "
             "community communities location locations site sites "
             "ciudad ciudades pueblo pueblos localidad localidades comunidad comunidades distrito distritos "
             "provincia provincias region regiones departamento departamentos pais paises puerto puertos valle "
             "valles frontera rio rios lugar lugares zona zonas penal penales carcel",
    "quantity": "area rate share percentage number amount total figure figures price value fee fees "
                "penalty penalties salary size population toll sum longest maximum minimum "
                "superficie tasa porcentaje numero monto cifra cifras precio valor cuota cuotas pena penas sueldo "
                "tamano poblacion suma maximo minimo",
    "reason": "reason reasons cause causes motive motives razon razones motivo motivos causa causas",
    "law": "law laws act acts decree decrees statute statutes resolution resolutions regulation regulations "
           "ley leyes decreto decretos resolucion resoluciones reglamento reglamentos",
}
_HEAD_OF = {word: kind for kind, words in _HEAD_KINDS.items() for word in words.split()}
#: Words that end the noun phrase after "which/what": the question's verb, its auxiliaries, prepositions.
_HEAD_STOP = frozenset(("is", "are", "was", "were", "do", "does", "did", "has", "have", "had", "can", "could",
                        "will", "would", "of", "in", "on", "for", "from", "to", "by", "with", "at", "es", "son",
                        "fue", "fueron", "era", "eran", "se", "ha", "han", "habia", "de", "del", "en", "a", "al",
                        "por", "para", "con", "que"))
_HEAD = re.compile(r"\b(which|what|que|cual|cuales)\s+(?:(?:is|are|was|were|es|son|fue|era) )?"
                   r"(?:(?:the|el|la|los|las) )?((?:\w+ ){0,4})")


def _head_kind(folded: str) -> str:
    """The kind named by the noun after "which/what/qué/cuál", or '': in English the noun before the verb
    ("which two Callao prosecutors started…"), in Spanish the first ("¿qué penas fijó la ley…?")."""
    for match in _HEAD.finditer(folded + " "):
        kinds = []
        for word in match.group(2).split():
            if word in _HEAD_STOP:
                break
            if word in _HEAD_OF:
                kinds.append(_HEAD_OF[word])
        if kinds:
            return kinds[0] if match.group(1) in ("que", "cual", "cuales") else kinds[-1]
    return ""


def classify(question: str) -> str:
    """The kind of answer asked for, or "other" ("What did Operation Mercurio do?")."""
    folded = re.sub(r"[\"“”«»]", "", fold(question).replace("¿", " ")).strip()  # 'What is "X"?' is a definition
    for kind, pattern in _COMPILED.items():
        if pattern.search(folded):
            return kind
    return _head_kind(re.sub(r"[^\w\s]", " ", re.sub(r"['’]s\b", "", folded))) or "other"


def content_words(text: str) -> tuple[frozenset[str], ...]:
    """Each content word of `text` as its set of stems in both languages."""
    words = []
    for word in dict.fromkeys(re.findall(r"\w+", fold(text))):
        if word in QUESTION_WORDS:
            continue
        stems = frozenset(keyword_tokens(word, "en")) | frozenset(keyword_tokens(word, "es"))
        if stems:
            words.append(stems)
    return tuple(words)


def question_names(question: str) -> list[str]:
    """Capitalised names (not the word that opens a sentence), acronyms and numbers of a question, as written."""
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
    return list(dict.fromkeys(names))


_COUNTED_STOP = frozenset(("were", "was", "are", "is", "did", "do", "does", "have", "has", "had", "will", "would",
                           "could", "can", "in", "of", "on", "at", "for", "per", "by", "from", "to", "with", "been",
                           "the", "a", "an"))
_PERCENT = re.compile(r"\b(what (?:share|percentage|proportion|percent)|que (?:porcentaje|proporcion|parte))\b")


def counted(question: str) -> str:
    """What a quantity question counts, as one folded word: "how many extortion complaints…" → "complaints",
    "¿cuántas toneladas de droga…?" → "toneladas", "what share…" → "%"; '' when it cannot be told ("how much did…
    grow", "¿cuánto creció…?"). English names the counted thing last, Spanish first."""
    folded = fold(question).replace("¿", " ")
    if _PERCENT.search(folded):
        return "%"
    match = re.search(r"\bcuant[oa]s (\w+)", folded)
    if match:
        return match.group(1)
    match = re.search(r"\bhow (many|much) ((?:\w+ ){0,3})", folded + " ")
    if match:
        words = match.group(2).split()
        head = []
        for word in words:
            if word in _COUNTED_STOP:
                break
            head.append(word)
        if head and (match.group(1) == "many" or len(head) < len(words)):  # "how much X did…": X is a noun
            return head[-1]
    return ""


_EN_AUX = frozenset(("was", "were", "is", "are", "did", "does", "do", "has", "have", "had", "will", "would"))
_ES_AUX = frozenset(("fue", "fueron", "se", "ha", "han", "habia", "era", "eran", "sera", "es", "son", "lo", "la"))
_PREPOSITIONS = frozenset(("in", "on", "at", "for", "from", "to", "by", "with", "after", "before", "during", "of",
                           "into", "under", "the", "a", "an"))


def event(question: str) -> str:
    """What happened, for a "when" question, as one folded word: "When was Lurigancho prison built?" → "built",
    "When was César Hinostroza detained in Madrid?" → "detained", "¿Cuándo fue detenido…?" → "detenido",
    "¿Cuándo nació…?" → "nacio"; '' when it cannot be told ("In what year…")."""
    match = re.search(r"(?:^|[¿\s])cu[aá]ndo\s+(.*)", question, flags=re.IGNORECASE)
    if match:
        words = [fold(w) for w in re.findall(r"\w+", match.group(1))]
        while words and words[0] in _ES_AUX:
            words = words[1:]
        return words[0] if words else ""
    match = re.search(r"\bwhen\s+(\w+)\s+(.*)", question, flags=re.IGNORECASE)
    if not match or fold(match.group(1)) not in _EN_AUX:
        return ""
    words = re.findall(r"[\w-]+", match.group(2))
    # Drop trailing names, numbers and the prepositions that introduce them ("… detained in Madrid").
    while words and (words[-1][:1].isupper() or words[-1][:1].isdigit() or fold(words[-1]) in _PREPOSITIONS):
        words = words[:-1]
    return fold(words[-1]) if len(words) > 1 else ""


def states_counted(counted_word: str, sentence: str) -> bool:
    """Whether a sentence names what the question counts (the same stem, in either language's stemmer), or a
    percentage when a share is asked. Translations are the reader's concern (reader.names_counted)."""
    if not counted_word:
        return True
    folded = fold(sentence)
    if counted_word == "%":
        return bool(re.search(r"%|\bpercent|\bpor ciento|\bporcentaje|\bper cent", folded))
    stems = set(keyword_tokens(counted_word, "en")) | set(keyword_tokens(counted_word, "es"))
    for word in re.findall(r"\w+", folded):
        if stems & (set(keyword_tokens(word, "en")) | set(keyword_tokens(word, "es"))):
            return True
    return False


def analyse_question(question: str, language: str) -> Question:
    names = {fold(w) for n in question_names(question) for w in re.findall(r"\w+", n)
             if len(w) > 2 or w.isdigit()} - QUESTION_WORDS - _stopwords()
    return Question(question, language, classify(question), content_words(question), frozenset(names))


__all__ = ["Question", "KINDS", "classify", "counted", "states_counted", "event",
           "content_words", "question_names", "analyse_question", "QUESTION_WORDS"]
