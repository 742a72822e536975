"""People, organizations and places (issue 33): normalisation and merging units, extraction at ingest on both
backends (kept in step with add / replace / remove; filled in by rebuild), `kb.entities` / `kb.entity`, the CLI's
`entities --json`, the `mentioning` filter, the entity panel's rendering, and one check over the shipped corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from peru_qa import KnowledgeBase
from peru_qa.cli import main
from peru_qa.entities import DocumentText, clean_name, entity_key, extract, fold, sentence_date
from peru_qa.ingest import TextDocument
from peru_qa.records import Filters

ROOT = Path(__file__).resolve().parents[1]

# --- normalisation and merging ------------------------------------------------------------------------


@pytest.mark.parametrize("surface, name", [
    ("President Dina Boluarte", "Dina Boluarte"),
    ("la presidenta Dina Boluarte", "Dina Boluarte"),
    ("el fiscal Juan Carbajal", "Juan Carbajal"),
    ("General José Zavala", "José Zavala"),
    ("Comrade José", "José"),
    ("Boluarte's", "Boluarte"),
    ("“Los Pulpos”", "Los Pulpos"),
    ("La Libertad", "La Libertad"),  # an article that is part of a name stays
    ("El Comercio", "El Comercio"),
])
def test_clean_name_drops_titles_possessives_and_quotes(surface, name):
    assert clean_name(surface) == name


@pytest.mark.parametrize("a, b", [
    ("Shining Path", "Sendero Luminoso"),
    ("PCP-SL", "Sendero Luminoso"),
    ("National Police", "Policía Nacional del Perú"),
    ("PNP", "la Policía Nacional"),
    ("Interior Ministry", "Ministerio del Interior"),
    ("Peru", "Perú"),
    ("United States", "Estados Unidos"),
    ("BOLUARTE", "Boluarte's"),
    ("Policia Nacional del Peru", "Policía Nacional del Perú"),
])
def test_names_of_one_entity_share_a_key(a, b):
    assert entity_key(a) == entity_key(b)


@pytest.mark.parametrize("a, b", [("Sendero Luminoso", "Militarizado Partido Comunista del Perú"),
                                  ("Lima", "Perú"), ("Dina Boluarte", "Pedro Castillo")])
def test_different_entities_keep_apart(a, b):
    assert entity_key(a) != entity_key(b)


def test_fold_ignores_case_accents_and_spacing():
    assert fold("  JUNÍN ") == fold("Junin") == "junin"


EN_TEXT = ("# The VRAEM\n\nPresident Dina Boluarte visited Pichari district in March 2024. Boluarte's government said "
           'that the Shining Path remnant led by Víctor Quispe Palomino, alias "José", still operates there. '
           "The Truth and Reconciliation Commission (CVR) counted the dead; the CVR report came out in 2003.\n")
ES_TEXT = ("# El VRAEM\n\nLa presidenta Dina Boluarte dijo en 2023 que Sendero Luminoso opera en el VRAEM. "
           "El fiscal Juan Carbajal Quispe investiga a Los Pulpos en Trujillo. Carbajal pidió apoyo a la Policía "
           "Nacional del Perú.\n")


def _spans(text: str, language: str, **kw) -> dict[str, tuple[str, str]]:
    return {m.text: (m.type, m.entity) for m in extract(DocumentText([(1, text)], language, {}), **kw)}


@pytest.mark.parametrize("use_model", [True, False])
def test_extraction_resolves_short_forms_within_a_document(use_model):
    en = _spans(EN_TEXT, "en", use_model=use_model)
    assert en["Dina Boluarte"] == ("person", "Dina Boluarte")  # the title is outside the span
    assert en["Boluarte"] == ("person", "Dina Boluarte")  # the possessive too, and the surname resolves
    assert en["José"] == ("person", "Víctor Quispe Palomino")  # a nom de guerre, to its bearer
    assert en["Shining Path"] == ("organization", "Sendero Luminoso")
    assert en["CVR"][1] == en["Truth and Reconciliation Commission"][1]  # an acronym defined in brackets
    assert en["Pichari"][0] == "place"
    es = _spans(ES_TEXT, "es", use_model=use_model)
    assert es["Juan Carbajal Quispe"] == ("person", "Juan Carbajal Quispe")  # a new name: rules, not gazetteer
    assert es["Carbajal"] == ("person", "Juan Carbajal Quispe")
    assert es["Los Pulpos"][0] == "organization"
    assert es["Policía Nacional del Perú"] == ("organization", "Policía Nacional del Perú")
    assert "Perú" not in es  # the longest name wins: no place inside the police's name


def test_mentions_carry_offsets_sentence_and_date():
    rows = extract(DocumentText([(3, ES_TEXT)], "es", {"checked": "2026-12"}))
    for m in rows:
        assert ES_TEXT[m.start : m.end] == m.text and m.page == 3
        assert ES_TEXT[m.sent_start : m.sent_end].count(m.text) >= 1
    boluarte = next(m for m in rows if m.text == "Dina Boluarte")
    assert (boluarte.date, boluarte.date_source) == ("2023", "sentence")
    carbajal = next(m for m in rows if m.text == "Carbajal")
    assert (carbajal.date, carbajal.date_source) == ("2026-12", "checked")  # no date in its sentence


@pytest.mark.parametrize("sentence, date", [("capturado en septiembre de 1992", "1992-09"),
                                            ("In March 2024 the police", "2024-03"), ("in 2003.", "2003"),
                                            ("no date here", None)])
def test_sentence_dates(sentence, date):
    assert sentence_date(sentence) == date


# --- both backends -------------------------------------------------------------------------------------


@pytest.fixture(params=["embedded", "postgres"])
def location(request, tmp_path):
    if request.param == "embedded":
        return str(tmp_path / "index")
    return request.getfixturevalue("pg_url")


def _texts(es_text: str = ES_TEXT) -> list[TextDocument]:
    return [TextDocument("notes/vraem-en", EN_TEXT, "VRAEM note", "en"),
            TextDocument("notes/vraem-es", es_text, "Nota VRAEM", "es")]


def _by_name(kb: KnowledgeBase) -> dict:
    return {e.name: e for e in kb.entities()}


def test_mentions_follow_add_replace_remove(location, embedder):
    with KnowledgeBase(location, embedder=embedder) as kb:
        assert kb.add_texts(_texts()).ok
        found = _by_name(kb)
        sendero = found["Sendero Luminoso"]
        assert sendero.type == "organization" and "Shining Path" in sendero.aliases
        assert sendero.documents == ["vraem-en", "vraem-es"]  # one entity, both languages
        assert found["Dina Boluarte"].mentions == 3 and "Boluarte" in found["Dina Boluarte"].aliases
        assert {e.name for e in kb.entities(type="place")} >= {"Pichari", "Trujillo", "VRAEM"}
        assert [e.name for e in kb.entities(query="pulpos")] == ["Los Pulpos"]

        # replacing a document replaces its mentions
        kb.add_texts(_texts(ES_TEXT.replace("Los Pulpos", "Los Gallegos")))
        found = _by_name(kb)
        assert "Los Gallegos" in found and "Los Pulpos" not in found
        assert found["Sendero Luminoso"].mentions == sendero.mentions

        # removing one takes its mentions with it
        kb.remove("vraem-es")
        found = _by_name(kb)
        assert "Juan Carbajal Quispe" not in found and "Los Gallegos" not in found
        assert found["Sendero Luminoso"].documents == ["vraem-en"]


def test_entity_page_and_filters(location, embedder, capsys):
    with KnowledgeBase(location, embedder=embedder) as kb:
        kb.add_texts(_texts())
        detail = kb.entity("Shining Path")  # any name, either language
        assert detail is not None and detail.entity.name == "Sendero Luminoso"
        assert {m.document for m in detail.mentions} == {"vraem-en", "vraem-es"}
        assert all(m.text in m.sentence for m in detail.mentions)
        assert ("2023", 1) in detail.timeline
        withs = {c.name: c.count for c in detail.co_mentions}
        assert withs["Dina Boluarte"] >= 2 and withs["VRAEM"] >= 1
        assert kb.entity("Carbajal").entity.name == "Juan Carbajal Quispe"  # a short form finds the person
        assert kb.entity("Nobody Atall") is None

        # the mentioning filter: documents that name the entity, under any of its names
        es_doc = kb.find_document("vraem-es").id
        allowed = kb.store.chunk_ids_where(Filters(entities=["Juan Carbajal Quispe"]))
        assert len(allowed) and {r["doc_id"] for r in kb.store.chunk_rows([int(i) for i in allowed]).values()} \
            == {es_doc}
        assert {p.doc_id for p in kb.retrieve("VRAEM", k=10, filters={"mentioning": "Shining Path"})} == \
            {d.id for d in kb.documents()}
        assert {p.doc_id for p in kb.retrieve("VRAEM", k=10, filters={"mentioning": ["Carbajal"]})} == {es_doc}
        assert kb.retrieve("VRAEM", filters={"mentioning": "Nobody Atall"}) == []
        assert {e.name for e in kb.entities(filters={"language": "es"})} >= {"Juan Carbajal Quispe"}
        assert "Pichari" not in {e.name for e in kb.entities(filters={"language": "es"})}

    capsys.readouterr()
    assert main(["entities", "--json", "--index", location]) == 0
    listed = json.loads(capsys.readouterr().out)
    sendero = next(e for e in listed if e["name"] == "Sendero Luminoso")
    assert sendero == {"name": "Sendero Luminoso", "type": "organization", "aliases": ["Shining Path"],
                       "documents": ["vraem-en", "vraem-es"], "mentions": sendero["mentions"]}
    assert main(["entities", "--type", "person", "--json", "--index", location]) == 0
    assert {e["type"] for e in json.loads(capsys.readouterr().out)} == {"person"}
    assert main(["entities", "Shining Path", "--json", "--index", location]) == 0
    page = json.loads(capsys.readouterr().out)
    assert page[0]["name"] == "Sendero Luminoso" and page[0]["mentioned_in"] and page[0]["co_mentions"]
    assert main(["entities", "Boluarte", "--index", location]) == 0
    assert "Dina Boluarte (person)" in capsys.readouterr().out
    assert main(["search", "VRAEM", "--mentioning", "Carbajal", "--json", "--index", location]) == 0
    assert {h["title"] for h in json.loads(capsys.readouterr().out)} == {"Nota VRAEM"}


def test_rebuild_extracts_an_index_built_before_extraction(location, embedder, monkeypatch):
    import peru_qa.ingest as ingest

    monkeypatch.setattr(ingest, "EXTRACT_ENTITIES", False)
    with KnowledgeBase(location, embedder=embedder) as kb:
        kb.add_texts(_texts())
        assert kb.entities() == []
        monkeypatch.setattr(ingest, "EXTRACT_ENTITIES", True)
        assert kb.lacks_entities
        result = kb.rebuild()
        assert result["entities_extracted"] == 2 and not kb.lacks_entities
        assert "Sendero Luminoso" in _by_name(kb)
        assert kb.rebuild()["entities_extracted"] == 0  # done once
        assert not kb.check(repair=False).problems


def test_the_default_index_gets_its_entities_when_brought_up_to_date(tmp_path, embedder, monkeypatch):
    import peru_qa.ingest as ingest
    from peru_qa import bring_up_to_date

    monkeypatch.setattr(ingest, "EXTRACT_ENTITIES", False)
    with KnowledgeBase(tmp_path / "index", embedder=embedder) as kb:
        kb.add_texts(_texts())
        monkeypatch.setattr(ingest, "EXTRACT_ENTITIES", True)
        phases: list[str] = []
        bring_up_to_date(kb, None, lambda *a: None, phase=phases.append)
        assert phases == ["entities"] and "Sendero Luminoso" in _by_name(kb)


def test_an_index_from_before_the_migration_gets_its_entities_on_rebuild(tmp_path, embedder, capsys):
    """An index folder at the schema before entities (the mentions tables dropped, user_version set back) is
    migrated on open, and `peru-qa rebuild` extracts its documents."""
    import sqlite3

    from peru_qa.store import DB_NAME, MIGRATIONS

    folder = tmp_path / "index"
    with KnowledgeBase(folder, embedder=embedder) as kb:
        kb.add_texts(_texts())
    number = next(n for n, sql in enumerate(MIGRATIONS) if "CREATE TABLE mentions" in sql)
    db = sqlite3.connect(folder / DB_NAME)
    db.executescript(f"DROP TABLE mentions; DROP TABLE entity_runs; PRAGMA user_version={number};")
    db.close()
    with KnowledgeBase(folder, embedder=embedder) as kb:
        assert kb.entities() == []
    capsys.readouterr()
    assert main(["rebuild", "--index", str(folder)]) == 0
    assert "entities extracted from 2 documents" in capsys.readouterr().out
    with KnowledgeBase(folder, embedder=embedder) as kb:
        assert "Sendero Luminoso" in _by_name(kb)


def test_copy_keeps_mentions(tmp_path, pg_url, embedder):
    from peru_qa.transfer import copy_index

    folder = tmp_path / "index"
    with KnowledgeBase(folder, embedder=embedder) as kb:
        kb.add_texts(_texts())
        before = [(e.name, e.mentions, e.documents) for e in kb.entities()]
    copy_index(folder, pg_url)
    with KnowledgeBase(pg_url, embedder=embedder) as kb:
        assert [(e.name, e.mentions, e.documents) for e in kb.entities()] == before
        assert kb.store.documents_lacking_mentions("1") == []


# --- the shipped corpus --------------------------------------------------------------------------------

CORPUS = ["en-vraem-shining-path.md", "es-vraem-sendero.md", "es-glosario.md", "en-timeline.pdf"]


@pytest.fixture(scope="module")
def corpus_kb(tmp_path_factory, embedder):
    """A few briefs of documents/ (both languages, a PDF), indexed once for this module."""
    with KnowledgeBase(tmp_path_factory.mktemp("entities") / "index", embedder=embedder) as kb:
        assert kb.add([ROOT / "documents" / name for name in CORPUS]).ok
        yield kb


def test_corpus_merges_a_group_across_languages(corpus_kb):
    found = _by_name(corpus_kb)
    sendero = found["Sendero Luminoso"]
    assert {"Shining Path", "Sendero Luminoso"} <= {sendero.name, *sendero.aliases}
    assert {"en-vraem-shining-path.md", "es-vraem-sendero.md"} <= set(sendero.documents)
    assert "Shining Path" not in found  # not a second entity
    assert set(found["VRAEM"].documents) >= {"en-vraem-shining-path.md", "es-vraem-sendero.md"}
    detail = corpus_kb.entity("Abimael Guzmán")
    assert detail is not None and detail.entity.type == "person"
    assert any(m.page is not None for m in corpus_kb.entity("Shining Path").mentions)  # the PDF's pages
    assert detail.timeline and all(d[:2] in ("19", "20") for d, _ in detail.timeline)


# --- the entity panel (rendered without Gradio) --------------------------------------------------------


def test_entity_panel_renders_in_both_languages(corpus_kb):
    from peru_qa.entity_view import entity_panel, network_svg, timeline_svg

    detail = corpus_kb.entity("Sendero Luminoso")
    en, es = entity_panel(detail, "en"), entity_panel(detail, "es")
    assert "Sendero Luminoso" in en and "Documents that mention it" in en and "Mentioned with" in en
    assert "Documentos que lo mencionan" in es and "Mencionado con" in es
    assert "en-vraem-shining-path.md" in en and "es-vraem-sendero.md" in es
    net = network_svg(detail, "es")
    assert net.startswith("<svg") and "Sendero Luminoso" in net and net.count("<line") >= 3
    line = timeline_svg(detail, "en")
    assert line.startswith("<svg") and "<rect" in line
    assert entity_panel(None, "es").startswith("<p") and "No" in entity_panel(None, "en")


def test_panel_says_when_co_mentions_were_sampled(corpus_kb):
    from dataclasses import replace

    from peru_qa.entity_view import entity_panel, name_spans

    detail = corpus_kb.entity("Sendero Luminoso")
    assert detail.passages >= detail.co_mention_passages > 0
    sampled = replace(detail, passages=detail.co_mention_passages * 10)
    assert f"de sus {sampled.passages} pasajes" in entity_panel(sampled, "es")
    assert "of its" not in entity_panel(replace(detail, passages=detail.co_mention_passages), "en")
    answer = "Según la Policía Nacional, Sendero Luminoso opera en el VRAEM."
    spans = {answer[s:e]: (name, kind) for s, e, name, kind in name_spans(answer, "es")}
    assert spans["Sendero Luminoso"] == ("Sendero Luminoso", "organization")
    assert spans["Policía Nacional"] == ("Policía Nacional del Perú", "organization")
    assert spans["VRAEM"][1] == "place"
