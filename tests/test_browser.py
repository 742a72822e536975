"""End to end in a real browser: Playwright (PyPI) driving Debian's Chromium against the running app.

Every wait is on the state a step checks (a text in the chat, the Library listing a file), through Playwright's
auto-waiting `expect(...)` and `wait_for*`: never a sleep. The default timeout is only a ceiling for a busy
machine."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install chromium)"),
]

PAYLOAD = ('The Jaguar cell keeps its accounts in a ledger called <script>window.__pwned=1</script> and signs '
           'its messages with <img src=x onerror="window.__pwned=1"> as a mark.')


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser, chat_app):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)  # the 2-core machine may be busy with other work
    page.goto(chat_app)
    page.get_by_text("Answers come").first.wait_for()
    yield page
    context.close()


def ask(page, question: str, expect: str) -> None:
    page.get_by_role("tab", name="Chat").click()
    box = page.locator("#pqa-question textarea")
    box.fill(question)
    box.press("Enter")
    page.locator("#pqa-chat").get_by_text(expect).first.wait_for()


def upload(page, path: Path) -> str:
    page.get_by_role("tab", name="Add documents").click()
    page.locator("#pqa-files input[type=file]").set_input_files(str(path))
    try:
        # Gradio renders the name more than once, not all copies visible: wait for a visible one.
        # The file list renders "stem" and ".ext" in separate spans (text "jaguar .txt"); its cell's aria-label
        # holds the whole name.
        files = page.locator("#pqa-files")
        files.locator(f"[aria-label='{path.name}']").or_(files.get_by_text(path.name)).filter(
            visible=True).first.wait_for(timeout=180_000)
    except Exception:
        page.screenshot(path=str(path.with_suffix(".upload-failed.png")), full_page=True)
        raise
    page.locator("#pqa-add").click()
    results = page.locator("#pqa-results textarea")
    # Finished: every file has its line and no "… indexing" line is left (the new documents are searchable then).
    page.wait_for_function("el => /(added|unchanged|failed):/.test(el.value) && !el.value.includes('…')",
                           arg=results.element_handle())
    return results.input_value()


def expect(locator):
    """Playwright's auto-waiting assertion (retried until the page shows it, up to the page's default timeout)."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def test_ask_upload_and_ask_again(page, tmp_path):
    from test_app import make_pdf

    ask(page, "Who controls drug trafficking in the VRAEM?", "Quispe Palomino")
    expect(page.locator("#pqa-chat")).to_contain_text("[1]")
    sources = page.locator("#pqa-sources")
    expect(sources).to_contain_text("[1]")
    expect(sources).to_contain_text("vraem.md")
    page.screenshot(path=str(tmp_path / "chat.png"), full_page=True)

    pdf = make_pdf(tmp_path / "puma.pdf", [
        "The Puma network",
        "<page>",
        "The Puma network launders gold money through a chain of pawn shops in Juliaca.",
    ])
    assert "added: puma.pdf" in upload(page, pdf)
    page.get_by_role("tab", name="Library").click()
    expect(page.locator("#pqa-docs")).to_contain_text("puma.pdf")  # refreshed with the upload's result
    ask(page, "How does the Puma network launder money?", "pawn shops")
    expect(sources).to_contain_text("puma.pdf")
    expect(sources).to_contain_text("p. 2")
    page.locator("#pqa-sources summary").first.click()  # the quoted passage expands
    page.locator("#pqa-sources mark").first.wait_for()
    page.screenshot(path=str(tmp_path / "upload-answer.png"), full_page=True)


def choose(page, dropdown: str, text: str) -> None:
    """Pick the option holding `text` in a Gradio dropdown, typing it into the search box first."""
    field = page.locator(f"{dropdown} input").first
    field.click()
    field.fill(text)
    page.get_by_role("option").filter(has_text=text).first.click()
    page.keyboard.press("Escape")


def test_document_html_is_inert_in_chat_sources_and_viewer_then_removed(page, tmp_path):
    evil = tmp_path / "jaguar.txt"
    evil.write_text("Jaguar cell\n\n" + PAYLOAD + "\n", encoding="utf-8")
    assert "added: jaguar.txt" in upload(page, evil)
    ask(page, "What does the Jaguar cell keep its accounts in?", "ledger called")
    page.locator("#pqa-sources summary").first.click()
    page.locator("#pqa-sources .pqa-open").first.click()  # "Open in page" on the source card
    page.locator("#pqa-viewer pre").get_by_text("ledger called").wait_for()
    # Two rendered frames after the payload is in the page: an injected handler would have run by then (and
    # there is no <img>/<script> element at all, checked below: nothing can run later).
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")
    assert page.evaluate("typeof window.__pwned") == "undefined"
    chat = page.locator("#pqa-chat").inner_text()
    assert "<script>window.__pwned=1</script>" in chat
    assert '<img src=x onerror="window.__pwned=1">' in page.locator("#pqa-sources").inner_text()
    assert '<img src=x onerror="window.__pwned=1">' in page.locator("#pqa-viewer pre").inner_text()
    assert page.locator("#pqa-viewer mark").first.inner_text().startswith("The Jaguar cell keeps its accounts")
    assert page.locator("#pqa-chat img[src=x], #pqa-sources img[src=x], #pqa-viewer img[src=x], #pqa-chat script, "
                        "#pqa-viewer script").count() == 0
    page.screenshot(path=str(tmp_path / "inert.png"), full_page=True)

    # the library lists it and opens it in the viewer of the chat tab
    page.get_by_role("tab", name="Library").click()
    row = page.locator("#pqa-docs tr").filter(has_text="jaguar.txt")
    row.locator(".pqa-open").click()
    page.locator("#pqa-viewer .pqa-vhead").filter(has_text="jaguar.txt").wait_for()
    assert page.evaluate("typeof window.__pwned") == "undefined"

    # removed from the library tab (after confirming), it is gone from search
    page.get_by_role("tab", name="Library").click()
    choose(page, "#pqa-remove-choice", "jaguar.txt")
    page.locator("#pqa-remove").click()
    page.locator("#pqa-confirm-text").get_by_text("Remove").wait_for()
    page.locator("#pqa-confirm").click()
    removed = page.locator("#pqa-removed textarea")
    page.wait_for_function("el => /removed:|failed:/.test(el.value)", arg=removed.element_handle())
    assert "removed: jaguar (" in removed.input_value()
    expect(page.locator("#pqa-docs")).not_to_contain_text("jaguar.txt")
    page.get_by_role("tab", name="Chat").click()
    page.get_by_role("button", name="New conversation").click()
    page.wait_for_function("() => !/ledger/.test(document.querySelector('#pqa-chat').innerText)")
    box = page.locator("#pqa-question textarea")
    box.fill("What does the Jaguar cell keep its accounts in?")
    box.press("Enter")
    page.locator("#pqa-sources h4").wait_for()
    expect(page.locator("#pqa-sources")).not_to_contain_text("jaguar.txt")
    expect(page.locator("#pqa-chat")).not_to_contain_text("ledger")


def test_citation_opens_its_page_highlighted_and_export_matches(page, chat_app, tmp_path):
    from urllib.parse import quote

    from test_viewer import QUOTE, make_pdf

    pdf = make_pdf(tmp_path / "ocelot.pdf", [["The Ocelot report", "Contents."],
                                             ["Smuggling methods", "Customs rarely open religious statues. " + QUOTE],
                                             ["Annex", "Seizure tables."]])
    assert "added: ocelot.pdf" in upload(page, pdf)
    # a shared link with ?q= opens the chat with that answer
    page.goto(chat_app + "?q=" + quote("How does the Ocelot crew hide gold dust?"))
    page.locator("#pqa-chat").get_by_text("hollow statues").first.wait_for()
    page.locator("#pqa-chat a[href*='pqa-cite-']").first.click()  # [1] in the answer
    viewer = page.locator("#pqa-viewer")
    viewer.get_by_text("p. 2 of 3").wait_for()
    assert "ocelot.pdf" in viewer.inner_text()
    assert viewer.locator(".pqa-box").count() >= 1 and viewer.locator(".pqa-pageimg img").count() == 1
    assert QUOTE in viewer.locator(".pqa-quoted mark").inner_text()
    page.screenshot(path=str(tmp_path / "viewer.png"), full_page=True)
    page.locator("#pqa-next").click()
    viewer.get_by_text("p. 3 of 3").wait_for()
    page.locator("#pqa-prev").click()
    viewer.get_by_text("p. 2 of 3").wait_for()
    with page.expect_download() as download:
        page.locator("#pqa-original").click()
    assert Path(download.value.path()).read_bytes() == pdf.read_bytes()

    page.locator("#pqa-export-btn").click()
    link = page.locator("#pqa-export a[download='peru-qa-conversation.md']").first
    link.wait_for()
    with page.expect_download() as download:
        link.click()
    exported = Path(download.value.path()).read_text(encoding="utf-8")
    answer = page.locator("#pqa-chat").inner_text()
    cited = set(re.findall(r"\[(\d+)\]", answer))
    listed = dict(re.findall(r"^\[(\d+)\] (.+)$", exported, re.M))
    assert cited and cited == set(listed), (answer, exported)
    assert "p. 2" in listed["1"] and "`ocelot.pdf`" in listed["1"]
    assert f"> {QUOTE}" in exported


def test_filter_to_one_document(page):
    page.locator("#pqa-filters").get_by_text("Search only in").click()
    choose(page, "#pqa-filter-docs", "vraem-es.md")
    ask(page, "Who controls drug trafficking in the VRAEM?", "Searched only")
    expect(page.locator("#pqa-sources")).to_contain_text("vraem-es.md")
    files = page.locator("#pqa-sources .pqa-file").all_inner_texts()
    assert files and all("vraem-es.md" in f for f in files), files
    assert "El VRAEM y el remanente de Sendero Luminoso" in page.locator("#pqa-chat").inner_text()


def test_the_page_shows_background_indexing_and_answers_meanwhile(browser, tmp_path, qa_docs, embedder,
                                                                   monkeypatch):
    """Served before documents/ is indexed: the banner says how far indexing is, an answer says which part of
    the documents it used; once the work is done the banner is emptied and the Library lists every document."""
    import threading

    from conftest import _free_port

    from peru_qa import KnowledgeBase
    from peru_qa.startup import Startup
    from peru_qa.ui import launch

    monkeypatch.setenv("PERU_QA_EMBED_BATCH", "1")  # each document committed as soon as it is embedded
    kb = KnowledgeBase(tmp_path / "fresh", embedder=embedder)
    startup = Startup(kb, qa_docs, terminal=False)
    progress, go_on = startup._progress, threading.Event()

    def held(done: int, total: int, what: str) -> None:  # the sync waits, two documents in, until told to go on
        progress(done, total, what)
        if startup.status().phase == "documents" and done == 2 and not go_on.is_set():
            assert go_on.wait(600)

    startup._progress = held
    port = _free_port()
    demo, service = launch(kb, port=port, quiet=True, prevent_thread_lock=True, startup=startup)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(f"http://127.0.0.1:{port}/")
        status = page.locator("#pqa-status")
        expect(status).to_contain_text("Indexing 2 of 4 documents")
        expect(status).to_contain_text("answers use the 2 indexed so far")
        ask(page, "What did Operation Mercurio do?", "answers use the 2 indexed so far")
        expect(page.locator("#pqa-sources")).to_contain_text("mining.txt")
        go_on.set()
        assert startup.wait(600).phase == "ready"
        expect(status).not_to_contain_text("Indexing")
        expect(status).not_to_contain_text("Reading sentences")
        page.get_by_role("tab", name="Library").click()
        expect(page.locator("#pqa-docs")).to_contain_text("vraem-es.md")
        expect(page.locator("#pqa-docs")).to_contain_text("vraem.md")
    finally:
        go_on.set()
        startup.wait(600)
        context.close()
        demo.close()
        service.close()
        kb.close()


def test_names_open_their_panel_with_network_and_timeline_and_the_mentioning_filter(page, tmp_path):
    """A name in an answer opens its panel (documents, network, timeline) in the question's language; a name in
    the sources does too; a name picked in "Mentioning" narrows the search, and the answer says so."""
    ask(page, "What did Operation Mercurio do?", "La Pampa")
    page.locator("#pqa-chat a[href*='#pqa-entity-en-La%20Pampa']").first.click()
    panel = page.locator("#pqa-entity")
    expect(panel).to_contain_text("Documents that mention it")
    expect(panel).to_contain_text("mining.txt")
    expect(panel).to_contain_text("Carretera Interoceánica")
    expect(page.locator("#pqa-entity-network svg")).to_be_visible()
    expect(page.locator("#pqa-entity-network svg")).to_contain_text("Carretera Interoceánica")
    expect(page.locator("#pqa-entity-timeline svg rect")).to_have_count(1)  # one bar: 2019
    expect(page.locator("#pqa-entity-timeline svg")).to_contain_text("2019")
    page.screenshot(path=str(tmp_path / "entity-en.png"), full_page=True)
    panel.locator("[data-pqa-open^='doc:']").first.click()  # the document that names it, in the viewer
    expect(page.locator("#pqa-viewer .pqa-vhead")).to_contain_text("mining.txt")
    panel.locator("[data-pqa-entity='en:Madre de Dios']").click()  # a name appearing with it: its own panel
    expect(panel.locator("h3")).to_contain_text("Madre de Dios")

    ask(page, "¿Quién controla el narcotráfico en el VRAEM?", "Quispe Palomino")
    page.locator("#pqa-sources summary").first.click()
    page.locator("#pqa-sources .pqa-names [data-pqa-entity='es:Sendero Luminoso']").first.click()
    expect(panel).to_contain_text("Documentos que lo mencionan")
    expect(panel).to_contain_text("Shining Path")  # its English name, merged
    expect(page.locator("#pqa-entity-network")).to_contain_text("Quién y qué aparecen con él")
    expect(page.locator("#pqa-entity-network svg")).to_contain_text("Víctor Quispe Palomino")
    expect(page.locator("#pqa-entity-timeline")).to_contain_text("No hay menciones fechadas.")
    page.screenshot(path=str(tmp_path / "entity-es.png"), full_page=True)
    page.locator("#pqa-entity-close").click()
    expect(panel).to_be_hidden()

    page.locator("#pqa-filters").get_by_text("Search only in").click()
    choose(page, "#pqa-filter-entities", "Lima")
    ask(page, "Who extorts bus drivers?", "Searched only mentioning")
    expect(page.locator("#pqa-chat")).to_contain_text("Searched only mentioning: Lima")
    files = page.locator("#pqa-sources .pqa-file").all_inner_texts()
    assert files and all("extorsion.txt" in f for f in files), files
