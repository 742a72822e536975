"""Split pages into chunks that fit the embedding model, cut at sentence boundaries.

A chunk is always a contiguous slice `page.text[start:end]`, so a citation can quote it exactly.
The token budget leaves room for the title/section prefix that is embedded with each chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .loaders import LoadedDocument, Page
from .text import Span, split_sentences

#: Tokens reserved for the "title — section" prefix embedded before the chunk text.
PREFIX_TOKENS = 40
#: How much of the previous chunk (in tokens) may be repeated at the start of the next one.
OVERLAP_TOKENS = 40


class TokenCounter(Protocol):
    max_tokens: int

    def count_tokens(self, texts: list[str]) -> list[int]: ...

    def token_spans(self, text: str) -> list[tuple[int, int]]: ...


@dataclass
class Chunk:
    page: int
    section: str
    start: int
    end: int
    text: str


def chunk_budget(counter: TokenCounter) -> int:
    """Tokens available to chunk text: model limit minus [CLS]/[SEP] and the prefix."""
    return max(32, counter.max_tokens - 2 - PREFIX_TOKENS)


def chunk_document(doc: LoadedDocument, counter: TokenCounter) -> list[Chunk]:
    chunks: list[Chunk] = []
    section = ""
    for page in doc.pages:
        page_chunks, section = chunk_page(page, counter, section)
        chunks.extend(page_chunks)
    return chunks


def chunk_page(page: Page, counter: TokenCounter, section: str = "") -> tuple[list[Chunk], str]:
    """Chunks for one page; `section` carries the heading in force from the previous page."""
    budget = chunk_budget(counter)
    text = page.text
    bounds = [off for off, _ in page.sections] + [len(text)]
    # Regions between headings are chunked separately so no chunk straddles two sections.
    regions: list[tuple[int, int, str]] = []
    if not page.sections or page.sections[0][0] > 0:
        regions.append((0, bounds[0] if page.sections else len(text), section))
    for i, (off, heading) in enumerate(page.sections):
        if text[off + len(heading) : bounds[i + 1]].strip():  # a heading with no body adds nothing
            regions.append((off, bounds[i + 1], heading))
    chunks: list[Chunk] = []
    for start, end, heading in regions:
        sentences = _fit_sentences(text, split_sentences(text, start, end), counter, budget)
        chunks.extend(_pack(text, sentences, counter, budget, page.number, heading))
        section = heading
    return chunks, section


def _fit_sentences(text: str, spans: list[Span], counter: TokenCounter, budget: int) -> list[tuple[Span, int]]:
    """Pair each sentence with its token count, cutting sentences longer than the budget."""
    if not spans:
        return []
    counts = counter.count_tokens([text[s.start : s.end] for s in spans])
    out: list[tuple[Span, int]] = []
    for span, n in zip(spans, counts):
        if n <= budget:
            out.append((span, n))
            continue
        tokens = counter.token_spans(text[span.start : span.end])
        for i in range(0, len(tokens), budget):
            window = tokens[i : i + budget]
            piece = Span(span.start + window[0][0], span.start + window[-1][1])
            out.append((piece, len(window)))
    return out


def _pack(text: str, sentences: list[tuple[Span, int]], counter: TokenCounter, budget: int,
          page: int, section: str) -> list[Chunk]:
    chunks: list[Chunk] = []
    i = 0
    while i < len(sentences):
        start_i = i
        used = 0
        while i < len(sentences) and (used + sentences[i][1] <= budget or i == start_i):
            used += sentences[i][1] + 1
            i += 1
        start, end = sentences[start_i][0].start, sentences[i - 1][0].end
        # Joining sentences can add a token or two (whitespace is free, but not always): verify.
        while i - 1 > start_i and counter.count_tokens([text[start:end]])[0] > budget:
            i -= 1
            end = sentences[i - 1][0].end
        chunks.append(Chunk(page=page, section=section, start=start, end=end, text=text[start:end]))
        if (i < len(sentences) and i - 1 > start_i and sentences[i - 1][1] <= OVERLAP_TOKENS
                and sentences[i - 1][1] + sentences[i][1] + 1 <= budget):
            i -= 1  # repeat the last short sentence as context for the next chunk
    return chunks
