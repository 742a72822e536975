"""`retrieve()` latency and index open time at 10k and 100k chunks, in one run.

    .venv/bin/python benchmarks/latency.py [--sizes 10000 100000] [--queries 200]

Filler chunks are synthetic (text drawn from a real-word vocabulary, random unit vectors) so the
index reaches size quickly; every query is really encoded by the model and runs the full hybrid
path (dense FAISS + BM25 + fusion + SQLite hydration). Targets at 100k: p50 <= 25 ms,
p95 <= 50 ms, open <= 1 s.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
QUERIES = [
    "coca cultivation in the VRAEM", "¿dónde se concentra la minería ilegal?", "extortion of bus drivers in Lima",
    "¿quién financia a Sendero Luminoso?", "cocaine shipped through the port of Callao", "sicariato en Trujillo",
    "What is REINFO?", "lavado de activos con oro", "prisons used as command centres", "trata de personas en La Pampa",
    "illegal logging in Ucayali", "estado de emergencia en Lima", "how is crime measured in Peru",
    "rondas campesinas y seguridad", "Mexican cartels and Balkan networks", "Cuellos Blancos del Puerto",
]


def vocabulary() -> list[str]:
    words: list[str] = []
    for path in sorted((ROOT / "documents").glob("*.md")):
        words += re.findall(r"\w+", path.read_text(encoding="utf-8"))
    return words or "coca cocaine extortion mining gold police Lima Callao port prison gang money".split()


def build(path: Path, size: int, rng: np.random.Generator) -> float:
    from peru_qa import KnowledgeBase
    from peru_qa.ingest import record_model
    from peru_qa.records import ChunkRow, DocumentRecord, now
    from peru_qa.text import keyword_tokens

    kb = KnowledgeBase(path)
    record_model(kb)
    words = np.array(vocabulary())
    per_doc = 100
    started = time.perf_counter()
    for d in range(size // per_doc):
        rows, texts = [], []
        for _ in range(per_doc):
            text = " ".join(rng.choice(words, 120)) + "."
            texts.append(text)
            rows.append(ChunkRow(1, "", 0, len(text), text, keyword_tokens(text, "es" if d % 2 else "en")))
        vectors = rng.standard_normal((per_doc, kb.embedder.dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        record = DocumentRecord(f"filler{d:06d}", f"filler:{d}", f"Filler {d}", "es" if d % 2 else "en", f"h{d}",
                                False, 1, per_doc, None, None, now(), "")
        kb.store.write_document(record, [(1, "\n".join(texts), [], {})], rows, vectors)
    kb.indexes.publish()
    kb.close()
    return time.perf_counter() - started


def measure(path: Path, n_queries: int) -> dict:
    from peru_qa import KnowledgeBase

    started = time.perf_counter()
    kb = KnowledgeBase(path)
    kb.indexes.current()
    open_s = time.perf_counter() - started
    kb.embedder.encode(["warm up"], kind="query")
    kb.retrieve("warm up", k=5)
    samples = []
    for i in range(n_queries):
        t = time.perf_counter()
        kb.retrieve(QUERIES[i % len(QUERIES)] + ("" if i < len(QUERIES) else f" {i}"), k=5)
        samples.append((time.perf_counter() - t) * 1000)
    kb.close()
    samples.sort()
    return {
        "open_seconds": round(open_s, 3),
        "p50_ms": round(statistics.median(samples), 1),
        "p95_ms": round(samples[int(0.95 * len(samples)) - 1], 1),
        "max_ms": round(samples[-1], 1),
        "queries": n_queries,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    from peru_qa.embeddings import get_embedder

    get_embedder()
    rng = np.random.default_rng(7)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            path = Path(tmp) / f"idx{size}"
            build_s = build(path, size, rng)
            results[size] = {"build_seconds": round(build_s, 1), **measure(path, args.queries)}
            print(size, results[size], file=sys.stderr, flush=True)
    json.dump(results, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
