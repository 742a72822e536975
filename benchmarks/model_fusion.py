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
    from tune_fusion import dev_half

    from peru_qa.evaluation import open_index, score_run

    kb, _ = open_index(evalset, model=model)
    with kb:
        doc_of = kb.chunk_sources()
        qids = list(evalset.qrels)
        texts = [evalset.queries[q] for q in qids]
        qvecs = kb.embedder.encode(texts, kind="query", batch_size=64)

        def run(mode: str, params) -> dict:
            out = {}
            for qid, text, qvec in zip(qids, texts, qvecs):
                ranked = kb.rank(text, 300, mode, qvec=qvec, fusion=params)
                docs: dict[str, None] = {}
                for cid in ranked.ids:
                    docs.setdefault(doc_of[int(cid)], None)
                    if len(docs) == 100:
                        break
                out[qid] = list(docs)
            return out

        base = kb.fusion
        runs = {"dense": run("dense", base), "keyword": run("keyword", base)}
        for label, cross in VARIANTS.items():
            runs[label] = run("hybrid", replace(base, cross_lingual_dense_weight=cross))
    parts = {"all": evalset.qrels}
    if "train" not in evalset.split:
        dev = set(dev_half(list(evalset.qrels)))
        parts["dev"] = {q: r for q, r in evalset.qrels.items() if q in dev}
    return {f"{label} [{part}]": {m: round(v[m], 4) for m in ("ndcg@10", "hit@5")}
            for label, out in runs.items() for part, qrels in parts.items()
            for v in [score_run(out, qrels)]}


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
