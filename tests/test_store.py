"""What only the index folder (embedded backend) has: its manifest and files, recovery from damaged derived files,
the schema v1 migration, approximate (IVF) vector search. Behaviours both backends share are in
tests/contract/test_store_contract.py."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from peru_qa import KnowledgeBase

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
