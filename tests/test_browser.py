"""End to end in a real browser: Playwright (PyPI) driving Debian's Chromium against the running app."""

from __future__ import annotations

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
        page.locator("#pqa-files").get_by_text(path.name).filter(visible=True).first.wait_for(timeout=90_000)
    except Exception:
        page.screenshot(path=str(path.with_suffix(".upload-failed.png")), full_page=True)
        raise
    page.locator("#pqa-add").click()
    results = page.locator("#pqa-results textarea")
    page.wait_for_function("el => /(added|unchanged|failed):/.test(el.value)", arg=results.element_handle())
    return results.input_value()


def test_ask_upload_and_ask_again(page, tmp_path):
    from test_app import make_pdf

    ask(page, "Who controls drug trafficking in the VRAEM?", "Quispe Palomino")
    chat = page.locator("#pqa-chat").inner_text()
    assert "[1]" in chat
    sources = page.locator("#pqa-sources")
    assert "[1]" in sources.inner_text() and "vraem.md" in sources.inner_text()
    page.screenshot(path=str(tmp_path / "chat.png"), full_page=True)

    pdf = make_pdf(tmp_path / "puma.pdf", [
        "The Puma network",
        "<page>",
        "The Puma network launders gold money through a chain of pawn shops in Juliaca.",
    ])
    assert "added: puma.pdf" in upload(page, pdf)
    assert "puma.pdf" in page.locator("#pqa-docs").inner_text()
    ask(page, "How does the Puma network launder money?", "pawn shops")
    sources = page.locator("#pqa-sources").inner_text()
    assert "puma.pdf" in sources and "p. 2" in sources
    page.locator("#pqa-sources summary").first.click()  # the quoted passage expands
    page.locator("#pqa-sources mark").first.wait_for()
    page.screenshot(path=str(tmp_path / "upload-answer.png"), full_page=True)


def test_document_html_is_inert(page, tmp_path):
    evil = tmp_path / "jaguar.txt"
    evil.write_text("Jaguar cell\n\n" + PAYLOAD + "\n", encoding="utf-8")
    assert "added: jaguar.txt" in upload(page, evil)
    ask(page, "Where does the Jaguar cell keep its accounts?", "ledger called")
    page.locator("#pqa-sources summary").first.click()
    page.wait_for_timeout(500)
    assert page.evaluate("typeof window.__pwned") == "undefined"
    chat = page.locator("#pqa-chat").inner_text()
    assert "<script>window.__pwned=1</script>" in chat
    assert '<img src=x onerror="window.__pwned=1">' in page.locator("#pqa-sources").inner_text()
    assert page.locator("#pqa-chat img[src=x], #pqa-sources img[src=x], #pqa-chat script").count() == 0
    page.screenshot(path=str(tmp_path / "inert.png"), full_page=True)
    print(f"screenshots in {tmp_path}")
