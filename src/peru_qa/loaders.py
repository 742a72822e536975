"""Turn a file into pages of plain text with section headings, a title and a language.

Every loader returns the same `LoadedDocument`; offsets of chunks later point into `Page.text`,
so whatever text is stored here is exactly what citations quote.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import logging
import re
import unicodedata
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .config import SUPPORTED_SUFFIXES, max_text_bytes
from .errors import DocumentTooLarge, EncryptedPDFError, ExtractionError, UnsupportedFileType
from .text import detect_language, fold


@dataclass
class Page:
    number: int
    text: str
    #: (offset into text, heading) for each heading that starts on this page, in order.
    sections: list[tuple[int, str]] = field(default_factory=list)
    #: Facts about how this page's text was obtained, e.g. {"ocr": True, "confidence": 91.2}.
    metadata: dict = field(default_factory=dict)


@dataclass
class LoadedDocument:
    path: Path
    title: str
    pages: list[Page]
    language: str
    content_hash: str
    #: False for formats without real pages (text, Markdown, HTML, DOCX): citations show no page.
    paged: bool
    #: Human-readable remarks that matter to the user (e.g. pages with no text), one line each.
    notes: list[str] = field(default_factory=list)
    #: Facts about the document stored with it, e.g. {"checked": "2026-11"} (when its content was last checked).
    metadata: dict = field(default_factory=dict)

    @property
    def char_count(self) -> int:
        return sum(len(p.text) for p in self.pages)


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


#: Called during OCR with (pages recognised so far, pages to recognise in this file).
PageProgress = Callable[[int, int], None]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


def load(path: str | Path, password: str | None = None, progress: PageProgress | None = None,
         ocr_cache: Path | None = None) -> LoadedDocument:
    """Load one file; raises an ExtractionError subclass with a one-line reason when it can't.

    Scanned pages (PDF pages without a usable text layer, image files) are OCR'd; `progress` hears each page
    and `ocr_cache` (a folder) keeps recognised pages so that an interrupted run does not redo them."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise UnsupportedFileType(
            f"unsupported file type {suffix or '(none)'!r}: peru-qa reads {', '.join(SUPPORTED_SUFFIXES)}"
        )
    if not path.is_file():
        raise ExtractionError("not a file")
    size = path.stat().st_size
    if size == 0:
        raise ExtractionError("empty file (0 bytes)")
    content_hash = file_hash(path)
    if suffix == ".pdf":
        title, pages, notes = _load_pdf(path, password, _OcrJob(content_hash, progress, ocr_cache))
        paged = True
    elif suffix in IMAGE_SUFFIXES:
        title, pages, notes = _load_image(path, _OcrJob(content_hash, progress, ocr_cache))
        paged = True
    else:
        if size > max_text_bytes() * (4 if suffix in (".docx", ".html", ".htm") else 1):
            raise DocumentTooLarge(
                f"too large: {size / 1e6:.1f} MB exceeds the {max_text_bytes() / 1e6:.0f} MB text limit "
                "(set PERU_QA_MAX_TEXT_MB to raise it)"
            )
        loader = {".txt": _load_txt, ".md": _load_markdown, ".markdown": _load_markdown,
                  ".html": _load_html, ".htm": _load_html, ".docx": _load_docx}[suffix]
        title, pages = loader(path)
        notes = []
        paged = False
    pages = [p for p in pages if p.text.strip()] if paged else pages
    if not any(p.text.strip() for p in pages):
        raise ExtractionError("no text found in the file")
    total = sum(len(p.text) for p in pages)
    if total > max_text_bytes():
        raise DocumentTooLarge(
            f"too large: {total / 1e6:.1f} M characters of text exceed the "
            f"{max_text_bytes() / 1e6:.0f} M limit (set PERU_QA_MAX_TEXT_MB to raise it)"
        )
    sample = " ".join(p.text for p in pages[:5])[:5000]
    checked = checked_date(pages[0].text)
    return LoadedDocument(
        path=path,
        # A title that only repeats the file name (image-to-PDF tools write one) says less than the scan's heading.
        title=(_clean_title(title) if _clean_title(title) != path.stem else "") or _scan_title(pages)
        or _title_from_filename(path),
        pages=pages,
        language=detect_language(sample),
        content_hash=content_hash,
        paged=paged,
        notes=notes,
        metadata={"checked": checked} if checked else {},
    )


# --- "Checked:" date in a document's header ------------------------------------------------------

#: How far into the first page a "Checked:" / "Revisado:" line is looked for (the header, not the body).
CHECKED_HEAD_CHARS = 1500
_CHECKED = re.compile(r"\b(?:Checked|Last checked|Revisado|Última revisión)\s*:\s*([^.\n*|]{3,40})", re.I)


def checked_date(text: str) -> str | None:
    """'YYYY-MM' from a "Checked: December 2026" / "Revisado: diciembre de 2026" line near the start, else None.

    The chat shows this next to a citation so a reader knows how fresh a brief is. Month names are
    parsed with dateparser (English and Spanish) rather than a hand-written month table.
    """
    match = _CHECKED.search(text[:CHECKED_HEAD_CHARS])
    if not match:
        return None
    import dateparser

    when = dateparser.parse(
        match.group(1).strip(), languages=["en", "es"],
        settings={"PREFER_DAY_OF_MONTH": "first", "REQUIRE_PARTS": ["month", "year"]},
    )
    return f"{when.year:04d}-{when.month:02d}" if when else None


# --- text ---------------------------------------------------------------------------------------

def decode_text(data: bytes) -> str:
    """UTF-8 (with or without BOM), UTF-16 (BOM or NUL pattern), else Windows-1252/Latin-1."""
    if data.startswith(codecs.BOM_UTF8):
        return data[3:].decode("utf-8", errors="replace")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16", errors="replace")
    head = data[:4096]
    if len(head) >= 4 and head.count(0) >= len(head) // 4:
        even_nuls = head[0::2].count(0)
        odd_nuls = head[1::2].count(0)
        if odd_nuls > even_nuls * 4:
            return _checked(data.decode("utf-16-le", errors="replace"))
        if even_nuls > odd_nuls * 4:
            return _checked(data.decode("utf-16-be", errors="replace"))
        raise ExtractionError("not a text file: binary data")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace") if _looks_cp1252(data) else data.decode("latin-1")
    return _checked(text)


def _looks_cp1252(data: bytes) -> bool:
    return not any(b in data for b in (0x81, 0x8D, 0x8F, 0x90, 0x9D))


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f\ufffd]")


def _checked(text: str) -> str:
    sample = text[:65536]
    if sample and len(_CONTROL.findall(sample)) > max(8, len(sample) // 100):
        raise ExtractionError("not a text file: binary data")
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")


def _load_txt(path: Path) -> tuple[str, list[Page]]:
    text = decode_text(path.read_bytes())
    # Form feeds mark pages in text exported from PDFs and printers.
    return "", [Page(number=i + 1, text=t) for i, t in enumerate(text.split("\f"))]


# --- HTML and Markdown (Markdown is rendered to HTML, then read like HTML) ---------------------

_BLOCK_TAGS = frozenset(
    "address article aside blockquote br dd details dialog div dl dt fieldset figcaption figure footer "
    "form h1 h2 h3 h4 h5 h6 header hr li main nav ol p pre section summary table tbody thead tfoot tr "
    "td th ul caption".split()
)
_HIDDEN_TAGS = frozenset("script style noscript template head svg iframe object embed canvas".split())
_HEADINGS = frozenset("h1 h2 h3 h4 h5 h6".split())


def html_to_page(markup: str) -> tuple[str, Page]:
    """Visible text of an HTML document with headings as sections; returns (title, page)."""
    from bs4 import BeautifulSoup, Comment, NavigableString, Tag

    soup = BeautifulSoup(markup, "html.parser")
    head_title = soup.title.get_text(" ", strip=True) if soup.title else ""
    parts: list[str] = []
    sections: list[tuple[int, str]] = []
    first_heading = ""

    def length() -> int:
        return sum(len(p) for p in parts)

    def newline(n: int = 1) -> None:
        text = "".join(parts[-3:])
        have = len(text) - len(text.rstrip("\n"))
        if parts and have < n:
            parts.append("\n" * (n - have))

    def walk(node) -> None:
        nonlocal first_heading
        for child in node.children:
            if isinstance(child, Comment):
                continue
            if isinstance(child, NavigableString):
                s = re.sub(r"\s+", " ", str(child))
                if s.strip() or (parts and not parts[-1].endswith((" ", "\n"))):
                    if not parts or parts[-1].endswith("\n"):
                        s = s.lstrip()
                    if s:
                        parts.append(s)
                continue
            if not isinstance(child, Tag):
                continue
            name = child.name.lower()
            if name in _HIDDEN_TAGS or child.get("hidden") is not None:
                continue
            if name in _HEADINGS:
                heading = child.get_text(" ", strip=True)
                if heading:
                    newline(2)
                    sections.append((length(), heading))
                    first_heading = first_heading or heading
                    parts.append(heading)
                    newline(2)
                continue
            block = name in _BLOCK_TAGS
            if block:
                newline(2 if name in ("p", "div", "section", "article", "table", "ul", "ol", "pre") else 1)
                if name == "li":
                    parts.append("- ")
            walk(child)
            if block:
                newline(2 if name in ("p", "section", "article", "table", "ul", "ol", "pre") else 1)

    walk(soup.body or soup)
    raw = "".join(parts)
    # Trim ends without moving section offsets.
    lead = len(raw) - len(raw.lstrip())
    text = raw.strip()
    sections = [(max(0, off - lead), h) for off, h in sections]
    h1 = soup.find("h1")
    title = head_title or (h1.get_text(" ", strip=True) if h1 else "") or first_heading
    return title, Page(number=1, text=text, sections=sections)


def _load_html(path: Path) -> tuple[str, list[Page]]:
    title, page = html_to_page(decode_text(path.read_bytes()))
    return title, [page]


def _load_markdown(path: Path) -> tuple[str, list[Page]]:
    from markdown_it import MarkdownIt

    source = decode_text(path.read_bytes())
    # html=False: raw HTML in Markdown is shown as text, never interpreted.
    rendered = MarkdownIt("commonmark", {"html": False}).enable("table").render(source)
    _, page = html_to_page(rendered)
    first = page.sections[0][1] if page.sections else ""
    return first, [page]


# --- DOCX -----------------------------------------------------------------------------------------

def _load_docx(path: Path) -> tuple[str, list[Page]]:
    if not zipfile.is_zipfile(path):
        raise ExtractionError("not a valid .docx: the file is not a ZIP package (corrupt or renamed)")
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(str(path))
    except (PackageNotFoundError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise ExtractionError(f"not a valid .docx: {exc}") from exc
    parts: list[str] = []
    sections: list[tuple[int, str]] = []
    first_heading = ""
    offset = 0
    for block in _docx_blocks(document):
        text = block[0].strip()
        if not text:
            continue
        if block[1]:
            sections.append((offset, text))
            first_heading = first_heading or text
        parts.append(text)
        offset += len(text) + 2
    title = (document.core_properties.title or "").strip() or first_heading
    return title, [Page(number=1, text="\n\n".join(parts), sections=sections)]


def _docx_blocks(document):
    """Paragraphs and table rows in document order, as (text, is_heading)."""
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    for item in document.iter_inner_content():
        if isinstance(item, Paragraph):
            style = (item.style.name if item.style is not None else "") or ""
            yield item.text, style.startswith(("Heading", "Title", "Título"))
        elif isinstance(item, Table):
            for row in item.rows:
                cells = []
                for cell in row.cells:
                    value = cell.text.strip()
                    if value and (not cells or cells[-1] != value):
                        cells.append(value)
                yield " | ".join(cells), False


# --- PDF --------------------------------------------------------------------------------------------

def _load_pdf(path: Path, password: str | None, ocr: _OcrJob) -> tuple[str, list[Page], list[str]]:
    """Text layer page by page (pypdf); pages without a usable one are rendered (pypdfium2) and OCR'd."""
    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError, PdfReadError, PdfStreamError

    with _quiet_pdf_logs() as captured:
        try:
            reader = PdfReader(str(path), strict=False)
        except (PdfReadError, PdfStreamError, ValueError, OSError, KeyError, TypeError) as exc:
            raise ExtractionError(f"unreadable PDF: {_short(exc)}") from exc
        if reader.is_encrypted:
            _decrypt(reader, path, password)
        try:
            count = len(reader.pages)
        except FileNotDecryptedError as exc:
            raise EncryptedPDFError("encrypted: password required (use --password)") from exc
        except Exception as exc:  # pypdf raises many types on broken page trees
            raise ExtractionError(f"unreadable PDF: page tree is damaged ({_short(exc)})") from exc
        pages: list[Page] = []
        failed: list[int] = []
        scanned: list[int] = []  # pages to OCR: no text but images, or a text layer that is garbage
        garbage: list[int] = []
        for index in range(count):
            try:
                page = reader.pages[index]
                text = page.extract_text() or ""
            except Exception:  # one bad page must not sink the document
                failed.append(index + 1)
                continue
            text = _clean_pdf_text(text)
            if text.strip() and text_layer_is_garbage(text):
                garbage.append(index + 1)
                scanned.append(index + 1)
            elif not text.strip() or len(text.strip()) < _SHORT_TEXT:
                if _has_images(page):
                    scanned.append(index + 1)  # a scan, perhaps with a stamp or header in the text layer
                    if text.strip():
                        pages.append(Page(number=index + 1, text=text))  # kept if the scan turns out to be small
                elif text.strip():
                    pages.append(Page(number=index + 1, text=text))
            else:
                pages.append(Page(number=index + 1, text=text))
        title = ""
        try:
            meta = reader.metadata
            title = str(meta.title) if meta and meta.title else ""
        except Exception:
            title = ""
    notes: list[str] = []
    if scanned:
        pages, ocr_notes = _ocr_pdf_pages(path, password, pages, scanned, garbage, ocr)
        notes += ocr_notes
    if not pages:
        if failed and len(failed) == count:
            raise ExtractionError("unreadable PDF: no page could be read")
        if scanned:
            raise ExtractionError(f"no text found: {len(scanned)} scanned page(s), OCR recognised no text")
        raise ExtractionError(f"no extractable text in {count} page(s)")
    empty = count - len(pages) - len(failed)
    if empty:
        notes.append(f"{empty} of {count} pages had no text")
    if failed:
        notes.append(f"{len(failed)} page(s) could not be read: {', '.join(map(str, failed[:10]))}")
    if captured and not notes:
        notes.append(f"{len(captured)} PDF warning(s) while reading; text extracted")
    return title, pages, notes


#: A text layer shorter than this (non-blank characters) on a page with a large image is a stamp or header
#: on a scan, not the page's text: the page is OCR'd (rendering includes the text layer).
_SHORT_TEXT = 200
#: Share of the page that images must cover for a short-text page to count as a scan.
_SCAN_COVERAGE = 0.3


def _ocr_pdf_pages(path: Path, password: str | None, pages: list[Page], scanned: list[int], garbage: list[int],
                   ocr: _OcrJob) -> tuple[list[Page], list[str]]:
    """Render and OCR the scanned pages; returns all pages in order and notes for the user."""
    import pypdfium2 as pdfium

    from . import ocr as engine

    by_number = {p.number: p for p in pages}
    try:
        document = pdfium.PdfDocument(str(path), password=password)
    except pdfium.PdfiumError as exc:
        kept = [p for p in pages if p.number not in garbage]
        return kept, [f"{len(scanned)} scanned page(s) not OCR'd: cannot render the PDF ({_short(exc)})"]
    try:
        todo = [n for n in scanned if n in garbage or n not in by_number or _is_scan(document[n - 1])]
        if not todo:
            return pages, []
        try:
            engine.check()
        except engine.OcrUnavailable as exc:
            kept = [p for p in pages if p.number not in garbage]
            if not any(p.text.strip() for p in kept):
                raise
            return kept, [f"{len(todo)} scanned page(s) not OCR'd ({_page_list(todo)}): {exc}"]
        resolution = engine.dpi()
        failures: list[str] = []
        for done, number in enumerate(todo):
            ocr.tick(done, len(todo))
            result = ocr.cached(number, resolution)
            if result is None:
                page = document[number - 1]
                try:
                    image = page.render(scale=resolution / 72, grayscale=True).to_pil()
                    result = engine.recognize(image, resolution)
                except engine.OcrFailed as exc:
                    failures.append(f"p. {number}: {exc}")
                    if number in garbage:
                        by_number.pop(number, None)
                    continue
                finally:
                    page.close()
                ocr.store(number, resolution, result)
            ocr.pages[number] = result
            if result.text.strip():
                by_number[number] = Page(number=number, text=result.text, metadata=result.metadata())
            elif number in garbage:
                by_number.pop(number, None)
        ocr.tick(len(todo), len(todo))
    finally:
        document.close()
    return sorted(by_number.values(), key=lambda p: p.number), ocr.notes(garbage) + failures


def _is_scan(page) -> bool:
    """Images cover a large part of this (pypdfium2) page: its short text layer is a stamp over a scan."""
    import pypdfium2.raw as raw

    try:
        width, height = page.get_size()
        covered = 0.0
        for obj in page.get_objects(filter=[raw.FPDF_PAGEOBJ_IMAGE], max_depth=2):
            left, bottom, right, top = obj.get_bounds()
            covered += max(0.0, min(right, width) - max(left, 0)) * max(0.0, min(top, height) - max(bottom, 0))
        return covered >= _SCAN_COVERAGE * width * height
    except Exception:
        return False


def _page_list(numbers: list[int], limit: int = 8) -> str:
    shown = ", ".join(f"p. {n}" for n in numbers[:limit])
    return shown + (f" and {len(numbers) - limit} more" if len(numbers) > limit else "")


# --- text-layer quality -------------------------------------------------------------------------------

_CID = re.compile(r"\(cid:\d+\)")
_LEADERS = re.compile(r"(?:[.·…_\-=*] ?){3,}")
_BAD_CATEGORIES = frozenset(("Cc", "Co", "Cn", "Cs"))


def text_layer_is_garbage(text: str) -> bool:
    """True when a PDF text layer is not readable text, though the page may look fine: mostly unmapped glyphs
    ((cid:NN), U+FFFD, private-use or control characters), symbol soup (glyph codes mapped to punctuation), or
    letters with far too few or too many vowels for Spanish or English (a shifted font encoding). Such pages are
    OCR'd instead. Tables, numbers and diagrams with identifiers are not garbage (no dictionary is needed)."""
    sample = _LEADERS.sub(" ", text[:20000])  # dot leaders of tables of contents are not symbol soup
    visible = [ch for ch in _CID.sub("\ufffd", sample) if not ch.isspace()]
    if len(visible) < 40:
        return False
    bad = sum(1 for ch in visible if ch == "\ufffd" or unicodedata.category(ch) in _BAD_CATEGORIES)
    if bad > 0.3 * len(visible):
        return True
    if sum(1 for ch in visible if ch.isalnum()) < 0.35 * len(visible):
        return True
    # Letters of word-length tokens only: formulas and codes are full of one- and two-letter names.
    letters = [ch for word in re.findall(r"[a-z]{4,}", fold(sample)) for ch in word]
    if len(letters) < 200:
        return False
    vowels = sum(1 for ch in letters if ch in "aeiou") / len(letters)
    return not 0.28 <= vowels <= 0.62  # es/en prose ~0.38-0.47, identifiers and tables ~0.30-0.40


# --- images (PNG, JPEG, TIFF with several pages) -------------------------------------------------------

def _load_image(path: Path, ocr: _OcrJob) -> tuple[str, list[Page], list[str]]:
    """Each frame of an image file is one page, OCR'd."""
    from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

    from . import ocr as engine

    engine.check()
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, SyntaxError, ValueError) as exc:
        raise ExtractionError(f"unreadable image: {_short(exc)}") from exc
    pages: list[Page] = []
    with image:
        total = getattr(image, "n_frames", 1)
        for index, frame in enumerate(ImageSequence.Iterator(image)):
            number = index + 1
            ocr.tick(index, total)
            result = ocr.cached(number, 0)
            if result is None:
                try:
                    upright = ImageOps.exif_transpose(frame.copy())
                except Exception:
                    upright = frame.copy()
                declared = frame.info.get("dpi")
                resolution = int(round(float(declared[0]))) if declared and float(declared[0]) >= 70 else None
                result = engine.recognize(upright, resolution)
                ocr.store(number, 0, result)
            ocr.pages[number] = result
            if result.text.strip():
                pages.append(Page(number=number, text=result.text, metadata=result.metadata()))
        ocr.tick(total, total)
    if not pages:
        raise ExtractionError(f"no text found: OCR recognised no text in {total} page(s) of the image")
    return "", pages, ocr.notes([])


class _OcrJob:
    """One file's OCR: progress reports, the on-disk page cache and the notes for the user."""

    def __init__(self, content_hash: str, progress: PageProgress | None, cache: Path | None):
        self.content_hash = content_hash
        self.progress = progress
        self.cache = cache
        self.pages: dict[int, object] = {}  # page number -> ocr.OcrPage

    def tick(self, done: int, total: int) -> None:
        if self.progress:
            self.progress(done, total)

    def _file(self, number: int, resolution: int) -> Path | None:
        from . import ocr as engine

        if self.cache is None:
            return None
        # One folder per file content (its owner removes it once the file is indexed), one file per page.
        return self.cache / self.content_hash[:20] / f"p{number}-{resolution}dpi-{engine.languages()}.json"

    def cached(self, number: int, resolution: int):
        from . import ocr as engine

        file = self._file(number, resolution)
        if file is None or not file.is_file():
            return None
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
            return engine.OcrPage.from_metadata(data["text"], data["metadata"])
        except (ValueError, KeyError, TypeError, OSError):
            return None

    def store(self, number: int, resolution: int, result) -> None:
        file = self._file(number, resolution)
        if file is None:
            return
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            tmp = file.with_suffix(".tmp")
            tmp.write_text(json.dumps({"text": result.text, "metadata": result.metadata()}, ensure_ascii=False),
                           encoding="utf-8")
            tmp.replace(file)
        except OSError:
            pass  # the cache only saves time on a resumed run

    def notes(self, garbage: list[int]) -> list[str]:
        from . import ocr as engine

        results = {n: r for n, r in self.pages.items() if r.text.strip()}
        if not results:
            return []
        mean = sum(r.confidence for r in results.values()) / len(results)
        notes = [f"OCR'd {len(results)} page(s), mean confidence {mean:.0f}%"]
        if garbage:
            notes.append(f"unreadable text layer replaced by OCR on {_page_list(garbage)}")
        low = sorted(n for n, r in results.items() if r.low_confidence)
        if 0 < len(low) <= 5:
            notes += [f"p. {n}: OCR confidence {int(results[n].confidence)}%: check the scan" for n in low]
        elif low:
            notes.append(f"OCR confidence below {engine.LOW_CONFIDENCE:.0f}% on {len(low)} pages "
                         f"({_page_list(low)}): check the scans")
        return notes


def _decrypt(reader, path: Path, password: str | None) -> None:
    from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError

    try:
        for candidate in ([password] if password else []) + [""]:
            if reader.decrypt(candidate):
                return
    except DependencyError as exc:
        raise EncryptedPDFError(f"encrypted: needs the 'cryptography' package ({exc})") from exc
    except (FileNotDecryptedError, PdfReadError, NotImplementedError) as exc:
        raise EncryptedPDFError(f"encrypted: cannot decrypt ({_short(exc)})") from exc
    if password:
        raise EncryptedPDFError("encrypted: wrong password")
    raise EncryptedPDFError("encrypted: password required (use --password)")


def _has_images(page) -> bool:
    try:
        resources = page.get("/Resources") or {}
        xobjects = resources.get("/XObject") or {}
        return any(xobjects[name].get("/Subtype") == "/Image" for name in xobjects)
    except Exception:
        return False


_HYPHEN_BREAK = re.compile(r"(\w)-\n(\w)")


def _clean_pdf_text(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = _HYPHEN_BREAK.sub(r"\1\2", text)
    text = re.sub(r"[ \t]+\n", "\n", text)
    return text.strip()


class _quiet_pdf_logs:
    """pypdf logs and warns a lot on real files; collect it instead of printing it."""

    def __enter__(self) -> list[str]:
        self.records: list[str] = []
        self._logger = logging.getLogger("pypdf")
        self._handler = _ListHandler(self.records)
        self._old = (self._logger.level, self._logger.propagate)
        self._logger.addHandler(self._handler)
        self._logger.setLevel(logging.WARNING)
        self._logger.propagate = False
        self._warnings = warnings.catch_warnings(record=True)
        self._caught = self._warnings.__enter__()
        warnings.simplefilter("always")
        return self.records

    def __exit__(self, *exc) -> None:
        self.records.extend(str(w.message) for w in self._caught)
        self._warnings.__exit__(*exc)
        self._logger.removeHandler(self._handler)
        self._logger.setLevel(self._old[0])
        self._logger.propagate = self._old[1]


class _ListHandler(logging.Handler):
    def __init__(self, sink: list[str]):
        super().__init__(logging.WARNING)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(record.getMessage())


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]


# --- titles -----------------------------------------------------------------------------------------

_BAD_TITLES = re.compile(r"^(untitled|microsoft word|document\d*|title|\s*)$|\.(docx?|pdf|tex|indd)$", re.I)


def _clean_title(title: str) -> str:
    title = re.sub(r"\s+", " ", title or "").strip()
    return "" if _BAD_TITLES.search(title) else title[:300]


def _scan_title(pages: list[Page]) -> str:
    """A scan carries no title metadata: take the leading lines of its first page that are set in larger type than
    the body (line heights from OCR), as a reader would; nothing when the page starts with body text."""
    if not pages or not pages[0].metadata.get("ocr"):
        return ""
    page = pages[0]
    lines = [line for line in page.metadata.get("ocr_lines", []) if page.text[line[0]:line[1]].strip()]
    if len(lines) < 3:
        return ""
    body = sorted(line[5] for line in lines)[(len(lines) - 1) // 2]  # lower median: the body text
    heading: list[str] = []
    for start, end, *_box, height in lines[:4]:
        if height < 1.25 * body:
            break
        heading.append(page.text[start:end].strip())
    title = " ".join(" ".join(heading).split())
    letters = sum(ch.isalpha() for ch in title)
    if 2 <= len(title.split()) <= 25 and letters >= 0.6 * len(title):
        return _clean_title(title)
    return ""


def _title_from_filename(path: Path) -> str:
    return re.sub(r"[_]+", " ", path.stem).strip() or path.name
