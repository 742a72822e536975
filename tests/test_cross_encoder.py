"""The cross-encoder reader (issue 31): it loads from the shipped adapter, prefers the sentence that answers over a
more similar one without the fact (in both languages and across them), re-ranks the ranker's best sentences in the
default answer path and can be turned off; answers open with a short line when the question asks for a number,
date, name or place that the opening quote holds; PDF line breaks are joined for display only.
"""

from __future__ import annotations

import pytest
from test_reader import CORPUS, _index_of, _quotes_are_verbatim

from peru_qa import cross_encoder
from peru_qa.loaders import load
from peru_qa.questions import analyse_question
from peru_qa.sentences import split_passage
from peru_qa.short_answer import short_line

needs_adapter = pytest.mark.skipif(not cross_encoder.ADAPTER_FILE.is_file(), reason="the adapter is not built")


@pytest.fixture(scope="module")
def encoder():
    loaded = cross_encoder.get()
    assert loaded is not None, "the shipped cross-encoder did not load"
    return loaded


@pytest.fixture(scope="module")
def ce_kb(tmp_path_factory, embedder):
    yield from _index_of(tmp_path_factory.mktemp("ce"), embedder, CORPUS)


ANSWERS = {
    "en": "The National Police counted 2,126 homicides in Peru in 2024, most of them in Lima and La Libertad.",
    "es": "La Policía Nacional contó 2.126 homicidios en el Perú en 2024, la mayoría en Lima y La Libertad.",
}
SIMILAR = {  # closer to the question's words, without the figure
    "en": "Homicides in Peru in 2024 were a serious and growing concern for the National Police.",
    "es": "Los homicidios en el Perú en 2024 fueron una preocupación seria y creciente para la Policía Nacional.",
}
QUESTIONS = {"en": "How many homicides did the National Police count in Peru in 2024?",
             "es": "¿Cuántos homicidios contó la Policía Nacional en el Perú en 2024?"}


@needs_adapter
@pytest.mark.parametrize("question_language, sentence_language",
                         [("en", "en"), ("es", "es"), ("es", "en"), ("en", "es")])
def test_it_prefers_the_sentence_that_answers(encoder, question_language, sentence_language):
    scores = encoder.score(QUESTIONS[question_language],
                           [SIMILAR[sentence_language], ANSWERS[sentence_language]])
    assert scores[1] > scores[0], scores


@needs_adapter
def test_the_adapter_is_small_and_described():
    config = cross_encoder.config()
    assert cross_encoder.ADAPTER_FILE.stat().st_size < 8 * 2**20
    assert {"layers", "rank", "scale", "targets", "top", "weight", "trained"} <= set(config)
    assert config["trained"]["data"].startswith("dev splits only") and "no test question" in config["trained"]["data"]


@needs_adapter
def test_it_reads_the_shipped_corpus_across_languages(encoder):
    """documents/: a Spanish question, its answer in the English VRAEM brief among that paragraph's sentences."""
    from pathlib import Path

    brief = load(Path(__file__).resolve().parents[1] / "documents" / "en-vraem-shining-path.md")
    sentences = [s.text for page in brief.pages for s in split_passage(page.text, 0, len(page.text), "", "en")]
    answer = next(s for s in sentences if s.startswith("Seven police officers were killed"))
    others = [s for s in sentences if "Natividad" in s or "police" in s.lower()][:6]
    candidates = [s for s in others if s != answer] + [answer]
    scores = encoder.score("¿Cuántos policías murieron en la emboscada de Natividad?", candidates)
    assert candidates[int(scores.argmax())] == answer, list(zip(candidates, scores))


@needs_adapter
def test_the_answer_path_reads_with_it_and_can_be_turned_off(ce_kb, monkeypatch):
    from peru_qa.answer import gather

    found = gather(ce_kb, "How many homicides were there in Peru in 2024?")
    assert any(s.reading is not None for s in found.sentences)
    answer = ce_kb.ask("How many homicides were there in Peru in 2024?", llm=False)
    assert any(figure in answer.quotes[0].text for figure in ("2,126", "2,011"))  # police or SINADEF: both count
    monkeypatch.setenv("PERU_QA_READER", "ranker")
    assert not cross_encoder.enabled()
    found = gather(ce_kb, "How many homicides were there in Peru in 2024?")
    assert all(s.reading is None for s in found.sentences)
    assert not ce_kb.ask("What is the capital of Australia?", llm=False).citations or \
        ce_kb.ask("What is the capital of Australia?", llm=False).abstained


@pytest.mark.parametrize("question, sentence, line", [
    ("How many hectares of coca did DEVIDA count in 2023?",
     "DEVIDA counted 92,784 hectares of coca in 2023, slightly fewer than in 2022.",
     "**92,784 hectares** (DEVIDA) [1]"),
    ("¿Cuántas hectáreas de coca había en 2023?", "Según DEVIDA, en 2023 había 92.784 hectáreas de coca en el Perú.",
     "**92.784 hectáreas** en 2023 (DEVIDA) [1]"),
    ("¿Cuándo salió Hinostroza del Perú?",
     "César Hinostroza salió del Perú el 7 de octubre de 2018 por la frontera con Ecuador.",
     "**7 de octubre de 2018** [1]"),
    ("Who leads Los Pulpos?", "The gang is led by Carlos Arteaga, alias \"El Monstruo\", who is hiding abroad.",
     "**Carlos Arteaga** [1]"),
    ("Where is the leader of Los Pulpos hiding?", "Police believe that the leader of Los Pulpos is hiding in Paraguay.",
     "**Paraguay** [1]"),
])
def test_short_line_holds_the_asked_value(question, sentence, line):
    language = "es" if question.startswith("¿") else "en"
    asked = analyse_question(question, language)
    assert short_line(asked.asks, sentence, language, asked, 1) == line


@pytest.mark.parametrize("question, sentence", [
    ("What is the REINFO?", "The REINFO is a register of small miners created in 2016 by Legislative Decree 1293."),
    # Two figures, and nothing in the question tells which one is asked.
    ("How much did it grow?", "The area grew from 61,777 hectares in 2020 to 80,681 hectares in 2021."),
    ("Who leads the gang?", "The gang extorts builders and transport firms across the city."),
])
def test_short_line_not_shown_without_one_value_of_the_asked_kind(question, sentence):
    asked = analyse_question(question, "en")
    assert short_line(asked.asks, sentence, "en", asked, 1) == ""


def test_answers_open_with_the_short_line(ce_kb):
    answer = ce_kb.ask("How many homicides did the police count in Peru in 2024?", llm=False)
    assert answer.short.startswith("**2,126 homicides**"), answer.text
    assert answer.text.startswith(answer.short + "\n\n")
    assert answer.to_dict()["short"] == answer.short
    _quotes_are_verbatim(ce_kb, answer)
    assert not ce_kb.ask("¿Qué es el REINFO?", llm=False).short


def test_pdf_line_breaks_are_joined_for_display_only(tmp_path, embedder):
    from peru_qa.ui import answer_markdown

    corpus = {"pdf-like": ("Aviation", "en", (
        "In 1995 the air force shot down a\nplane carrying 300 kilograms of cocaine over the\nHuallaga valley, "
        "according to the police report.\n\nThe air bridge to Colombia was cut in the following years."))}
    for kb in _index_of(tmp_path, embedder, corpus):
        answer = kb.ask("How much cocaine was the plane carrying when it was shot down?", llm=False)
        assert not answer.abstained, answer.text
        quote = answer.quotes[0]
        passage = answer.citations[quote.n - 1]
        assert kb.page_text(passage.doc_id, passage.page)[quote.start:quote.end] == quote.text
        assert "\n" in quote.text  # verbatim, as on the page
        assert "shot down a plane carrying" in answer.text
        assert "shot down a plane carrying" in answer_markdown(answer)
