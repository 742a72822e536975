"""Answers taken away with their evidence: Markdown with numbered citations, JSON, one-line citations.

The [n] of an answer's text and the numbers of its source list are the same (`Answer.citations[n-1]`), so a
reader of the exported file can check each statement against its quoted passage, title, page and file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from .answer import Answer
from .records import Filters, Passage


@dataclass
class Turn:
    """One answered question of a conversation, with the filters it was searched under."""

    answer: Answer
    filters: Filters | None = None
    #: The filters in words, as shown with the answer ("document: … · language: es"); "" when none.
    filters_text: str = ""


def quoted_sentences(answer: Answer) -> dict[int, list[str]]:
    """The sentences an extractive answer quotes from each source number (nothing for abstentions and LLM text)."""
    out: dict[int, list[str]] = {}
    if answer.mode != "extractive" or answer.abstained:
        return out
    for sentence, n in re.findall(r"(.+?) \[(\d+)\](?:\s|$)", answer.text, re.S):  # a quote may span lines
        out.setdefault(int(n), []).append(sentence.strip())
    return out


def _where(passage: Passage) -> str:
    return f", p. {passage.page}" if passage.page else ""


def citation_text(passage: Passage, quotes: list[str] | None = None) -> str:
    """One citation a reader can paste: title, page, section, file and the quoted words."""
    section = f", § {passage.section}" if passage.section and passage.section != passage.title else ""
    quote = " ".join((" … ".join(quotes) if quotes else passage.text).split())
    return f"{passage.title}{_where(passage)}{section} ({Path(passage.source).name}): “{quote}”"


def _inert(text: str) -> str:
    """Markdown files are often rendered as HTML: tags from documents must not become markup there."""
    return re.sub(r"<(?=[A-Za-z/!?])", "&lt;", text)


def answer_markdown(turn: Turn, number: int | None = None) -> str:
    """An answer as Markdown: the question, the text with its [n], notes, then its numbered sources."""
    answer = turn.answer
    title = f"## {number}. {answer.question}" if number is not None else f"## {answer.question}"
    lines = [_inert(title), "", _inert(answer.text)]
    for note in (answer.caveat, answer.notice):
        if note:
            lines += ["", f"*{_inert(note)}*"]
    if turn.filters_text:
        lines += ["", f"*Searched only {_inert(turn.filters_text)}.*"]
    if answer.citations:
        quoted = quoted_sentences(answer)
        heading = "Closest passages (not an answer)" if answer.abstained else "Sources"
        lines += ["", f"**{heading}**", ""]
        for n, passage in enumerate(answer.citations, 1):
            section = f", § {passage.section}" if passage.section and passage.section != passage.title else ""
            lines.append(f"[{n}] {_inert(passage.title)}{_where(passage)}{_inert(section)} — "
                         f"`{Path(passage.source).name}`")
            quote = " ".join(" … ".join(quoted.get(n, [])).split()) or " ".join(passage.text.split())
            lines.append(f"> {_inert(quote)}")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def conversation_markdown(turns: list[Turn]) -> str:
    """Every answer of a conversation, in order, each with its own numbered sources."""
    parts = ["# peru-qa conversation", ""]
    parts += [answer_markdown(turn, i) for i, turn in enumerate(turns, 1)]
    return "\n".join(parts)


def conversation_json(turns: list[Turn]) -> str:
    """`Answer.to_dict` of each answer, with the filters it was searched under."""
    return json.dumps({"answers": [t.answer.to_dict() | {"filters": t.filters.to_dict() if t.filters else {}}
                                   for t in turns]}, ensure_ascii=False, indent=2)


__all__ = ["Turn", "answer_markdown", "conversation_markdown", "conversation_json", "citation_text",
           "quoted_sentences"]
