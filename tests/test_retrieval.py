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
