"""Answer composition: markers ↔ sources, verbatim quotes, abstention in both languages, follow-ups."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from peru_qa.answer import Answer, SentenceCache, ask, history_questions, is_follow_up, rewrite_query

MARKER = re.compile(r"\[(\d+)\]")


def _sentences(answer: Answer) -> list[tuple[str, int]]:
    """The quoted statements and their [n] (after the short-answer line, which is not a quote)."""
    text = answer.text[len(answer.short):] if answer.short and answer.text.startswith(answer.short) else answer.text
    return [(s.strip(), int(n)) for s, n in re.findall(r"(.+?) \[(\d+)\](?: |$)", text)]


def _check_cited(kb, answer: Answer) -> None:
    assert not answer.abstained
    numbers = {int(n) for n in MARKER.findall(answer.text)}
    assert numbers, answer.text
    assert numbers == set(range(1, len(answer.citations) + 1)), "every [n] maps to a listed source and back"
    pairs = _sentences(answer)
    assert pairs and MARKER.sub("", answer.text).strip()
    for sentence, n in pairs:
        passage = answer.citations[n - 1]
        # Verbatim from the page; the answer's text shows a quote's line breaks joined (Answer.quotes keep them).
        assert sentence in " ".join(kb.page_text(passage.doc_id, passage.page).split()), "quotes are verbatim"
        assert sentence in " ".join(passage.text.split())


@pytest.mark.parametrize("question, needle", [
    ("Who controls drug trafficking in the VRAEM?", "Quispe Palomino"),
    ("¿Quién controla el narcotráfico en el VRAEM?", "Quispe Palomino"),
    ("What did Operation Mercurio do?", "La Pampa"),
    # Question words are not content: "does", "stand", "for" once counted as unmatched words and made a
    # definition look half-supported, so the answer abstained.
    ("What does VRAEM stand for?", "Valley of the Apurímac"),
    ("¿Qué significa VRAEM?", "Valle de los Ríos Apurímac"),
    ("¿Cómo afecta la extorsión a los choferes de buses en Lima?", "choferes"),
])
def test_extractive_answer_cites_verbatim(qa_kb, question, needle):
    answer = qa_kb.ask(question)
    _check_cited(qa_kb, answer)
    assert needle in answer.text
    assert answer.language == ("es" if question.startswith("¿") else "en")
    assert answer.mode == "extractive" and not answer.flagged


def test_answer_is_short_and_not_redundant(qa_kb):
    answer = ask(qa_kb, "Who controls drug trafficking in the VRAEM?", cache=SentenceCache())
    sentences = [s for s, _ in _sentences(answer)]
    assert 1 <= len(sentences) <= 3
    assert len(set(sentences)) == len(sentences)


@pytest.mark.parametrize("question, language, phrase", [
    ("What is the capital of Australia?", "en", "do not answer"),
    ("Who won the 2018 World Cup?", "en", "do not answer"),
    ("¿Cuál es la capital de Australia?", "es", "no responden"),
    ("¿Quién ganó el Mundial de 2018?", "es", "no responden"),
])
def test_abstains_in_the_question_language(qa_kb, question, language, phrase):
    answer = qa_kb.ask(question)
    assert answer.abstained
    assert answer.language == language
    assert phrase in answer.text
    assert not MARKER.search(answer.text)
    assert answer.citations, "the closest passages are shown instead"


def test_follow_up_detection_and_rewriting():
    assert is_follow_up("and who finances them?")
    assert is_follow_up("¿y quién los financia?")
    assert is_follow_up("What about Trujillo?")
    assert not is_follow_up("Who controls drug trafficking in the VRAEM?")
    assert not is_follow_up("¿Qué es la Operación Mercurio en Madre de Dios?")
    history = [{"role": "user", "content": "Who controls drug trafficking in the VRAEM?"},
               {"role": "assistant", "content": "The MPCP [1]"}]
    assert history_questions(history) == ["Who controls drug trafficking in the VRAEM?"]
    assert history_questions([("q1", "a1"), "q2"]) == ["q1", "q2"]
    rewritten = rewrite_query("and who finances them?", history)
    assert "VRAEM" in rewritten and "finances" in rewritten
    assert rewrite_query("What is the REINFO registry?", history) == "What is the REINFO registry?"
    # a chain of follow-ups keeps the topic of the last standalone question
    chain = ["Who controls drug trafficking in the VRAEM?", "and who finances them?"]
    assert rewrite_query("and where?", chain).startswith("Who controls drug trafficking in the VRAEM?")


@pytest.mark.parametrize("first, follow_up, needle", [
    ("Who controls drug trafficking in the VRAEM?", "and who finances them?", "protection fees"),
    ("¿Quién controla el narcotráfico en el VRAEM?", "¿y quién los financia?", "cupos"),
])
def test_follow_up_is_answered_in_context(qa_kb, first, follow_up, needle):
    alone = qa_kb.ask(follow_up)
    answer = qa_kb.ask(follow_up, [first])
    assert answer.query != follow_up and "VRAEM" in answer.query
    _check_cited(qa_kb, answer)
    assert needle in answer.text
    assert alone.query == follow_up.strip()


def test_empty_index_says_so(tmp_path, embedder):
    from peru_qa import KnowledgeBase

    with KnowledgeBase(tmp_path / "empty", embedder=embedder) as kb:
        answer = kb.ask("¿Qué es el VRAEM?")
    assert answer.abstained and answer.language == "es" and not answer.citations


def test_to_dict_is_json(qa_kb):
    data = qa_kb.ask("What did Operation Mercurio do?").to_dict()
    text = json.dumps(data, ensure_ascii=False)
    assert data["citations"][0]["n"] == 1 and "La Pampa" in text


def test_answerability_set_is_well_formed():
    rows = [json.loads(line) for line in
            (Path(__file__).parent / "data" / "answerability.jsonl").read_text(encoding="utf-8").splitlines()]
    for answerable in (True, False):
        assert sum(r["answerable"] is answerable for r in rows) >= 30
        for language in ("en", "es"):
            assert any(r["answerable"] is answerable and r["language"] == language for r in rows)


@pytest.mark.parametrize("question, language, caveat", [
    ("Who controls drug trafficking in the VRAEM according to Interpol?", "en",
     "The cited sources do not mention: Interpol."),
    ("¿Quién controla el narcotráfico en el VRAEM según Interpol?", "es",
     "Las fuentes citadas no mencionan: Interpol."),
])
def test_answer_says_which_names_the_sources_do_not_mention(qa_kb, question, language, caveat):
    """A near miss (the documents answer a close question, not this one) is answered with a caveat."""
    answer = qa_kb.ask(question)
    assert not answer.abstained and "Quispe Palomino" in answer.text
    assert answer.unmatched == ["Interpol"] and answer.caveat == caveat
    assert answer.to_dict()["unmatched"] == ["Interpol"]
    plain = qa_kb.ask(question.replace(" according to Interpol", "").replace(" según Interpol", ""))
    assert plain.unmatched == [] and plain.caveat == ""  # "VRAEM" is in the sources: nothing to say


def test_names_are_found_by_any_word_and_opening_capitals_are_not_names(qa_kb):
    from peru_qa.answer import unmatched_names

    passages = qa_kb.retrieve("Quispe Palomino VRAEM", k=2, filters={"language": "en"})
    assert unmatched_names(qa_kb, "Who is Víctor Quispe Palomino?", passages, "en") == []
    assert unmatched_names(qa_kb, "Where does Jorge Quispe live?", passages, "en") == []  # surname is enough
    assert unmatched_names(qa_kb, "What did the Shining Path do in Arequipa in 1983?", passages, "en") == [
        "Arequipa", "1983"]
    # Only passages in the question's language are compared: names are often translated across languages.
    assert unmatched_names(qa_kb, "¿Qué hizo Sendero Luminoso en Arequipa?", passages, "es") == []


def test_reference_lists_are_not_quoted_even_when_the_heading_is_in_an_earlier_chunk(tmp_path, embedder):
    from peru_qa import KnowledgeBase
    from peru_qa.kb import TextDocument
    from peru_qa.reader import _chunk_sentences
    from peru_qa.retrieval import Passage

    body = ("La Policía Nacional mantiene el control del orden interno durante la emergencia en Lima.\n\n"
            "Fuentes\n\n")
    refs = ('- El Comercio, "Ley del Congreso ya golpea la lucha contra el crimen organizado" (agosto de 2024); '
            "RPP, cobertura de la Ley 32108 (2024).\n"
            "- Congreso de la República, Ley 30077 (2013), Ley 31990 (2024) y Ley 32108 (2024) sobre crimen.\n")
    with KnowledgeBase(tmp_path / "idx", embedder=embedder) as kb:
        kb.add_texts([TextDocument("estado", body + refs, title="Respuesta del Estado", language="es")])
        doc = kb.documents()[0]
        page = kb.page_text(doc.id, None)
        assert refs.strip() in page

        def quoted(start: int) -> list[str]:
            passage = Passage(text=page[start:], chunk_id=-1 - start, doc_id=doc.id, title=doc.title,
                              source="estado", page=None, section="", language="es", start=start,
                              end=len(page), score=1.0)
            infos, _ = _chunk_sentences(kb, passage, None)
            return [info.text for info in infos]

        assert quoted(0) == [body.split("\n")[0]]  # the heading inside the passage
        assert quoted(page.index("- El Comercio")) == []  # the heading only in the text before the passage
