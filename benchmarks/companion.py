"""Choose the companion weight (retrieval.FusionParams.companion_weight) on training data, report test splits.

    .venv/bin/python benchmarks/companion.py [--sets scifact,xquad,cross] [--weights 0,0.1,0.2,0.3,0.4]

The default model's index also keeps MiniLM vectors for its English chunks (config.COMPANION_MODELS); an English
question's fused score gives the companion this weight on those chunks. For each set and weight it prints
nDCG@10 and hit@5 of the hybrid ranking (the eval indexes are completed with companion vectors on first use,
`peru-qa rebuild`). Choose on SciFact train and the XQuAD dev half; SciFact test and the whole XQuAD test
splits are reported, not used to choose. Spanish questions never use the companion: their sets are unchanged
by construction (printed as a check).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
SHARED = next((p / "shared" / "eval" for p in (ROOT.parent, ROOT.parents[1]) if (p / "shared" / "eval").is_dir()),
              ROOT.parent / "shared" / "eval")


def sets(names: list[str]):
    from peru_qa.evaluation import load_beir, load_cross

    if "scifact" in names:
        yield load_beir(SHARED / "scifact", "train")
        yield load_beir(SHARED / "scifact", "test")
    if "xquad" in names:
        yield load_beir(SHARED / "xquad_es", "test_en")
        yield load_beir(SHARED / "xquad_es", "test")
    if "cross" in names:
        yield from load_cross(SHARED / "xquad_es")


def score_set(evalset, weights: list[float]) -> dict[str, dict[str, float]]:
    """Hybrid nDCG@10 / hit@5 at each companion weight (query embeddings of both models computed once)."""
    from tune_fusion import dev_half

    from peru_qa.evaluation import open_index, score_run

    kb, _ = open_index(evalset)
    with kb:
        if kb.companion is None:
            raise SystemExit(f"{evalset.name}: the index's model {kb.model_name} has no companion")
        doc_of = kb.chunk_sources()
        qids = list(evalset.qrels)
        texts = [evalset.queries[q] for q in qids]
        qvecs = kb.embedder.encode(texts, kind="query", batch_size=64)
        cvecs = kb.companion.encode(texts, kind="query", batch_size=64)
        runs = {}
        for w in weights:
            params = replace(kb.fusion, companion_weight=w)
            out = {}
            for qid, text, qvec, cvec in zip(qids, texts, qvecs, cvecs):
                ranked = kb.rank(text, 100, "hybrid", qvec=qvec, companion_qvec=cvec, fusion=params)
                docs: dict[str, None] = {}
                for cid in ranked.ids:
                    docs.setdefault(doc_of[int(cid)], None)
                    if len(docs) == 100:
                        break
                out[qid] = list(docs)
            runs[f"companion {w:g}"] = out
    parts = {"all": evalset.qrels}
    if evalset.name.startswith("xquad"):
        dev = set(dev_half(list(evalset.qrels)))
        parts["dev"] = {q: r for q, r in evalset.qrels.items() if q in dev}
    return {f"{label} [{part}]": {m: round(v[m], 4) for m in ("ndcg@10", "hit@5")}
            for label, out in runs.items() for part, qrels in parts.items()
            for v in [score_run(out, qrels)]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sets", default="scifact,xquad,cross")
    parser.add_argument("--weights", default="0,0.1,0.2,0.3,0.4")
    args = parser.parse_args()
    weights = [float(w) for w in args.weights.split(",")]
    for evalset in sets(args.sets.split(",")):
        print(f"\n{evalset.name} {evalset.split}", flush=True)
        for label, scores in score_set(evalset, weights).items():
            print(f"  {label:24s} nDCG@10 {scores['ndcg@10']:.4f}  hit@5 {scores['hit@5']:.4f}", flush=True)


if __name__ == "__main__":
    main()
