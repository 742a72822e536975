"""Scale benchmark of the embedded backend: build indexes of 100k / 1M chunks and measure build time, size on
disk, resident memory, `retrieve()` p50/p95, and the recall@10 and latency of approximate FAISS indexes
(HNSW, IVF) against the exact search the index uses today, to choose when it should switch.

Data (realistic, not uniform random vectors, which no ANN index can search): real passages — the shared XQuAD
(es + en) and SciFact corpora, else the shipped documents — are embedded once with the index's model; every
synthetic chunk mixes two of them, the way a passage touches a main topic and a second one: its text is the
first passage's words with ~20% dropped, a few words of the second and a serial token; its vector is
normalise(w·v1 + (1-w)·v2 + noise), w ~ U(0.6, 0.9), the noise Gaussian shaped by the real vectors' covariance
(so the set keeps the real topics and the real anisotropy, without thousands of near-copies of one vector).
Queries are real questions (XQuAD / SciFact) embedded with the model, so the keyword side runs real words
and the dense side real query vectors.

    PYTHONPATH=src python benchmarks/scale.py --sizes 100000 [1000000] [--queries 200] [--out FILE.json]

The machine is shared (2 cores, ~8 users): latencies are noisy; compare figures measured in one run.
"""

from __future__ import annotations

import argparse
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
sys.path.insert(0, str(ROOT / "src"))

PER_DOC = 1000  # chunks per synthetic document (one transaction each)
NOISE = 0.35  # noise scale relative to the real vectors' spread (top-1 cosine to the source stays ~0.9)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def real_data(shared: Path, max_passages: int, max_queries: int) -> tuple[list[str], list[str]]:
    """Real passages and real questions (shared corpora when present, else the shipped corpus)."""
    passages: list[str] = []
    queries: list[str] = []
    for name in ("xquad_es", "scifact"):
        folder = shared / "eval" / name
        for corpus in sorted(folder.glob("corpus*.jsonl")):
            passages += [f"{d.get('title', '')}\n{d['text']}".strip() for d in _jsonl(corpus)]
        for questions in sorted(folder.glob("queries*.jsonl")):
            queries += [q["text"] for q in _jsonl(questions)]
    if not passages:
        for path in sorted((ROOT / "documents").glob("*.md")):
            passages += [p.strip() for p in path.read_text(encoding="utf-8").split("\n\n") if len(p.strip()) > 200]
        queries = [q["question"] for q in _jsonl(ROOT / "tests" / "gold" / "questions.jsonl")]
    rng = random.Random(0)
    rng.shuffle(passages)
    rng.shuffle(queries)
    return passages[:max_passages], queries[:max_queries]


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


def synthetic(base: np.ndarray, texts: list[str], n: int, seed: int):
    """Yield (texts, vectors) batches of PER_DOC synthetic chunks derived from the real ones."""
    rng = np.random.default_rng(seed)
    centred = base - base.mean(axis=0)
    # Noise with the real vectors' covariance: z @ components * singular values / sqrt(n)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    scale = (s / np.sqrt(len(base)))[:, None] * vt
    words = [t.split() for t in texts]
    for start in range(0, n, PER_DOC):
        count = min(PER_DOC, n - start)
        first = rng.integers(0, len(base), count)
        second = rng.integers(0, len(base), count)
        w = rng.uniform(0.6, 0.9, (count, 1))
        noise = rng.standard_normal((count, len(s))) @ scale
        vectors = w * base[first] + (1 - w) * base[second] + NOISE * noise
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        out = []
        for j, (a, b) in enumerate(zip(first, second)):
            kept = [x for x in words[a] if rng.random() > 0.2] or words[a]
            extra = [x for x in words[b] if rng.random() < 0.1]
            out.append(" ".join(kept + extra) + f" s{start + j}")
        yield out, vectors.astype(np.float32)


def build(path: Path, size: int, base: np.ndarray, texts: list[str], model: str, dim: int) -> dict:
    from peru_qa import KnowledgeBase
    from peru_qa.ingest import chunk_rows
    from peru_qa.store import DocumentRecord, _now

    class Chunk:  # what chunk_rows reads
        def __init__(self, text: str):
            self.page, self.section, self.start, self.end, self.text = 1, "", 0, len(text), text

    kb = KnowledgeBase(path, embedder=FixedQueries(model, dim, {}))
    with kb.store.transaction():
        kb.store.set_meta("model", model)
        kb.store.set_meta("dimension", str(dim))
    started = time.perf_counter()
    for d, (chunk_texts, vectors) in enumerate(synthetic(base, texts, size, seed=size)):
        language = "es" if d % 2 else "en"
        page = "\n".join(chunk_texts)
        chunks, offset = [], 0
        for t in chunk_texts:
            c = Chunk(t)
            c.start, c.end = offset, offset + len(t)
            offset += len(t) + 1
            chunks.append(c)
        record = DocumentRecord(f"scale{d:07d}", f"scale:{d}", f"Scale {d}", language, f"h{d}", False, 1,
                                len(chunks), None, None, _now(), "")
        with kb.store.writer():
            kb.store.write_document(record, [(1, page, [], {})], chunk_rows(record.title, language, chunks), vectors)
    stored = time.perf_counter() - started
    started = time.perf_counter()
    kb.indexes.publish()  # bulk load: the derived indexes are built once, after loading
    derived = time.perf_counter() - started
    kb.close()
    size_bytes = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return {"store_seconds": round(stored, 1), "derived_seconds": round(derived, 1),
            "size_mb": round(size_bytes / 2**20, 1),
            "sqlite_mb": round((path / "peru_qa.sqlite").stat().st_size / 2**20, 1)}


SEARCHER = """
import json, sys, time
import numpy as np
sys.path.insert(0, sys.argv[3])
from scale import FixedQueries
from peru_qa import KnowledgeBase
data = json.load(open(sys.argv[2]))
vectors = {q: np.asarray(v, dtype=np.float32) for q, v in zip(data["queries"], data["vectors"])}
def status(key):  # VmHWM: peak RSS of this program (ru_maxrss would carry the parent's peak across fork+exec)
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return round(int(line.split()[1]) / 1024, 1)
before = status("VmRSS")
started = time.perf_counter()
kb = KnowledgeBase(sys.argv[1], embedder=FixedQueries(data["model"], data["dim"], vectors))
kb.indexes.current()
open_s = time.perf_counter() - started
kb.retrieve(data["queries"][0], k=10)
out = {"open_seconds": round(open_s, 2)}
for mode in ("hybrid", "dense", "keyword"):
    samples = []
    for q in data["queries"]:
        t = time.perf_counter()
        kb.retrieve(q, k=10, mode=mode)
        samples.append(1000 * (time.perf_counter() - t))
    out[mode] = {"p50_ms": round(float(np.percentile(samples, 50)), 1),
                 "p95_ms": round(float(np.percentile(samples, 95)), 1)}
out["rss_mb"] = status("VmHWM")
out["rss_before_open_mb"] = before
print(json.dumps(out))
"""


def measure_search(path: Path, queries: list[str], qvecs: np.ndarray, model: str, dim: int) -> dict:
    """retrieve() latency and peak RSS in a fresh process that opens the index (nothing cached from the build)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump({"queries": queries, "vectors": qvecs.tolist(), "model": model, "dim": dim}, fh)
    try:
        run = subprocess.run([sys.executable, "-c", SEARCHER, str(path), fh.name, str(Path(__file__).parent)],
                             capture_output=True, text=True, check=True,
                             env=dict(os.environ, PYTHONPATH=str(ROOT / "src")))
    finally:
        os.unlink(fh.name)
    return json.loads(run.stdout.strip().splitlines()[-1])


def ann_candidates(path: Path, qvecs: np.ndarray, dim: int) -> dict:
    """Dense top-10 of approximate FAISS indexes against the exact one: recall@10, p50/p95, build time, size."""
    import faiss

    from peru_qa.store import Store

    faiss.omp_set_num_threads(1)
    store = Store(path, create=False)
    ids, matrix = store.all_vectors(dim)
    store.close()
    n = len(ids)
    flat = faiss.IndexFlatIP(dim)
    flat.add(matrix)
    exact_ms, exact = [], []
    for q in qvecs:
        t = time.perf_counter()
        _, found = flat.search(q[None, :], 10)
        exact_ms.append(1000 * (time.perf_counter() - t))
        exact.append(set(found[0].tolist()))
    out = {"flat": {"recall@10": 1.0, "p50_ms": round(float(np.percentile(exact_ms, 50)), 2),
                    "p95_ms": round(float(np.percentile(exact_ms, 95)), 2),
                    "bytes_per_vector": dim * 4}}
    del flat

    def score(index, label: str, build_s: float, params: list[tuple[str, int]]) -> None:
        for param, value in params:
            faiss.ParameterSpace().set_index_parameter(index, param, value)
            lat, hits = [], 0
            for q, truth in zip(qvecs, exact):
                t = time.perf_counter()
                _, found = index.search(q[None, :], 10)
                lat.append(1000 * (time.perf_counter() - t))
                hits += len(truth & set(found[0].tolist()))
            out[f"{label} {param}={value}"] = {
                "recall@10": round(hits / (10 * len(qvecs)), 4), "p50_ms": round(float(np.percentile(lat, 50)), 2),
                "p95_ms": round(float(np.percentile(lat, 95)), 2), "build_seconds": round(build_s, 1)}

    started = time.perf_counter()
    hnsw = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = 40
    hnsw.add(matrix)
    score(hnsw, "HNSW32", time.perf_counter() - started, [("efSearch", 32), ("efSearch", 64), ("efSearch", 128)])
    del hnsw
    nlist = int(4 * np.sqrt(n))
    started = time.perf_counter()
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.train(matrix[np.random.default_rng(0).choice(n, min(n, 40 * nlist), replace=False)])
    ivf.add(matrix)
    score(ivf, f"IVF{nlist}", time.perf_counter() - started, [("nprobe", 8), ("nprobe", 16), ("nprobe", 32)])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--passages", type=int, default=3000, help="real passages embedded as the base set")
    parser.add_argument("--shared", type=Path, default=SHARED, help="the shared data folder (eval/ corpora)")
    parser.add_argument("--keep", type=Path, help="build the indexes under this folder and keep them")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from peru_qa.embeddings import get_embedder

    passages, queries = real_data(args.shared, args.passages, args.queries)
    embedder = get_embedder()
    started = time.perf_counter()
    base = embedder.encode(passages)
    qvecs = embedder.encode(queries, kind="query")
    embed_s = time.perf_counter() - started
    queries = [q.strip() for q in queries]
    model, dim = embedder.name, embedder.dim
    del embedder
    top1 = (qvecs @ base.T).max(axis=1)
    results = {"model": model, "real_passages": len(passages), "queries": len(queries),
               "embed_seconds": round(embed_s, 1), "query_top1_cosine_real": round(float(np.median(top1)), 3),
               "machine": f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at start", "sizes": {}}
    root = args.keep or Path(tempfile.mkdtemp(prefix="peru-qa-scale-"))
    for size in args.sizes:
        path = root / f"ix-{size}"
        print(f"building {size} chunks in {path} ...", file=sys.stderr, flush=True)
        built = build(path, size, base, passages, model, dim)
        print(f"  {built}", file=sys.stderr, flush=True)
        searched = measure_search(path, queries, qvecs, model, dim)
        print(f"  {searched}", file=sys.stderr, flush=True)
        ann = ann_candidates(path, qvecs, dim)
        vectors_mb = size * dim * 4 / 2**20
        results["sizes"][size] = {**built, **searched, "vectors_mb": round(vectors_mb, 1),
                                  "rss_over_vectors": round(searched["rss_mb"] / vectors_mb, 2), "dense_ann": ann}
        print(json.dumps(results["sizes"][size], indent=1), file=sys.stderr, flush=True)
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
