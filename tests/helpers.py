"""Small fixture builders shared by tests (files are made by the tests themselves)."""

from __future__ import annotations

from pathlib import Path


def make_pdf(path: Path, pages: list[str], title: str | None = None, user_password: str | None = None,
             owner_password: str = "owner") -> Path:
    """A real multi-page PDF with one text block per page (fpdf2 core font, Latin-1 text)."""
    from fpdf import FPDF
    from fpdf.enums import EncryptionMethod

    pdf = FPDF()
    if title:
        pdf.set_title(title)
    if user_password is not None:
        pdf.set_encryption(owner_password=owner_password, user_password=user_password,
                           encryption_method=EncryptionMethod.AES_128)
    pdf.set_font("Helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    pdf.output(str(path))
    return path


def make_image_pdf(path: Path) -> Path:
    """A PDF whose only page is a picture (like a scan without OCR)."""
    from fpdf import FPDF
    from PIL import Image

    image = path.with_suffix(".png")
    Image.new("RGB", (200, 100), (120, 120, 120)).save(image)
    pdf = FPDF()
    pdf.add_page()
    pdf.image(str(image), x=10, y=10, w=100)
    pdf.output(str(path))
    image.unlink()
    return path


def make_docx(path: Path, title: str, blocks: list[tuple[str, str]]) -> Path:
    """blocks: ("heading", text) or ("para", text)."""
    import docx

    document = docx.Document()
    document.core_properties.title = title
    for kind, text in blocks:
        if kind == "heading":
            document.add_heading(text, level=1)
        else:
            document.add_paragraph(text)
    document.save(str(path))
    return path


class CountingEmbedder:
    """Wraps the real embedder and counts how many texts were embedded as passages."""

    def __init__(self, inner):
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.max_tokens = inner.max_tokens
        self.passages = 0
        self.queries = 0

    def encode(self, texts, *, kind="passage", batch_size=32):
        if kind == "passage":
            self.passages += len(texts)
        else:
            self.queries += len(texts)
        return self.inner.encode(texts, kind=kind, batch_size=batch_size)

    def count_tokens(self, texts):
        return self.inner.count_tokens(texts)

    def token_spans(self, text):
        return self.inner.token_spans(text)


class HashEmbedder:
    """A tiny deterministic embedder (hashed word counts) for tests that start many processes: it imports no
    model, so a process is ready in half a second. Words are its tokens."""

    name = "test-hash-embedder"
    dim = 64
    max_tokens = 256

    def encode(self, texts, *, kind="passage", batch_size=32):
        import re
        import zlib

        import numpy as np

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[row, zlib.crc32(word.encode()) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1.0, norms)

    def count_tokens(self, texts):
        return [len(self.token_spans(t)) for t in texts]

    def token_spans(self, text):
        import re

        return [m.span() for m in re.finditer(r"\w+|[^\w\s]", text)]
