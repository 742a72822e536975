"""Ingestion throughput: `KnowledgeBase.add` vs bare `model.encode` on the same chunks, in one run.

    .venv/bin/python benchmarks/ingest.py [FOLDER ...]

Default folders: ../shared/samples/cvr and ../shared/samples/papers (real Spanish Markdown and PDFs),
or documents/ when ../shared is absent. Reports chunks/s of both, their ratio (target >= 0.9), and how
much faster re-adding the unchanged folders is than the first add (target >= 50x).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folders", nargs="*")
    args = parser.parse_args()
    shared = ROOT.parent / "shared" / "samples"
    folders = [Path(f) for f in args.folders] or (
        [shared / "cvr", shared / "papers"] if shared.exists() else [ROOT / "documents"])

    from peru_qa import KnowledgeBase
    from peru_qa.embeddings import get_embedder
    from peru_qa.ingest import embedding_text

    embedder = get_embedder()
    embedder.encode(["warm up the model"])
    with tempfile.TemporaryDirectory() as tmp:
        kb = KnowledgeBase(Path(tmp) / "idx")
        started = time.perf_counter()
        report = kb.add(folders)
        first = time.perf_counter() - started
        chunks = kb.stats()["chunks"]

        started = time.perf_counter()
        again = kb.add(folders)
        second = time.perf_counter() - started
        assert again.count("unchanged") == report.count("added"), again.summary()

        texts = [embedding_text(kb.embedder, title, section, text) for title, section, text in kb.store.chunk_texts()]
        started = time.perf_counter()
        embedder.encode(texts)
        bare = time.perf_counter() - started
        kb.close()

    result = {
        "folders": [str(f) for f in folders],
        "files": report.summary(),
        "chunks": chunks,
        "add_seconds": round(first, 2),
        "add_chunks_per_s": round(chunks / first, 1),
        "bare_encode_seconds": round(bare, 2),
        "bare_encode_chunks_per_s": round(chunks / bare, 1),
        "add_vs_bare_ratio": round(bare / first, 3),
        "readd_seconds": round(second, 3),
        "readd_speedup": round(first / second, 1),
    }
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
