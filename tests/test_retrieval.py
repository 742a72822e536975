"""An English and a Spanish question each find the right passage among distractors."""

from __future__ import annotations

import pytest

from peru_qa.retrieval import Filters, fuse

DOCS = {
    "coca-en.txt": "DEVIDA's monitoring found that coca crops in the VRAEM valley covered more hectares than in any "
                   "other basin, and most of the leaf is turned into cocaine base in clandestine labs.",
    "mineria-es.txt": "En Madre de Dios, la minería ilegal de oro usa mercurio y arrasa el bosque en La Pampa; "
                      "la Operación Mercurio de 2019 desalojó a miles de mineros.",
    "extorsion-es.txt": "Las bandas de extorsionadores cobran cupos a los choferes de combis en Lima y Trujillo, "
                        "y los sicarios disparan contra quienes no pagan.",
    "ports-en.txt": "Cocaine is hidden in containers of fruit shipped from the port of Callao to Europe, "
                    "according to customs seizures.",
    "logging-en.txt": "Illegal loggers in Ucayali launder timber with false forest permits and transport it by river.",
    "prisiones-es.txt": "Desde los penales, los internos coordinan llamadas de extorsión con teléfonos celulares.",
}


@pytest.fixture
def filled(kb, tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text, encoding="utf-8")
    kb.add([folder])
    return kb


@pytest.mark.parametrize("query, expected", [
    ("Where is most coca grown?", "coca-en"),
    ("¿Dónde se extrae oro ilegalmente con mercurio?", "mineria-es"),
    ("¿Quién cobra cupos a los choferes de combis?", "extorsion-es"),
    ("How is cocaine smuggled through ports?", "ports-en"),
    ("mineria ilegal madre de dios", "mineria-es"),  # typed without accents
])
def test_question_finds_the_right_passage(filled, query, expected):
    for mode in ("hybrid",):
        hits = filled.retrieve(query, k=3, mode=mode)
        assert hits[0].title == expected, [h.title for h in hits]


def test_keyword_and_dense_modes_both_work(filled):
    assert filled.retrieve("Operación Mercurio", k=1, mode="keyword")[0].title == "mineria-es"
    assert filled.retrieve("timber laundering with fake permits", k=1, mode="dense")[0].title == "logging-en"


def test_fuse_drops_an_empty_side_and_weights_by_language():
    import numpy as np

    dense = (np.array([1, 2]), np.array([0.9, 0.1]))
    keyword = (np.array([2, 3]), np.array([10.0, 1.0]))
    assert list(fuse(dense, (np.zeros(0, np.int64), np.zeros(0)), "es").ids) == [1, 2]
    en = fuse(dense, keyword, "en")
    es = fuse(dense, keyword, "es")
    assert en.scores[list(en.ids).index(1)] > es.scores[list(es.ids).index(1)]


def test_filters_accept_dicts():
    f = Filters.coerce({"language": "es", "doc_id": "abc"})
    assert f.languages == ["es"] and f.doc_ids == ["abc"]
    with pytest.raises(ValueError):
        Filters.coerce({"colour": "red"})


class _Side:
    """A fake vector index over fixed vectors: search by cosine, similarity NaN for ids it does not hold."""

    def __init__(self, vectors: dict[int, list[float]]):
        import numpy as np

        self.vectors = {i: np.asarray(v, dtype=np.float32) for i, v in vectors.items()}

    def __len__(self) -> int:
        return len(self.vectors)

    def search(self, q, k, allowed=None):
        import numpy as np

        ids = sorted(self.vectors, key=lambda i: -float(self.vectors[i] @ q))[:k]
        return np.asarray(ids, dtype=np.int64), np.asarray([float(self.vectors[i] @ q) for i in ids], np.float32)

    def similarity(self, q, ids):
        import numpy as np

        return np.asarray([float(self.vectors[int(i)] @ q) if int(i) in self.vectors else np.nan for i in ids])


class _Keyword:
    def __init__(self, scores: dict[int, float]):
        self.table = scores

    def scores(self, tokens):
        return self.table

    def search(self, tokens, k, allowed=None, scores=None, alone=False):
        import numpy as np

        ids = sorted(self.table, key=lambda i: -self.table[i])[:k]
        return np.asarray(ids, dtype=np.int64), np.asarray([self.table[i] for i in ids], np.float32)

    def lookup(self, scores, ids):
        import numpy as np

        return np.asarray([scores.get(int(i), 0.0) for i in ids], dtype=np.float32)


@pytest.mark.parametrize("remote", [False, True])
def test_rank_scores_a_chunk_only_the_companion_found_on_both_backends(remote):
    """Issue 30: on PostgreSQL an English question crashed (KeyError) when the companion side proposed a chunk that
    neither the dense nor the keyword side had gathered. One path now builds the union once, from every side, and
    every exact score and language is asked for that union — in process and against a server alike."""
    from dataclasses import dataclass

    import numpy as np

    from peru_qa.retrieval import E5_FUSION, rank

    stored = {1: "en", 2: "en", 3: "es", 4: "en", 5: "en"}

    @dataclass
    class Fake:
        generation: int
        vectors: _Side
        keyword: _Keyword
        companion: _Side
        remote: bool

    asked: list[int] = []

    def languages(ids):  # strict, like a dict built from the gathered ids: an unknown id is a failure
        asked.extend(int(i) for i in ids)
        return [stored[int(i)] for i in ids]

    q = np.array([1.0, 0.0], np.float32)
    derived = Fake(0, _Side({1: [1, 0], 2: [0.8, 0.6], 3: [0.6, 0.8]}), _Keyword({2: 3.0, 3: 1.0}),
                   _Side({4: [0.9, 0.1], 5: [0, 1], 2: [0.5, 0.5]}), remote)
    params = E5_FUSION.__class__(**{**E5_FUSION.__dict__, "candidates": 2})
    ranked = rank("Who runs the port of Callao?", 2, "hybrid", derived, None, None, params, qvec=q,
                  languages=languages, companion_qvec=q)
    assert set(ranked.ids.tolist()) == {1, 2, 3, 4}  # 4: the companion's alone (5 was not among its best 2)
    assert sorted(set(asked)) == [1, 2, 3, 4]
    # chunk 4 has no vector on the dense side: it gets the side's lowest score seen, not a made-up exact one
    assert ranked.dense[4] == pytest.approx(min(ranked.dense[i] for i in (1, 2)))
    in_process = rank("Who runs the port of Callao?", 2, "hybrid", Fake(0, derived.vectors, derived.keyword,
                                                                        derived.companion, not remote),
                      None, None, params, qvec=q, languages=languages, companion_qvec=q)
    assert ranked.ids.tolist() == in_process.ids.tolist()
    assert np.allclose(ranked.scores, in_process.scores)
