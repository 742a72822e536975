"""Optical character recognition of page images with Tesseract (Spanish + English), through pytesseract.

Why pytesseract (a thin wrapper that runs the `tesseract` program once per page) rather than tesserocr (the C API
in-process) or OCRmyPDF (a whole-PDF pipeline): it installs everywhere with pip (pure Python; tesserocr builds from
source where no wheel exists), it uses the distribution's Tesseract and language data, each page runs in its own
process (the GIL is free for the chat, a crash or a hung page cannot take the app down, a per-page timeout works),
and the per-call cost of starting the process is small next to recognising a page (benchmarks/RESULTS.md, "OCR").
The child runs with OMP_THREAD_LIMIT=1 (Tesseract's OpenMP threads were 3-4x slower in wall time on a busy 2-core
machine) and at a lower CPU priority, so a long OCR job yields to chat questions.

Page metadata written for an OCR'd page (`OcrPage.metadata`), kept small enough to store per page:
  {"ocr": true, "confidence": 91.3, "ocr_languages": "spa+eng", "ocr_dpi": 300,
   "ocr_size": [width, height],                       # pixels of the image that was recognised
   "ocr_lines": [[start, end, left, top, width, height], ...]}
`start`/`end` are offsets of each recognised line in the page text (the text citations quote), the box is in
pixels of `ocr_size`; a viewer scales it to its own rendering to highlight a quoted span on the scan.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from .config import env_float
from .errors import ExtractionError

#: Tesseract languages used unless PERU_QA_OCR_LANGUAGES says otherwise (e.g. "spa", "spa+eng+por").
DEFAULT_LANGUAGES = "spa+eng"
#: Resolution at which PDF pages are rendered for OCR (Tesseract is trained on ~300 dpi text).
DEFAULT_DPI = 300
#: Pages whose mean word confidence is below this are indexed with a warning to check the scan.
LOW_CONFIDENCE = 60.0
INSTALL_HINT = "apt-get install tesseract-ocr tesseract-ocr-spa"
#: CPU priority of the Tesseract process (nice): OCR of an upload gives way to chat questions.
NICENESS = 10


class OcrUnavailable(ExtractionError):
    """Tesseract (or its Spanish data, or pytesseract) is missing; the message says what to install."""


class OcrFailed(ExtractionError):
    """Tesseract ran but failed on one page (timeout, bad image)."""


def languages() -> str:
    return os.environ.get("PERU_QA_OCR_LANGUAGES", "").strip() or DEFAULT_LANGUAGES


def dpi() -> int:
    return int(env_float("PERU_QA_OCR_DPI", DEFAULT_DPI))


def _timeout() -> float:
    """Seconds one page may take before it is given up (a hung page must not stall a batch forever)."""
    return env_float("PERU_QA_OCR_TIMEOUT", 300.0)


class _ChildEnvironment(Mapping):
    """The environment Tesseract runs in: ours, with one OpenMP thread unless the user set OMP_THREAD_LIMIT."""

    def _merged(self) -> dict[str, str]:
        return {"OMP_THREAD_LIMIT": "1", **os.environ}

    def __getitem__(self, key: str) -> str:
        return self._merged()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._merged())

    def __len__(self) -> int:
        return len(self._merged())


def _pytesseract():
    try:
        import pytesseract
        import pytesseract.pytesseract as runner
    except ImportError as exc:
        raise OcrUnavailable("OCR needs the pytesseract package: pip install pytesseract") from exc
    # pytesseract starts Tesseract with this module-level environment; give it one OpenMP thread.
    if not isinstance(runner.environ, _ChildEnvironment):
        runner.environ = _ChildEnvironment()
    return pytesseract


@lru_cache(maxsize=8)
def _installed(command: str) -> tuple[str, frozenset[str]]:
    """(version, languages) of the Tesseract at `command`; raises OcrUnavailable. Cached per command path."""
    pytesseract = _pytesseract()
    try:
        version = str(pytesseract.get_tesseract_version())
        installed = frozenset(pytesseract.get_languages(config=""))
    except (pytesseract.TesseractNotFoundError, OSError) as exc:
        raise OcrUnavailable(f"OCR needs Tesseract: {INSTALL_HINT}") from exc
    except pytesseract.TesseractError as exc:
        raise OcrUnavailable(f"Tesseract does not run ({exc}): reinstall it with {INSTALL_HINT}") from exc
    return version, installed


def check() -> str:
    """The Tesseract version if OCR can run with the configured languages; else raises OcrUnavailable."""
    command = _pytesseract().pytesseract.tesseract_cmd
    try:
        version, installed = _installed(command)
    except OcrUnavailable:
        _installed.cache_clear()  # installing Tesseract later must work without a restart
        raise
    missing = [lang for lang in languages().split("+") if lang not in installed]
    if missing:
        packages = " ".join(f"tesseract-ocr-{lang}" for lang in missing)
        raise OcrUnavailable(f"OCR needs Tesseract's {'+'.join(missing)} language data: apt-get install {packages}")
    return version


def available() -> bool:
    try:
        check()
    except OcrUnavailable:
        return False
    return True


@dataclass
class OcrPage:
    """The text recognised on one image, its mean word confidence (0-100) and its line boxes."""

    text: str
    confidence: float
    size: tuple[int, int]
    dpi: int | None
    languages: str
    #: (start, end, left, top, width, height): offsets into `text`, box in pixels of `size`.
    lines: list[tuple[int, int, int, int, int, int]] = field(default_factory=list)

    @property
    def low_confidence(self) -> bool:
        return bool(self.text.strip()) and self.confidence < LOW_CONFIDENCE

    def metadata(self) -> dict:
        return {"ocr": True, "confidence": round(self.confidence, 1), "ocr_languages": self.languages,
                "ocr_dpi": self.dpi, "ocr_size": list(self.size), "ocr_lines": [list(line) for line in self.lines]}

    @classmethod
    def from_metadata(cls, text: str, meta: dict) -> OcrPage:
        return cls(text, float(meta["confidence"]), tuple(meta["ocr_size"]), meta.get("ocr_dpi"),
                   meta["ocr_languages"], [tuple(line) for line in meta.get("ocr_lines", [])])


def ocr_label(page_metadata: dict | None) -> str:
    """'OCR 87%' for a page whose text was recognised from a scan ('' otherwise): a reader should check the
    page image for exact words. Shown by the CLI and next to citations in the chat."""
    meta = page_metadata or {}
    if not meta.get("ocr"):
        return ""
    confidence = meta.get("confidence")
    return f"OCR {confidence:.0f}%" if isinstance(confidence, (int, float)) else "OCR"


def recognize(image, resolution: int | None = None) -> OcrPage:
    """OCR one page image (PIL). `resolution` is its dpi when known (rendered PDFs, TIFF headers)."""
    check()
    pytesseract = _pytesseract()
    gray = image if image.mode in ("L", "1") else image.convert("L")
    config = "--psm 3" + (f" --dpi {int(resolution)}" if resolution else "")
    try:
        data = pytesseract.image_to_data(gray, lang=languages(), config=config, nice=NICENESS, timeout=_timeout(),
                                         output_type=pytesseract.Output.DICT)
    except RuntimeError as exc:  # pytesseract's timeout
        raise OcrFailed(f"OCR timed out after {_timeout():.0f} s on a page (PERU_QA_OCR_TIMEOUT)") from exc
    except pytesseract.TesseractError as exc:
        raise OcrFailed(f"OCR failed: {str(exc)[:160]}") from exc
    text, confidence, lines = _assemble(data)
    return OcrPage(text, confidence, gray.size, resolution, languages(), lines)


_HYPHENATED = re.compile(r"\w-$")


def _assemble(data: dict) -> tuple[str, float, list[tuple[int, int, int, int, int, int]]]:
    """Page text from Tesseract's word table: words joined by spaces, lines by newlines, paragraphs by blank
    lines; a word hyphenated across lines is joined (as for PDF text). Returns text, mean confidence, lines."""
    rows: dict[tuple[int, int, int], list[int]] = {}
    confidences: list[float] = []
    for i, word in enumerate(data["text"]):
        if data["level"][i] != 5 or not str(word).strip():
            continue
        rows.setdefault((data["block_num"][i], data["par_num"][i], data["line_num"][i]), []).append(i)
        conf = float(data["conf"][i])
        if conf >= 0:
            confidences.append(conf)
    parts: list[str] = []
    length = 0
    lines: list[tuple[int, int, int, int, int, int]] = []
    previous: tuple[int, int] | None = None
    for (block, par, _), indices in rows.items():
        line_text = " ".join(str(data["text"][i]).strip() for i in indices)
        if previous is not None:
            if previous != (block, par) and not (parts[-1][-1:].isalpha() and line_text[:1].islower()):
                separator = "\n\n"  # (a "paragraph" that starts mid-sentence is a layout guess: kept as a line)
            elif _HYPHENATED.search(parts[-1]) and line_text[:1].islower():
                parts[-1] = parts[-1][:-1]  # "organi-" + "zación" -> "organización"
                length -= 1
                lines[-1] = (lines[-1][0], length, *lines[-1][2:])
                separator = ""
            else:
                separator = "\n"
            parts.append(separator)
            length += len(separator)
        left = min(data["left"][i] for i in indices)
        top = min(data["top"][i] for i in indices)
        right = max(data["left"][i] + data["width"][i] for i in indices)
        bottom = max(data["top"][i] + data["height"][i] for i in indices)
        lines.append((length, length + len(line_text), left, top, right - left, bottom - top))
        parts.append(line_text)
        length += len(line_text)
        previous = (block, par)
    confidence = sum(confidences) / len(confidences) if confidences else 0.0
    return "".join(parts), confidence, lines


def character_error_rate(reference: str, hypothesis: str) -> float:
    """Edit distance / reference length, on whitespace-normalised text (for tests and benchmarks)."""
    ref = " ".join(reference.split())
    hyp = " ".join(hypothesis.split())
    if not ref:
        return float(bool(hyp))
    return edit_distance(ref, hyp) / len(ref)


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance by Myers' bit-parallel algorithm (Hyyrö 2003): one big-integer step per character,
    fast enough for whole pages in pure Python."""
    if len(b) > len(a):
        a, b = b, a
    m = len(b)
    if m == 0:
        return len(a)
    full = (1 << m) - 1
    last = 1 << (m - 1)
    peq: dict[str, int] = {}
    for i, ch in enumerate(b):
        peq[ch] = peq.get(ch, 0) | (1 << i)
    pv, mv, score = full, 0, m
    for ch in a:
        eq = peq.get(ch, 0)
        xv = eq | mv
        xh = ((((eq & pv) + pv) & full) ^ pv) | eq
        ph = (mv | ~(xh | pv)) & full
        mh = pv & xh
        if ph & last:
            score += 1
        elif mh & last:
            score -= 1
        ph = ((ph << 1) | 1) & full
        mh = (mh << 1) & full
        pv = (mh | ~(xv | ph)) & full
        mv = ph & xv
    return score
