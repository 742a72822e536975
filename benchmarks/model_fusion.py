"""Tune the cross-lingual dense weight (retrieval.FusionParams.cross_lingual_dense_weight) on training data only.

    .venv/bin/python benchmarks/model_fusion.py [--model multilingual-e5-small] [--sets xquad,cross,scifact]

Sets: the XQuAD dev half (tune_fusion.dev_half: query-id hash even) in es and en, the same dev half of both
cross-lingual directions (Spanish questions over the English paragraphs and the reverse), and SciFact train.
For each set and each variant it prints nDCG@10 and hit@5 of dense, keyword and hybrid; query embeddings are
computed once per set. The shipped value is the one whose worst set is best while hybrid stays >= dense.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
SHARED = next((p / "shared" / "eval" for p in (ROOT.parent, ROOT.parents[1]) if (p / "shared" / "eval").is_dir()),
              ROOT.parent / "shared" / "eval")

VARIANTS = {"no language rule": None, "cross 0.8": 0.8, "cross 0.9": 0.9, "cross 1.0 (dense alone)": 1.0}


def sets(names: list[str]):
    from peru_qa.evaluation import load_beir, load_cross

    if "xquad" in names:
        yield load_beir(SHARED / "xquad_es", "test")
        yield load_beir(SHARED / "xquad_es", "test_en")
    if "cross" in names:
        yield from load_cross(SHARED / "xquad_es")
    if "scifact" in names:
        yield load_beir(SHARED / "scifact", "train")


def score_set(evalset, model: str | None) -> dict:
    """Dense, keyword and every hybrid variant on one set (query embeddings computed once), scored on the
    XQuAD dev half (for choosing) and on the whole test split (for reporting); SciFact train as is."""
    from tune_fusion import scored_parts

    from peru_qa.evaluation import document_ranking, open_index

    kb, _ = open_index(evalset, model=model)
    with kb:
        doc_of = kb.chunk_sources()
        qids = list(evalset.qrels)
        texts = [evalset.queries[q] for q in qids]
        qvecs = kb.embedder.encode(texts, kind="query", batch_size=64)

        def run(mode: str, params) -> dict:
            out = {}
            for qid, text, qvec in zip(qids, texts, qvecs):
                out[qid] = document_ranking(kb.rank(text, 300, mode, qvec=qvec, fusion=params).ids, doc_of)
            return out

        base = kb.fusion
        runs = {"dense": run("dense", base), "keyword": run("keyword", base)}
        for label, cross in VARIANTS.items():
            runs[label] = run("hybrid", replace(base, cross_lingual_dense_weight=cross))
    return scored_parts(runs, evalset.qrels, with_dev="train" not in evalset.split)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--sets", default="xquad,cross,scifact")
    parser.add_argument("--json")
    args = parser.parse_args()

    results = {}
    for evalset in sets(args.sets.split(",")):
        name = f"{evalset.name}/{evalset.split}"
        results[name] = score_set(evalset, args.model)
        print(name, f"({len(evalset.qrels)} queries)", flush=True)
        for label, metrics in results[name].items():
            print(f"  {label:<26} nDCG@10 {metrics['ndcg@10']:.4f}  hit@5 {metrics['hit@5']:.4f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
