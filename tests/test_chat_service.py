"""The chat's handlers without Gradio: `ChatService` methods take and return plain data (what build_app wires to the
page), and the start-up work runs in the background while the chat answers. Every wait here is on a state (an
event set by the code under test), never on time."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest
from conftest import QA_DOCS

from peru_qa import KnowledgeBase
from peru_qa.auth import PermissionDenied, parse_accounts
from peru_qa.startup import Startup
from peru_qa.ui import ChatService, ChatUpdate, questions_asked

#: Generous ceiling for a wait on a state that must come (a busy 2-core machine); reaching it is a failure.
CEILING = 600


@pytest.fixture
def service(qa_kb):
    service = ChatService(qa_kb)
    yield service
    service.close()


@pytest.fixture
def own_kb(tmp_path, qa_docs, embedder):
    """A small index this test may change."""
    with KnowledgeBase(tmp_path / "own-index", embedder=embedder) as kb:
        assert kb.add([qa_docs]).ok
        yield kb


def _ask(service: ChatService, question: str, chat: list | None = None, turns: list | None = None,
         **filters) -> list[ChatUpdate]:
    return list(service.respond(question, chat or [], turns or [], **filters))


def _doc_id(kb: KnowledgeBase, name: str) -> str:
    return next(d.id for d in kb.documents() if Path(d.source).name == name)


def test_respond_shows_the_question_then_the_cited_answer_and_keeps_the_turn_as_data(service):
    question = "Who controls drug trafficking in the VRAEM?"
    updates = _ask(service, question)
    first, last = updates[0], updates[-1]
    assert first.box == "" and first.chat[-1] == {"role": "assistant", "content": "…"} and first.sources is None
    assert last.chat[-2]["role"] == "user" and "Quispe Palomino" in last.chat[-1]["content"]
    assert "[1]" in last.sources and "vraem.md" in last.sources
    assert [t.answer.question for t in last.turns] == [question] and last.turns[0].answer.citations


def test_follow_up_reads_the_questions_kept_as_data_not_the_displayed_markdown(service):
    question = "Who controls drug trafficking in the VRAEM?"
    first = _ask(service, question)[-1]
    follow = _ask(service, "and who finances them?", first.chat, first.turns)[-1]
    assert "protection fees" in follow.chat[-1]["content"]
    assert [t.answer.question for t in follow.turns] == [question, "and who finances them?"]
    # Markdown in a question: the chat shows it escaped; the follow-up reads it as it was typed
    marked = "Who controls *drug trafficking* in the VRAEM?"
    shown = _ask(service, marked)[-1]
    assert "\\*drug trafficking\\*" in shown.chat[0]["content"]
    assert questions_asked(shown.chat, shown.turns) == (shown.turns, [marked])
    again = _ask(service, "and who finances them?", shown.chat, shown.turns)[-1]
    assert again.turns[-1].answer.query == marked + " and who finances them?"
    # an empty chat is a new conversation, whatever the session kept
    fresh = _ask(service, "What did Operation Mercurio do?", [], follow.turns)[-1]
    assert len(fresh.turns) == 1 and "#pqa-cite-0-1" in fresh.chat[-1]["content"]


def test_respond_says_a_malformed_date_and_ignores_an_empty_question(service):
    updates = _ask(service, "coca", since="last year")
    assert len(updates) == 1 and updates[0].box == "coca" and "is not a date" in updates[0].chat[-1]["content"]
    assert updates[0].turns == [] and updates[0].sources is None
    assert _ask(service, "   ") == [ChatUpdate("", [], [])]


def test_filters_narrow_the_answer_and_are_named(service):
    last = _ask(service, "Who controls drug trafficking in the VRAEM?", languages=["es"])[-1]
    assert "Searched only language: es" in last.chat[-1]["content"]
    assert last.turns[0].filters.languages == ["es"] and "vraem-es.md" in last.sources


def test_open_citation_turn_pages_and_export(service, qa_kb):
    last = _ask(service, "What did Operation Mercurio do?")[-1]
    opened = service.open_ref("0:1|1712345", last.turns)
    assert "mining.txt" in opened.html and "Operation Mercurio" in opened.html
    assert opened.download and Path(opened.download).read_bytes() == Path(
        last.turns[0].answer.citations[0].source).read_bytes()
    assert not opened.keep_download and not opened.to_chat
    again = service.open_ref("0:1", last.turns, opened.state)  # the same document: the button is left alone
    assert again.keep_download and again.download is None
    gone = service.open_ref("5:1", last.turns)
    assert "not in this conversation any more" in gone.html and gone.state is None
    assert not gone.can_prev and not gone.can_next
    from_library = service.open_ref(f"doc:{_doc_id(qa_kb, 'vraem.md')}", [])
    assert from_library.to_chat and "vraem.md" in from_library.html
    moved = service.turn_page(from_library.state, 1)  # one section only: it stays, the download button too
    assert moved.state["doc_id"] == from_library.state["doc_id"] and moved.keep_download
    assert not moved.can_next and "vraem.md" in moved.html
    assert service.turn_page(None, 1).state is None
    md, js, answer = (Path(p) for p in service.export_files(last.turns))
    assert "mining.txt" in md.read_text() and '"question": "What did Operation Mercurio do?"' in js.read_text()
    assert answer.name == "peru-qa-answer.md" and service.export_files([]) == []


def test_upload_lists_each_file_when_its_line_says_added_while_the_chat_keeps_answering(own_kb, tmp_path,
                                                                                         monkeypatch):
    """The Library shown with an upload's result line always lists the file that line names (the browser test's
    flake: the Library read before it was refreshed); a question asked while the upload is held is answered."""
    service = ChatService(own_kb)
    note = tmp_path / "tapir.txt"
    note.write_text("The Tapir cartel\n\nThe Tapir cartel moves timber down the Ucayali river on barges.\n",
                    encoding="utf-8")
    writer = service.writer()
    add = writer.add
    entered, release = threading.Event(), threading.Event()

    def held_add(*args, **kw):
        entered.set()
        assert release.wait(CEILING)
        return add(*args, **kw)

    monkeypatch.setattr(writer, "add", held_add)
    updates: list = []
    uploading = threading.Thread(target=lambda: updates.extend(service.upload([str(note)])))
    try:
        uploading.start()
        assert entered.wait(CEILING)
        answer = _ask(service, "What did Operation Mercurio do?")[-1]  # the upload is in the worker, held
        assert "La Pampa" in answer.chat[-1]["content"] or "February 2019" in answer.chat[-1]["content"]
        release.set()
        uploading.join(CEILING)
        assert not uploading.is_alive()
    finally:
        release.set()
        service.close()
    said = [u for u in updates if "added: tapir.txt" in u.results]
    # the first update that says so shows the Library again, listing it (later ones leave it as it is)
    assert said and said[0].library is not None and "tapir.txt" in said[0].library.docs_html
    final = updates[-1]
    assert final.library is not None and any("tapir.txt" in label for label, _ in final.library.choices)
    assert "5 documents" in final.library.summary and "added: tapir.txt" in final.results


def test_upload_of_nothing_and_of_a_refused_type(service, tmp_path):
    assert [u.results for u in service.upload([])] == ["Choose one or more files first."]
    bad = tmp_path / "tool.exe"
    bad.write_bytes(b"MZ")
    (update,) = service.upload([str(bad)])
    assert "failed: tool.exe (type .exe not allowed" in update.results and update.library is not None


def test_remove_asks_first_then_removes_and_shows_the_library(own_kb):
    service = ChatService(own_kb)
    try:
        assert service.ask_removal(None).message == "Choose a document to remove."
        assert service.ask_removal("no-such-id").message == "That document is not in the index any more."
        doc_id = _doc_id(own_kb, "extorsion.txt")
        prompt = service.ask_removal(doc_id)
        assert prompt.show and "extorsion.txt" in prompt.question and "from the index?" in prompt.question
        line, library = service.confirm_removal(doc_id)
        assert line.startswith("removed: ") and doc_id in line
        assert "extorsion.txt" not in library.docs_html and all(value != doc_id for _, value in library.choices)
        line, _ = service.confirm_removal(doc_id)
        assert line.startswith("failed: ")
    finally:
        service.close()


def test_a_reader_account_is_refused_changes_but_may_ask(own_kb, tmp_path):
    accounts = parse_accounts("rita:r3ad:reader,ed:3dit:editor")
    service = ChatService(own_kb, accounts=accounts)
    note = tmp_path / "reader-note.txt"
    note.write_text("The Puma clan smuggles timber from Ucayali on river barges.", encoding="utf-8")
    target = _doc_id(own_kb, "mining.txt")
    try:
        with pytest.raises(PermissionDenied, match="rita is a reader, and adding documents needs an editor"):
            list(service.upload([str(note)], "rita"))
        with pytest.raises(PermissionDenied, match="rita is a reader, and removing documents needs an editor"):
            service.ask_removal(target, "rita")
        with pytest.raises(PermissionDenied, match="removing documents needs an editor"):
            service.confirm_removal(target, "rita")
        with pytest.raises(PermissionDenied, match="needs a logged-in editor"):
            service.confirm_removal(target, None)
        assert any(d.id == target for d in own_kb.documents())
        assert not (service.uploads / "reader-note.txt").exists() and all(e.user != "rita" for e in own_kb.log())
        assert "was launched in February 2019" in _ask(service, "What did Operation Mercurio do?")[-1].chat[-1][
            "content"]
        line, _ = service.confirm_removal(target, "ed")
        assert line.startswith("removed: ") and own_kb.log()[0].user == "ed"
    finally:
        service.close()


# --- serving first: the start-up work in the background ------------------------------------------------------


def test_the_chat_answers_while_documents_are_indexed_in_the_background(tmp_path, qa_docs, embedder, monkeypatch):
    """An empty index with documents/ to sync: the chat says it is still indexing, then answers from the documents
    indexed so far and says how many, then from all of them once the work is done."""
    monkeypatch.setenv("PERU_QA_EMBED_BATCH", "1")  # each document committed as soon as it is embedded
    kb = KnowledgeBase(tmp_path / "fresh", embedder=embedder)
    startup = Startup(kb, qa_docs, terminal=False)
    service = ChatService(kb, startup=startup)
    progress = startup._progress
    at_start, after_two = threading.Event(), threading.Event()
    go_on = {0: threading.Event(), 2: threading.Event()}  # the sync holds at these points until told to go on

    def held(done: int, total: int, what: str) -> None:
        progress(done, total, what)
        if startup.status().phase == "documents" and done in go_on and not go_on[done].is_set():
            (at_start if done == 0 else after_two).set()
            assert go_on[done].wait(CEILING)

    startup._progress = held
    try:
        startup.start()
        assert at_start.wait(CEILING)
        status = startup.status()
        assert status.busy and status.indexing and (status.done, status.total, status.indexed) == (0, 4, 0)
        assert status.line().startswith("Indexing 0 of 4 documents (now: extorsion.txt)")
        assert service.busy and "Indexing 0 of 4" in service.status_line()
        empty = _ask(service, "What did Operation Mercurio do?")[-1]
        assert "still being indexed (0 of 4 so far)" in empty.chat[-1]["content"]
        assert "no documents" not in empty.chat[-1]["content"]
        data = service.ask_json("¿Qué hizo la Operación Mercurio?")
        assert data["abstained"] and "aún se están indexando" in data["text"]

        go_on[0].set()
        assert after_two.wait(CEILING)  # extorsion.txt and mining.txt are in, two to go
        assert startup.status().indexed == 2
        partial = _ask(service, "What did Operation Mercurio do?")[-1]
        assert "mining.txt" in partial.sources
        assert "Indexing 2 of 4 documents: answers use the 2 indexed so far" in partial.chat[-1]["content"]
        assert partial.turns[0].answer.notice.endswith("answers use the 2 indexed so far.")

        go_on[2].set()
        final = startup.wait(CEILING)
        assert final.phase == "ready" and final.indexed == 4 and not service.busy and service.status_line() == ""
        done = _ask(service, "Who controls drug trafficking in the VRAEM?")[-1]
        assert "Quispe Palomino" in done.chat[-1]["content"] and "Indexing" not in done.chat[-1]["content"]
    finally:
        for event in go_on.values():
            event.set()
        startup.wait(CEILING)
        service.close()
        kb.close()


def test_an_index_built_by_add_is_served_at_once_and_prepared_in_the_background(tmp_path, qa_docs, embedder):
    """`serve --index X`: nothing to sync; the reader's sentences are read in the background, answers come
    meanwhile, and the work ends ready."""
    with KnowledgeBase(tmp_path / "added", embedder=embedder) as built:
        assert built.add([qa_docs]).ok
    kb = KnowledgeBase(tmp_path / "added", embedder=embedder)
    warmed = threading.Event()
    startup = Startup(kb, None, warm=warmed.set, terminal=False)
    service = ChatService(kb, startup=startup)
    phases: list[str] = []
    phase = startup._phase
    startup._phase = lambda name: (phases.append(name), phase(name))[-1]
    try:
        assert startup.status().phase == "model" and not startup.status().indexing  # nothing to sync
        startup.start()
        answer = _ask(service, "What did Operation Mercurio do?")[-1]
        assert "mining.txt" in answer.sources and not answer.turns[0].answer.notice
        final = startup.wait(CEILING)
        assert final.phase == "ready" and final.indexed == len(QA_DOCS) and warmed.is_set()
        assert phases == ["preparing", "warming", "sentences", "ready"]  # nothing synced, the sentences read
    finally:
        startup.wait(CEILING)
        service.close()
        kb.close()


def test_background_failure_is_said_and_the_chat_keeps_answering(qa_kb, monkeypatch):
    import peru_qa

    def broken(*args, **kw):
        raise RuntimeError("disk full")

    monkeypatch.setattr(peru_qa, "bring_up_to_date", broken)
    startup = Startup(qa_kb, None, terminal=False)
    service = ChatService(qa_kb, startup=startup)
    try:
        status = startup.start().wait(CEILING)
        assert status.phase == "failed" and "disk full" in status.line() and not service.busy
        assert "Quispe Palomino" in _ask(service, "Who controls drug trafficking in the VRAEM?")[-1].chat[-1][
            "content"]
    finally:
        service.close()


# --- people, organizations and places (issue 33): the "Mentioning" filter and the entity panel --------------------


def test_mentioning_filter_searches_only_documents_that_name_the_entity_and_says_so(service):
    choices = dict((value, label) for label, value in service.entity_choices())
    assert choices["Sendero Luminoso"] == "Sendero Luminoso · organization · 2" and "Lima" in choices
    assert service.library().entities == service.entity_choices()
    last = _ask(service, "Who controls drug trafficking?", mentioning=["Lima"])[-1]
    answer = last.turns[0].answer
    assert answer.citations and {Path(p.source).name for p in answer.citations} == {"extorsion.txt"}
    assert last.turns[0].filters.entities == ["Lima"] and "mentioning:" in last.chat[-1]["content"]
    assert "Searched only mentioning: [Lima](#pqa-entity-en-Lima)" in last.chat[-1]["content"]
    # an alias in the other language finds the same documents
    shining = _ask(service, "¿Quién controla el narcotráfico?", mentioning=["Shining Path"])[-1].turns[0].answer
    assert {Path(p.source).name for p in shining.citations} <= {"vraem.md", "vraem-es.md"} and shining.citations


def test_names_in_the_answer_and_its_sources_link_to_their_panel_without_breaking_citations(service):
    last = _ask(service, "Who controls drug trafficking in the VRAEM?")[-1]
    text = last.chat[-1]["content"]
    assert "[Víctor Quispe Palomino](#pqa-entity-en-V%C3%ADctor%20Quispe%20Palomino)" in text
    assert "](#pqa-entity-en-VRAEM)" in text and "[\\[1\\]](#pqa-cite-0-1)" in text
    assert "data-pqa-entity='en:Víctor Quispe Palomino'" in last.sources
    assert "<div class='pqa-names'>Names: " in last.sources and "<mark>" in last.sources
    spanish = _ask(service, "¿Quién controla el narcotráfico en el VRAEM?")[-1]
    assert "#pqa-entity-es-VRAEM" in spanish.chat[-1]["content"] and "Nombres: " in spanish.sources


def test_entity_panel_in_the_question_language_with_network_and_timeline(service):
    english = service.open_entity("en:La Pampa|1712345")
    assert english.found and english.language == "en"
    assert "Documents that mention it" in english.html and "mining.txt" in english.html
    assert "Carretera Interoceánica" in english.html  # who and what appear with it
    assert "<svg" in english.network and "Who and what appear with it" in english.network
    assert "<svg" in english.timeline and ">2019<" in english.timeline and "<rect" in english.timeline
    spanish = service.open_entity("es:Shining Path")  # an alias opens the entity, in Spanish
    assert spanish.found and "Sendero Luminoso" in spanish.html and "Documentos que lo mencionan" in spanish.html
    assert "vraem.md" in spanish.html and "vraem-es.md" in spanish.html
    assert "Quién y qué aparecen con él" in spanish.network and "Menciones fechadas" in spanish.timeline
    # from the panel: a name appearing with it opens its own panel, a document opens in the viewer
    assert 'data-pqa-entity="es:Víctor Quispe Palomino"' in spanish.html and ">Abrir</button>" in spanish.html
    assert 'data-pqa-entity="en:Carretera Interoceánica"' in english.html
    ref = re.search(r'data-pqa-open="(doc:[0-9a-f]+@)"', english.html).group(1)
    opened = service.open_ref(ref, [])
    assert opened.state is not None and "mining.txt" in opened.html and opened.to_chat
    assert "no longer in the index" in service.open_ref("doc:feedface@3", []).html


def test_an_unknown_name_says_no_document_mentions_it(service):
    unknown = service.open_entity("en:Nobody <b>Here</b>")
    assert not unknown.found and unknown.network == "" and unknown.timeline == ""
    assert "No indexed document mentions “Nobody &lt;b&gt;Here&lt;/b&gt;”." in unknown.html
    assert "Ningún documento indexado menciona «Nadie»." in service.open_entity("es:Nadie").html
    assert "Choose a name." in service.open_entity("").html and "Elija un nombre." in service.open_entity("es:").html
    assert service.open_entity("Lima").found  # a bare name opens in English


def test_names_in_a_passage_are_linked_inside_or_outside_its_marks_and_escaped():
    from peru_qa.ui import _highlight

    text = "In Lima <b>x</b>, the Shining Path met. Later, Callao."
    quoted = ["the Shining Path met."]
    names = [(3, 7, "Lima"), (22, 34, "Sendero Luminoso"), (47, 53, "Callao"), (26, 40, "Across <edge>")]
    shown = _highlight(text, quoted, names, "es")
    assert shown.count("<mark>") == 1 and shown.count("</mark>") == 1
    assert ("<mark>the <a class='pqa-entity' href='#' data-pqa-entity='es:Sendero Luminoso' "
            "title='Sendero Luminoso'>Shining Path</a> met.</mark>") in shown
    assert "data-pqa-entity='es:Lima'" in shown and "data-pqa-entity='es:Callao'" in shown
    assert "Across" not in shown and "&lt;b&gt;x&lt;/b&gt;" in shown  # overlapping names dropped; text escaped
    assert shown.count("<a ") == shown.count("</a>") == 3
