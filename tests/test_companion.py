"""The default model's index keeps MiniLM vectors of its English chunks (config.COMPANION_MODELS) and gives them a
share of English questions' scores; indexes built before that get them from `rebuild`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from peru_qa import KnowledgeBase
from peru_qa.config import MINILM_MODEL
from peru_qa.kb import TextDocument
from peru_qa.retrieval import E5_FUSION, Companion, fuse

DOCS = [
    TextDocument("callao", "Cocaine leaves Peru hidden in fruit containers through the port of Callao, customs "
                           "officers say, and most seizures happen on ships bound for Antwerp.", title="Callao"),
    TextDocument("ucayali", "Illegal loggers in Ucayali launder timber with false forest permits and move it by "
                            "river to sawmills in Pucallpa.", title="Ucayali"),
    TextDocument("pataz", "La minería ilegal de oro en Pataz financia a bandas armadas que atacan los socavones "
                          "de las empresas formales.", title="Pataz"),
]


def _english_chunk_ids(kb: KnowledgeBase) -> np.ndarray:
    rows = kb.store.db.execute("SELECT c.id FROM chunks c JOIN documents d ON d.id = c.doc_id "
                               "WHERE d.language = 'en' ORDER BY c.id").fetchall()
    return np.asarray([r[0] for r in rows], dtype=np.int64)


def test_default_index_keeps_english_vectors_of_english_chunks_only(tmp_path, embedder):
    path = tmp_path / "idx"
    with KnowledgeBase(path, embedder=embedder) as kb:
        kb.add_texts(DOCS)
        english = _english_chunk_ids(kb)
        assert len(english) and len(english) < kb.stats()["chunks"]  # the Spanish document has none
        assert kb.stats()["companion"] == MINILM_MODEL
        companion = kb.indexes.current().companion
        assert np.array_equal(np.sort(companion.ids()), english)
    assert json.loads((path / "manifest.json").read_text())["companion_chunks"] == len(english)
    with KnowledgeBase(path) as kb:  # read back from disk
        assert np.array_equal(np.sort(kb.indexes.current().companion.ids()), english)
        assert kb.retrieve("ships carrying cocaine to Antwerp", k=1)[0].title == "Callao"
        kb.remove("ucayali")
        assert len(kb.indexes.current().companion) == len(_english_chunk_ids(kb))
        kb.add_texts([TextDocument("vraem", "Coca growers in the VRAEM sell leaf to cocaine base labs run by clans.")])
        companion = kb.indexes.current().companion  # updated in place from the previous generation's
        assert np.array_equal(np.sort(companion.ids()), _english_chunk_ids(kb))
        top = kb.retrieve("who buys the VRAEM coca leaf", k=1)[0]
        assert top.source == "vraem"
        assert companion.similarity(kb.companion.encode(["VRAEM coca leaf"], kind="query")[0],
                                    np.array([top.chunk_id]))[0] > 0.3


def test_companion_scores_the_chunks_it_holds_and_others_keep_their_dense_score_in_its_place():
    dense = (np.array([1, 2, 3]), np.array([0.8, 0.8, 0.5]))
    keyword = (np.array([1, 2, 3]), np.array([2.0, 2.0, 1.0]))
    held = {1: 0.2, 2: 0.9}  # chunk 3 (another language) has no companion vector
    side = Companion(np.array([2, 1]), np.array([0.9, 0.2]),
                     lambda ids: np.array([held.get(int(i), np.nan) for i in ids]))
    two = fuse(dense, keyword, "en", E5_FUSION)
    three = fuse(dense, keyword, "en", E5_FUSION, companion=side)
    assert list(two.ids[:2]) == [1, 2] and list(three.ids[:2]) == [2, 1]  # the tie is broken by the companion
    score, before = (dict(zip(map(int, r.ids), r.scores)) for r in (three, two))
    # chunk 3 has the lowest dense score (normalised 0): its companion share is that, not a companion score
    assert score[3] == pytest.approx(0.8 * before[3])
    # the held chunk 1 gets its normalised companion score (0.2 is the lowest of the companion's: 0)
    assert score[1] == pytest.approx(0.8 * before[1]) and score[2] == pytest.approx(0.8 * before[2] + 0.2)
    off = fuse(dense, keyword, "en", E5_FUSION.__class__(**{**E5_FUSION.__dict__, "companion_weight": 0.0}),
               companion=side)
    assert list(off.ids) == list(two.ids)


def test_index_built_before_companions_is_filled_by_rebuild(tmp_path, embedder):
    from peru_qa import maintenance

    path = tmp_path / "idx"
    with KnowledgeBase(path, embedder=embedder) as kb:
        kb.add_texts(DOCS)
        fresh = [h.chunk_id for h in kb.retrieve("timber moved by river to sawmills", k=3)]
        # what an index written before companions looks like: no companion vectors, no companion recorded
        with kb.store.writer(), kb.store.transaction() as db:
            db.execute("UPDATE chunks SET companion = NULL")
            db.execute("DELETE FROM meta WHERE key IN ('companion', 'companion_dimension')")
        maintenance.reindex(kb)
    with KnowledgeBase(path, embedder=embedder) as kb:
        assert kb.lacks_companion and kb.companion_name is None and kb.indexes.current().companion is None
        kb.add_texts([TextDocument("vraem", "Coca growers in the VRAEM sell leaf to cocaine base labs.")])
        assert kb.indexes.current().companion is None  # stays two-sided until rebuilt: no half-filled side
        seen = []
        result = kb.rebuild(progress=lambda done, total, name: seen.append(name))
        assert result["companion_embedded"] == len(_english_chunk_ids(kb)) and seen
        assert not kb.lacks_companion and kb.companion_name == MINILM_MODEL
        assert np.array_equal(np.sort(kb.indexes.current().companion.ids()), _english_chunk_ids(kb))
        assert [h.chunk_id for h in kb.retrieve("timber moved by river to sawmills", k=3)][:1] == fresh[:1]
        assert kb.rebuild()["companion_embedded"] == 0  # nothing left to fill
        assert kb.check().ok


def test_a_model_without_companion_drops_it_and_the_default_brings_it_back(tmp_path):
    path = tmp_path / "idx"
    with KnowledgeBase(path) as kb:
        kb.add_texts(DOCS)
        kb.rebuild(model=MINILM_MODEL)
        assert kb.companion_name is None and kb.indexes.current().companion is None
        assert kb.store.db.execute("SELECT count(*) FROM chunks WHERE companion IS NOT NULL").fetchone()[0] == 0
        assert not kb.lacks_companion
        kb.rebuild(model="e5")
        assert kb.companion_name == MINILM_MODEL
        assert len(kb.indexes.current().companion) == len(_english_chunk_ids(kb))


def test_database_index_keeps_the_companion_and_ranks_as_the_folder_index(pg_url, tmp_path, embedder):
    """Same documents in PostgreSQL and in a folder: the same companion vectors and the same fused rankings."""
    with KnowledgeBase(tmp_path / "idx", embedder=embedder) as local, KnowledgeBase(pg_url, embedder=embedder) as pg:
        for kb in (local, pg):
            kb.add_texts(DOCS)
        assert pg.companion_name == MINILM_MODEL and pg.stats()["companion"] == MINILM_MODEL
        assert len(pg.indexes.current().companion) == len(_english_chunk_ids(local))
        for question in ("ships carrying cocaine to Antwerp", "timber moved by river to sawmills",
                         "¿Quién financia a las bandas armadas?"):
            a, b = local.rank(question, 10), pg.rank(question, 10)
            assert [local.store.chunk_rows([int(i)])[int(i)]["text"] for i in a.ids[:3]] == \
                   [pg.store.chunk_rows([int(i)])[int(i)]["text"] for i in b.ids[:3]]
            assert np.allclose(a.scores[:3], b.scores[:3], atol=1e-4)
        # an index filled in later, as a folder index is by `rebuild`
        with pg.store.transaction() as conn:
            conn.execute("UPDATE chunks SET companion = NULL")
            conn.execute("DELETE FROM meta WHERE key IN ('companion', 'companion_dimension')")
        assert pg.lacks_companion and pg.indexes.current().companion is None
        assert pg.rebuild()["companion_embedded"] == len(_english_chunk_ids(local))
        assert not pg.lacks_companion and len(pg.indexes.current().companion) == len(_english_chunk_ids(local))


def test_copied_folder_index_gets_its_english_vectors(tmp_path, embedder):
    from peru_qa.transfer import copy_index

    with KnowledgeBase(tmp_path / "a", embedder=embedder) as kb:
        kb.add_texts(DOCS)
    copy_index(tmp_path / "a", tmp_path / "b")
    with KnowledgeBase(tmp_path / "b") as kb:
        assert kb.companion_name == MINILM_MODEL and not kb.lacks_companion
        assert np.array_equal(np.sort(kb.indexes.current().companion.ids()), _english_chunk_ids(kb))
