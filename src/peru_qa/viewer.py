"""The evidence viewer: a cited page (or section) with the quoted sentences highlighted.

PDF pages are rendered to images by pypdfium2 (PDFium, the renderer Chrome uses: well kept, no system
dependencies) and the quote's character boxes come from PDFium's own text layer, so they sit where the words
are drawn — also on scanned pages that OCR gave a text layer. Text formats show the section around the quote,
with its heading. Renders are cached (LRU, keyed by document, page and content hash) because a reader clicks
back and forth between a few pages; a changed or missing original file is said, never silently shown.

Safety: every piece of document text is HTML-escaped here, once, and files are only ever looked up by the id of
an indexed document, never by a path that came from the browser.
"""

from __future__ import annotations

import base64
import html
import io
import os
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .kb import KnowledgeBase
    from .records import DocumentRecord

#: Scale of the rendered page (1 = 72 dpi): 1.4 reads well beside the chat and renders in ~0.1 s.
RENDER_SCALE = 1.4
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
#: PDFium is not thread-safe: one lock for every call into it.
_PDFIUM_LOCK = threading.Lock()


@dataclass
class Rendered:
    """A page as an image, and where each character-level highlight goes (fractions of width/height)."""

    data: bytes
    mime: str
    width: int
    height: int
    #: The page's text as PDFium reads it (for locating quotes), "" for images without a text layer.
    text: str = ""


@dataclass
class PageView:
    """Everything the viewer shows for one page (or, for unpaged formats, one section)."""

    doc_id: str
    title: str
    file_name: str
    paged: bool
    page: int
    n_pages: int
    #: For unpaged documents the unit shown is a section: its index and how many there are.
    section_index: int = 0
    n_sections: int = 1
    heading: str = ""
    #: The text shown (the page's, or the section's) and the spans of it to highlight.
    text: str = ""
    marks: list[tuple[int, int]] = field(default_factory=list)
    image: Rendered | None = None
    #: Highlight boxes on the image: (left, top, width, height), fractions of the image's size.
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    page_metadata: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: Quotes that could not be found on this page (shown, so a reader knows to look further).
    missing: list[str] = field(default_factory=list)

    @property
    def at_start(self) -> bool:
        return (self.page <= 1) if self.paged else self.section_index <= 0

    @property
    def at_end(self) -> bool:
        return (self.page >= self.n_pages) if self.paged else self.section_index >= self.n_sections - 1


# --- locating quotes ---------------------------------------------------------------------------------

def _folded(text: str) -> tuple[str, list[int]]:
    """Lower-cased letters and digits of `text` (accents kept apart), with each one's index in `text`.

    Quotes are matched on these so that line breaks, hyphenation, ligatures, bullets and spacing differences
    between the stored text and PDFium's text layer do not stop a match."""
    out: list[str] = []
    where: list[int] = []
    for i, ch in enumerate(text):
        for c in unicodedata.normalize("NFKD", ch).casefold():
            if c.isalnum():
                out.append(c)
                where.append(i)
    return "".join(out), where


_CLOSING = set(".!?…)]»”’\"'")


def find_spans(text: str, quotes: Iterable[str]) -> tuple[list[tuple[int, int]], list[str]]:
    """(start, end) in `text` of each quote found, merged and sorted; and the quotes not found."""
    folded, where = _folded(text)
    spans: list[tuple[int, int]] = []
    missing: list[str] = []
    for quote in quotes:
        needle, _ = _folded(quote)
        if not needle:
            continue
        i = folded.find(needle)
        if i < 0:
            missing.append(quote)
            continue
        end = where[i + len(needle) - 1] + 1
        while end < len(text) and text[end] in _CLOSING and end - where[i + len(needle) - 1] <= 3:
            end += 1  # the sentence's own full stop or closing quote belongs to the highlight
        spans.append((where[i], end))
    spans.sort()
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged, missing


def highlight_html(text: str, spans: list[tuple[int, int]]) -> str:
    """`text` escaped, with the spans wrapped in <mark> (each piece escaped on its own)."""
    out, pos = [], 0
    for start, end in spans:
        if start < pos:
            continue
        out += [html.escape(text[pos:start]), "<mark>", html.escape(text[start:end]), "</mark>"]
        pos = end
    out.append(html.escape(text[pos:]))
    return "".join(out)


# --- the viewer ---------------------------------------------------------------------------------------

class Viewer:
    """Builds `PageView`s from an index; caches page renders."""

    def __init__(self, kb: KnowledgeBase, cache_size: int = 64, scale: float = RENDER_SCALE):
        self.kb = kb
        self.scale = scale
        self._cache: OrderedDict[tuple, Rendered | None] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        try:  # loaded now, not on the first click (importing PDFium and Pillow takes a good part of a second)
            import PIL.Image  # noqa: F401
            import pypdfium2  # noqa: F401
        except ImportError:
            pass

    # --- files ----------------------------------------------------------------------------------
    def record(self, doc_id: str) -> DocumentRecord:
        from .errors import DocumentNotFound

        record = self.kb.document(str(doc_id))
        if record is None:
            raise DocumentNotFound(f"no document {doc_id!r} in the index")
        return record

    def original(self, doc_id: str) -> Path | None:
        """The indexed file of a document, if it is still there unchanged; None otherwise (or for texts)."""
        record = self.record(doc_id)
        path = Path(record.source)
        if record.file_size is None:
            return None
        try:
            stat = path.stat()
        except OSError:
            return self._stored_original(record)
        if not path.is_file():
            return self._stored_original(record)
        if stat.st_size != record.file_size or stat.st_mtime != record.file_mtime:
            from .loaders import file_hash

            if file_hash(path) != record.content_hash:
                return self._stored_original(record)
        return path

    def _stored_original(self, record: DocumentRecord) -> Path | None:
        """The file as the index stores it (a shared database keeps every file added from any machine), written
        once to this machine's cache folder of the index."""
        cached = self.kb.path / "originals" / (record.content_hash[:32] + Path(record.source).suffix.lower())
        if cached.is_file():
            return cached
        data = self.kb.original_bytes(record)
        if data is None:
            return None
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_name(cached.name + f".{os.getpid()}.part")
        partial.write_bytes(data)
        os.replace(partial, cached)
        return cached

    # --- rendering ------------------------------------------------------------------------------
    def render(self, doc_id: str, page: int) -> Rendered | None:
        """The page as an image (cached), or None when there is no original file to render."""
        record = self.record(doc_id)
        path = self.original(doc_id)  # a stat; checked first so that a changed file never shows an old render
        if path is None:
            return None
        key = (record.id, page, record.content_hash, self.scale)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        rendered = None
        if path is not None:
            suffix = path.suffix.lower()
            if suffix == ".pdf":
                rendered = self._render_pdf(path, page)
            elif suffix in IMAGE_SUFFIXES:
                rendered = self._render_image(path)
        with self._lock:
            self._cache[key] = rendered
            self._cache.move_to_end(key)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return rendered

    def _render_pdf(self, path: Path, page: int) -> Rendered | None:
        import pypdfium2 as pdfium

        with _PDFIUM_LOCK:
            pdf = pdfium.PdfDocument(str(path))
            try:
                if not 1 <= page <= len(pdf):
                    return None
                pdf_page = pdf[page - 1]
                image = pdf_page.render(scale=self.scale).to_pil()
                textpage = pdf_page.get_textpage()
                text = textpage.get_text_range()
                textpage.close()
                pdf_page.close()
            finally:
                pdf.close()
        return _encode(image, text)

    def _render_image(self, path: Path) -> Rendered:
        from PIL import Image

        with Image.open(path) as image:
            image.load()
            if image.width > 1400:
                image = image.resize((1400, round(image.height * 1400 / image.width)))
            return _encode(image, "")

    def boxes(self, doc_id: str, page: int, quotes: list[str]) -> list[tuple[float, float, float, float]]:
        """Highlight boxes of the quotes on a PDF page, from PDFium's text layer (fractions of the page)."""
        path = self.original(doc_id)
        if path is None or path.suffix.lower() != ".pdf" or not quotes:
            return []
        rendered = self.render(doc_id, page)
        if rendered is None or not rendered.text:
            return []
        spans, _ = find_spans(rendered.text, quotes)
        if not spans:
            return []
        import pypdfium2 as pdfium

        out = []
        with _PDFIUM_LOCK:
            pdf = pdfium.PdfDocument(str(path))
            try:
                pdf_page = pdf[page - 1]
                width, height = pdf_page.get_size()
                textpage = pdf_page.get_textpage()
                for start, end in spans:
                    for i in range(textpage.count_rects(start, end - start)):
                        left, bottom, right, top = textpage.get_rect(i)
                        out.append((left / width, 1 - top / height, (right - left) / width, (top - bottom) / height))
                textpage.close()
                pdf_page.close()
            finally:
                pdf.close()
        return out

    @staticmethod
    def ocr_boxes(page_metadata: dict, marks: list[tuple[int, int]]) -> list[tuple[float, float, float, float]]:
        """Boxes of the OCR lines that overlap the quoted spans (`marks`: offsets in the page text), as fractions of
        the scan's size. OCR stores each recognised line as [start, end, left, top, width, height] with `start`/`end`
        in the page text and the box in pixels of `ocr_size` (see peru_qa.ocr)."""
        lines = page_metadata.get("ocr_lines") or []
        size = page_metadata.get("ocr_size") or []
        if not marks or not isinstance(lines, list) or len(size) != 2 or not all(size):
            return []
        width, height = float(size[0]), float(size[1])
        out = []
        for line in lines:
            if not isinstance(line, (list, tuple)) or len(line) != 6:
                continue
            start, end, left, top, w, h = (float(v) for v in line)
            if any(start < m_end and m_start < end for m_start, m_end in marks):
                out.append((left / width, top / height, w / width, h / height))
        return out

    # --- views ----------------------------------------------------------------------------------
    def view(self, doc_id: str, page: int | None = None, quotes: Iterable[str] = (), *,
             span: tuple[int, int] | None = None, section: int | None = None) -> PageView:
        """The page `page` of a document (1 when None) with `quotes` highlighted.

        For unpaged formats the view is a section: number `section`, else the one holding `span` (the cited
        passage's offsets) or the first quote."""
        record = self.record(doc_id)
        quotes = [q for q in quotes if q and q.strip()]
        pages = self.kb.pages(record.id)
        if not pages:
            return PageView(record.id, record.title, Path(record.source).name, record.paged, 1, 0,
                            notes=["This document has no stored text."])
        numbers = [p[0] for p in pages]
        number = page if page in numbers else (numbers[0] if page is None or page < numbers[0] else numbers[-1])
        _, text, sections, page_meta = pages[numbers.index(number)]
        view = PageView(record.id, record.title, Path(record.source).name, record.paged, number,
                        numbers[-1] if record.paged else 1, page_metadata=page_meta, metadata=record.metadata)
        if record.paged:
            view.text = text
            view.marks, view.missing = find_spans(text, quotes)
            view.heading = _heading_at(sections, view.marks[0][0] if view.marks else 0)
            self._attach_image(view, quotes)
        else:
            bounds = _section_bounds(text, sections)
            view.n_sections = len(bounds)
            if section is None:
                anchor = span[0] if span else None
                if anchor is None and quotes:
                    found, _ = find_spans(text, quotes[:1])
                    anchor = found[0][0] if found else None
                section = next((i for i, (s, e, _) in enumerate(bounds) if anchor is not None and s <= anchor < e),
                               0)
            view.section_index = max(0, min(section, len(bounds) - 1))
            start, end, view.heading = bounds[view.section_index]
            view.text = text[start:end]
            view.marks, view.missing = find_spans(view.text, quotes)
            if record.source.lower().endswith(IMAGE_SUFFIXES):
                self._attach_image(view, quotes)
        if page_meta.get("ocr"):
            confidence = page_meta.get("confidence")
            view.notes.append("Text read by OCR" + (f" (confidence {float(confidence):.0f}%)"
                                                    if isinstance(confidence, (int, float)) else "")
                              + ": check it against the scan.")
        return view

    def _attach_image(self, view: PageView, quotes: list[str]) -> None:
        if self.original(view.doc_id) is None:
            source = Path(self.record(view.doc_id).source)
            if source.suffix.lower() == ".pdf" or source.suffix.lower() in IMAGE_SUFFIXES:
                view.notes.append("The original file is missing or has changed since it was indexed: showing the "
                                  "indexed text only.")
            return
        view.image = self.render(view.doc_id, view.page)
        if view.image is None:
            return
        view.boxes = self.boxes(view.doc_id, view.page, quotes) or self.ocr_boxes(view.page_metadata, view.marks)

    def prefetch(self, targets: Iterable[tuple[str, int]]) -> None:
        """Render pages ahead of a click (errors ignored: the click will report them)."""
        for doc_id, page in targets:
            try:
                self.render(doc_id, page)
            except Exception:  # noqa: BLE001 - best effort
                pass


def _encode(image, text: str) -> Rendered:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=80)  # a few ms; PNG takes 20x longer at a similar size
    return Rendered(buffer.getvalue(), "image/jpeg", image.width, image.height, text)


def _section_bounds(text: str, sections: list[tuple[int, str]]) -> list[tuple[int, int, str]]:
    """(start, end, heading) of each section of an unpaged document's text (the text before the first heading
    is a section of its own when it holds more than white space)."""
    marks = sorted((int(off), str(heading)) for off, heading in sections)
    bounds = []
    if not marks or text[: marks[0][0]].strip():
        bounds.append((0, marks[0][0] if marks else len(text), ""))
    for i, (off, heading) in enumerate(marks):
        end = marks[i + 1][0] if i + 1 < len(marks) else len(text)
        bounds.append((off, end, heading))
    return bounds or [(0, len(text), "")]


def _heading_at(sections: list[tuple[int, str]], offset: int) -> str:
    heading = ""
    for off, name in sorted((int(o), str(n)) for o, n in sections):
        if off <= offset:
            heading = name
    return heading


# --- HTML --------------------------------------------------------------------------------------------

def view_html(view: PageView | None, message: str = "") -> str:
    """The viewer panel. All document text is escaped; nothing from a document can run in the page."""
    if view is None:
        note = html.escape(message or "Click a citation [n] in an answer, or “Open” on a source, to see it in "
                           "its page.")
        return f"<div class='pqa-viewer' id='pqa-viewer-empty'><p class='pqa-note'>{note}</p></div>"
    where = (f"p. {view.page} of {view.n_pages}" if view.paged
             else (f"section {view.section_index + 1} of {view.n_sections}" if view.n_sections > 1 else ""))
    checked = view.metadata.get("checked")
    parts = [f"<div class='pqa-viewer' data-doc='{html.escape(view.doc_id)}' data-page='{view.page}' "
             f"data-section='{view.section_index}'>",
             f"<div class='pqa-vhead'><b>{html.escape(view.title)}</b>"
             f"{' · ' + html.escape(where) if where else ''} <span class='pqa-file'>· "
             f"{html.escape(view.file_name)}{' · checked ' + html.escape(str(checked)) if checked else ''}"
             "</span></div>"]
    if view.heading and view.heading != view.title:
        parts.append(f"<div class='pqa-vsection'>§ {html.escape(view.heading)}</div>")
    for note in view.notes:
        parts.append(f"<p class='pqa-note'>{html.escape(note)}</p>")
    if view.image is not None:
        data = base64.b64encode(view.image.data).decode("ascii")
        boxes = "".join(
            f"<div class='pqa-box' style='left:{x * 100:.2f}%;top:{y * 100:.2f}%;width:{w * 100:.2f}%;"
            f"height:{h * 100:.2f}%'></div>" for x, y, w, h in view.boxes)
        parts.append(f"<div class='pqa-pageimg'><img alt='page {view.page}' src='data:{view.image.mime};base64,"
                     f"{data}' width='{view.image.width}' height='{view.image.height}'>{boxes}</div>")
    if view.missing and view.marks == []:
        parts.append("<p class='pqa-note'>The quoted sentence is not on this page's stored text.</p>")
    label = "Page text (select to copy)" if view.paged else "Text"
    open_attr = "" if view.image is not None else " open"
    parts.append(f"<details class='pqa-vtext'{open_attr}><summary>{label}</summary>"
                 f"<pre class='pqa-text'>{highlight_html(view.text, view.marks)}</pre></details>")
    if view.image is not None and view.marks:
        quoted = " … ".join(" ".join(view.text[s:e].split()) for s, e in view.marks)
        parts.append(f"<blockquote class='pqa-quoted'><mark>{html.escape(quoted)}</mark></blockquote>")
    parts.append("</div>")
    return "".join(parts)


__all__ = ["Viewer", "PageView", "Rendered", "find_spans", "highlight_html", "view_html"]
