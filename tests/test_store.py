"""Index lifecycle: add, re-add, modify, remove, reopen, model mismatch, damage recovery."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
from helpers import CountingEmbedder, make_pdf

from peru_qa import KnowledgeBase, ModelMismatchError
from peru_qa.errors import EmptyQueryError

EN = "Coca cultivation in the VRAEM expanded while eradication teams focused on the Huallaga valley."
ES = "Los transportistas de Lima pagan cupos diarios a bandas de extorsionadores que amenazan a los choferes."
FILLER = [
    "The museum opened a new exhibition of colonial paintings in Cusco last spring.",
    "El festival de cine de Lima presentó películas de jóvenes directores peruanos.",
    "Potato varieties from the Andes are stored in a national seed bank.",
]


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "coca.md").write_text(f"# Coca report\n\n{EN}\n", encoding="utf-8")
    (folder / "extorsion.txt").write_text(ES, encoding="utf-8")
    for i, text in enumerate(FILLER):
        (folder / f"filler{i}.txt").write_text(text, encoding="utf-8")
    return folder


def test_add_reports_each_file_and_search_finds_it(kb, corpus):
    report = kb.add([corpus])
    assert report.ok and report.count("added") == 5
    hits = kb.retrieve("coca eradication in the VRAEM", k=3)
    assert hits[0].title == "Coca report" and "VRAEM" in hits[0].text
    stats = kb.stats()
    assert stats["documents"] == 5 and stats["model"] == "multilingual-e5-small" and stats["dimension"] == 384


def test_readd_unchanged_embeds_nothing_and_modify_replaces(tmp_path, embedder, corpus):
    counting = CountingEmbedder(embedder)
    kb = KnowledgeBase(tmp_path / "idx", embedder=counting)
    kb.add([corpus])
    first = counting.passages
    assert first >= 5
    report = kb.add([corpus])
    assert report.count("unchanged") == 5 and counting.passages == first
    # Touch without changing content: hashed, still no embedding.
    os.utime(corpus / "coca.md", (time.time() + 5, time.time() + 5))
    assert kb.add([corpus / "coca.md"]).results[0].status == "unchanged"
    assert counting.passages == first
    # Change content: replaced, old text gone from both retrievers.
    (corpus / "coca.md").write_text("# Coca report\n\nGold dredges operate on the Madre de Dios river.\n")
    result = kb.add([corpus / "coca.md"]).results[0]
    assert result.status == "replaced"
    assert counting.passages == first + result.chunks
    for mode in ("dense", "keyword"):
        texts = [h.text for h in kb.retrieve("VRAEM eradication Huallaga", k=5, mode=mode)]
        assert not any("Huallaga" in t for t in texts)
    assert "Madre de Dios" in kb.retrieve("gold dredges river", k=1)[0].text
    assert kb.stats()["documents"] == 5


def test_same_content_under_two_names_is_unchanged(kb, tmp_path):
    a = tmp_path / "a.txt"
    a.write_text(EN)
    b = tmp_path / "b.txt"
    b.write_text(EN)
    report = kb.add([a, b])
    assert [r.status for r in report.results] == ["added", "unchanged"]
    assert "same content as 'a.txt'" in report.results[1].reason
    assert kb.stats()["documents"] == 1


def test_remove_takes_document_out_of_dense_and_keyword(kb, corpus):
    kb.add([corpus])
    doc = kb.find_document("extorsion.txt")
    kb.remove(doc.id)
    for mode in ("dense", "keyword", "hybrid"):
        assert all(h.doc_id != doc.id for h in kb.retrieve("cupos extorsionadores choferes", k=5, mode=mode))
    assert kb.stats()["documents"] == 4


def test_reopen_gives_same_results(tmp_path, embedder, corpus):
    path = tmp_path / "idx"
    with KnowledgeBase(path) as kb:
        kb.add([corpus])
        before = [(h.chunk_id, round(h.score, 5)) for h in kb.retrieve("extortion of bus drivers", k=5)]
    with KnowledgeBase(path) as kb:
        after = [(h.chunk_id, round(h.score, 5)) for h in kb.retrieve("extortion of bus drivers", k=5)]
    assert before == after


def test_index_folder_is_inspectable_without_pickle(kb, corpus):
    kb.add([corpus])
    manifest = json.loads((kb.path / "manifest.json").read_text())
    assert manifest["model"] == "multilingual-e5-small" and manifest["dimension"] == 384
    assert manifest["documents"] == 5 and manifest["chunks"] == kb.stats()["chunks"]
    assert manifest["schema_version"] == 2
    files = [p for p in kb.path.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in (".pkl", ".pickle")]
    for npy in (p for p in files if p.suffix == ".npy"):
        np.load(npy, allow_pickle=False)  # raises if any array needed pickle


def test_model_mismatch_is_a_clear_error(tmp_path, corpus):
    path = tmp_path / "idx"
    with KnowledgeBase(path) as kb:
        kb.add([corpus / "coca.md"])
    with pytest.raises(ModelMismatchError, match="peru-qa rebuild"):
        KnowledgeBase(path, model="intfloat/multilingual-e5-small")


def test_failed_write_leaves_last_good_state(kb, corpus, monkeypatch):
    kb.add([corpus / "coca.md"])
    before = kb.stats()
    (corpus / "new.txt").write_text("Prisons in Peru serve as command centres for extortion calls.")

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(kb.store, "write_document", boom)
    report = kb.add([corpus / "new.txt"])
    assert not report.ok and "disk on fire" in report.results[0].reason
    monkeypatch.undo()
    after = kb.stats()
    assert (after["documents"], after["chunks"], after["generation"]) == (
        before["documents"], before["chunks"], before["generation"])
    assert kb.check().ok


def test_lost_faiss_file_is_rebuilt_from_the_database(tmp_path, corpus):
    path = tmp_path / "idx"
    with KnowledgeBase(path) as kb:
        kb.add([corpus])
        before = [h.chunk_id for h in kb.retrieve("museum paintings", k=3)]
    manifest = json.loads((path / "manifest.json").read_text())
    (path / manifest["derived"] / "vectors.faiss").unlink()
    with KnowledgeBase(path) as kb:
        report = kb.check()
        assert report.ok and report.repaired
        assert [h.chunk_id for h in kb.retrieve("museum paintings", k=3)] == before
        assert kb.check().ok and not kb.check().repaired


def test_empty_query_is_an_error(kb):
    with pytest.raises(EmptyQueryError):
        kb.retrieve("   ")


def test_filters_by_language_and_document(kb, corpus):
    kb.add([corpus])
    es = kb.retrieve("coca extortion", k=10, filters={"language": "es"})
    assert es and all(h.language == "es" for h in es)
    doc = kb.find_document("coca.md")
    only = kb.retrieve("anything about festivals", k=10, filters={"doc_id": doc.id})
    assert only and all(h.doc_id == doc.id for h in only)


def test_pdf_passages_carry_page_numbers(kb, tmp_path):
    pdf = make_pdf(tmp_path / "r.pdf", ["Intro page about many things.",
                                         "The port of Paita ships frozen fish and, police say, cocaine."],
                   title="Ports")
    kb.add([pdf])
    hit = kb.retrieve("Paita cocaine shipments", k=1)[0]
    assert hit.page == 2 and hit.title == "Ports"
    assert kb.page_text(hit.doc_id, hit.page)[hit.start : hit.end] == hit.text


def test_rebuild_with_another_model_reembeds_from_stored_text(tmp_path, corpus, embedder, monkeypatch):
    """Re-embedding needs no original files: chunks are re-cut from stored page text."""
    path = tmp_path / "idx"
    with KnowledgeBase(path) as kb:
        kb.add([corpus])
    for f in corpus.iterdir():
        f.unlink()
    import peru_qa.kb as kbmod

    renamed = CountingEmbedder(embedder)
    renamed.name = "other-model"
    monkeypatch.setattr(kbmod, "get_embedder", lambda name: renamed)
    with KnowledgeBase(path) as kb:
        result = kb.rebuild(model="other-model")
        assert result["model"] == "other-model" and result["re_embedded"] >= 5
        assert kb.retrieve("bus drivers extortion fees", k=1)[0].language == "es"
        assert kb.check().ok
    with pytest.raises(ModelMismatchError):
        KnowledgeBase(path, model="all-MiniLM-L6-v2")


def test_damaged_search_files_recovered_by_cli_without_originals(tmp_path, corpus, capsys):
    from peru_qa.cli import main

    path = tmp_path / "idx"
    with KnowledgeBase(path) as kb:
        kb.add([corpus])
        before = [h.chunk_id for h in kb.retrieve("bus drivers pay fees", k=3)]
    for f in corpus.iterdir():
        f.unlink()  # the originals are gone: recovery uses only what the index stored
    derived = path / json.loads((path / "manifest.json").read_text())["derived"]
    (derived / "vectors.faiss").write_bytes(b"\x00garbage" * 100)
    assert main(["check", "--index", str(path), "--no-repair"]) == 1
    assert "problem: vector or keyword index files are missing, damaged or stale" in capsys.readouterr().out
    assert main(["rebuild", "--index", str(path)]) == 0
    assert main(["check", "--index", str(path), "--no-repair"]) == 0
    (path / "manifest.json").unlink()
    assert main(["check", "--index", str(path)]) == 0
    assert "repaired: manifest.json is missing" in capsys.readouterr().out
    with KnowledgeBase(path) as kb:
        assert [h.chunk_id for h in kb.retrieve("bus drivers pay fees", k=3)] == before


def test_schema_v1_index_is_migrated_with_empty_metadata(tmp_path):
    """An index written by schema v1 (no metadata columns) opens, gains them, and keeps its documents."""
    import sqlite3

    from peru_qa.store import DB_NAME, MIGRATIONS, Store

    folder = tmp_path / "old"
    folder.mkdir()
    db = sqlite3.connect(folder / DB_NAME)
    db.executescript(MIGRATIONS[0] + ";PRAGMA user_version=1;")
    db.execute("INSERT INTO documents VALUES ('d1','/x.md','X','en','h',0,1,0,NULL,NULL,'2026-01-01','')")
    db.execute("INSERT INTO pages VALUES ('d1',1,'text','[]')")
    db.commit()
    db.close()
    store = Store(folder)
    try:
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert store.document("d1").metadata == {}
        assert store.pages("d1") == [(1, "text", [], {})]
    finally:
        store.close()


def test_rank_and_chunk_sources_give_evaluation_the_ranking_retrieve_uses(kb, corpus):
    """Evaluation and benchmarks score `kb.rank` + `kb.chunk_sources` instead of reaching into the store; a drift
    from `retrieve` (another fusion, another candidate depth) would make their figures describe another system."""
    kb.add([corpus])
    sources = kb.chunk_sources()
    assert sorted(sources) == list(sources) and len(sources) == kb.stats()["chunks"]
    assert {s.rsplit("/", 1)[-1] for s in sources.values()} == {p.name for p in corpus.iterdir()}
    for mode in ("hybrid", "dense", "keyword"):
        query = "extortion of bus drivers in Lima"
        hits = kb.retrieve(query, k=3, mode=mode)
        ranked = kb.rank(query, mode=mode)
        assert [int(i) for i in ranked.ids[:3]] == [h.chunk_id for h in hits]
        assert sources[int(ranked.ids[0])] == hits[0].source
    qvec = kb.embedder.encode(["coca eradication"], kind="query")[0]
    assert list(kb.rank("coca eradication", qvec=qvec).ids) == list(kb.rank("coca eradication").ids)


def test_check_reports_a_chunk_count_that_does_not_match_and_does_not_hide_it(kb, corpus):
    kb.add([corpus])
    assert kb.check(repair=False).ok
    with kb.store.transaction() as db:
        db.execute("UPDATE documents SET n_chunks = n_chunks + 1 WHERE id = (SELECT MIN(id) FROM documents)")
    report = kb.check()
    assert not report.ok
    assert report.problems == ["1 documents have a chunk count that does not match their chunks"]


def _clustered(n: int, dim: int, seed: int) -> np.ndarray:
    """Vectors around 40 topic centres (uniform random vectors have no neighbours an ANN index could find)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, dim))
    x = centres[rng.integers(0, 40, n)] + 0.6 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_large_vector_index_turns_approximate_and_keeps_removal_filters_and_recall(tmp_path, monkeypatch):
    from peru_qa.vectors import VectorIndex

    monkeypatch.setenv("PERU_QA_ANN_MIN_VECTORS", "1000")
    ids = np.arange(4000, dtype=np.int64) * 3 + 1  # chunk ids are not positions
    vectors, queries = _clustered(4000, 32, 0), _clustered(50, 32, 1)
    small = VectorIndex.build(32, ids[:999], vectors[:999])
    ann = VectorIndex.build(32, ids, vectors)
    assert not small.approximate and ann.approximate
    exact = VectorIndex(32)
    exact.add(ids, vectors)
    found = sum(len(set(ann.search(q, 10)[0]) & set(exact.search(q, 10)[0])) for q in queries)
    assert found / (10 * len(queries)) >= 0.95
    # Removed chunks (a replaced document) are never returned, and their vectors are gone.
    gone = ids[::2]
    ann.remove(gone)
    assert sorted(ann.ids()) == sorted(ids[1::2]) and len(ann) == 2000
    assert not set(np.concatenate([ann.search(q, 20)[0] for q in queries])) & set(gone)
    # A filter to a few chunks is searched exactly, whichever lists they sit in.
    allowed = ids[1::2][:30]
    got_ids, got_scores = ann.search(queries[0], 5, allowed)
    want = np.argsort(-(vectors[1::2][:30] @ queries[0]))[:5]
    assert list(got_ids) == list(allowed[want])
    np.testing.assert_allclose(ann.vectors(got_ids[:1]) @ queries[0], got_scores[:1], rtol=1e-5)
    ann.save(tmp_path / "v.faiss")
    loaded = VectorIndex.load(tmp_path / "v.faiss")
    assert loaded.approximate and list(loaded.search(queries[3], 10)[0]) == list(ann.search(queries[3], 10)[0])
    twin = loaded.copy()
    twin.remove(ids[1::2][:10])
    assert len(twin) == 1990 and len(loaded) == 2000


def test_index_crossing_the_approximate_size_is_rebuilt_and_stays_consistent(kb, corpus, tmp_path, monkeypatch):
    kb.add([corpus / "coca.md", corpus / "filler0.txt"])
    assert not kb.indexes.current().vectors.approximate
    monkeypatch.setenv("PERU_QA_ANN_MIN_VECTORS", "3")
    kb.add([corpus])
    assert kb.indexes.current().vectors.approximate
    assert kb.retrieve("coca eradication in the VRAEM", k=1)[0].title == "Coca report"
    assert kb.retrieve("extorsión a los choferes", k=1, filters={"language": "es"})[0].language == "es"
    kb.remove("coca.md")
    assert all(h.title != "Coca report" for h in kb.retrieve("coca eradication in the VRAEM", k=5, mode="dense"))
    assert kb.check(repair=False).ok
    with KnowledgeBase(kb.path) as reopened:  # another process loads the saved IVF index
        assert reopened.indexes.current().vectors.approximate and reopened.check(repair=False).ok


def test_stats_while_another_process_publishes(kb, corpus, monkeypatch):
    """A staging folder that another writer renames away while stats() walks the index is skipped, not an error
    (a reader's stats() failed with FileNotFoundError on '.staging-…' during two writers' adds)."""
    kb.add(corpus)
    staging = kb.path / "derived" / ".staging-test"
    staging.mkdir(parents=True)
    (staging / "vectors.bin").write_bytes(b"x" * 10)
    real_scandir, real_stat = os.scandir, os.stat

    def gone(path, *args, **kwargs):
        if ".staging-test" in str(path):  # listed a moment ago, renamed away since
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return (real_scandir if kwargs.pop("_scan", False) else real_stat)(path, *args, **kwargs)

    monkeypatch.setattr(os, "scandir", lambda path=".": gone(path, _scan=True))
    monkeypatch.setattr(os, "stat", gone)
    try:
        stats = kb.stats()
    finally:
        monkeypatch.undo()
    assert stats["documents"] > 0 and stats["size_bytes"] > 0
