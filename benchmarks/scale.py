"""Scale benchmark: build indexes of 100k / 1M chunks and measure build time, size on disk, resident memory of the
process serving `retrieve()` (with and without the model), `retrieve()` p50/p95 in the three modes, and the
recall@10 of `retrieve()` against exact search; plus a study of approximate FAISS indexes (IVF-Flat / IVF-SQ8 /
IVF-PQ at several nprobe, HNSW on request) on the same vectors, by which vectors.py's choice was made.

Data (realistic, not uniform random vectors, which no ANN index can search): real passages — XQuAD (es and en
paragraphs) and SciFact abstracts from the shared eval corpora, else the shipped documents — are embedded once with
the index's model (cached in ~/.cache/peru-qa/scale/). Every synthetic chunk mixes two real passages of one
language, the way a passage touches a main topic and a second one: its text is the first passage's words with
~20% dropped, ~10% of the second's words and a serial token (so BM25 sees real words with real document
frequencies, ×~330 at 1M); its vector is normalise(w·v1 + (1-w)·v2 + noise), w ~ U(0.6, 0.9), the noise Gaussian
shaped by the real vectors' covariance (the set keeps the real topics and anisotropy, without near-copies of one
vector). A document holds 1,000 chunks in one language. Queries are real XQuAD/SciFact questions embedded with the
model; `retrieve()` gets those precomputed vectors (the model's cost does not grow with the index).

    PYTHONPATH=src python benchmarks/scale.py --sizes 100000 1000000 --keep /tmp/scale [--out FILE.json]
    PYTHONPATH=src python benchmarks/scale.py --ann-only --sizes 1000000        # only the FAISS study
    PYTHONPATH=src python benchmarks/scale.py --index FOLDER-or-postgresql://…  # measure an existing index
    PYTHONPATH=src python benchmarks/scale.py --sizes 1000000 --postgres /tmp/pgscale  # the PostgreSQL backend

`--postgres FOLDER` starts a local server (pgserver) in FOLDER/pg-SIZE, bulk-loads the same synthetic chunks
through `PgStore.bulk_load()` (HNSW and postings indexes built once at the end, timed apart), reports the database
size, the same search figures, and keyword recall@10 against exact BM25 (every posting read); it stops the server.

`--index` measures an index someone built (e.g. one built here with --keep and copied into PostgreSQL): the same
queries, latency, RSS, and recall@10 of dense `retrieve()` against brute force over the index's stored vectors.
The machine is shared (2 cores): latencies are noisy; compare figures measured in one run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "peru-qa" / "scale"
sys.path.insert(0, str(ROOT / "src"))

PER_DOC = 1000  # chunks per synthetic document (one transaction each)
NOISE = 0.35  # noise scale relative to the real vectors' spread (top-1 cosine to the source stays ~0.9)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def real_data(shared: Path, max_passages: int, max_queries: int) -> tuple[list[str], list[str], list[str]]:
    """Real passages (with their language) and real questions: all XQuAD paragraphs (es, en), SciFact to fill."""
    passages: list[tuple[str, str]] = []
    queries: list[str] = []
    sources = [(shared / "eval" / "xquad_es" / "corpus.jsonl", "es"), (shared / "eval" / "xquad_es" / "corpus_en.jsonl",
               "en"), (shared / "eval" / "scifact" / "corpus.jsonl", "en")]
    for path, language in sources:
        if path.exists():
            rows = [f"{d.get('title', '')}\n{d['text']}".strip().lstrip("\ufeff") for d in _jsonl(path)]
            random.Random(0).shuffle(rows)
            passages += [(t, language) for t in rows[: max(0, max_passages - len(passages))]]
    for path in (shared / "eval" / "xquad_es" / "queries.jsonl", shared / "eval" / "xquad_es" / "queries_en.jsonl",
                 shared / "eval" / "scifact" / "queries.jsonl"):
        if path.exists():
            queries += [q["text"] for q in _jsonl(path)]
    if not passages:
        for path in sorted((ROOT / "documents").glob("*.md")):
            passages += [(p.strip(), "en") for p in path.read_text(encoding="utf-8").split("\n\n")
                         if len(p.strip()) > 200]
        queries = [q["question"] for q in _jsonl(ROOT / "tests" / "gold" / "questions.jsonl")]
    random.Random(1).shuffle(queries)
    return [p for p, _ in passages], [lang for _, lang in passages], [q.strip() for q in queries[:max_queries]]


def embedded(passages: list[str], queries: list[str]) -> tuple[str, int, np.ndarray, np.ndarray, float]:
    """(model, dim, passage vectors, query vectors, seconds) with the default model, cached on disk."""
    from peru_qa.config import DEFAULT_MODEL

    key = hashlib.sha256(json.dumps([DEFAULT_MODEL, passages, queries]).encode()).hexdigest()[:16]
    cached = CACHE / f"{key}.npz"
    if cached.exists():
        data = np.load(cached)
        return str(data["model"]), int(data["dim"]), data["base"], data["queries"], float(data["seconds"])
    from peru_qa.embeddings import get_embedder

    embedder = get_embedder()
    started = time.perf_counter()
    base = embedder.encode(passages)
    qvecs = embedder.encode(queries, kind="query")
    seconds = time.perf_counter() - started
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(cached, model=embedder.name, dim=embedder.dim, base=base, queries=qvecs, seconds=seconds)
    return embedder.name, embedder.dim, base, qvecs, seconds


class FixedQueries:
    """An embedder that answers the benchmark's questions with their precomputed real embeddings, so that the
    timed `retrieve()` measures the index, not the model (whose cost does not grow with the index)."""

    def __init__(self, name: str, dim: int, vectors: dict[str, np.ndarray], max_tokens: int = 256):
        self.name, self.dim, self.max_tokens = name, dim, max_tokens
        self._vectors = vectors

    def encode(self, texts, *, kind="passage", batch_size=32):
        return np.stack([self._vectors[t.strip()] for t in texts]).astype(np.float32)

    def count_tokens(self, texts):
        return [len(t.split()) for t in texts]

    def token_spans(self, text):
        return [m.span() for m in re.finditer(r"\S+", text)]


def synthetic(base: np.ndarray, texts: list[str], languages: list[str], n: int, seed: int):
    """Yield (language, texts, terms, vectors) per document of PER_DOC synthetic chunks derived from the real ones.
    Terms are exactly what `ingest.chunk_rows` computes (keyword_tokens is word by word), from a per-word cache."""
    from peru_qa.text import keyword_tokens

    rng = np.random.default_rng(seed)
    centred = base - base.mean(axis=0)
    # Noise with the real vectors' covariance: z @ components * singular values / sqrt(n)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    scale = (s / np.sqrt(len(base)))[:, None] * vt
    words = [t.split() for t in texts]
    pools = {lang: np.flatnonzero(np.asarray(languages) == lang) for lang in sorted(set(languages))}
    names = list(pools)
    share = np.asarray([len(pools[lang]) for lang in names], dtype=float)
    cache: dict[tuple[str, str], list[str]] = {}

    def terms_of(ws: list[str], lang: str) -> list[str]:
        out: list[str] = []
        for w in ws:
            got = cache.get((w, lang))
            if got is None:
                got = cache[(w, lang)] = keyword_tokens(w, lang)
            out += got
        return out

    for d, start in enumerate(range(0, n, PER_DOC)):
        count = min(PER_DOC, n - start)
        lang = names[rng.choice(len(names), p=share / share.sum())]
        first = rng.choice(pools[lang], count)
        second = rng.choice(pools[lang], count)
        w = rng.uniform(0.6, 0.9, (count, 1))
        noise = rng.standard_normal((count, len(s))) @ scale
        vectors = w * base[first] + (1 - w) * base[second] + NOISE * noise
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        title = f"Scale {d}"
        head = keyword_tokens(title, lang)
        out, terms = [], []
        for j, (a, b) in enumerate(zip(first, second)):
            kept = [x for x in words[a] if rng.random() > 0.2] or words[a]
            extra = [x for x in words[b] if rng.random() < 0.1]
            chunk = kept + extra + [f"s{start + j}"]
            out.append(" ".join(chunk))
            terms.append(head + terms_of(chunk, lang))
        yield lang, out, terms, vectors.astype(np.float32)


def all_synthetic_vectors(base, texts, languages, n: int) -> np.ndarray:
    """The same vectors `build` stores for size n (same seed), without the texts' cost."""
    return np.concatenate([v for *_, v in synthetic(base, texts, languages, n, seed=n)])


def build(location: str | Path, size: int, base, texts, languages, model: str, dim: int) -> dict:
    """Bulk load through the store's own API (one transaction of PER_DOC chunks per document). Embedded: the
    derived indexes (FAISS + bm25s) are built once afterwards (`publish`). PostgreSQL: inside `bulk_load()`, which
    drops the HNSW and postings indexes, and builds them once at its end (timed apart from the load)."""
    from contextlib import nullcontext

    from peru_qa import KnowledgeBase
    from peru_qa.records import ChunkRow, DocumentRecord, now

    kb = KnowledgeBase(location, embedder=FixedQueries(model, dim, {}))
    bulk = getattr(kb.store, "bulk_load", None)
    started = time.perf_counter()
    with bulk() if bulk is not None else nullcontext({}) as timings:
        with kb.store.transaction():
            kb.store.set_meta("model", model)
            kb.store.set_meta("dimension", str(dim))
        for d, (language, chunk_texts, terms, vectors) in enumerate(synthetic(base, texts, languages, size,
                                                                              seed=size)):
            rows, offset = [], 0
            for t, tm in zip(chunk_texts, terms):
                rows.append(ChunkRow(1, "", offset, offset + len(t), t, tm))
                offset += len(t) + 1
            record = DocumentRecord(f"scale{d:07d}", f"scale:{d}", f"Scale {d}", language, f"h{d}", False, 1,
                                    len(rows), None, None, now(), "")
            with kb.store.writer():
                kb.store.write_document(record, [(1, "\n".join(chunk_texts), [], {})], rows, vectors)
            if d % 100 == 99:
                print(f"  {start_fmt(started)} {(d + 1) * PER_DOC} chunks stored", file=sys.stderr, flush=True)
        stored = time.perf_counter() - started
        print(f"  {start_fmt(started)} loaded; building indexes", file=sys.stderr, flush=True)
    total = time.perf_counter() - started
    kb.close()
    out = {"store_seconds": round(stored, 1)}
    if bulk is not None:
        out.update(timings, index_build_seconds=round(total - stored, 1))
    return out


def start_fmt(started: float) -> str:
    return f"{time.perf_counter() - started:7.0f}s"


def publish(path: Path, model: str, dim: int) -> dict:
    """Build the derived indexes once (bulk), in this process."""
    from peru_qa import KnowledgeBase

    kb = KnowledgeBase(path, embedder=FixedQueries(model, dim, {}))
    started = time.perf_counter()
    kb.indexes.publish()
    derived = time.perf_counter() - started
    kind = type(kb.indexes.current().vectors.index).__name__
    kb.close()
    return {"derived_seconds": round(derived, 1), "faiss_index": kind}


def disk(path: Path) -> dict:
    size_bytes = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    derived = sum(p.stat().st_size for p in (path / "derived").rglob("*") if p.is_file())
    faiss_bytes = sum(p.stat().st_size for p in (path / "derived").rglob("vectors.faiss"))
    sqlite = (path / "peru_qa.sqlite").stat().st_size
    return {"size_mb": round(size_bytes / 2**20, 1), "sqlite_mb": round(sqlite / 2**20, 1),
            "derived_mb": round(derived / 2**20, 1), "faiss_mb": round(faiss_bytes / 2**20, 1)}


def pg_disk(url: str) -> dict:
    import psycopg

    with psycopg.connect(url) as conn:
        db = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        rel = dict(conn.execute(
            "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c WHERE c.relname IN "
            "('chunks', 'chunk_terms', 'chunks_embedding_hnsw', 'chunk_terms_impact', 'chunk_terms_pkey', "
            "'chunk_terms_chunk', 'term_df')").fetchall())
    return {"database_mb": round(db / 2**20, 1), **{f"{k}_mb": round(v / 2**20, 1) for k, v in sorted(rel.items())}}


SEARCHER = r"""
import dataclasses, json, sys, time
import numpy as np
sys.path.insert(0, sys.argv[3])
import faiss
faiss.omp_set_num_threads(1)
from scale import FixedQueries
from peru_qa import KnowledgeBase
data = json.load(open(sys.argv[2]))
vectors = {q: np.asarray(v, dtype=np.float32) for q, v in zip(data["queries"], data["vectors"])}
def status(key):  # VmHWM: peak RSS of this program (ru_maxrss would carry the parent's peak across fork+exec)
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return round(int(line.split()[1]) / 1024, 1)
out = {"rss_start_mb": status("VmRSS")}
if data["with_model"]:  # the real model, loaded as the app does, so RSS counts it (queries still use the cache)
    from peru_qa.embeddings import get_embedder
    model = get_embedder()
    model.encode([data["queries"][0]], kind="query")
    out["rss_with_model_mb"] = status("VmRSS")
started = time.perf_counter()
kb = KnowledgeBase(sys.argv[1], embedder=FixedQueries(data["model"], data["dim"], vectors))
kb.retrieve(data["queries"][0], k=10)
out["open_seconds"] = round(time.perf_counter() - started, 2)
out["rss_open_mb"] = status("VmRSS")
if data.get("warmup") and data["with_model"]:  # other questions first, untimed: a server that has been serving
    warm = model.encode(data["warmup"], kind="query")
    started = time.perf_counter()
    for mode in ("hybrid", "dense", "keyword"):
        for q, v in zip(data["warmup"], warm):
            kb.rank(q, 10, mode, qvec=v)
    out["warmup"] = {"queries": len(data["warmup"]), "seconds": round(time.perf_counter() - started, 1)}
results = {}
for mode in ("hybrid", "dense", "keyword"):
    samples, results[mode] = [], []
    for q in data["queries"]:
        t = time.perf_counter()
        found = kb.retrieve(q, k=10, mode=mode)
        samples.append(1000 * (time.perf_counter() - t))
        results[mode].append([p.chunk_id for p in found])
    out[mode] = {"p50_ms": round(float(np.percentile(samples, 50)), 1),
                 "p95_ms": round(float(np.percentile(samples, 95)), 1)}
out["rss_peak_mb"] = status("VmHWM")
out["rss_end_mb"] = status("VmRSS")
# Recall@10 against exact search (after the memory figures: this loads every stored vector once more).
try:
    dim = data["dim"]
    ids, matrix = kb.store.all_vectors(dim)
except Exception as exc:  # a backend without the embedded store's bulk reader
    out["recall"] = f"not measured: {exc}"
else:
    qm = np.stack([vectors[q] for q in data["queries"]])
    truth = [set(ids[np.argpartition(-s, 10)[:10]].tolist()) for s in qm @ matrix.T] if len(ids) > 10 else None
    out["dense_recall@10"] = round(float(np.mean([len(t & set(r)) / 10 for t, r in zip(truth, results["dense"])])), 4)
    indexes = getattr(kb, "indexes", None)
    if indexes is not None:  # embedded: the same hybrid retrieve() with an exact FAISS index in place
        from peru_qa.retrieval import search
        from peru_qa.vectors import VectorIndex
        exact = VectorIndex(dim, faiss.IndexIDMap2(faiss.IndexFlatIP(dim)))
        exact.add(ids, matrix)
        del matrix
        derived = dataclasses.replace(indexes.current(), vectors=exact)
        hits = []
        for q, got in zip(data["queries"], results["hybrid"]):
            want = [p.chunk_id for p in search(q, 10, "hybrid", derived, kb.store, kb.embedder, None, kb.fusion)]
            hits.append(len(set(want) & set(got)) / max(1, len(want)))
        out["hybrid_recall@10"] = round(float(np.mean(hits)), 4)
# keyword top-10 against exact BM25 (every posting read), 20 queries
if sys.argv[1].startswith("postgres") and data["exact_bm25"]:
    from peru_qa.pgstore import PgKeyword
    PgKeyword.POSTINGS = 10**12
    hits, lat = [], []
    for q, got in list(zip(data["queries"], results["keyword"]))[:20]:
        t = time.perf_counter()
        want = [p.chunk_id for p in kb.retrieve(q, k=10, mode="keyword")]
        lat.append(1000 * (time.perf_counter() - t))
        hits.append(len(set(want) & set(got)) / max(1, len(want)))
    out["keyword_recall@10_vs_exact_bm25"] = round(float(np.mean(hits)), 4)
    out["keyword_exact_bm25"] = {"p50_ms": round(float(np.percentile(lat, 50)), 1),
                                 "p95_ms": round(float(np.percentile(lat, 95)), 1)}
print(json.dumps(out))
"""


def measure_search(location: str, queries: list[str], qvecs: np.ndarray, model: str, dim: int,
                   with_model: bool, exact_bm25: bool = True, warmup: list[str] | None = None) -> dict:
    """retrieve() latency, RSS and recall in a fresh process that opens the index (nothing cached from the build).
    `warmup`: other questions searched untimed first in every mode (a server that has been serving, rather than
    the first queries after a start; needs the model loaded)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump({"queries": queries, "vectors": qvecs.tolist(), "model": model, "dim": dim,
                   "with_model": with_model, "exact_bm25": exact_bm25, "warmup": warmup or []}, fh)
    try:
        run = subprocess.run([sys.executable, "-c", SEARCHER, location, fh.name, str(Path(__file__).parent)],
                             capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT / "src")))
    finally:
        os.unlink(fh.name)
    if run.returncode:
        raise RuntimeError(run.stderr[-3000:])
    return json.loads(run.stdout.strip().splitlines()[-1])


def ann_study(matrix: np.ndarray, qvecs: np.ndarray, hnsw: bool) -> dict:
    """Dense top-10 of approximate FAISS indexes against exact search (single thread): recall@10, p50/p95,
    build time, bytes in memory. One trained coarse quantizer (4·√n lists, as vectors.py) serves every IVF kind."""
    import faiss

    faiss.omp_set_num_threads(1)
    n, dim = matrix.shape
    truth = [set(np.argpartition(-s, 10)[:10].tolist()) for s in qvecs @ matrix.T]
    out: dict[str, dict] = {"exact": {"recall@10": 1.0, "mb": round(matrix.nbytes / 2**20, 1)}}
    lat = []
    flat = faiss.IndexFlatIP(dim)
    flat.add(matrix)
    for q in qvecs[:50]:
        t = time.perf_counter()
        flat.search(q[None, :], 10)
        lat.append(1000 * (time.perf_counter() - t))
    out["exact"].update(p50_ms=round(float(np.percentile(lat, 50)), 2), p95_ms=round(float(np.percentile(lat, 95)), 2))
    del flat

    def score(index, label: str, build_s: float, nprobes: list[int], param: str = "nprobe") -> None:
        mb = round(len(faiss.serialize_index(index)) / 2**20, 1)
        for value in nprobes:
            faiss.ParameterSpace().set_index_parameter(index, param, value)
            lat, hits = [], 0
            for q, want in zip(qvecs, truth):
                t = time.perf_counter()
                _, found = index.search(q[None, :], 10)
                lat.append(1000 * (time.perf_counter() - t))
                hits += len(want & set(found[0].tolist()))
            row = {"recall@10": round(hits / (10 * len(qvecs)), 4), "p50_ms": round(float(np.percentile(lat, 50)), 2),
                   "p95_ms": round(float(np.percentile(lat, 95)), 2), "build_seconds": round(build_s, 1), "mb": mb}
            out[f"{label} {param}={value}"] = row
            print(f"  {label} {param}={value}: {row}", file=sys.stderr, flush=True)

    nlist = max(1, min(int(4 * np.sqrt(n)), n // 39))
    sample = matrix[np.sort(np.random.default_rng(0).choice(n, min(n, 64 * nlist), replace=False))]
    probes = [p for p in (16, 32, 64, 100, 160) if p <= nlist]
    started = time.perf_counter()
    quantizer = faiss.IndexFlatIP(dim)
    ivf = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.train(sample)
    train_s = time.perf_counter() - started
    out["ivf_train_seconds"] = {"nlist": nlist, "seconds": round(train_s, 1)}
    centroids = quantizer.reconstruct_n(0, nlist)
    for label, factory in ((f"IVF{nlist},Flat", None), (f"IVF{nlist},SQ8", "SQ8"), (f"IVF{nlist},PQ48", "PQ48"),
                           (f"IVF{nlist},PQ96", "PQ96")):
        started = time.perf_counter()
        if factory is None:
            index = ivf
        else:
            q2 = faiss.IndexFlatIP(dim)
            q2.add(centroids)
            if factory == "SQ8":
                index = faiss.IndexIVFScalarQuantizer(q2, dim, nlist, faiss.ScalarQuantizer.QT_8bit,
                                                      faiss.METRIC_INNER_PRODUCT)
            else:
                index = faiss.IndexIVFPQ(q2, dim, nlist, int(factory[2:]), 8, faiss.METRIC_INNER_PRODUCT)
            index.train(sample[: 64 * 256] if factory != "SQ8" else sample)  # the coarse quantizer is already trained
        index.add(matrix)
        score(index, label, train_s + time.perf_counter() - started, probes)
        del index
    ivf = None
    if hnsw:
        started = time.perf_counter()
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 40
        index.add(matrix)
        score(index, "HNSW32,Flat", time.perf_counter() - started, [64, 128, 256], param="efSearch")
    return out


def run_postgres(folder: Path, size: int, base, passages, languages, model: str, dim: int, queries, qvecs,
                 with_model: bool, exact_bm25: bool = True, warmup: list[str] | None = None) -> dict:
    """Start a local server in `folder`, bulk-load `size` chunks unless already there, measure, stop it."""
    from peru_qa import pgserver
    from peru_qa.pgstore import PgStore

    server = pgserver.start(folder)
    entry: dict = {"backend": "postgresql"}
    try:
        store = PgStore(server.url)
        have = store.chunk_count()
        store.close()
        if have < size:
            print(f"building {size} chunks in PostgreSQL ({folder}) ...", file=sys.stderr, flush=True)
            entry.update(build(server.url, size, base, passages, languages, model, dim))
        entry.update(pg_disk(server.url))
        print(f"  {entry}", file=sys.stderr, flush=True)
        entry.update(measure_search(server.url, queries, qvecs, model, dim, with_model, exact_bm25, warmup))
        print(json.dumps(entry, indent=1), file=sys.stderr, flush=True)
    finally:
        pgserver.stop(folder)
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--passages", type=int, default=3000, help="real passages embedded as the base set")
    parser.add_argument("--shared", type=Path, default=SHARED, help="the shared data folder (eval/ corpora)")
    parser.add_argument("--keep", type=Path, help="build the indexes under this folder and keep them (ix-SIZE)")
    parser.add_argument("--index", help="measure this existing index (folder or postgresql:// URL); no build")
    parser.add_argument("--ann", action="store_true", help="also run the FAISS index study on each size")
    parser.add_argument("--ann-only", action="store_true", help="only the FAISS index study (no index built)")
    parser.add_argument("--hnsw", action="store_true", help="include HNSW in the study (slow to build)")
    parser.add_argument("--store-only", action="store_true", help="stop after the bulk load (publish later)")
    parser.add_argument("--no-model", action="store_true", help="do not load the model in the serving process")
    parser.add_argument("--postgres", type=Path, help="build into a local PostgreSQL started in FOLDER/pg-SIZE "
                        "(pgserver; stopped at the end) instead of an index folder")
    parser.add_argument("--no-exact-bm25", action="store_true", help="PostgreSQL: skip the comparison with exact "
                        "BM25 (seconds per query at 1M chunks)")
    parser.add_argument("--warmup", type=int, default=0, help="search this many other questions untimed first "
                        "(steady state of a serving process and server; default: first queries after opening)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    passages, languages, pool = real_data(args.shared, args.passages, args.queries + args.warmup)
    # the warm-up questions: further questions of the same shuffled pool, disjoint from the timed ones
    queries, warmup = pool[:args.queries], pool[args.queries:]
    model, dim, base, qvecs, embed_s = embedded(passages, queries)
    top1 = (qvecs @ base.T).max(axis=1)
    results: dict = {"model": model, "real_passages": len(passages),
                     "passages_es": languages.count("es"), "queries": len(queries),
                     "embed_seconds": round(embed_s, 1), "query_top1_cosine_real": round(float(np.median(top1)), 3),
                     "machine": f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at start", "sizes": {}}
    if args.index:
        results["index"] = args.index
        results["search"] = measure_search(args.index, queries, qvecs, model, dim, not args.no_model,
                                           not args.no_exact_bm25, warmup)
    for size in [] if args.index else args.sizes:
        entry: dict = {"vectors_mb": round(size * dim * 4 / 2**20, 1)}
        results["sizes"][size] = entry
        if args.ann or args.ann_only:
            print(f"FAISS study at {size} ...", file=sys.stderr, flush=True)
            entry["dense_ann"] = ann_study(all_synthetic_vectors(base, passages, languages, size), qvecs, args.hnsw)
        if args.ann_only:
            continue
        if args.postgres:
            entry.update(run_postgres(args.postgres / f"pg-{size}", size, base, passages, languages, model, dim,
                                      queries, qvecs, not args.no_model, not args.no_exact_bm25, warmup))
            continue
        root = args.keep or Path(tempfile.mkdtemp(prefix="peru-qa-scale-"))
        path = root / f"ix-{size}"
        if not (path / "peru_qa.sqlite").exists():
            print(f"building {size} chunks in {path} ...", file=sys.stderr, flush=True)
            entry.update(build(path, size, base, passages, languages, model, dim))
        if args.store_only:
            continue
        entry.update(publish(path, model, dim))
        entry.update(disk(path))
        print(f"  {entry}", file=sys.stderr, flush=True)
        entry.update(measure_search(str(path), queries, qvecs, model, dim, not args.no_model, warmup=warmup))
        print(json.dumps(entry, indent=1), file=sys.stderr, flush=True)
        if not args.keep:
            import shutil

            shutil.rmtree(path, ignore_errors=True)
    results["peak_rss_mb_builder"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
