"""Citation checks shared by both readers: [n] markers must point at a supplied passage, and a quote must be
a verbatim slice of its page. A leaf module (the LLM client and the readers both use it)."""

from __future__ import annotations

import re

MARKER = re.compile(r"\[(\d{1,3})\]")


def validate_markers(text: str, n_passages: int) -> tuple[str, list[str], list[int]]:
    """Drop markers that match no passage; return (text, dropped markers, cited numbers in first-use order)."""
    flagged: list[str] = []
    cited: list[int] = []

    def check(match: re.Match) -> str:
        n = int(match.group(1))
        if 1 <= n <= n_passages:
            if n not in cited:
                cited.append(n)
            return match.group(0)
        flagged.append(match.group(0))
        return ""

    cleaned = MARKER.sub(check, text)
    cleaned = re.sub(r"[ \t]+([.,;:])", r"\1", re.sub(r"[ \t]{2,}", " ", cleaned)).strip()
    return cleaned, flagged, cited


def renumber(text: str, cited: list[int]) -> str:
    """Markers renumbered to the order of first use (cited[0] becomes [1])."""
    mapping = {old: new for new, old in enumerate(cited, 1)}
    return MARKER.sub(lambda m: f"[{mapping[int(m.group(1))]}]" if int(m.group(1)) in mapping else m.group(0), text)


def is_verbatim(quote: str, page: str, start: int, end: int) -> bool:
    """The quote is exactly page[start:end] (what an extractive answer promises for every sentence)."""
    return 0 <= start <= end <= len(page) and page[start:end] == quote and bool(quote.strip())


__all__ = ["MARKER", "validate_markers", "renumber", "is_verbatim"]
