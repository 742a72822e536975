"""OCR of scanned pages and images: text quality (character error rate), page numbers, which pages get OCR'd,
what happens without Tesseract, and interrupting a long OCR job."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from peru_qa import ocr
from peru_qa.errors import ExtractionError
from peru_qa.loaders import load, text_layer_is_garbage

needs_tesseract = pytest.mark.skipif(
    not ocr.available(), reason="Tesseract with Spanish data is not installed (apt-get install tesseract-ocr "
    "tesseract-ocr-spa); CI installs it")

SPANISH = ("El 14 de marzo de 2023, la fiscalía de Madre de Dios incautó 1.250 kilos de mercurio y 37 dragas. "
           "Según el informe, el señor Núñez pagó S/ 48.600 a la organización criminal «Los Pulpos» en Trujillo.")
ENGLISH = "Police seized 2,418 kg of cocaine at the port of Paita on 9 June 2024, hidden in 96 boxes of bananas."


def _font(points: float, dpi: int):
    from PIL import ImageFont

    candidates = [Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
                  Path("/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf")]
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        pytest.skip("no TrueType font with Spanish letters (apt-get install fonts-dejavu-core)")
    return ImageFont.truetype(str(found), round(points / 72 * dpi))


def render(text: str, dpi: int = 300, width_in: float = 6.5, points: float = 11):
    """A white page image with `text` typeset in black, like a clean scan at `dpi`."""
    from PIL import Image, ImageDraw

    font = _font(points, dpi)
    lines = textwrap.wrap(text, 70)
    step = round(points * 1.5 / 72 * dpi)
    margin = dpi // 4
    image = Image.new("L", (int(width_in * dpi), margin * 2 + step * len(lines)), 255)
    draw = ImageDraw.Draw(image)
    for n, line in enumerate(lines):
        draw.text((margin, margin + n * step), line, font=font, fill=0)
    return image


def image_pdf(path: Path, pages: list, dpi: int = 300) -> Path:
    """A PDF whose pages are the given images (str items become text pages instead)."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for n, item in enumerate(pages):
        pdf.add_page()
        if isinstance(item, str):
            pdf.multi_cell(0, 8, item)
        else:
            file = path.with_name(f"{path.stem}-{n}.png")
            item.save(file, dpi=(dpi, dpi))
            pdf.image(str(file), x=10, y=10, w=item.width / dpi * 25.4)
    pdf.output(str(path))
    return path


@needs_tesseract
def test_ocr_of_rendered_spanish_and_english_text_is_accurate():
    for truth in (SPANISH, ENGLISH):
        page = ocr.recognize(render(truth), 300)
        if truth is SPANISH:
            assert "Núñez" in page.text and "señor" in page.text and "1.250" in page.text
        assert ocr.character_error_rate(truth, page.text) <= 0.03, page.text
        assert page.confidence > 80
        # Each line box points at a span of the page text inside the image.
        assert page.lines
        for start, end, left, top, width, height in page.lines:
            assert 0 <= start < end <= len(page.text) and page.text[start:end].strip()
            assert 0 <= left and left + width <= page.size[0] and 0 <= top and top + height <= page.size[1]


def test_words_hyphenated_across_lines_are_joined_and_line_offsets_follow():
    words = [(1, 1, 1, "La"), (1, 1, 1, "organi-"), (1, 1, 2, "zación"), (1, 1, 2, "criminal"),
             (1, 2, 1, "cobra"), (1, 2, 1, "cupos."), (2, 1, 1, "Fin.")]
    data = {"level": [5] * len(words), "block_num": [w[0] for w in words], "par_num": [w[1] for w in words],
            "line_num": [w[2] for w in words], "text": [w[3] for w in words], "conf": [90, 80, 70, 60, 90, 90, -1],
            "left": [10 * i for i in range(len(words))], "top": [20 * w[2] for w in words],
            "width": [8] * len(words), "height": [10] * len(words)}
    text, confidence, lines = ocr._assemble(data)
    # A paragraph that starts in mid-sentence is one line on; a new block is a new paragraph.
    assert text == "La organización criminal\ncobra cupos.\n\nFin."
    assert confidence == pytest.approx(80)  # the -1 (no confidence) is left out
    assert [text[a:b] for a, b, *_ in lines] == ["La organi", "zación criminal", "cobra cupos.", "Fin."]


def test_character_error_rate_counts_edits():
    assert ocr.character_error_rate("señor", "señor") == 0
    assert ocr.character_error_rate("señor", "senor") == pytest.approx(1 / 5)
    assert ocr.character_error_rate("abc  def", "abc def\n") == 0  # whitespace is normalised
    assert ocr.edit_distance("kitten", "sitting") == 3


@needs_tesseract
def test_mixed_pdf_keeps_page_numbers_and_marks_only_the_scanned_page(tmp_path, kb, capsys):
    born_digital = "Page one is typed text about coca growers in the VRAEM valley and their unions. " * 3
    path = image_pdf(tmp_path / "mixed.pdf", [born_digital, render(SPANISH), "Page three: typed text again."])
    doc = load(path)
    assert [p.number for p in doc.pages] == [1, 2, 3]
    assert [bool(p.metadata.get("ocr")) for p in doc.pages] == [False, True, False]
    assert doc.pages[0].text.startswith("Page one is typed text")  # the text layer is kept, not OCR'd
    assert ocr.character_error_rate(SPANISH, doc.pages[1].text) <= 0.03
    assert doc.pages[1].metadata["confidence"] > 80 and doc.pages[1].metadata["ocr_dpi"] == ocr.DEFAULT_DPI

    result = kb.add([path]).results[0]
    assert result.status == "added" and "OCR'd 1 page(s)" in result.reason, result.line()
    hit = kb.retrieve("mercurio dragas Madre de Dios", k=1, mode="keyword")[0]
    assert hit.page == 2 and hit.page_metadata["ocr"] is True and hit.page_metadata["confidence"] > 80
    typed = kb.retrieve("coca growers unions", k=1, mode="keyword")[0]
    assert typed.page == 1 and not typed.page_metadata.get("ocr")
    # The command line marks OCR'd sources so that the reader checks the scan.
    from peru_qa.cli import main

    assert main(["search", "mercurio dragas", "--index", str(kb.path), "--k", "1", "--mode", "keyword"]) == 0
    assert "mixed · p. 2 · OCR " in capsys.readouterr().out


@needs_tesseract
def test_scan_with_a_stamp_in_its_text_layer_is_ocrd(tmp_path):
    """A scanned page whose text layer holds only a stamp ("Página 2 de 3") is a scan, not a text page."""
    from fpdf import FPDF
    from PIL import Image

    image = Image.new("L", (2250, 3000), 255)  # a whole scanned sheet, text at the top
    image.paste(render(SPANISH), (0, 0))
    png = tmp_path / "scan.png"
    image.save(png, dpi=(300, 300))
    pdf = FPDF()
    pdf.set_font("Helvetica", size=9)
    pdf.set_auto_page_break(False)
    pdf.add_page()
    pdf.image(str(png), x=10, y=20, w=190)
    pdf.set_xy(150, 280)
    pdf.cell(40, 5, "Página 2 de 3")
    pdf.add_page()  # a typed page with a small logo keeps its text layer
    pdf.image(str(png), x=10, y=10, w=20)
    pdf.set_xy(10, 40)
    pdf.multi_cell(0, 6, "Informe final")
    path = tmp_path / "stamped.pdf"
    pdf.output(str(path))
    doc = load(path)
    assert doc.pages[0].metadata.get("ocr") is True
    assert ocr.character_error_rate(SPANISH, doc.pages[0].text.replace("Página 2 de 3", "")) <= 0.05
    assert doc.pages[1].text == "Informe final" and not doc.pages[1].metadata


@needs_tesseract
def test_multipage_tiff_is_one_page_per_frame(tmp_path):
    first, second = render(ENGLISH), render(SPANISH)
    path = tmp_path / "scan.tiff"
    first.save(path, save_all=True, append_images=[second], dpi=(300, 300), compression="tiff_lzw")
    doc = load(path)
    assert doc.paged and [p.number for p in doc.pages] == [1, 2]
    assert ocr.character_error_rate(ENGLISH, doc.pages[0].text) <= 0.03
    assert ocr.character_error_rate(SPANISH, doc.pages[1].text) <= 0.03
    assert all(p.metadata["ocr"] for p in doc.pages)


@needs_tesseract
def test_jpeg_photo_of_a_page_is_read(tmp_path):
    path = tmp_path / "foto.jpg"
    render(SPANISH).convert("RGB").save(path, quality=75)
    doc = load(path)
    assert ocr.character_error_rate(SPANISH, doc.pages[0].text) <= 0.05
    assert doc.language == "es"
    assert doc.title == "foto"  # the first line runs on into the next: not a title


@needs_tesseract
def test_a_scan_is_titled_by_its_first_line_when_it_reads_like_a_title(tmp_path):
    from PIL import Image

    heading = render("Informe policial sobre extorsión en Trujillo", points=16)
    body = render(SPANISH)
    page = Image.new("L", (body.width, heading.height + body.height), 255)
    page.paste(heading, (0, 0))
    page.paste(body, (0, heading.height))
    page.save(tmp_path / "scan-0042.png", dpi=(300, 300))
    assert load(tmp_path / "scan-0042.png").title == "Informe policial sobre extorsión en Trujillo"


def test_garbage_text_layers_are_recognised():
    prose = ("La minería ilegal de oro en Madre de Dios destruye los bosques y envenena los ríos con mercurio; "
             "the illegal miners pay the gangs that control the roads and the camps. ") * 3
    table = "Año Hectáreas Toneladas\n2019 54 655 650\n2020 61 777 720\n2021 80 681 810\n2022 95 008 870\n" * 3
    assert not text_layer_is_garbage(prose)
    assert not text_layer_is_garbage(table)
    assert not text_layer_is_garbage("Informe 2023")  # too short to judge: kept
    assert text_layer_is_garbage("(cid:23)(cid:41)(cid:7) (cid:52)(cid:3)(cid:18) " * 20)
    assert text_layer_is_garbage("\ufffd\ufffd\ufffd \ufffd\ufffd " * 30)
    assert text_layer_is_garbage("\ue012\ue044\ue101 \ue00a\ue0ff " * 30)  # private-use glyph codes
    shifted = "".join(chr(ord(c) + 1) if c.isalpha() else c for c in prose)  # a wrong font encoding
    assert text_layer_is_garbage(shifted)


@needs_tesseract
def test_garbage_text_layer_gets_ocrd(tmp_path):
    """A scan whose (invisible) text layer is junk: the junk is replaced by what the page shows."""
    from fpdf import FPDF

    image = render(ENGLISH)
    png = tmp_path / "scan.png"
    image.save(png, dpi=(300, 300))
    pdf = FPDF()
    pdf.add_page()
    pdf.image(str(png), x=10, y=10, w=image.width / 300 * 25.4)
    pdf.set_font("Helvetica", size=10)
    with pdf.local_context(text_mode="INVISIBLE"):
        pdf.set_xy(10, 10)
        # What a font with a private encoding extracts to: every letter shifted.
        pdf.multi_cell(0, 5, "".join(chr(ord(c) + 1) if c.isalpha() else c for c in (SPANISH + " ") * 3))
    path = tmp_path / "bad-layer.pdf"
    pdf.output(str(path))
    doc = load(path)
    assert doc.pages[0].metadata.get("ocr") is True
    assert ocr.character_error_rate(ENGLISH, doc.pages[0].text) <= 0.03
    assert any("unreadable text layer" in note for note in doc.notes)


def test_missing_tesseract_names_what_to_install(tmp_path, kb, monkeypatch):
    import pytesseract

    monkeypatch.setattr(pytesseract.pytesseract, "tesseract_cmd", str(tmp_path / "no-tesseract"))
    with pytest.raises(ocr.OcrUnavailable, match="^OCR needs Tesseract: apt-get install tesseract-ocr "
                       "tesseract-ocr-spa$"):
        ocr.check()
    from PIL import Image

    scan = tmp_path / "scan.png"
    Image.new("L", (400, 200), 255).save(scan)
    typed = image_pdf(tmp_path / "part-scanned.pdf",
                      ["Typed page about extortion of bus drivers in Lima and Callao. " * 4,
                       Image.new("L", (1200, 1600), 200)])
    report = kb.add([scan, typed])
    by_name = {Path(r.path).name: r for r in report.results}
    assert by_name["scan.png"].status == "failed"
    assert by_name["scan.png"].reason == "OCR needs Tesseract: apt-get install tesseract-ocr tesseract-ocr-spa"
    # The typed page is indexed; the scanned one is named as skipped, with the same fix.
    assert by_name["part-scanned.pdf"].status == "added", by_name["part-scanned.pdf"].line()
    assert "1 scanned page(s) not OCR'd (p. 2)" in by_name["part-scanned.pdf"].reason
    assert "apt-get install tesseract-ocr" in by_name["part-scanned.pdf"].reason
    assert kb.check().ok


@needs_tesseract
def test_missing_language_data_names_the_package(monkeypatch):
    monkeypatch.setenv("PERU_QA_OCR_LANGUAGES", "spa+qqq")
    with pytest.raises(ocr.OcrUnavailable, match="apt-get install tesseract-ocr-qqq"):
        ocr.check()


class Cancelled(Exception):
    pass


@needs_tesseract
def test_cancelling_during_ocr_keeps_the_index_consistent_and_resumes(tmp_path, kb, monkeypatch):
    earlier = tmp_path / "earlier.txt"
    earlier.write_text("Extortion of market traders in Lima is run by gangs from the Tren de Aragua.")
    assert kb.add([earlier]).ok
    scan = image_pdf(tmp_path / "scan.pdf", [render(ENGLISH), render(SPANISH), render(ENGLISH + " " + SPANISH)])
    seen: list[str] = []

    def cancel_on_second_page(done: int, total: int, what: str) -> None:
        seen.append(what)
        if "OCR page 2/3" in what:
            raise Cancelled("user pressed stop")

    with pytest.raises(Cancelled):
        kb.add([scan], progress=cancel_on_second_page)
    assert "scan.pdf: OCR page 1/3" in seen
    assert kb.check().ok
    assert [d.title for d in kb.documents()] == ["earlier"]
    assert kb.retrieve("Tren de Aragua market traders", k=1)[0].source.endswith("earlier.txt")

    # Resuming redoes only the pages not recognised before the interruption.
    calls: list[int] = []
    real = ocr.recognize
    monkeypatch.setattr(ocr, "recognize", lambda image, resolution=None: calls.append(1) or real(image, resolution))
    result = kb.add([scan]).results[0]
    assert result.status == "added" and result.pages == 3, result.line()
    assert len(calls) == 2
    assert not (kb.path / "ocr-cache").exists() or not any((kb.path / "ocr-cache").iterdir())
    assert kb.check().ok
    assert kb.retrieve("cocaine Paita bananas", k=1, mode="keyword")[0].page_metadata["ocr"] is True


def test_image_only_pdf_without_text_gives_a_reason(tmp_path):
    from helpers import make_image_pdf

    with pytest.raises(ExtractionError, match="no text found|OCR needs Tesseract"):
        load(make_image_pdf(tmp_path / "grey.pdf"))


def test_unreadable_image_file_fails_with_a_reason(tmp_path, kb):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50)
    result = kb.add([bad]).results[0]
    assert result.status == "failed"
    assert result.reason.startswith(("unreadable image", "OCR needs")), result.line()
    assert kb.check().ok
