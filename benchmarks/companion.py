"""Choose the companion weight (retrieval.FusionParams.companion_weight) on training data, report test splits.

    .venv/bin/python benchmarks/companion.py [--sets scifact,xquad,cross,mixed] [--weights 0,0.1,0.2,0.3,0.4]

The default model's index also keeps MiniLM vectors for its English chunks (config.COMPANION_MODELS); an English
question's fused score gives the companion this weight on those chunks. For each set and weight it prints
nDCG@10 and hit@5 of the hybrid ranking (the eval indexes are completed with companion vectors on first use,
`peru-qa rebuild`). Choose on SciFact train and the XQuAD dev half; SciFact test and the whole XQuAD test
splits are reported, not used to choose. Spanish questions never use the companion: their sets are unchanged
by construction (printed as a check).

"mixed" is XQuAD with each paragraph in one language only (Spanish or English by a hash of its id, as in a
bilingual collection such as documents/), asked in both languages: it shows how chunks the companion does not
hold (the other language) fare against those it does. Its index is built once under the eval cache.
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
    if "mixed" in names:
        yield from mixed_sets()


def mixed_sets():
    """XQuAD with each paragraph kept in one language (hash of the Spanish paragraph's id), questions in both."""
    import hashlib
    import json
    from dataclasses import replace as copy

    from peru_qa.evaluation import cache_root, load_beir

    es, en = load_beir(SHARED / "xquad_es", "test"), load_beir(SHARED / "xquad_es", "test_en")
    keep: dict[str, str] = {}  # query id -> the one paragraph kept for it
    chosen: list[dict] = []
    corpora = {lang: {d["_id"]: d for d in map(json.loads, (SHARED / "xquad_es" / name).open(encoding="utf-8"))}
               for lang, name in (("es", "corpus.jsonl"), ("en", "corpus_en.jsonl"))}
    seen: set[str] = set()
    for qid in sorted(set(es.qrels) & set(en.qrels)):
        es_id, en_id = next(iter(es.qrels[qid])), next(iter(en.qrels[qid]))
        spanish = int(hashlib.sha256(es_id.encode()).hexdigest(), 16) % 2 == 1
        doc_id = es_id if spanish else en_id
        keep[qid] = doc_id
        if doc_id not in seen:
            seen.add(doc_id)
            chosen.append(corpora["es" if spanish else "en"][doc_id])
    folder = cache_root() / "mixed-xquad"
    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder / "corpus.jsonl"
    text = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in chosen)
    if not corpus.exists() or corpus.read_text(encoding="utf-8") != text:
        corpus.write_text(text, encoding="utf-8")
    qrels = {q: {d: 1} for q, d in keep.items()}
    for base, lang in ((en, "en"), (es, "es")):
        yield copy(base, name="xquad_mixed", split=f"mixed:{lang}-questions", qrels=qrels,
                   queries={q: base.queries[q] for q in qrels}, corpus_path=corpus)


def score_set(evalset, weights: list[float]) -> dict[str, dict[str, float]]:
    """Hybrid nDCG@10 / hit@5 at each companion weight (query embeddings of both models computed once)."""
    from tune_fusion import scored_parts

    from peru_qa.evaluation import document_ranking, open_index

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
                out[qid] = document_ranking(ranked.ids, doc_of)
            runs[f"companion {w:g}"] = out
    return scored_parts(runs, evalset.qrels, with_dev=evalset.name.startswith("xquad"))


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
