"""PostgreSQL keyword search: latency and recall against exact BM25 for settings of `pgstore.PgKeyword`.

    PYTHONPATH=src .venv/bin/python benchmarks/pg_keyword.py postgresql://… [--queries 60] \
        [--settings 2000:10:2 2000:3:2 6000:10:2]        # POSTINGS:POOL:RESCORE, the shipped ones first
        [--probes]                                        # each also with stop 22's per-term probes

Runs the shipped `PgKeyword.search` (k = 100, as hybrid retrieval asks) with each setting on the same questions
(a third each from XQuAD-es, XQuAD-en and SciFact in ../shared/eval), against exact BM25 (every posting read:
seconds per question at a million chunks; cached next to the output by database and question count). Reports
p50/p95 (warm: each setting runs after the exact pass), recall@10 and @100, recall@10 counting ties (a returned
chunk whose exact score equals the 10th best counts), and recall@10 per question set. Figures:
benchmarks/RESULTS.md "Scale" (stop 22).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = next((p / "shared" / "eval" for p in (ROOT.parent, ROOT.parents[1]) if (p / "shared" / "eval").is_dir()),
              ROOT.parent / "shared" / "eval")
SETS = ("xquad_es/queries.jsonl", "xquad_es/queries_en.jsonl", "scifact/queries.jsonl")


def questions(n: int) -> list[str]:
    out = []
    for name in SETS:
        rows = [json.loads(line)["text"] for line in (SHARED / name).read_text(encoding="utf-8").splitlines() if line]
        out += rows[: n // len(SETS)]
    return out


def probes_keyword(base):
    """The keyword search of stop 22, for comparison (--probes): a candidate's missed frequent terms filled in
    with one postings probe per chunk and term instead of one sparse-vector product per chunk."""

    class ProbesKeyword(base):
        _TOP = base._W + """,
            top AS MATERIALIZED (SELECT w.term, x.chunk_id, w.idf * x.impact AS s FROM w CROSS JOIN LATERAL
                  (SELECT chunk_id, impact FROM chunk_terms t WHERE t.term = w.term ORDER BY impact DESC
                   LIMIT %(postings)s) x),
            pool AS MATERIALIZED (SELECT chunk_id, sum(s) AS s FROM top GROUP BY chunk_id
                  ORDER BY s DESC, chunk_id LIMIT %(pool)s),
            rest AS (SELECT pool.chunk_id, sum(w.idf * (SELECT t.impact FROM chunk_terms t
                                                         WHERE t.term = w.term AND t.chunk_id = pool.chunk_id)) AS s
                  FROM pool CROSS JOIN w WHERE w.df > %(postings)s AND NOT EXISTS
                        (SELECT 1 FROM top WHERE top.chunk_id = pool.chunk_id AND top.term = w.term)
                  GROUP BY pool.chunk_id),
            p AS MATERIALIZED (SELECT pool.chunk_id FROM pool LEFT JOIN rest USING (chunk_id)
                  ORDER BY pool.s + COALESCE(rest.s, 0) DESC, pool.chunk_id LIMIT %(rescore)s)
            """ + base._EXACT.format(limit="LIMIT %(k)s")

    return ProbesKeyword


def main() -> None:
    from peru_qa.pgstore import PgKeyword, PgStore
    from peru_qa.text import query_tokens

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--queries", type=int, default=60)
    parser.add_argument("--settings", nargs="+",
                        default=[f"{PgKeyword.POSTINGS}:{PgKeyword.POOL}:{PgKeyword.RESCORE}",
                                 ":".join(str(v) for v in PgKeyword.ALONE)])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "peru-qa" / "pg_keyword")
    parser.add_argument("--probes", action="store_true", help="also run each setting with stop 22's fill "
                        "(one postings probe per candidate and missed term)")
    args = parser.parse_args()

    store = PgStore(args.url, create=False)
    keyword = PgKeyword(store)
    qs = questions(args.queries)
    tokens = [query_tokens(q) for q in qs]
    index_id = store.meta("index_id") or ""
    key = hashlib.sha256(json.dumps([index_id, store.generation, qs]).encode()).hexdigest()[:16]
    cache = args.cache / f"exact-{key}.json"
    if cache.exists():
        exact = json.loads(cache.read_text())
    else:
        saved, PgKeyword.POSTINGS = PgKeyword.POSTINGS, 10**12
        started = time.perf_counter()
        exact = [keyword.search(t, 100)[0].tolist() for t in tokens]
        PgKeyword.POSTINGS = saved
        print(f"exact BM25: {len(qs)} questions in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(exact))
    per_set = len(qs) // len(SETS)
    variants = [(s, "bags", keyword) for s in args.settings]
    if args.probes:
        variants += [(s, "probes", probes_keyword(PgKeyword)(store)) for s in args.settings]
    for setting, fill, searcher in variants:
        PgKeyword.POSTINGS, PgKeyword.POOL, PgKeyword.RESCORE = (int(x) for x in setting.split(":"))
        latency, found = [], []
        for t in tokens:
            started = time.perf_counter()
            found.append(searcher.search(t, 100)[0].tolist())
            latency.append(1000 * (time.perf_counter() - started))
        r10 = [len(set(a[:10]) & set(b[:10])) / max(1, len(b[:10])) for a, b in zip(found, exact)]
        r100 = [len(set(a) & set(b)) / max(1, len(b)) for a, b in zip(found, exact)]
        ties = []
        for t, a, b in zip(tokens, found, exact):
            scores = keyword.scores(t)
            tenth = keyword.lookup(scores, np.asarray(b[:10]))[-1] if len(b) >= 10 else 0.0
            got = keyword.lookup(scores, np.asarray(a[:10])) if a else np.zeros(0)
            ties.append(float(np.sum(got >= tenth - 1e-4)) / max(1, min(10, len(b))))
        by_set = [round(float(np.mean(r10[i * per_set:(i + 1) * per_set])), 3) for i in range(len(SETS))]
        print(json.dumps({"postings:pool:rescore": setting, "fill": fill,
                          "p50_ms": round(float(np.percentile(latency, 50)), 1),
                          "p95_ms": round(float(np.percentile(latency, 95)), 1),
                          "recall@10": round(float(np.mean(r10)), 3), "recall@10_ties": round(float(np.mean(ties)), 3),
                          "recall@100": round(float(np.mean(r100)), 3),
                          "recall@10 xquad_es/xquad_en/scifact": by_set}), flush=True)
    store.close()


if __name__ == "__main__":
    main()
