"""The question-aware reader: the sentence that carries the asked kind of answer wins, cross-lingual evidence is
read and flagged, boilerplate is never quoted, conflicting figures are stated, near misses are not answered plainly.
"""

from __future__ import annotations

import re

import pytest

from peru_qa.questions import classify
from peru_qa.sentences import split_passage

CORPUS = {
    "homicidios-policia": ("Homicides in Peru", "en", (
        "Homicides in Peru are a serious and growing concern for the police, for prosecutors and for the public. "
        "Experts say that homicides in Peru reflect the expansion of extortion gangs across the country.\n\n"
        "The National Police counted 2,126 homicides in Peru in 2024, most of them in Lima and La Libertad.")),
    "homicidios-sinadef": ("Medir el crimen en el Perú", "es", (
        "El registro de defunciones SINADEF del Ministerio de Salud cuenta las muertes violentas en el Perú. "
        "Según el SINADEF, en 2024 hubo 2,011 homicidios en el Perú, una cifra distinta de la policial.")),
    "hinostroza": ("Los Cuellos Blancos del Puerto", "es", (
        "El exjuez supremo César Hinostroza salió del Perú el 7 de octubre de 2018 por la frontera con Ecuador. "
        "Fue detenido en Madrid ese mismo mes y España lo extraditó al Perú en 2022.\n\n"
        "La fuga de César Hinostroza hacia Madrid causó una crisis política en el Perú y en el Poder Judicial.")),
    "pulpos": ("Gangs and foreign groups", "en", (
        "Los Pulpos is the best-known criminal organisation of Trujillo and it extorts builders and transport "
        "firms across the city of Trujillo.\n\n"
        "The gang is led by Carlos Arteaga, alias \"El Monstruo\", who police believe is hiding in Paraguay.")),
    "mineria": ("Minería ilegal", "es", (
        "La minería ilegal de oro en Madre de Dios destruye los bosques y contamina los ríos con mercurio. "
        "El REINFO es el registro que permite a los mineros pequeños seguir trabajando mientras se formalizan. "
        "El REINFO fue creado en 2016 por el Decreto Legislativo 1293 para la formalización minera.")),
}


def _index_of(folder, embedder, corpus: dict):
    """An index of `corpus` (key → (title, language, text)) in `folder`, open while the caller uses it."""
    from peru_qa import KnowledgeBase
    from peru_qa.kb import TextDocument

    with KnowledgeBase(folder / "index", embedder=embedder) as kb:
        report = kb.add_texts([TextDocument(key, text, title=title, language=lang)
                               for key, (title, lang, text) in corpus.items()])
        assert report.ok, report.summary()
        yield kb


@pytest.fixture(scope="module")
def reader_kb(tmp_path_factory, embedder):
    yield from _index_of(tmp_path_factory.mktemp("reader"), embedder, CORPUS)


def _quotes_are_verbatim(kb, answer) -> None:
    from peru_qa.reader import display

    assert answer.quotes, answer.text
    for quote in answer.quotes:
        passage = answer.citations[quote.n - 1]
        assert kb.page_text(passage.doc_id, passage.page)[quote.start:quote.end] == quote.text
        assert f"{display(quote.text)} [{quote.n}]" in answer.text  # line breaks joined for display


@pytest.mark.parametrize("question, kind", [
    ("How many homicides were there in Peru in 2024?", "quantity"),
    ("¿Cuántos homicidios registró el Perú en 2024?", "quantity"),
    ("What share of the budget goes to the police?", "quantity"),
    ("When was César Hinostroza detained in Madrid?", "date"),
    ("¿Cuándo fue detenido César Hinostroza?", "date"),
    ("Who leads Los Pulpos?", "who"),
    ("¿Quién es el líder de Los Pulpos?", "who"),
    ("Which group controls the VRAEM?", "who"),
    ("Where is the leader of Los Pulpos hiding?", "place"),
    ("¿Dónde estaría el líder de Los Pulpos?", "place"),
    ("What is the REINFO?", "definition"),
    ("¿Qué es el REINFO?", "definition"),
    ("Why did Hinostroza flee?", "reason"),
    ("¿Por qué huyó Hinostroza?", "reason"),
    ("What did Operation Mercurio do?", "other"),
    # The noun after which/what/qué tells when the question words do not.
    ("Which two Callao prosecutors opened the case?", "who"),
    ("¿Qué dirigente de Saweto denunciaba la tala ilegal?", "who"),
    ("By what alias is the guerrilla commander known?", "who"),
    ("In which Andean village did the war start?", "place"),
    ("¿En qué comunidad se refugiaron?", "place"),
    ("What was the prison occupancy rate in 2016?", "quantity"),
    ("¿Qué superficie de coca había en 2022?", "quantity"),
    ("¿Qué penas fijó la ley para los cabecillas?", "quantity"),
    ("What is the term for a hyperactive immune system?", "definition"),
    ("¿Qué nación contiene la mayor parte de la selva?", "other"),
    ("¿Cuál fue la principal razón para no denunciar?", "reason"),
    ("Which law created Peru's Financial Intelligence Unit?", "law"),
    ("What was Peru's first comprehensive law against human trafficking?", "law"),
    ("¿Qué decreto supremo declaró la emergencia?", "law"),
    ("What is \"contamination\"?", "definition"),
    ("What does the October emergency decree forbid?", "other"),
    ("What role did the army play?", "other"),
])
def test_question_kinds_in_both_languages(question, kind):
    assert classify(question) == kind


@pytest.mark.parametrize("question, needle", [
    # The number wins over sentences that repeat the question's words without one.
    ("How many homicides were there in Peru in 2024?", "2,126"),
    ("¿Cuántos homicidios registró el Perú en 2024?", "2,011"),
    # The date: the sentence that answers leans on the one before ("ese mismo mes"), which is quoted too.
    ("When was César Hinostroza detained in Madrid?", "7 de octubre de 2018"),
    ("¿Cuándo fue detenido César Hinostroza en Madrid?", "7 de octubre de 2018"),
    # The name.
    ("Who leads Los Pulpos?", "Carlos Arteaga"),
    ("¿Quién es el líder de Los Pulpos?", "Carlos Arteaga"),
    # The law: its number.
    ("Which decree created the REINFO registry?", "Decreto Legislativo 1293"),
    ("¿Qué norma creó el REINFO?", "Decreto Legislativo 1293"),
])
def test_the_sentence_carrying_the_asked_kind_wins(reader_kb, question, needle):
    from peru_qa.answer import gather
    from peru_qa.reader import select

    found = gather(reader_kb, question)
    chosen = [s.text for s in select(found).sentences]
    # It opens the answer (or follows the sentence it leans on), whether or not the support is enough to answer.
    assert any(needle in text for text in chosen[:2]), chosen
    answer = reader_kb.ask(question, llm=False)
    if not answer.abstained:
        _quotes_are_verbatim(reader_kb, answer)
        assert needle in answer.text


def test_leaning_sentence_is_quoted_with_the_one_before(reader_kb):
    answer = reader_kb.ask("When was César Hinostroza detained in Madrid?", llm=False)
    texts = [q.text for q in answer.quotes]
    lean = next(i for i, t in enumerate(texts) if "Fue detenido en Madrid ese mismo mes" in t)
    # Quoted as one statement with the sentence it leans on (adjacent on the page).
    assert "7 de octubre de 2018" in texts[lean]


@pytest.mark.parametrize("question, source_language, note", [
    ("¿Quién es el líder de Los Pulpos?", "en", "la fuente citada está en inglés"),
    ("When was César Hinostroza detained in Madrid?", "es", "the cited source is in Spanish"),
])
def test_other_language_evidence_is_read_and_flagged(reader_kb, question, source_language, note):
    answer = reader_kb.ask(question, llm=False)
    assert not answer.abstained
    assert {p.language for p in answer.citations} == {source_language}
    assert answer.language_note and note in answer.language_note
    assert answer.text.endswith(answer.language_note), "the note is a line of the answer, in the question's language"
    assert answer.to_dict()["language_note"] == answer.language_note


def test_same_language_answer_has_no_language_note(reader_kb):
    answer = reader_kb.ask("¿Qué es el REINFO?", llm=False)
    assert not answer.abstained and "REINFO" in answer.quotes[0].text
    assert answer.language_note == ""


def test_conflicting_figures_are_stated_with_each_citation(reader_kb):
    answer = reader_kb.ask("How many homicides were there in Peru in 2024?", llm=False)
    assert answer.conflict, answer.text
    figures = dict((value, int(n)) for value, n in re.findall(r"(\d[\d,]*) \[(\d+)\]", answer.conflict))
    assert set(figures) == {"2,126", "2,011"}
    for value, n in figures.items():
        assert value in answer.citations[n - 1].text, "each value cites the passage that gives it"
    assert answer.conflict in answer.text.splitlines()


def test_one_figure_is_not_a_conflict(reader_kb):
    answer = reader_kb.ask("¿Quién es el líder de Los Pulpos?", llm=False)
    assert answer.conflict == ""


def test_boilerplate_is_never_quoted():
    page = (
        "Timeline of Organized Crime and the State Response\n"
        "in Peru, 1980-2025\n"
        "Written: November 2026. Based on public sources up to 2025.\n"
        "Checked: 2026-11\n"
        "Contents\n"
        "Drug trafficking ........ 3\n"
        "This timeline lists key dates in the development of drug trafficking and armed groups in Peru.\n"
        "Figure 2: Coca cultivation by region, 2015-2024 (hectares).\n"
        "The Upper Huallaga valley became the centre of coca cultivation for the cocaine trade in the 1980s.\n"
        "Page 1 of 5\n\n"
        "Sources\n\n"
        '- El Comercio, "Ley del Congreso ya golpea la lucha contra el crimen organizado" (agosto de 2024).\n'
        "- UNODC, World Drug Report 2024, https://www.unodc.org/wdr2024.\n"
    )
    quoted = [s.text for s in split_passage(page, 0, len(page), "", "en")]
    assert quoted == [
        "This timeline lists key dates in the development of drug trafficking and armed groups in Peru.",
        "The Upper Huallaga valley became the centre of coca cultivation for the cocaine trade in the 1980s.",
    ]


def test_markdown_metadata_line_is_not_quoted():
    page = ("*Redactado: noviembre de 2026. Basado en fuentes públicas hasta 2025.*\n\n"
            "Las organizaciones criminales necesitan protección dentro del Estado para operar en el Perú.")
    assert [s.text for s in split_passage(page, 0, len(page), "", "es")] == [page.split("\n\n")[1]]


def test_markdown_run_in_heading_is_not_quoted_but_tells_the_subject():
    """"**VRAEM.** The valley…" is quoted from "The valley…"; the heading's name still says what it is about."""
    page = ("**VRAEM.** The Valley of the Apurímac, Ene and Mantaro Rivers is the largest coca basin of Peru.\n\n"
            "__Huallaga:__ The Upper Huallaga was the heart of the coca boom of the 1980s and 1990s.")
    found = split_passage(page, 0, len(page), "", "en")
    assert [s.text for s in found] == ["The Valley of the Apurímac, Ene and Mantaro Rivers is the largest coca "
                                       "basin of Peru.", "The Upper Huallaga was the heart of the coca boom of the "
                                       "1980s and 1990s."]
    assert all(page[s.start:s.end] == s.text for s in found)
    assert "vraem" in found[0].names


def test_initials_do_not_end_a_quoted_sentence():
    """The answer of "Who translated the hymn?" is "John C. Messenger": a name with an initial, a case name with
    "v." and "et al." stay in one sentence; real sentence ends and list items are still cut."""
    page = ("The hymn is known in English by John C. Messenger's translation of its title and first line. "
            "The ruling in Brown v. Board of Education of Topeka ended legal segregation in schools. "
            "Los estudios de Jones et al. muestran una tendencia al alza desde el siglo XIX. Después bajó.\n\n"
            "Medidas adoptadas por el gobierno:\n- Estado de emergencia en Lima y el Callao.\n"
            "- Patrullaje militar en las calles de Trujillo.")
    quoted = [s.text for s in split_passage(page, 0, len(page), "", "en")]
    assert quoted[:3] == [
        "The hymn is known in English by John C. Messenger's translation of its title and first line.",
        "The ruling in Brown v. Board of Education of Topeka ended legal segregation in schools.",
        "Los estudios de Jones et al. muestran una tendencia al alza desde el siglo XIX.",
    ]
    assert "Estado de emergencia en Lima y el Callao." in quoted
    assert "Patrullaje militar en las calles de Trujillo." in quoted


@pytest.mark.parametrize("question", [
    "How much cocaine was seized at the port of Chancay in 2025?",
    "¿Cuántos mineros ilegales hay en Arequipa?",
])
def test_near_miss_is_not_answered_plainly(reader_kb, question):
    answer = reader_kb.ask(question, llm=False)
    assert answer.abstained or answer.caveat, answer.text
    assert answer.citations, "the closest passages are shown"


@pytest.mark.parametrize("question", ["¿Cómo se cultivan tomates en una maceta?", "What is the capital of Australia?"])
def test_off_topic_question_abstains(reader_kb, question):
    """The documents are about something else: no statement is quoted, the closest passages are still listed."""
    answer = reader_kb.ask(question, llm=False)
    assert answer.abstained and not answer.quotes, answer.text
    assert answer.citations


@pytest.mark.parametrize("question, asked", [
    ("When did Los Pulpos start extorting builders?", "the date asked for"),
    ("¿Cuándo empezó Los Pulpos a extorsionar?", "la fecha que se pregunta"),
])
def test_answer_without_the_asked_kind_says_so(reader_kb, question, asked):
    """On topic, but no sentence gives a date: the closest statement is quoted with a caveat naming what is
    missing, in the question's language."""
    answer = reader_kb.ask(question, llm=False)
    assert not answer.abstained and answer.quotes and "Los Pulpos" in answer.quotes[0].text
    assert asked in answer.hedge and answer.hedge in answer.caveat
    assert answer.to_dict()["hedge"] == answer.hedge


def test_caveat_never_denies_a_quoted_answer(reader_kb):
    """A quoted sentence that carries the name asked is never captioned "no sentence states the name"."""
    answer = reader_kb.ask("Who leads Los Pulpos?", llm=False)
    assert not answer.abstained and "Carlos Arteaga" in " ".join(q.text for q in answer.quotes[:2])
    assert "name asked for" not in answer.caveat


def _passage(i: int, language: str):
    from peru_qa.retrieval import Passage

    return Passage(text=f"text {i}", chunk_id=i, doc_id=f"d{i}", title="", source="s", page=None, section="",
                   language=language, start=0, end=6, score=1.0 - i / 100)


class _RankedIndex:
    """A stand-in index whose ranking puts 20 Spanish passages above 10 English ones."""

    ranked = [_passage(i, "es") for i in range(20)] + [_passage(20 + i, "en") for i in range(10)]

    def retrieve(self, query, k=5, filters=None):
        from peru_qa.retrieval import Filters

        filters = Filters.coerce(filters)
        return [p for p in self.ranked if not filters or not filters.languages or p.language in filters.languages][:k]


def test_reader_also_gets_passages_in_the_other_language():
    """Keyword search cannot match across languages, so other-language evidence ranks low: the reader gets the
    top k plus the best other-language passages of a deeper pool."""
    from peru_qa.answer import OTHER_LANGUAGE_K, POOL_K, passages_for

    got = passages_for(_RankedIndex(), "¿Quién lidera Los Pulpos en Trujillo?", k=8)
    assert [p.chunk_id for p in got[:8]] == list(range(8))
    extra = got[8:]
    assert extra and len(extra) <= OTHER_LANGUAGE_K and all(p.language == "en" for p in extra)
    assert all(p.chunk_id < POOL_K for p in extra), "taken from the same ranking's top POOL_K"
    # A language filter is the user's choice: nothing is added.
    assert [p.chunk_id for p in passages_for(_RankedIndex(), "¿Quién lidera Los Pulpos?", k=8,
                                             filters={"language": "es"})] == list(range(8))


def test_kb_does_not_import_the_answer_layer():
    import ast
    from pathlib import Path

    import peru_qa.kb as kb_module

    tree = ast.parse(Path(kb_module.__file__).read_text(encoding="utf-8"))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not imported & {"answer", "reader", "llm", "answer_types", "sentences", "questions"}


def test_answer_types_is_a_leaf():
    import ast
    from pathlib import Path

    import peru_qa.answer_types as module

    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"__future__", "dataclasses", "retrieval", "records"}


def test_the_default_model_has_a_fitted_sentence_ranker():
    """ranker.json must match the features the reader computes, else the reader silently falls back to score."""
    from peru_qa.config import E5_MODEL
    from peru_qa.reader import RANK_FEATURES, ranker_for

    ranker = ranker_for(E5_MODEL)
    assert ranker is not None
    assert len(ranker["weights"]) == len(RANK_FEATURES)


def test_the_ranker_orders_the_answer(reader_kb):
    """Sentences are quoted in the fitted ranker's order and carry its features (one value per feature)."""
    from peru_qa.answer import gather
    from peru_qa.reader import RANK_FEATURES, select

    found = gather(reader_kb, "Who leads Los Pulpos?")
    assert found.ranked
    assert all(len(s.features) == len(RANK_FEATURES) for s in found.sentences)
    chosen = select(found).sentences
    best = max(found.sentences, key=lambda s: s.rank)
    assert best in chosen


@pytest.mark.parametrize("question, expected", [
    ("How many extortion complaints were filed in 2025?", "complaints"),
    ("¿Cuántas toneladas de droga decomisó la Policía?", "toneladas"),
    ("How much cocaine does Peru produce each year?", "cocaine"),
    ("What share of the budget goes to the police?", "%"),
    ("¿Qué porcentaje de los homicidios se cometió con armas de fuego?", "%"),
    ("How much did mining deforestation grow?", ""),  # "how much did…": no counted noun to require
    ("¿Cuánto creció la minería ilegal?", ""),
])
def test_what_a_quantity_question_counts(question, expected):
    from peru_qa.questions import counted

    assert counted(question) == expected


@pytest.mark.parametrize("asked, sentence, expected", [
    ("homicidios", "The National Police counted 2,126 homicides in Peru in 2024.", True),  # a translation
    ("toneladas", "Peru seized 20 tonnes of cocaine in 2024.", True),
    ("toneladas", "Peru exported 10 billion dollars of gold in 2023.", False),  # a figure of something else
    ("people", "Between 2022 and 2023 dozens of people were killed.", True),  # the same word, even without a figure
    ("defenders", "In 2023, 12 people were killed in protests.", False),
    ("%", "84 percent of the homicides were committed with firearms.", True),
    ("%", "There were 2,126 homicides.", False),
])
def test_a_quantity_answer_names_what_was_counted(reader_kb, asked, sentence, expected):
    from peru_qa.reader import names_counted

    assert names_counted(reader_kb, asked, sentence) is expected


@pytest.mark.parametrize("question, uncounted, caveat", [
    ("How many prisoners were there in Peru in 2024?", True, "clearly states the figure asked for"),
    ("¿Cuántos presos había en el Perú en 2024?", True, "indica claramente la cifra que se pregunta"),
    ("How many homicides were there in Peru in 2024?", False, ""),
    ("¿Cuántos homicidios registró el Perú en 2024?", False, ""),  # answered from English: a translation
])
def test_a_figure_of_something_else_is_quoted_with_a_caveat(reader_kb, question, uncounted, caveat):
    """Homicide figures for a question about prisoners: the closest statements are quoted, with the caveat that
    names what the sources lack; a figure of what was asked, in either language, is answered plainly."""
    from peru_qa.answer import gather

    assert gather(reader_kb, question).uncounted is uncounted
    answer = reader_kb.ask(question, llm=False)
    assert not answer.abstained
    assert (caveat in answer.caveat) if caveat else not answer.caveat, answer.caveat


@pytest.mark.parametrize("question, expected", [
    ("When was Lurigancho prison built?", "built"),
    ("When was César Hinostroza detained in Madrid?", "detained"),
    ("¿Cuándo fue detenido César Hinostroza en Madrid?", "detenido"),
    ("¿Cuándo nació Víctor Quispe Palomino?", "nacio"),
    ("In what year was Comrade Artemio sentenced?", ""),
])
def test_what_a_when_question_asks_about(question, expected):
    from peru_qa.questions import event

    assert event(question) == expected


def test_a_date_of_another_event_is_quoted_with_a_caveat(reader_kb):
    """"When was he born?" answered by the date he left the country: quoted, with the caveat. "Detained" is told
    across languages ("Fue detenido…")."""
    from peru_qa.answer import gather
    from peru_qa.reader import names_event

    assert names_event(reader_kb, "detained", "Fue detenido en Madrid ese mismo mes.")
    assert not names_event(reader_kb, "born", "El exjuez salió del Perú el 7 de octubre de 2018.")
    assert gather(reader_kb, "When was César Hinostroza born?").uncounted
    answer = reader_kb.ask("When was César Hinostroza born?", llm=False)
    assert answer.abstained or "clearly states the date" in answer.caveat, answer.text


def _sentence(passage: int, text: str, language: str, rank: float, vector):
    from peru_qa.answer_types import Sentence

    return Sentence(passage, 0, len(text), text, vector, frozenset(), language, score=0.8, rank=rank, answers=True)


def test_other_language_sentence_with_another_fact_supports_the_answer():
    """A question-language sentence opening the answer does not shut out the other language: the fact asked is
    often only there ("¿Dónde se esconde…?" → an English "hiding in Chile"). A translation of a quoted sentence
    (same figures) is still quoted once, in the question's language."""
    import numpy as np

    from peru_qa.answer_types import Evidence
    from peru_qa.reader import select

    axes = np.eye(4, dtype=np.float32)
    echo = _sentence(0, "Los Pulpos es la banda más conocida de Trujillo desde 2015.", "es", 1.0, axes[0])
    # A translation: the same year and a vector as close as a translation's (here the same).
    twin = _sentence(1, "Los Pulpos has been Trujillo's best-known gang since 2015.", "en", 0.8, axes[0])
    # Another fact of the same year: not a twin.
    fact = _sentence(1, "Police believe the leader of Los Pulpos has hidden in Chile since 2015.", "en", 0.5,
                     axes[2])
    passages = [_passage(0, "es"), _passage(1, "en")]
    found = Evidence("¿Dónde se esconde el líder de Los Pulpos?", "", "es", passages, [echo, twin, fact],
                     support=0.8, threshold=0.5, asks="place", ranked=True)
    chosen = [s.text for s in select(found).sentences]
    assert chosen[0] == echo.text
    assert fact.text in chosen, "the other language's fact is quoted after the question language's sentence"
    assert twin.text not in chosen, "the same fact is not quoted twice in two languages"


def test_adjacent_quotes_of_one_passage_become_one_in_page_order():
    from peru_qa.answer_types import Quote
    from peru_qa.reader import _join_adjacent

    page = "A patrol was ambushed near Natividad. Seven officers died.\n\nThe army sent troops."
    ambush, died, troops = (Quote(t, 1, page.index(t), page.index(t) + len(t)) for t in
                            ("A patrol was ambushed near Natividad.", "Seven officers died.", "The army sent troops."))
    # The answer quoted the fact first and its context second: one quote, in the order of the page.
    joined = _join_adjacent([died, ambush], lambda n: page)
    assert [(q.text, q.start, q.end) for q in joined] == [
        ("A patrol was ambushed near Natividad. Seven officers died.", 0, page.index("\n\n"))]
    # A paragraph break, another passage ([2]) or a sentence in between keep quotes apart.
    assert len(_join_adjacent([died, troops], lambda n: page)) == 2
    other = Quote(ambush.text, 2, ambush.start, ambush.end)
    assert len(_join_adjacent([died, other], lambda n: page)) == 2
    assert len(_join_adjacent([ambush, troops], lambda n: page)) == 2


@pytest.mark.parametrize("text, leans", [
    # Spanish drops the subject: a sentence opening with a verb is about what the one before names.
    ("Fue capturado en Medellín, Colombia, pocos días después.", True),
    ("Murieron siete policías y solo sobrevivió un capitán.", True),
    ("Se entregó a la policía en 2019.", True),
    ("La policía capturó a dos hombres en Trujillo.", False),
    ("Perú registró 2,126 homicidios en 2024.", False),
    ("Según la fiscalía, el grupo opera en Trujillo.", False),
])
def test_spanish_sentence_without_subject_leans_on_the_one_before(text, leans):
    from peru_qa.sentences import analyse

    assert analyse(text, "es")[1] is leans


def test_law_numbers_answer_which_law():
    from peru_qa.sentences import analyse

    assert "law" in analyse("El REINFO fue creado en 2016 por el Decreto Legislativo 1293.", "es")[0]
    assert "law" in analyse("Law 27693 created the Financial Intelligence Unit in 2002.", "en")[0]
    assert "law" not in analyse("The police counted 2,126 homicides in 2024.", "en")[0]


def test_a_retelling_in_the_other_language_with_one_more_detail_is_a_twin():
    """'…created by Law 27693 in 2002.' and '…fue creada en 2002 por la Ley 27693 y forma parte de la SBS desde
    2007.' state one fact: quoted once. Sharing one figure is not enough."""
    import numpy as np

    from peru_qa.reader import _twins

    axes = np.eye(3, dtype=np.float32)
    english = _sentence(0, "The Financial Intelligence Unit was created by Law 27693 in 2002.", "en", 1.0, axes[0])
    spanish = _sentence(1, "La UIF fue creada en 2002 por la Ley 27693 y forma parte de la SBS desde 2007.", "es",
                        0.5, axes[1])
    other = _sentence(1, "La UIF recibió 12.000 reportes de operaciones sospechosas en 2002.", "es", 0.5, axes[2])
    assert _twins(english, spanish) and _twins(spanish, english)
    assert not _twins(english, other)
    assert not _twins(english, _sentence(1, english.text, "en", 0.5, axes[0])), "twins are in two languages"


def test_the_question_languages_retelling_replaces_the_other_languages_sentence():
    """A Spanish question: the Spanish retelling (one more detail) opens the answer instead of the English sentence,
    and the English one is not quoted too."""
    import numpy as np

    from peru_qa.answer_types import Evidence
    from peru_qa.reader import select

    axes = np.eye(3, dtype=np.float32)
    english = _sentence(0, "The Financial Intelligence Unit was created by Law 27693 in 2002.", "en", 1.0, axes[0])
    spanish = _sentence(1, "La UIF fue creada en 2002 por la Ley 27693 y forma parte de la SBS desde 2007.", "es",
                        0.5, axes[1])
    found = Evidence("¿Qué ley creó la UIF?", "", "es", [_passage(0, "en"), _passage(1, "es")], [english, spanish],
                     support=0.8, threshold=0.5, asks="law", ranked=True)
    assert [s.text for s in select(found).sentences] == [spanish.text]


def test_months_in_both_languages():
    from peru_qa.sentences import months

    assert months("¿Cuánta gente había en marzo de 2025?") == months("In March 2025") == {3}
    assert months("el 22 de octubre y en setiembre") == {9, 10}
    assert months("in May 2024") == months("on 3 May") == {5}
    assert not months("What may happen in 2025?")


def test_a_sentence_about_another_month_lacks_what_was_asked(reader_kb):
    from peru_qa.answer import gather
    from peru_qa.reader import RANK_FEATURES

    missing = RANK_FEATURES.index("missing_number")

    def flag(question: str) -> float:
        found = gather(reader_kb, question)
        return next(s.features[missing] for s in found.sentences if "7 de octubre de 2018" in s.text)

    assert flag("¿Adónde fue César Hinostroza en octubre de 2018?") == 0.0
    assert flag("Where did César Hinostroza go in March 2018?") == 1.0


def test_the_caveat_reads_the_sentence_that_opens_the_answer():
    """The opening sentence is chosen once (`lead_sentence`, twin swap included) for both the answer and its
    checks: the answer's support and caveat are about the sentence the user reads first."""
    import numpy as np

    from peru_qa.reader import lead_sentence

    axes = np.eye(2, dtype=np.float32)
    spanish = _sentence(0, "El fundador fue capturado en septiembre de 1992 y murió en prisión en septiembre de 2021.",
                        "es", 1.0, axes[0])
    english = _sentence(1, "Its founder was captured on 12 September 1992 and died in prison in September 2021.",
                        "en", 0.5, axes[1])
    assert lead_sentence([spanish, english], "en", ranked=True) is english
    assert lead_sentence([spanish, english], "es", ranked=True) is spanish


WORDING = {
    "votos": ("Ampliación del REINFO", "es", (
        "En diciembre de 2025 el Congreso aprobó otra ampliación del registro hasta fines de 2026. "
        "El pleno votó 60 a favor, 36 en contra y 8 abstenciones.")),
    "pataz": ("Pataz", "es", (
        "Pataz es una provincia de la sierra de La Libertad, en el norte del país. "
        "El presunto autor intelectual de la matanza de Pataz fue capturado en Medellín pocos días después.")),
    "reinfo": ("The REINFO mining registry", "en", (
        "The REINFO registry of small miners was created in 2016 by Legislative Decree 1293 to formalise them. "
        "Registration closed in August 2017, and the original deadline to formalise expired in August 2020.")),
}


@pytest.fixture(scope="module")
def wording_kb(tmp_path_factory, embedder):
    yield from _index_of(tmp_path_factory.mktemp("wording"), embedder, WORDING)


def test_soft_coverage_finds_the_asked_words_translated_or_inflected(wording_kb):
    """"votes in favour" is stated by "votó 60 a favor" (a translation), "murdered" by "murders" (a word form);
    keyword coverage finds neither across languages."""
    from peru_qa.questions import analyse_question
    from peru_qa.reader import asked_words, soft_coverage

    asked = asked_words(analyse_question("How many votes in favour did the extension get?", "en"))
    assert "how" not in asked and "votes" in asked
    stated, other = soft_coverage(wording_kb, asked, ["El pleno votó 60 votos a favor y 36 en contra.",
                                                      "La sierra de La Libertad está en el norte del país."])
    assert stated > other
    assert soft_coverage(wording_kb, ["murdered"], ["Four men were convicted of the murders."]) == [1.0]
    assert soft_coverage(wording_kb, [], ["Any sentence."]) == [0.0]


@pytest.mark.parametrize("question, fact", [
    ("How many votes in favour did the REINFO extension get in Congress?", "60 a favor"),
    ("¿En qué ciudad fue capturado el autor de la matanza de Pataz?", "Medellín"),
])
def test_the_sentence_stating_the_asked_words_opens_the_answer(wording_kb, question, fact):
    """The sentence that states what was asked, in other words or in the other language, opens the answer ahead
    of a sentence more similar as a whole (the extension's date, the province of Pataz)."""
    from peru_qa.answer import ask

    answer = ask(wording_kb, question)
    assert not answer.abstained
    assert fact in answer.text.split("[1]")[0]


def test_word_vectors_are_embedded_once_per_index(tmp_path, embedder, monkeypatch):
    """`prepare` stores the vectors of every word of the index's sentences; the reader then reads them from the
    store instead of embedding them per question (and a second prepare embeds none)."""
    from peru_qa import KnowledgeBase
    from peru_qa import reader as R
    from peru_qa.answer import _SHARED_CACHE, prepare, prepare_words
    from peru_qa.kb import TextDocument
    from peru_qa.text import content_words

    title, lang, text = WORDING["votos"]
    with KnowledgeBase(tmp_path / "index", embedder=embedder) as kb:
        kb.add_texts([TextDocument("votos", text, title=title, language=lang)])
        prepare(kb)
        store = _SHARED_CACHE.store_for(kb.path)
        words = content_words(text)
        assert set(store.get_words(kb.model_name, words)) == set(words)
        assert prepare_words(kb, store, list(words)) == 0
        title, lang, later = WORDING["pataz"]  # a document added later: prepare embeds its new words only
        kb.add_texts([TextDocument("pataz", later, title=title, language=lang)])
        prepare(kb)
        assert set(store.get_words(kb.model_name, list(content_words(later)))) == set(content_words(later))
        monkeypatch.setattr(R, "_WORD_VECTORS", type(R._WORD_VECTORS)())

        def no_encoding(*args, **kwargs):
            raise AssertionError("a stored word was embedded again")

        monkeypatch.setattr(kb.embedder, "encode", no_encoding)
        coverage = R.soft_coverage(kb, ["favor"], [text.split(". ")[1]], store)
        assert coverage == [1.0]
