"""Follow-up questions: which earlier question a short or pronoun-led question leans on, and the retrieval
query that results ("and who finances them?" after a question about the VRAEM)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from .text import fold

_FOLLOW_UP_START = re.compile(
    r"^\W*(and|but|also|what about|how about|so|then|they|them|their|it|its|this|that|these|those|he|she|his|her|"
    r"y|e|pero|también|tambien|entonces|ellos|ellas|él|el|ella|eso|esto|esos|esas|estos|estas|su|sus|"
    r"qué hay de|que hay de|y qué|y que|y quién|y quien|y cómo|y como|y dónde|y donde|y cuánto|y cuanto)\b",
    re.IGNORECASE,
)
_PRONOUNS = frozenset(
    "they them their theirs it its he him his she her this that these those there "
    "ellos ellas los las les lo le su sus eso esto esos esas estos estas ahí alli allí".split()
)


def history_questions(history: Sequence[Any] | None) -> list[str]:
    """The user's earlier questions from a history given as strings, (user, bot) pairs or role/content dicts."""
    out: list[str] = []
    for turn in history or ():
        if isinstance(turn, str):
            out.append(turn)
        elif isinstance(turn, dict):
            if turn.get("role") == "user":
                content = turn.get("content")
                if isinstance(content, list):  # Gradio 6 may pass [{"type": "text", "text": ...}]
                    content = " ".join(c.get("text", "") for c in content if isinstance(c, dict))
                if isinstance(content, str):
                    out.append(content)
        elif isinstance(turn, (list, tuple)) and turn and isinstance(turn[0], str):
            out.append(turn[0])
    return [q for q in out if q.strip()]


def is_follow_up(question: str) -> bool:
    """Short or pronoun-led questions lean on the previous turn ("and who finances them?")."""
    if _FOLLOW_UP_START.match(question.strip().lstrip("¿¡")):
        return True
    words = re.findall(r"\w+", fold(question))
    content = [w for w in words if w not in _PRONOUNS and len(w) > 2]
    return len(content) <= 3 and any(w in _PRONOUNS for w in words) or len(words) <= 2


def rewrite_query(question: str, history: Sequence[Any] | None) -> str:
    """The retrieval query: the question, plus the last standalone earlier question when it is a follow-up."""
    earlier = history_questions(history)
    if not earlier or not is_follow_up(question):
        return question.strip()
    # Chain back past earlier follow-ups to the question that set the topic.
    context = earlier[-1]
    for previous in reversed(earlier):
        context = previous
        if not is_follow_up(previous):
            break
    return f"{context.strip()} {question.strip()}"


__all__ = ["history_questions", "is_follow_up", "rewrite_query"]
