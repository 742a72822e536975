"""Build the PDF documents of the peru-qa corpus from their Markdown sources.

Every ``corpus/pdf-sources/*.md`` file is rendered to ``documents/<same-stem>.pdf``
with fpdf2, using only the PDF core fonts (Helvetica), so the script runs on a
fresh machine without any system fonts installed.

Run it from the repository root:

    .venv/bin/python scripts/build_pdfs.py

Optional arguments: ``--src DIR`` and ``--out DIR`` to change the source and
output folders, and ``--check`` to verify afterwards (with pypdf, if it is
installed) that every PDF has at least three pages and that its text extracts.

Supported Markdown subset: ``#``/``##``/``###`` headings, paragraphs (consecutive
lines are joined), ``-``/``*``/``1.`` list items, ``**bold**`` and ``*italic*``
spans, ``[text](url)`` links, inline code, block quotes and simple pipe tables
(rendered as plain text rows). Characters outside Latin-1 (curly quotes, dashes,
ellipsis, etc.) are mapped to Latin-1 equivalents because the core fonts only
cover that character set.

The output is deterministic: the creation date is fixed, so re-running the
script on unchanged sources produces byte-identical PDFs.
"""

from __future__ import annotations

import argparse
import re
import sys
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from fpdf import FPDF

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SRC = REPO_ROOT / "corpus" / "pdf-sources"
DEFAULT_OUT = REPO_ROOT / "documents"

AUTHOR = "peru-qa corpus"
# Fixed timestamp so that the output does not change between runs.
FIXED_DATE = datetime(2026, 11, 1, 0, 0, 0, tzinfo=timezone.utc)

# Layout (millimetres / points).
MARGIN_LR = 22
MARGIN_TOP = 20
MARGIN_BOTTOM = 20
BODY_SIZE = 11.5
BODY_LINE = 6.0
PARA_GAP = 2.6
HEADING_SIZES = {1: 18, 2: 14, 3: 12.5}
HEADING_LINES = {1: 9.0, 2: 7.4, 3: 6.6}
LIST_INDENT = 6.0

# Characters outside Latin-1 that appear in the sources, mapped to Latin-1 text.
CHAR_MAP = {
    "\u2018": "'", "\u2019": "'", "\u201a": ",", "\u201b": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"',
    "\u2032": "'", "\u2033": '"', "\u00b4": "'",
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-",
    "\u2014": "-", "\u2015": "-", "\u2212": "-",
    "\u2026": "...", "\u2022": "-", "\u2023": "-", "\u25cf": "-", "\u00b7": "-",
    "\u00a0": " ", "\u2002": " ", "\u2003": " ", "\u2007": " ",
    "\u2009": " ", "\u200a": " ", "\u202f": " ",
    "\u200b": "", "\u200c": "", "\u200d": "", "\u00ad": "", "\ufeff": "",
    "\u2192": "->", "\u2190": "<-", "\u2194": "<->",
    "\u2264": "<=", "\u2265": ">=", "\u2260": "!=", "\u2248": "~",
    "\u20ac": "EUR", "\u2122": "(TM)", "\u2116": "No.",
    "\u2070": "0", "\u2074": "4", "\u2075": "5",
}


def to_latin1(text: str) -> str:
    """Map text to characters the PDF core fonts can encode (Latin-1)."""
    out = []
    for ch in text:
        if ch in CHAR_MAP:
            out.append(CHAR_MAP[ch])
        elif ord(ch) < 256:
            out.append(ch)
        else:
            # Decompose (e.g. letters with rare diacritics) and keep the Latin-1 part.
            decomposed = unicodedata.normalize("NFKD", ch)
            kept = "".join(c for c in decomposed if ord(c) < 256 and not unicodedata.combining(c))
            out.append(kept if kept else "?")
    return "".join(out)


# ---------------------------------------------------------------------------
# Markdown parsing
# ---------------------------------------------------------------------------


@dataclass
class Block:
    kind: str  # "heading", "para", "item", "italic_para", "rule"
    text: str = ""
    level: int = 0
    marker: str = ""


HEADING_RE = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
BULLET_RE = re.compile(r"^(\s*)[-*+]\s+(.*)$")
NUMBER_RE = re.compile(r"^(\s*)(\d+)[.)]\s+(.*)$")
RULE_RE = re.compile(r"^\s*([-*_])(\s*\1){2,}\s*$")
TABLE_SEP_RE = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")


def clean_inline(text: str) -> str:
    """Simplify inline Markdown that is not rendered as a style."""
    text = re.sub(r"!\[([^\]]*)\]\([^)]*\)", r"\1", text)  # images -> alt text
    text = re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r"\1 (\2)", text)  # links
    text = re.sub(r"`([^`]*)`", r"\1", text)  # inline code
    text = text.replace("\\*", "*").replace("\\_", "_")
    return text


def parse_markdown(md: str) -> list[Block]:
    blocks: list[Block] = []
    para: list[str] = []
    current_item: Block | None = None

    def flush_para() -> None:
        nonlocal para
        if para:
            text = " ".join(p.strip() for p in para).strip()
            if text:
                # A paragraph that is entirely one *italic* span.
                m = re.fullmatch(r"\*([^*].*?)\*|_([^_].*?)_", text)
                if m:
                    blocks.append(Block("italic_para", m.group(1) or m.group(2)))
                else:
                    blocks.append(Block("para", text))
        para = []

    in_code = False
    for raw in md.splitlines():
        line = raw.rstrip()
        if line.strip().startswith("```"):
            flush_para()
            current_item = None
            in_code = not in_code
            continue
        if in_code:
            blocks.append(Block("para", line))
            continue
        if not line.strip():
            flush_para()
            current_item = None
            continue
        m = HEADING_RE.match(line)
        if m:
            flush_para()
            current_item = None
            blocks.append(Block("heading", m.group(2).strip(), level=min(len(m.group(1)), 3)))
            continue
        if RULE_RE.match(line):
            flush_para()
            current_item = None
            blocks.append(Block("rule"))
            continue
        if line.lstrip().startswith("|"):
            flush_para()
            current_item = None
            if TABLE_SEP_RE.match(line):
                continue
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            blocks.append(Block("para", " | ".join(c for c in cells)))
            continue
        m = BULLET_RE.match(line)
        if m:
            flush_para()
            current_item = Block("item", m.group(2).strip(), marker="-")
            blocks.append(current_item)
            continue
        m = NUMBER_RE.match(line)
        if m:
            flush_para()
            current_item = Block("item", m.group(3).strip(), marker=f"{m.group(2)}.")
            blocks.append(current_item)
            continue
        if line.lstrip().startswith(">"):
            flush_para()
            current_item = None
            blocks.append(Block("italic_para", line.lstrip()[1:].strip()))
            continue
        if current_item is not None and raw.startswith((" ", "\t")):
            current_item.text += " " + line.strip()  # continuation of a list item
            continue
        current_item = None
        para.append(line)
    flush_para()
    return blocks


def split_styles(text: str, base: str = "") -> list[tuple[str, str]]:
    """Split text into (style, chunk) pieces for **bold** and *italic* spans."""
    pieces: list[tuple[str, str]] = []
    pattern = re.compile(r"\*\*(.+?)\*\*|__(.+?)__|(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])")
    pos = 0
    for m in pattern.finditer(text):
        if m.start() > pos:
            pieces.append((base, text[pos:m.start()]))
        if m.group(1) is not None or m.group(2) is not None:
            style = "".join(sorted(set(base + "B")))
            pieces.append((style, m.group(1) if m.group(1) is not None else m.group(2)))
        else:
            style = "".join(sorted(set(base + "I")))
            pieces.append((style, m.group(3)))
        pos = m.end()
    if pos < len(text):
        pieces.append((base, text[pos:]))
    return [(s, c) for s, c in pieces if c]


# ---------------------------------------------------------------------------
# PDF rendering
# ---------------------------------------------------------------------------


class CorpusPDF(FPDF):
    def footer(self) -> None:  # noqa: D401 - fpdf2 hook
        self.set_y(-13)
        self.set_font("Helvetica", "", 9)
        self.set_text_color(110, 110, 110)
        self.cell(0, 6, f"Page {self.page_no()} of {{nb}}", align="C")
        self.set_text_color(0, 0, 0)


def first_heading(blocks: list[Block], fallback: str) -> str:
    for b in blocks:
        if b.kind == "heading" and b.level == 1:
            return b.text
    return fallback


def write_rich(pdf: FPDF, text: str, size: float, line_h: float, base_style: str = "") -> None:
    for style, chunk in split_styles(clean_inline(text), base_style):
        pdf.set_font("Helvetica", style, size)
        pdf.write(line_h, to_latin1(chunk))


def render(blocks: list[Block], title: str, lang: str) -> CorpusPDF:
    pdf = CorpusPDF(orientation="portrait", unit="mm", format="A4")
    pdf.set_margins(MARGIN_LR, MARGIN_TOP, MARGIN_LR)
    pdf.set_auto_page_break(auto=True, margin=MARGIN_BOTTOM)
    pdf.alias_nb_pages()
    pdf.set_title(to_latin1(title))
    pdf.set_author(AUTHOR)
    pdf.set_subject("peru-qa document corpus")
    pdf.set_lang(lang)
    pdf.set_creation_date(FIXED_DATE)
    pdf.add_page()

    bottom_limit = pdf.h - MARGIN_BOTTOM
    prev_kind = None
    for b in blocks:
        if b.kind == "heading":
            size = HEADING_SIZES[b.level]
            lh = HEADING_LINES[b.level]
            # Keep a heading together with at least a few lines of what follows.
            if pdf.get_y() > bottom_limit - (lh * 2 + BODY_LINE * 3) and pdf.get_y() > MARGIN_TOP + 1:
                pdf.add_page()
            elif pdf.get_y() > MARGIN_TOP + 1:
                pdf.ln(4 if b.level == 1 else 3)
            pdf.set_x(pdf.l_margin)
            pdf.set_font("Helvetica", "B", size)
            pdf.multi_cell(0, lh, to_latin1(clean_inline(b.text)), new_x="LMARGIN", new_y="NEXT")
            pdf.ln(1.5)
        elif b.kind in ("para", "italic_para"):
            if prev_kind == "item":
                pdf.ln(PARA_GAP)
            pdf.set_x(pdf.l_margin)
            write_rich(pdf, b.text, BODY_SIZE, BODY_LINE, "I" if b.kind == "italic_para" else "")
            pdf.ln(BODY_LINE)
            pdf.ln(PARA_GAP)
        elif b.kind == "item":
            old_margin = pdf.l_margin
            pdf.set_x(old_margin)
            pdf.set_font("Helvetica", "", BODY_SIZE)
            marker = to_latin1(b.marker)
            marker_w = max(LIST_INDENT, pdf.get_string_width(marker) + 2.5)
            pdf.cell(marker_w, BODY_LINE, marker)
            pdf.set_left_margin(old_margin + marker_w)
            write_rich(pdf, b.text, BODY_SIZE, BODY_LINE)
            pdf.ln(BODY_LINE)
            pdf.set_left_margin(old_margin)
            pdf.set_x(old_margin)
            pdf.ln(1.2)
        elif b.kind == "rule":
            y = pdf.get_y() + 2
            pdf.line(pdf.l_margin, y, pdf.w - pdf.r_margin, y)
            pdf.ln(5)
        prev_kind = b.kind
    return pdf


def build_one(src: Path, out_dir: Path) -> Path:
    md = src.read_text(encoding="utf-8")
    blocks = parse_markdown(md)
    title = first_heading(blocks, src.stem)
    lang = "es" if src.stem.startswith("es-") else "en"
    pdf = render(blocks, title, lang)
    out = out_dir / f"{src.stem}.pdf"
    out.write_bytes(bytes(pdf.output()))
    return out


def check_pdfs(paths: list[Path], min_pages: int = 3) -> bool:
    try:
        from pypdf import PdfReader
    except ImportError:  # pragma: no cover - optional dependency
        print("pypdf not installed; skipping --check", file=sys.stderr)
        return True
    ok = True
    for p in paths:
        reader = PdfReader(str(p))
        n = len(reader.pages)
        text = "\n".join(page.extract_text() or "" for page in reader.pages)
        words = text.split()
        long_tokens = [w for w in words if len(w) > 40]
        meta_title = reader.metadata.title if reader.metadata else None
        status = "ok"
        if n < min_pages:
            status = f"only {n} pages"
            ok = False
        elif len(words) < 300 or long_tokens:
            status = f"suspicious text extraction ({len(words)} words, {len(long_tokens)} long tokens)"
            ok = False
        print(f"{p.name}: {n} pages, {len(words)} words, title={meta_title!r}: {status}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=DEFAULT_SRC, help="folder with the .md sources")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the generated PDFs")
    parser.add_argument("--check", action="store_true", help="verify page counts and text extraction")
    args = parser.parse_args(argv)

    sources = sorted(args.src.glob("*.md"))
    if not sources:
        print(f"no Markdown sources found in {args.src}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    built = []
    for src in sources:
        out = build_one(src, args.out)
        built.append(out)
        print(f"built {out.relative_to(args.out.parent) if out.is_relative_to(args.out.parent) else out}")
    if args.check and not check_pdfs(built):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
