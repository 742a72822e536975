from __future__ import annotations

import codecs

import pytest
from helpers import make_docx, make_image_pdf, make_pdf

from peru_qa.errors import EncryptedPDFError, ExtractionError, UnsupportedFileType
from peru_qa.loaders import load

SPANISH = "La minería ilegal de oro en Madre de Dios deforestó miles de hectáreas según el MINAM."


def test_pdf_pages_are_numbered_and_title_comes_from_metadata(tmp_path):
    path = make_pdf(tmp_path / "report.pdf", ["Alpha page one text.", "Bravo page two text.", "Charlie three."],
                    title="Coca Monitoring Report")
    doc = load(path)
    assert doc.paged
    assert doc.title == "Coca Monitoring Report"
    assert [p.number for p in doc.pages] == [1, 2, 3]
    assert "Bravo" in doc.pages[1].text and "Bravo" not in doc.pages[0].text


def test_pdf_without_title_metadata_uses_file_name(tmp_path):
    doc = load(make_pdf(tmp_path / "informe_vraem_2023.pdf", ["Texto de prueba sobre el VRAEM y la coca."]))
    assert doc.title == "informe vraem 2023"
    assert doc.language == "es"


def test_pdf_with_empty_user_password_opens(tmp_path):
    doc = load(make_pdf(tmp_path / "open.pdf", ["Readable encrypted text."], user_password=""))
    assert "Readable encrypted text" in doc.pages[0].text


def test_pdf_with_password_needs_it(tmp_path):
    path = make_pdf(tmp_path / "locked.pdf", ["Secret content about Callao."], user_password="s3cret")
    with pytest.raises(EncryptedPDFError, match="password required"):
        load(path)
    with pytest.raises(EncryptedPDFError, match="wrong password"):
        load(path, password="nope")
    assert "Secret content" in load(path, password="s3cret").pages[0].text


def test_image_only_pdf_gives_a_reason(tmp_path):
    with pytest.raises(ExtractionError, match="no text found: 1 scanned page|OCR needs Tesseract"):
        load(make_image_pdf(tmp_path / "scan.pdf"))


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "latin-1", "cp1252"])
def test_text_encodings(tmp_path, encoding):
    path = tmp_path / "nota.txt"
    data = SPANISH.encode(encoding)
    if encoding == "utf-16-le":
        data = codecs.BOM_UTF16_LE + data
    path.write_bytes(data)
    doc = load(path)
    assert doc.pages[0].text == SPANISH
    assert doc.language == "es"
    assert not doc.paged


def test_binary_named_txt_is_refused(tmp_path):
    path = tmp_path / "data.txt"
    path.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(ExtractionError, match="binary"):
        load(path)


def test_markdown_headings_become_sections(tmp_path):
    path = tmp_path / "notes.md"
    path.write_text("# Extortion in Trujillo\n\nIntro text here.\n\n## Bus drivers\n\nDrivers pay **daily** fees "
                    "to [gangs](http://x).\n\n## Construction\n\nUnions were infiltrated.\n", encoding="utf-8")
    doc = load(path)
    page = doc.pages[0]
    assert doc.title == "Extortion in Trujillo"
    assert [h for _, h in page.sections] == ["Extortion in Trujillo", "Bus drivers", "Construction"]
    for offset, heading in page.sections:
        assert page.text[offset : offset + len(heading)] == heading
    assert "Drivers pay daily fees to gangs." in page.text
    assert "**" not in page.text and "http://x" not in page.text
    assert doc.language == "en"


def test_html_visible_text_only(tmp_path):
    path = tmp_path / "page.html"
    path.write_text(
        "<html><head><title>Puerto del Callao</title><style>p{color:red}</style></head><body>"
        "<script>alert('x')</script><h1>Contenedores</h1><p>La cocaína sale &amp; llega en contenedores.</p>"
        "<noscript>enable js</noscript><ul><li>uno</li><li>dos</li></ul></body></html>", encoding="utf-8")
    doc = load(path)
    text = doc.pages[0].text
    assert doc.title == "Puerto del Callao"
    assert "alert" not in text and "color:red" not in text and "enable js" not in text
    assert "La cocaína sale & llega en contenedores." in text
    assert [h for _, h in doc.pages[0].sections] == ["Contenedores"]


def test_docx_headings_and_title(tmp_path):
    path = make_docx(tmp_path / "brief.docx", "Brief on Pataz",
                     [("heading", "Gold and violence"), ("para", "Illegal miners attacked a tunnel in Pataz.")])
    doc = load(path)
    assert doc.title == "Brief on Pataz"
    assert "Illegal miners attacked a tunnel in Pataz." in doc.pages[0].text
    assert [h for _, h in doc.pages[0].sections] == ["Gold and violence"]


def test_docx_that_is_not_a_zip(tmp_path):
    path = tmp_path / "fake.docx"
    path.write_text("this is not a word document")
    with pytest.raises(ExtractionError, match="not a valid .docx"):
        load(path)


def test_unsupported_type_is_a_clear_error(tmp_path):
    path = tmp_path / "photo.gif"
    path.write_bytes(b"GIF89a")
    with pytest.raises(UnsupportedFileType, match="unsupported file type '.gif'"):
        load(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")
    with pytest.raises(ExtractionError, match="empty file"):
        load(path)


# --- "Checked:" date in the header becomes document metadata ------------------------------------------

def test_markdown_checked_line_becomes_metadata(tmp_path):
    path = tmp_path / "brief.md"
    path.write_text("# Brief\n\n*Written: November 2026. Checked: December 2026.*\n\nBody about Pataz.\n", "utf-8")
    assert load(path).metadata == {"checked": "2026-12"}


def test_spanish_revisado_month_is_parsed(tmp_path):
    path = tmp_path / "informe.md"
    path.write_text("# Informe\n\n*Redactado: noviembre de 2026.*\n*Revisado: septiembre de 2025.*\n\nTexto.\n",
                    "utf-8")
    assert load(path).metadata["checked"] == "2025-09"


def test_pdf_checked_line_on_first_page(tmp_path):
    path = make_pdf(tmp_path / "timeline.pdf", ["Timeline. Checked: March 2026. First page.", "Second page."])
    assert load(path).metadata == {"checked": "2026-03"}


def test_no_checked_line_or_unparseable_date_gives_no_metadata(tmp_path):
    plain = tmp_path / "plain.md"
    plain.write_text("# Plain\n\nNothing about when this was checked.\n", "utf-8")
    assert "checked" not in load(plain).metadata
    vague = tmp_path / "vague.txt"
    vague.write_text("Checked: recently\n\nText.\n", "utf-8")
    assert "checked" not in load(vague).metadata


def test_checked_line_deep_in_the_body_is_not_the_header(tmp_path):
    path = tmp_path / "long.md"
    path.write_text("# Long\n\n" + "Filler sentence about coca. " * 80 + "\n\nChecked: January 2020.\n", "utf-8")
    assert "checked" not in load(path).metadata


def test_html_and_docx_checked_lines(tmp_path):
    html = tmp_path / "page.html"
    html.write_text("<html><body><h1>Nota</h1><p><em>Revisado: 1 de julio de 2026</em></p><p>Texto.</p></body></html>",
                    "utf-8")
    assert load(html).metadata == {"checked": "2026-07"}
    doc = make_docx(tmp_path / "memo.docx", "Memo", [("heading", "Memo"), ("para", "Checked: May 2024."),
                                                      ("para", "Body text about extortion in Trujillo.")])
    assert load(doc).metadata == {"checked": "2024-05"}
