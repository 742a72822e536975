"""The evidence viewer, export and the chat's escaping, without a browser (tests/test_browser.py drives the page)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from peru_qa.answer import Answer
from peru_qa.export import Turn, answer_markdown, conversation_json, conversation_markdown, quoted_sentences
from peru_qa.retrieval import Filters, Passage
from peru_qa.viewer import Viewer, find_spans, view_html

pytest.importorskip("pypdfium2")

QUOTE = "The Ocelot crew hides gold dust inside hollow statues shipped from the port of Ilo."
EVIL = 'Ledger <script>window.__pwned=1</script> and <img src=x onerror="window.__pwned=1"> mark.'


def make_pdf(path: Path, pages: list[list[str]]) -> Path:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for lines in pages:
        pdf.add_page()
        for text in lines:
            pdf.multi_cell(0, 8, text, new_x="LMARGIN", new_y="NEXT")
    pdf.output(str(path))
    return path


@pytest.fixture
def library(tmp_path, embedder):
    from peru_qa import KnowledgeBase

    folder = tmp_path / "docs"
    folder.mkdir()
    make_pdf(folder / "ocelot.pdf", [["The Ocelot report", "Contents and summary."],
                                     ["Smuggling methods", "Customs officers rarely open religious statues. " + QUOTE,
                                      "Its buyers pay in cash in Arequipa."],
                                     ["Annex", "Seizure tables."]])
    (folder / "notes.md").write_text(
        "# Gold routes\n\nIntro text before the sections.\n\n## Puno\n\nGold from La Rinconada goes to Juliaca.\n\n"
        "## Ilo\n\nStatues leave from Ilo.\nUNODC's survey & \"partners\" <b>said</b> *so*.\n\n## Tacna\n\nCash.\n",
        encoding="utf-8")
    (folder / "evil.txt").write_text("Evil\n\n" + EVIL + "\n", encoding="utf-8")
    kb = KnowledgeBase(tmp_path / "index", embedder=embedder)
    assert kb.add([folder]).ok
    ids = {Path(d.source).name: d.id for d in kb.documents()}
    yield kb, ids, folder
    kb.close()


def test_quotes_are_found_across_line_breaks_hyphens_and_spacing():
    text = "Coca crops\r\ncovered 60,400 hec-\ntares in 2012.  Then they fell."
    spans, missing = find_spans(text, ["Coca crops covered 60,400 hectares in 2012.", "not there at all"])
    assert [text[s:e] for s, e in spans] == ["Coca crops\r\ncovered 60,400 hec-\ntares in 2012."]
    assert missing == ["not there at all"]
    # overlapping quotes merge into one highlight
    spans, _ = find_spans(text, ["Coca crops covered", "covered 60,400"])
    assert len(spans) == 1


def test_pdf_page_is_rendered_with_the_quote_boxed(library):
    kb, ids, _ = library
    viewer = Viewer(kb)
    view = viewer.view(ids["ocelot.pdf"], 2, [QUOTE])
    assert (view.page, view.n_pages, view.paged) == (2, 3, True)
    assert view.image is not None and view.image.mime == "image/jpeg" and view.image.data[:2] == b"\xff\xd8"
    assert [" ".join(view.text[s:e].split()) for s, e in view.marks] == [QUOTE]  # wrapped over two lines
    assert len(view.boxes) >= 2, "the quote's character boxes (one per line) were not found on the rendered page"
    for left, top, width, height in view.boxes:
        assert 0 <= left < 1 and 0 <= top < 0.5 and 0 < width <= 1 and 0 < height < 0.1  # near the top, as drawn
    html = view_html(view)
    assert "p. 2 of 3" in html and "class='pqa-box'" in html and f"<mark>{QUOTE}</mark>" in html
    # another page of the same document: readable, nothing highlighted, the quote reported as not there
    other = viewer.view(ids["ocelot.pdf"], 3, [QUOTE])
    assert other.page == 3 and not other.boxes and not other.marks and other.missing == [QUOTE]
    assert "Seizure tables" in other.text


def test_renders_are_cached_and_keyed_by_content(library):
    kb, ids, folder = library
    viewer = Viewer(kb)
    t0 = time.perf_counter()
    first = viewer.render(ids["ocelot.pdf"], 1)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = viewer.render(ids["ocelot.pdf"], 1)
    warm = time.perf_counter() - t0
    assert again is first and warm < cold
    # the file changes: the old render is not shown for it, and the view says why there is no image
    make_pdf(folder / "ocelot.pdf", [["Entirely different text."]])
    assert viewer.render(ids["ocelot.pdf"], 1) is None
    view = viewer.view(ids["ocelot.pdf"], 2, [QUOTE])
    assert view.image is None and any("changed since it was indexed" in n for n in view.notes)
    assert view.marks  # the indexed text is still shown, highlighted
    kb.add([folder])  # re-indexed: a new content hash, a new render
    new_id = next(d.id for d in kb.documents() if d.source.endswith("ocelot.pdf"))
    assert viewer.render(new_id, 1) is not None


def test_text_documents_show_the_quoted_section_with_its_heading(library):
    kb, ids, _ = library
    viewer = Viewer(kb)
    view = viewer.view(ids["notes.md"], None, ["Statues leave from Ilo."])
    assert not view.paged and view.heading == "Ilo" and view.n_sections == 4
    assert "Juliaca" not in view.text and "Cash." not in view.text
    assert [view.text[s:e] for s, e in view.marks] == ["Statues leave from Ilo."]
    html = view_html(view)
    assert "§ Ilo" in html and "section 3 of 4" in html
    assert "UNODC&#x27;s survey &amp; &quot;partners&quot; &lt;b&gt;said&lt;/b&gt;" in html  # escaped once
    previous = viewer.view(ids["notes.md"], None, ["Statues leave from Ilo."], section=view.section_index - 1)
    assert previous.heading == "Puno" and not previous.marks
    assert viewer.view(ids["notes.md"], None, [], section=0).text.strip().startswith("Gold routes")


def test_document_markup_is_inert_in_the_viewer(library):
    kb, ids, _ = library
    html = view_html(Viewer(kb).view(ids["evil.txt"], None, [EVIL]))
    assert "<script" not in html and "<img src=x" not in html and "onerror=\"" not in html
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html


def test_only_indexed_files_are_offered_for_download(library):
    from peru_qa.errors import DocumentNotFound
    from peru_qa.ui import ChatService

    kb, ids, folder = library
    service = ChatService(kb)
    try:
        copy = service.original_copy(ids["ocelot.pdf"])
        assert copy and Path(copy).read_bytes() == (folder / "ocelot.pdf").read_bytes()
        with pytest.raises(DocumentNotFound):
            service.original_copy("../../etc/passwd")
        with pytest.raises(DocumentNotFound):
            service.original_copy(str(folder / "ocelot.pdf"))  # a path is not an id
        (folder / "notes.md").unlink()
        assert service.original_copy(ids["notes.md"]) is None
    finally:
        service.close()


def test_ocr_line_boxes_cover_the_quoted_span_only():
    """OCR's line boxes (peru_qa.ocr: [start, end, left, top, width, height] in pixels of ocr_size) that overlap a
    quoted span are highlighted, as fractions of the scan; lines outside the quote are not."""
    meta = {"ocr": True, "confidence": 87.5, "ocr_size": [1000, 2000],
            "ocr_lines": [[0, 31, 100, 200, 800, 40], [32, 58, 100, 300, 800, 40], [59, 80, 100, 400, 800, 40]]}
    assert Viewer.ocr_boxes(meta, [(5, 40)]) == [(0.1, 0.1, 0.8, 0.02), (0.1, 0.15, 0.8, 0.02)]
    assert Viewer.ocr_boxes(meta, []) == []
    assert Viewer.ocr_boxes({"ocr": True}, [(0, 10)]) == []


def _passage(text: str, source: str, page: int | None = 2, title: str = "Report") -> Passage:
    return Passage(text=text, chunk_id=1, doc_id="d1", title=title, source=source, page=page, section="",
                   language="en", start=0, end=len(text), score=1.0)


def test_chat_text_is_escaped_once_and_markers_link_to_the_viewer():
    from peru_qa.ui import _md_escape
    from peru_qa.ui import answer_markdown as chat_markdown

    text = "UNODC's survey for 2012 found \"60,400\" ha & more <b>than</b> Colombia's *48,000* [sic]."
    answer = Answer("q", text + " [1]", [_passage(text, "/x/a.pdf")], False, "en")
    shown = chat_markdown(answer, turn=3)
    assert "&#x27;" not in shown and "&amp;#" not in shown and "&quot;" not in shown
    assert "UNODC's" in shown and "Colombia's" in shown and '"60,400"' in shown
    assert "&amp; more &lt;b&gt;than&lt;/b&gt;" in shown and r"\*48,000\*" in shown and r"\[sic\]" in shown
    assert shown.endswith("[\\[1\\]](#pqa-cite-3-1)")
    # a number beyond the sources is not a link; without a turn nothing is
    assert "(#pqa-cite" not in chat_markdown(Answer("q", "x [2]", [answer.citations[0]], False, "en"), turn=0)
    assert "(#pqa-cite" not in chat_markdown(answer)
    assert _md_escape("2012. Then\n- item") == "2012\\. Then\n\\- item"


def test_export_markdown_citations_match_the_answer():
    p1 = _passage("Coca covered 60,400 ha in 2012. Other text.", "/docs/timeline.pdf", 2, "Timeline")
    p2 = _passage("The VRAEM is a valley <script>x</script>.", "/docs/vraem.md", None, "VRAEM")
    text = "Coca covered 60,400 ha\nin 2012. [1] The VRAEM is a valley <script>x</script>. [2]"
    answer = Answer("How much coca?", text, [p1, p2], False, "en")
    turn = Turn(answer, Filters(languages=["en"]), "language: en")
    md = answer_markdown(turn)
    assert "[1] Timeline, p. 2 — `timeline.pdf`\n> Coca covered 60,400 ha in 2012." in md, md
    assert "[2] VRAEM — `vraem.md`\n> The VRAEM is a valley &lt;script>x&lt;/script>." in md
    assert "*Searched only language: en.*" in md and "<script" not in md
    assert quoted_sentences(answer) == {1: ["Coca covered 60,400 ha\nin 2012."],  # a quote wrapped over two lines
                                        2: ["The VRAEM is a valley <script>x</script>."]}
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", answer.text)}
    listed = {int(n) for n in re.findall(r"^\[(\d+)\] ", md, re.M)}
    assert cited == listed == {1, 2}
    both = conversation_markdown([turn, Turn(answer)])
    assert both.count("**Sources**") == 2 and "## 1. How much coca?" in both and "## 2. How much coca?" in both
    data = json.loads(conversation_json([turn]))
    assert data["answers"][0]["citations"][0]["n"] == 1 and data["answers"][0]["filters"] == {"languages": ["en"]}


def test_source_cards_show_ocr_and_checked_date():
    """A citation says when its text came from OCR (with the confidence) and when its document was last checked."""
    from peru_qa.ui import sources_html

    scanned = _passage("Seized ledgers name the Callao crews.", "/x/scan.pdf")
    scanned.page_metadata = {"ocr": True, "confidence": 81.4}
    brief = _passage("Extortion complaints rose in 2024.", "/x/brief.md", page=None)
    brief.metadata = {"checked": "2026-12"}
    shown = sources_html(Answer("q", "Seized ledgers name the Callao crews. [1] Extortion complaints rose in "
                                "2024. [2]", [scanned, brief], False, "en"))
    assert "scan.pdf · OCR 81%" in shown and "brief.md · checked 2026-12" in shown
    assert "scan.pdf · OCR 81% · checked" not in shown


def test_markers_before_a_note_line_link_and_highlight():
    """The reader may end an answer with a line of its own (the language note, the conflict line): the [n] just
    before it still opens the viewer and its sentence is still marked in the source."""
    from peru_qa.ui import answer_markdown as chat_markdown

    text = "The Puma cell hides cocaine in mango crates."
    answer = Answer("q", f"{text} [1]\n\nNota: la fuente citada está en inglés.", [_passage(text, "/x/a.pdf")],
                    False, "es")
    assert "[\\[1\\]](#pqa-cite-2-1)" in chat_markdown(answer, turn=2)
    assert quoted_sentences(answer) == {1: [text]}
