from __future__ import annotations

from pathlib import Path

from peru_qa.chunking import chunk_document
from peru_qa.loaders import LoadedDocument, Page
from peru_qa.text import split_sentences


def _doc(pages: list[Page]) -> LoadedDocument:
    return LoadedDocument(Path("x.txt"), "A title", pages, "en", "h", paged=True)


def _sentences(n: int) -> str:
    return " ".join(f"Sentence number {i} says that coca growers in basin {i % 7} sold {i * 3} kilos."
                    for i in range(n))


def test_chunks_respect_the_model_limit_and_map_to_page_text(embedder):
    text = _sentences(120) + "\n\n" + "word " * 900 + "\n\nA last short sentence."
    page = Page(4, text)
    chunks = chunk_document(_doc([page]), embedder)
    assert len(chunks) > 5
    for chunk in chunks:
        assert chunk.page == 4
        assert page.text[chunk.start : chunk.end] == chunk.text
        full = embedder.inner if hasattr(embedder, "inner") else embedder
        # what is embedded: title prefix + chunk, with [CLS]/[SEP]
        ids = full._tokenizer(f"A title\n{chunk.text}", truncation=False)["input_ids"]
        assert len(ids) <= embedder.max_tokens
    covered = set()
    for chunk in chunks:
        covered.update(range(chunk.start, chunk.end))
    visible = {i for i, ch in enumerate(text) if not ch.isspace()}
    assert visible <= covered, "every non-space character is in some chunk"


def test_boundaries_fall_on_sentences_with_small_overlap(embedder):
    text = _sentences(60)
    chunks = chunk_document(_doc([Page(1, text)]), embedder)
    ends = {s.end for s in split_sentences(text)}
    starts = {s.start for s in split_sentences(text)}
    for chunk in chunks:
        assert chunk.end in ends and chunk.start in starts
    overlaps = [a.end > b.start for a, b in zip(chunks, chunks[1:])]
    assert any(overlaps), "consecutive chunks share a sentence of context"
    for a, b in zip(chunks, chunks[1:]):
        assert b.start > a.start


def test_sections_are_recorded_and_not_straddled(embedder):
    body = "Intro paragraph about the state response.\n\n"
    text = body + "Mining\n\nGold is mined illegally in La Pampa.\n\nExtortion\n\nBus drivers pay fees in Lima."
    sections = [(text.index("Mining"), "Mining"), (text.index("Extortion"), "Extortion")]
    chunks = chunk_document(_doc([Page(1, text, sections)]), embedder)
    by_section = {c.section: c.text for c in chunks}
    assert by_section[""].startswith("Intro paragraph")
    assert "La Pampa" in by_section["Mining"] and "Lima" not in by_section["Mining"]
    assert "Bus drivers" in by_section["Extortion"]


def test_section_carries_over_to_next_page(embedder):
    pages = [Page(1, "Heading One\n\nFirst page text.", [(0, "Heading One")]), Page(2, "Second page text.")]
    chunks = chunk_document(_doc(pages), embedder)
    assert [(c.page, c.section) for c in chunks] == [(1, "Heading One"), (2, "Heading One")]


def test_sentence_splitter_keeps_abbreviations():
    text = "Según EE. UU. el flujo creció. El Dr. Pérez lo dijo en Lima! ¿Quién paga? Nadie."
    parts = [text[s.start : s.end] for s in split_sentences(text)]
    assert parts == ["Según EE. UU. el flujo creció.", "El Dr. Pérez lo dijo en Lima!", "¿Quién paga?", "Nadie."]
