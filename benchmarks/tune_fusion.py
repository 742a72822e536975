"""Fusion experiments on cached eval indexes: score every query once, then try fusion variants in numpy.

Tuning uses training data only: SciFact `qrels/train.tsv` and a dev half of XQuAD (every query whose id hash
is even, in es and en); the test numbers in RESULTS.md come from `peru-qa eval` on the test splits.

    .venv/bin/python benchmarks/tune_fusion.py [scifact] [xquad]   # one line per variant and set

It is a lab notebook, not part of the package: variants that lost are kept so the numbers can be re-run
(the lexical and sentence-level experiments of RESULTS.md were one-off scripts; their numbers are quoted there).
`fuse`/`fuse_exact` are numpy re-implementations for speed; `real_fuse` runs the shipped code and agrees with
`fuse_exact` to the last digit.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import bm25s
import numpy as np

from peru_qa.evaluation import load_beir, open_index, score_run
from peru_qa.text import detect_language, query_tokens

SHARED = Path(__file__).resolve().parents[2] / "shared" / "eval"


def dev_half(qids: list[str]) -> list[str]:
    return [q for q in qids if int(hashlib.sha256(q.encode()).hexdigest(), 16) % 2 == 0]


def scored_parts(runs: dict[str, dict[str, list[str]]], qrels: dict, with_dev: bool) -> dict[str, dict[str, float]]:
    """nDCG@10 and hit@5 of each labelled run on all queries and, `with_dev`, on the dev half alone."""
    parts = {"all": qrels}
    if with_dev:
        dev = set(dev_half(list(qrels)))
        parts["dev"] = {q: r for q, r in qrels.items() if q in dev}
    return {f"{label} [{part}]": {m: round(v[m], 4) for m in ("ndcg@10", "hit@5")}
            for label, out in runs.items() for part, subset in parts.items()
            for v in [score_run(out, subset)]}


@dataclass
class Data:
    name: str
    qids: list[str]
    qrels: dict
    langs: list[str]
    dense: np.ndarray  # queries x chunks cosine
    kw: np.ndarray  # queries x chunks BM25
    chunk_doc: np.ndarray  # chunk -> doc index
    docs: list[str]
    vectors: np.ndarray
    qvecs: np.ndarray
    terms: list[list[str]]
    tokens: list[list[str]]


def load(folder: Path, split: str, dev: bool, k1: float = 0.9, b: float = 0.4) -> Data:
    evalset = load_beir(folder, split)
    kb, _ = open_index(evalset)
    qids = list(evalset.qrels)
    if dev:
        qids = dev_half(qids)
    store = kb.store
    sources = store.chunk_sources()  # chunk id order, as all_vectors / all_terms
    docs = sorted(set(sources.values()))
    pos = {d: i for i, d in enumerate(docs)}
    chunk_doc = np.array([pos[source] for source in sources.values()])
    dim = int(store.meta("dimension"))
    _, vectors = store.all_vectors(dim)
    _, terms = store.all_terms()
    texts = [evalset.queries[q] for q in qids]
    qvecs = kb.embedder.encode(texts, kind="query", batch_size=64)
    dense = qvecs @ vectors.T
    tokens = [query_tokens(t) for t in texts]
    kw = bm25_matrix(terms, tokens, k1, b)
    langs = [detect_language(t) for t in texts]
    kb.close()
    return Data(f"{folder.name}/{split}{'/dev' if dev else ''}", qids, {q: evalset.qrels[q] for q in qids}, langs,
                dense, kw, chunk_doc, docs, vectors, qvecs, terms, tokens)


def bm25_matrix(terms, tokens, k1, b) -> np.ndarray:
    r = bm25s.BM25(k1=k1, b=b, method="lucene")
    r.index(terms, show_progress=False)
    out = np.zeros((len(tokens), len(terms)), np.float32)
    for i, t in enumerate(tokens):
        ids = r.get_tokens_ids(t)
        if ids:
            out[i] = r.get_scores_from_ids(ids)
    return out


def topn_mask(s: np.ndarray, n: int) -> np.ndarray:
    """Boolean mask of each row's top-n (positive for BM25) entries."""
    n = min(n, s.shape[1])
    idx = np.argpartition(-s, n - 1, axis=1)[:, :n]
    m = np.zeros_like(s, dtype=bool)
    np.put_along_axis(m, idx, True, axis=1)
    return m


def norm(s: np.ndarray, m: np.ndarray, how: str) -> np.ndarray:
    x = np.where(m, s, np.nan)
    if how == "minmax":
        lo, hi = np.nanmin(x, 1, keepdims=True), np.nanmax(x, 1, keepdims=True)
        out = (x - lo) / np.maximum(hi - lo, 1e-9)
    elif how == "max":
        out = x / np.maximum(np.nanmax(x, 1, keepdims=True), 1e-9)
    elif how == "z":
        mu, sd = np.nanmean(x, 1, keepdims=True), np.nanstd(x, 1, keepdims=True)
        out = (x - mu) / np.maximum(sd, 1e-9)
    elif how == "rrf":
        ranks = np.argsort(np.argsort(-np.where(m, s, -np.inf), 1), 1)
        out = np.where(m, 1.0 / (60 + ranks + 1), np.nan)
    else:
        raise ValueError(how)
    return out


def fuse(d: Data, w_en: float, w_es: float, how: str = "minmax", n: int = 100, dense=None, kw=None,
         missing: str = "zero") -> np.ndarray:
    dense = d.dense if dense is None else dense
    kw = d.kw if kw is None else kw
    md, mk = topn_mask(dense, n), topn_mask(kw, n) & (kw > 0)
    nd, nk = norm(dense, md, how), norm(kw, mk, how)
    if missing == "zero":
        fill_d, fill_k = 0.0, 0.0
        if how == "z":
            fill_d = np.nanmin(nd, 1, keepdims=True)
            fill_k = np.nanmin(np.where(np.isnan(nk), np.inf, nk), 1, keepdims=True)
            fill_k = np.where(np.isfinite(fill_k), fill_k, 0)
        nd = np.where(np.isnan(nd), fill_d, nd)
        nk = np.where(np.isnan(nk), fill_k, nk)
    w = np.array([w_es if lang == "es" else w_en for lang in d.langs])[:, None]
    out = w * nd + (1 - w) * nk
    return np.where(md | mk, out, -np.inf)


def evaluate(d: Data, chunk_scores: np.ndarray) -> dict:
    """Doc score = best chunk; top-100 docs."""
    n_docs = len(d.docs)
    run = {}
    for i, q in enumerate(d.qids):
        doc_best = np.full(n_docs, -np.inf)
        np.maximum.at(doc_best, d.chunk_doc, chunk_scores[i])
        k = min(100, n_docs)
        top = np.argpartition(-doc_best, k - 1)[:k]
        top = top[np.argsort(-doc_best[top], kind="stable")]
        run[q] = [d.docs[j] for j in top if np.isfinite(doc_best[j])]
    return score_run(run, d.qrels)


def fmt(m: dict) -> str:
    return f"nDCG@10 {m['ndcg@10']:.4f} R@10 {m['recall@10']:.4f} R@100 {m['recall@100']:.4f} MRR {m['mrr@10']:.4f}"


def agreement_weights(d: Data, base: float, slope: float, k: int = 10) -> np.ndarray:
    """Dense weight scaled by how much the two top-k chunk lists overlap (relative to the set's mean)."""
    td, tk = np.argsort(-d.dense, 1)[:, :k], np.argsort(-d.kw, 1)[:, :k]
    overlap = np.array([len(set(a) & set(b)) / k for a, b in zip(td, tk)])
    return np.clip(base * (1 - slope + slope * overlap / max(overlap.mean(), 1e-9)), 0, 0.9)[:, None]


def rocchio(d: Data, ranking: np.ndarray, m: int, beta: float) -> np.ndarray:
    """Dense scores of the query moved towards its top-m chunks."""
    top = np.argsort(-ranking, 1)[:, :m]
    q = d.qvecs + beta * d.vectors[top].mean(1)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return q @ d.vectors.T


def rm3(d: Data, ranking: np.ndarray, m: int, n_terms: int, gamma: float) -> np.ndarray:
    """BM25 plus expansion terms drawn from the top-m chunks (tf x idf, rank-discounted)."""
    import math
    from collections import Counter

    r = bm25s.BM25(k1=0.9, b=0.4, method="lucene")
    r.index(d.terms, show_progress=False)
    n_docs = len(d.terms)
    df = Counter(t for ts in d.terms for t in set(ts))
    top = np.argsort(-ranking, 1)[:, :m]
    out = d.kw.copy()
    for i in range(len(d.qids)):
        weights: Counter = Counter()
        for rank_, c in enumerate(top[i]):
            tf = Counter(d.terms[c])
            length = sum(tf.values()) or 1
            for t, n in tf.items():
                weights[t] += (n / length) * math.log(n_docs / df[t]) / (rank_ + 1)
        query = set(d.tokens[i])
        expansion = [(t, v) for t, v in weights.most_common(n_terms + len(query)) if t not in query][:n_terms]
        total = sum(v for _, v in expansion) or 1
        for t, v in expansion:
            if t in r.vocab_dict:
                out[i] += gamma * (v / total) * len(query) * r.get_scores_from_ids([r.vocab_dict[t]])
    return out


def main() -> None:
    from peru_qa.retrieval import DEFAULT_FUSION, FusionParams

    which = sys.argv[1:] or ["scifact", "xquad"]
    sets: list[Data] = []
    if "scifact" in which:
        sets.append(load(SHARED / "scifact", "train", dev=False))
    if "xquad" in which:
        sets.append(load(SHARED / "xquad_es", "test", dev=True))
        sets.append(load(SHARED / "xquad_es", "test_en", dev=True))
    for d in sets:
        spanish = d.langs.count("es") > len(d.langs) / 2
        weights = (0.0, 0.1, 0.2, 0.3, 0.4) if spanish else (0.4, 0.5, 0.6, 0.7)
        print(f"== {d.name}: {len(d.qids)} queries")
        print(f"  dense   {fmt(evaluate(d, d.dense))}")
        print(f"  keyword {fmt(evaluate(d, np.where(d.kw > 0, d.kw, -np.inf)))}")
        for how in ("minmax", "z", "rrf"):
            for w in weights:
                print(f"  candidates-only {how:<6} w={w:.2f} {fmt(evaluate(d, fuse(d, w, w, how)))}")
        for how in ("minmax", "z"):
            for w in weights:
                params = FusionParams(dense_weight={"en": w, "es": w}, normalization=how)
                print(f"  shipped fuse    {how:<6} w={w:.2f} {fmt(evaluate(d, real_fuse(d, params)))}")
        print(f"  DEFAULT_FUSION  {fmt(evaluate(d, real_fuse(d, DEFAULT_FUSION)))}")
        w0 = DEFAULT_FUSION.dense_weight["es" if spanish else "en"]
        base = fuse_exact(d, w0, w0)
        for slope in (0.5, 1.0):
            scores = fuse_exact(d, 0, 0, wvec=agreement_weights(d, w0, slope))
            print(f"  agreement slope={slope} {fmt(evaluate(d, scores))}")
        for m, beta in ((3, 0.5), (5, 0.5), (10, 1.0)):
            dense2 = rocchio(d, base, m, beta)
            print(f"  rocchio m={m} beta={beta} {fmt(evaluate(d, fuse_exact(d, w0, w0, dense=dense2)))}")
        for m, n_terms, gamma in ((5, 20, 0.5), (10, 20, 0.5)):
            kw2 = rm3(d, base, m, n_terms, gamma)
            for w in (0.3, w0):
                print(f"  rm3 m={m} terms={n_terms} gamma={gamma} w={w} "
                      f"{fmt(evaluate(d, fuse_exact(d, w, w, kw=kw2)))}")




def fuse_exact(d: Data, w_en: float, w_es: float, how: str = "minmax", n: int = 100, dense=None, kw=None,
               wvec=None) -> np.ndarray:
    """Union of both candidate lists, each candidate scored exactly by both retrievers (BM25 0 = no match)."""
    dense = d.dense if dense is None else dense
    kw = d.kw if kw is None else kw
    union = topn_mask(dense, n) | (topn_mask(kw, n) & (kw > 0))
    if how == "minmax":
        nd = norm(dense, union, "minmax")
        nk = np.where(union, kw, np.nan) / np.maximum(np.nanmax(np.where(union, kw, np.nan), 1, keepdims=True), 1e-9)
    elif how == "z":
        nd, nk = norm(dense, union, "z"), norm(kw, union, "z")
    elif how == "max":
        nd, nk = norm(dense, union, "max"), norm(kw, union, "max")
    else:
        raise ValueError(how)
    w = wvec if wvec is not None else np.array([w_es if lang == "es" else w_en for lang in d.langs])[:, None]
    out = w * nd + (1 - w) * nk
    return np.where(union, out, -np.inf)


def real_fuse(d: Data, params, n: int | None = None) -> np.ndarray:
    """The shipped `peru_qa.retrieval.fuse` (with exact scorers) on the precomputed score matrices;
    `n` candidates per side (evaluation asks for 300 chunks, search for max(k, candidates))."""
    from peru_qa.retrieval import fuse as shipped

    out = np.full(d.dense.shape, -np.inf)
    n = n or params.candidates
    for i, lang in enumerate(d.langs):
        dense_row, kw_row = d.dense[i], d.kw[i]
        top_d = np.argsort(-dense_row)[:n]
        pos = np.nonzero(kw_row > 0)[0]
        top_k = pos[np.argsort(-kw_row[pos], kind="stable")][:n]
        ranked = shipped((top_d, dense_row[top_d]), (top_k, kw_row[top_k]), lang, params,
                         dense_scorer=lambda ids, r=dense_row: r[ids], keyword_scorer=lambda ids, r=kw_row: r[ids])
        out[i, ranked.ids] = ranked.scores
    return out


if __name__ == "__main__":
    main()
