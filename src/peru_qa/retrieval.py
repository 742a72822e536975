"""Hybrid retrieval: dense (FAISS) and keyword (BM25) candidates fused into one ranking.

The English-only default model is weak on Spanish, so the weight given to the dense side depends
on the query's language (see `FusionParams`); the weights were tuned on training data only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from .text import detect_language, query_tokens

if TYPE_CHECKING:
    from .embeddings import Embedder
    from .store import Derived, Store

Mode = Literal["hybrid", "dense", "keyword"]
MODES: tuple[str, ...] = ("hybrid", "dense", "keyword")


@dataclass
class Passage:
    """One retrieved chunk, with everything needed to cite and quote it."""

    text: str
    chunk_id: int
    doc_id: str
    title: str
    source: str
    #: Page number in the original PDF; None for formats without pages.
    page: int | None
    section: str
    language: str
    #: Character offsets of `text` in the page's stored text.
    start: int
    end: int
    score: float
    dense_score: float | None = None
    keyword_score: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Filters:
    doc_ids: list[str] | None = None
    languages: list[str] | None = None

    @classmethod
    def coerce(cls, value: Filters | dict | None) -> Filters | None:
        """Accept a Filters, or a dict like {"language": "es", "doc_id": ["a1b2"]}."""
        if value is None or isinstance(value, Filters):
            return value
        if not isinstance(value, dict):
            raise TypeError("filters must be a Filters or a dict")
        known = {"doc_id", "doc_ids", "document", "documents", "language", "languages"}
        unknown = set(value) - known
        if unknown:
            raise ValueError(f"unknown filter(s) {sorted(unknown)}: use doc_id and/or language")

        def listify(*keys: str) -> list[str] | None:
            for key in keys:
                if value.get(key) is not None:
                    v = value[key]
                    return [v] if isinstance(v, str) else list(v)
            return None

        return cls(doc_ids=listify("doc_id", "doc_ids", "document", "documents"),
                   languages=listify("language", "languages"))

    @property
    def empty(self) -> bool:
        return self.doc_ids is None and self.languages is None


@dataclass(frozen=True)
class FusionParams:
    """How dense and keyword scores combine; one setting for every collection and language."""

    #: Weight of the dense side for English / Spanish queries (keyword side gets 1 - w).
    dense_weight: dict[str, float] = field(default_factory=lambda: {"en": 0.5, "es": 0.15})
    #: Candidates taken from each retriever before fusing.
    candidates: int = 100


DEFAULT_FUSION = FusionParams()


@dataclass
class Ranked:
    ids: np.ndarray
    scores: np.ndarray
    dense: dict[int, float]
    keyword: dict[int, float]


def _minmax(scores: np.ndarray) -> np.ndarray:
    if len(scores) == 0:
        return scores
    lo, hi = float(scores.min()), float(scores.max())
    if hi - lo < 1e-9:
        return np.ones_like(scores)
    return (scores - lo) / (hi - lo)


def fuse(dense: tuple[np.ndarray, np.ndarray], keyword: tuple[np.ndarray, np.ndarray], language: str,
         params: FusionParams = DEFAULT_FUSION) -> Ranked:
    """Convex combination of min-max normalised scores; a side with no candidates drops out."""
    d_ids, d_scores = dense
    k_ids, k_scores = keyword
    dense_map = {int(i): float(s) for i, s in zip(d_ids, d_scores)}
    kw_map = {int(i): float(s) for i, s in zip(k_ids, k_scores)}
    w = params.dense_weight.get(language, params.dense_weight["en"])
    if len(d_ids) == 0:
        w = 0.0
    elif len(k_ids) == 0:
        w = 1.0
    combined: dict[int, float] = {}
    for ids, scores, weight in ((d_ids, _minmax(d_scores), w), (k_ids, _minmax(k_scores), 1.0 - w)):
        for i, s in zip(ids, scores):
            combined[int(i)] = combined.get(int(i), 0.0) + weight * float(s)
    order = sorted(combined, key=lambda i: (-combined[i], i))
    return Ranked(
        ids=np.asarray(order, dtype=np.int64),
        scores=np.asarray([combined[i] for i in order], dtype=np.float32),
        dense=dense_map,
        keyword=kw_map,
    )


def search(query: str, k: int, mode: str, derived: Derived, store: Store, embedder: Embedder | None,
           allowed: np.ndarray | None, params: FusionParams = DEFAULT_FUSION) -> list[Passage]:
    """Run the retrievers `mode` asks for, fuse, and hydrate the top k chunks into Passages.

    `embedder` is None when the dense side is skipped; `allowed` limits the search to those chunk ids."""
    n = max(k, params.candidates)
    empty = (np.zeros(0, np.int64), np.zeros(0, np.float32))
    dense = keyword = empty
    if mode != "keyword" and embedder is not None:
        qvec = embedder.encode([query], kind="query")[0]
        dense = derived.vectors.search(qvec, n, allowed)
    if mode != "dense":
        keyword = derived.keyword.search(query_tokens(query), n, allowed)
    ranked = fuse(dense, keyword, detect_language(query), params)
    rows = store.chunk_rows([int(i) for i in ranked.ids[: k * 2]])
    passages: list[Passage] = []
    for cid, score in zip(ranked.ids, ranked.scores):
        row = rows.get(int(cid))
        if row is None:
            continue  # removed since the derived indexes were built
        passages.append(Passage(
            text=row["text"], chunk_id=int(cid), doc_id=row["doc_id"], title=row["title"],
            source=row["source"], page=row["page"] if row["paged"] else None, section=row["section"],
            language=row["language"], start=row["start"], end=row["end"], score=float(score),
            dense_score=ranked.dense.get(int(cid)), keyword_score=ranked.keyword.get(int(cid)),
        ))
        if len(passages) == k:
            break
    return passages
