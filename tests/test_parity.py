"""Both backends answer alike on the shipped corpus (issue 30): documents/ indexed once into an index folder as the
app does and copied into PostgreSQL with `peru-qa copy` (the same chunks and vectors); a CI-sized share of
benchmarks/parity.py's questions (tests/data/answers.jsonl, both languages) asked of both through the Python API,
the CLI and the chat's /ask, in every mode, with and without filters. Targets as in the benchmark: no exceptions,
top-1 document identical ≥ 95 %, top-5 document sets' Jaccard ≥ 0.9, the answer's opening sentence identical ≥ 90 %.

Small fixtures missed the PostgreSQL backend's crash on English questions (a companion candidate the language
look-up never saw): only a real corpus, where the companion model brings chunks of its own, shows it."""

from __future__ import annotations

import importlib.util
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_benchmark():
    """benchmarks/parity.py as a module (not through sys.path: benchmarks/ holds names like reader.py)."""
    spec = importlib.util.spec_from_file_location("parity", ROOT / "benchmarks" / "parity.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["parity"] = module  # dataclasses resolve their module while it is executed
    spec.loader.exec_module(module)
    return module


parity = _load_benchmark()
pytestmark = [pytest.mark.postgres, pytest.mark.slow]

#: Questions asked through the API (half Spanish, half English, spread over the file); fewer through CLI and chat.
QUESTIONS = 20
FEW = 4


@pytest.fixture(scope="module")
def locations(tmp_path_factory, pg_server, embedder):
    """documents/ in an index folder (as `sync_folder` builds it) and copied into a fresh database."""
    import psycopg

    folder = tmp_path_factory.mktemp("parity") / "index"
    built = parity.build_folder(folder, embedder)
    assert built["documents"] == len(parity.corpus_names())
    url = parity.new_database(pg_server.url, f"parity_{uuid.uuid4().hex[:8]}")
    copied = parity.copy_into(folder, url)
    assert (copied["copied"], copied["chunks"]) == (built["documents"], built["chunks"])
    yield {"embedded": str(folder), "postgres": url}
    with psycopg.connect(pg_server.url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


@pytest.fixture(scope="module")
def kbs(locations, embedder):
    from peru_qa import KnowledgeBase

    with KnowledgeBase(locations["embedded"], embedder=embedder) as a, \
            KnowledgeBase(locations["postgres"], embedder=embedder) as b:
        yield {"embedded": a, "postgres": b}


@pytest.fixture(scope="module")
def questions() -> list[parity.Question]:
    picked = parity.load_questions(limit=QUESTIONS)
    assert {q.lang for q in picked} == {"es", "en"} and len(picked) == QUESTIONS
    return picked


@pytest.fixture
def one_model(monkeypatch, embedder):
    """The CLI opens its own KnowledgeBase: give it the session's model instead of loading a second copy."""
    import peru_qa.kb as kbmod
    from peru_qa.embeddings import canonical_model_name

    real = kbmod.get_embedder
    monkeypatch.setattr(kbmod, "get_embedder", lambda name=None: embedder if canonical_model_name(name) == embedder.name
                        else real(name))


def _assert_parity(records: list[parity.Record], searches: int = 0, answers: int = 0) -> dict:
    fig = parity.figures(records)
    errors = [(r.surface, r.qid, r.mode, r.filter, r.errors) for r in records if r.errors]
    assert fig["exceptions"] == 0, errors[:5]
    assert fig.get("searches", 0) == searches and fig.get("answers", 0) == answers, fig
    differing = [(r.qid, r.mode, r.filter, r.got) for r in records if r.compared and
                 r.sides()[0][:1] != r.sides()[1][:1]]
    assert not parity.missed_targets(fig), (fig, differing[:5])
    return fig


def test_the_copy_holds_the_same_documents_chunks_and_vectors(kbs, embedder):
    a, b = kbs["embedded"], kbs["postgres"]
    assert {d.source: (d.content_hash, d.n_chunks, d.language, d.metadata) for d in a.documents()} == \
        {d.source: (d.content_hash, d.n_chunks, d.language, d.metadata) for d in b.documents()}
    assert sorted(Path(d.source).name for d in a.documents()) == parity.corpus_names()
    assert a.store.counts() == b.store.counts()
    _, va = a.store.all_vectors(embedder.dim)
    _, vb = b.store.all_vectors(embedder.dim)
    assert np.array_equal(np.sort(va, axis=0), np.sort(vb, axis=0))
    assert a.companion_name == b.companion_name == "all-MiniLM-L6-v2"
    # The English chunks' companion vectors are made again at the destination (`copy`): the same vectors.
    companions = []
    for kb in (a, b):
        ids, matrix = kb.store.companion_vectors(None, kb.companion.dim)
        rows = kb.store.chunk_rows(ids.tolist())
        companions.append({(Path(rows[int(i)]["source"]).name, rows[int(i)]["page"], rows[int(i)]["start"]): v
                           for i, v in zip(ids, matrix)})
    assert companions[0].keys() == companions[1].keys() and len(companions[0]) > 0
    assert max(float(np.abs(companions[0][key] - companions[1][key]).max()) for key in companions[0]) < 1e-5


def test_searches_through_the_api_find_the_same_documents(kbs, questions):
    records = parity.api_search(kbs, questions)
    _assert_parity(records, searches=len(questions) * len(parity.MODES) * len(parity.FILTERS))
    assert all(r.got["embedded"] and r.got["postgres"] for r in records)  # no filter leaves nothing to compare
    for mode in parity.MODES:  # every mode holds on its own, in both languages
        for lang in ("es", "en"):
            assert not parity.missed_targets(parity.figures([r for r in records if r.mode == mode and r.lang == lang]))


def test_answers_through_the_api_open_with_the_same_sentence(kbs, questions):
    records = parity.api_ask(kbs, questions)
    fig = _assert_parity(records, answers=len(questions))
    assert fig["first_citation_identical"] >= 0.9, fig
    assert {r.filter for r in records} == set(parity.FILTERS)


def test_cli_search_and_ask_on_both_backends(locations, one_model, monkeypatch):
    """`peru-qa search --json` and `peru-qa ask --json` with --index (the folder, the URL). `ask` first reads every
    chunk's sentences for the reader (`prepare_answers`, two minutes per index here): a cache that does not change
    answers, skipped here; benchmarks/parity.py runs it."""
    import peru_qa

    monkeypatch.setattr(peru_qa, "prepare_answers", lambda kb, progress=None: 0)
    few = parity.load_questions(limit=FEW)
    records = parity.cli_search(locations, few) + parity.cli_ask(locations, few)
    _assert_parity(records, searches=FEW * len(parity.MODES), answers=FEW)


def test_chat_ask_endpoint_on_both_backends(kbs):
    pytest.importorskip("gradio_client")
    few = parity.load_questions(limit=FEW)
    with parity.chat_server(kbs["embedded"]) as a, parity.chat_server(kbs["postgres"]) as b:
        records = parity.chat_ask({"embedded": a, "postgres": b}, kbs, few)
    _assert_parity(records, answers=FEW)
    assert all(r.got["postgres"][0] for r in records)  # a real answer came back, not an empty one
