"""One behaviour suite for both storage backends: an index folder (embedded) and a postgresql:// URL.

The Postgres side runs against the throwaway server of the `pg_server` fixture (tests/conftest.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import QA_DOCS

from peru_qa import KnowledgeBase
from peru_qa.cli import main
from peru_qa.errors import DocumentNotFound, PeruQAError


@pytest.fixture(params=["embedded", "postgres"])
def location(request, tmp_path):
    """Where a new index lives, for each backend."""
    if request.param == "embedded":
        return str(tmp_path / "index")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def docs(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in QA_DOCS.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def filled(location, docs, embedder):
    with KnowledgeBase(location, embedder=embedder) as kb:
        report = kb.add(docs)
        assert report.ok and report.count("added") == len(QA_DOCS)
    return location


def test_add_list_stats(filled, embedder):
    with KnowledgeBase(filled, embedder=embedder) as kb:
        docs = kb.documents()
        stats = kb.stats()
    assert sorted(d.source.rsplit("/", 1)[-1] for d in docs) == sorted(QA_DOCS)
    assert stats["documents"] == len(QA_DOCS)
    assert stats["chunks"] == sum(d.n_chunks for d in docs) > 0
    assert stats["model"] == embedder.name and stats["dimension"] == embedder.dim
    assert stats["backend"] == ("postgresql" if filled.startswith("postgresql://") else "embedded")
    assert stats["size_bytes"] > 0


def test_adding_again_changes_nothing(filled, docs, embedder):
    with KnowledgeBase(filled, embedder=embedder) as kb:
        before = kb.stats()
        report = kb.add(docs)
        assert report.count("added") == 0 and report.count("unchanged") == len(QA_DOCS)
        assert kb.stats()["chunks"] == before["chunks"]


@pytest.mark.parametrize("mode", ["hybrid", "dense", "keyword"])
def test_search_finds_the_right_passage(filled, embedder, mode):
    with KnowledgeBase(filled, embedder=embedder) as kb:
        hits = kb.retrieve("mercury poisons the rivers in Madre de Dios", k=3, mode=mode)
        assert hits and hits[0].source.endswith("mining.txt")
        assert "mercury" in hits[0].text
        assert hits == sorted(hits, key=lambda h: -h.score)
        es = kb.retrieve("una escolta armada de los narcotraficantes en el valle", k=3, mode=mode)
        assert es[0].source.endswith("vraem-es.md")


def test_other_sides_candidates_get_their_exact_cosine(filled, embedder):
    """Hybrid search fills in the dense score of chunks only keyword search found (computed in the server on
    PostgreSQL): the cosine of the query with the chunk's stored vector, on both backends."""
    query = "Operation Mercurio La Pampa"
    with KnowledgeBase(filled, embedder=embedder) as kb:
        ids, stored = kb.store.all_vectors(embedder.dim)
        qvec = embedder.encode([query], kind="query")[0]
        want = stored @ qvec
        pick = ids[::-1][:5]
        got = kb.indexes.current().vectors.similarity(qvec, pick)
        np.testing.assert_allclose(got, want[::-1][:5], atol=1e-5)
        hits = kb.retrieve(query, k=3, mode="hybrid")
    by_id = dict(zip(ids.tolist(), want.tolist()))
    np.testing.assert_allclose([h.dense_score for h in hits], [by_id[h.chunk_id] for h in hits], atol=1e-5)


def test_filters(filled, embedder):
    with KnowledgeBase(filled, embedder=embedder) as kb:
        hits = kb.retrieve("VRAEM drug trafficking routes", k=5, filters={"language": "es"})
        assert hits and {h.language for h in hits} == {"es"}
        doc = kb.find_document("mining.txt")
        only = kb.retrieve("VRAEM drug trafficking routes", k=5, filters={"doc_id": doc.id})
        assert only and {h.doc_id for h in only} == {doc.id}


def test_ask_cites_the_documents(filled, embedder):
    with KnowledgeBase(filled, embedder=embedder) as kb:
        answer = kb.ask("Who leads the Militarized Communist Party of Peru?", llm=False)
    assert not answer.abstained
    assert "Quispe Palomino" in answer.text
    assert any(c.source.endswith(("vraem.md", "vraem-es.md")) for c in answer.citations)


def test_remove(filled, embedder):
    with KnowledgeBase(filled, embedder=embedder) as kb:
        gone = kb.remove("mining.txt")
        assert all(not h.doc_id == gone.id for h in kb.retrieve("mercury gold mining Madre de Dios", k=10))
        assert kb.stats()["documents"] == len(QA_DOCS) - 1
        with pytest.raises(DocumentNotFound):
            kb.find_document("mining.txt")


def test_other_processes_see_writes_at_once(filled, docs, embedder):
    """Two handles on one index (two app processes): one's add and remove are searchable by the other."""
    with KnowledgeBase(filled, embedder=embedder) as reader, KnowledgeBase(filled, embedder=embedder) as writer:
        assert reader.retrieve("Operation Mercurio", k=1)[0].source.endswith("mining.txt")
        writer.remove("mining.txt")
        assert all(not h.source.endswith("mining.txt") for h in reader.retrieve("Operation Mercurio", k=5))
        writer.add(docs / "mining.txt")
        assert reader.retrieve("Operation Mercurio", k=1)[0].source.endswith("mining.txt")


def test_check_and_rebuild(filled, embedder):
    with KnowledgeBase(filled, embedder=embedder) as kb:
        report = kb.check()
        assert not report.problems
        result = kb.rebuild()
        assert result["chunks"] == kb.stats()["chunks"]


def test_cli_on_both_backends(filled, capsys, monkeypatch):
    """The CLI takes either location through --index (real default model: build the index with it)."""
    assert main(["list", "--index", filled]) == 0
    out = capsys.readouterr().out
    assert "mining.txt" in out


def test_warm_reads_the_index_and_search_still_answers(filled, embedder, capsys):
    """`peru-qa warm` reads what questions read (after a reboot they would wait on the disk): the SQLite file and
    derived files of a folder, the HNSW graph, impacts, postings and rows of a database."""
    with KnowledgeBase(filled, embedder=embedder) as kb:
        parts = kb.warm()
        size = kb.stats()["size_bytes"]
        assert kb.retrieve("illegal gold mining in Madre de Dios", k=3)
    names = {p.name for p in parts}
    assert parts and not any(p.skipped for p in parts) and all(p.size >= 0 for p in parts)
    if filled.startswith("postgresql://"):
        assert {"chunks_embedding_hnsw", "chunk_bags", "chunk_terms_impact", "chunks"} <= names
    else:
        assert "peru_qa.sqlite" in names
        assert sum(p.size for p in parts) >= size * 0.9  # the whole folder (size_bytes is taken after)
    assert main(["warm", "--index", filled]) == 0
    out = capsys.readouterr().out
    assert "warm:" in out and ("chunks_embedding_hnsw" in out or "peru_qa.sqlite" in out)


# --- Postgres only -------------------------------------------------------------------------------------------

def test_warm_stops_at_the_servers_cache_size(pg_url, docs, embedder):
    """What would not fit in the cache the server declares (effective_cache_size) is not read: reading it would
    push out what was read before."""
    import psycopg

    with KnowledgeBase(pg_url, embedder=embedder) as kb:
        assert kb.add(docs).ok
    with psycopg.connect(pg_url, autocommit=True) as conn:
        database = conn.execute("SELECT current_database()").fetchone()[0]
        conn.execute(f'ALTER DATABASE "{database}" SET effective_cache_size = \'64kB\'')
    with KnowledgeBase(pg_url, embedder=embedder) as kb:
        parts = kb.warm()
    read = [p for p in parts if not p.skipped]
    assert sum(p.size for p in read) <= 64 * 1024
    assert any(p.skipped and p.size > 0 for p in parts)

def test_wrong_url_is_one_clear_line(capsys):
    code = main(["search", "anything", "--index", "postgresql://nobody@127.0.0.1:1/none"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("peru-qa: error: cannot open PostgreSQL index postgresql://nobody@127.0.0.1:1/none")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_password_is_not_shown(capsys):
    main(["list", "--index", "postgresql://someone:s3cret@127.0.0.1:1/none"])
    err = capsys.readouterr().err
    assert "s3cret" not in err and "someone:***@" in err


def test_missing_database_is_one_clear_line(pg_server, capsys):
    url = pg_server.url.rsplit("/", 1)[0] + "/no_such_database"
    assert main(["list", "--index", url]) == 2
    err = capsys.readouterr().err
    assert "no_such_database" in err and "does not exist" in err and len(err.strip().splitlines()) == 1


def test_pgvector_holds_the_vectors(pg_url, docs, embedder):
    import psycopg

    with KnowledgeBase(pg_url, embedder=embedder) as kb:
        kb.add(docs)
        chunks = kb.stats()["chunks"]
    with psycopg.connect(pg_url) as conn:
        column = conn.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                              "WHERE attrelid = 'chunks'::regclass AND attname = 'embedding'").fetchone()[0]
        index = conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'chunks_embedding_hnsw'").fetchone()
        terms = conn.execute("SELECT count(DISTINCT chunk_id) FROM chunk_terms").fetchone()[0]
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
    assert column == f"vector({embedder.dim})"
    assert index and "hnsw" in index[0] and "vector_cosine_ops" in index[0]
    from peru_qa.pgstore import MIGRATIONS

    assert terms == chunks and version == str(len(MIGRATIONS))


def test_numbered_migrations_bring_an_old_database_up(pg_url, docs, embedder, capsys):
    """A database left at schema v1 (no totals, no term_df, no impacts, no originals) is migrated on open to the
    current version; nothing is lost, search still works."""
    import psycopg

    with KnowledgeBase(pg_url, embedder=embedder) as kb:
        kb.add(docs)
        before = [p.chunk_id for p in kb.retrieve("mercury rivers", k=5, mode="keyword")]
    bags_sql = "SELECT chunk_id, bag::text FROM chunk_bags ORDER BY chunk_id"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        bags = conn.execute(bags_sql).fetchall()
        conn.execute("DROP TABLE chunk_bags")
        conn.execute("DROP TABLE totals")
        conn.execute("DROP TABLE originals")
        conn.execute("DROP TABLE term_df")
        conn.execute("ALTER TABLE chunk_terms DROP COLUMN impact")  # drops its index too
        conn.execute("ALTER TABLE chunks DROP COLUMN companion")  # and its HNSW index
        conn.execute("DELETE FROM meta WHERE key IN ('companion', 'companion_dimension')")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    capsys.readouterr()
    with KnowledgeBase(pg_url, embedder=embedder) as kb:
        assert "from schema v1 to v" in capsys.readouterr().err  # said, as it can take minutes
        assert [p.chunk_id for p in kb.retrieve("mercury rivers", k=5, mode="keyword")] == before
        assert not kb.check(repair=False).problems
    with psycopg.connect(pg_url) as conn:
        from peru_qa.pgstore import MIGRATIONS, bag_text

        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(len(MIGRATIONS))
        assert conn.execute("SELECT count(*) FROM originals").fetchone()[0] == 0  # created empty
        # the sparse vectors filled in SQL (migration 5) are what the write path makes of the same impacts
        again = conn.execute(bags_sql).fetchall()
        postings = conn.execute("SELECT chunk_id, term, impact FROM chunk_terms").fetchall()
    assert [c for c, _ in again] == [c for c, _ in bags] and bags
    impacts: dict[int, dict[str, float]] = {}
    for chunk_id, term, impact in postings:
        impacts.setdefault(chunk_id, {})[term] = impact

    def slots(text: str) -> dict[int, float]:
        return {int(k): float(v) for k, v in (x.split(":") for x in text[1:text.index("}")].split(","))}

    for chunk_id, text in again:
        got, want = slots(text), slots(bag_text(impacts[chunk_id]))
        assert got.keys() == want.keys() and np.allclose([got[k] for k in got], [want[k] for k in got], rtol=1e-5)


def test_hybrid_searches_at_once_rank_as_one_after_the_other(pg_url, docs, embedder, monkeypatch):
    """On a server the two retrievers, the cross-scoring and the language look-up run concurrently: the ranking
    is the one the sequential path gives (same ids, same scores), in both languages and across them."""
    import dataclasses

    from peru_qa import retrieval

    calls = []
    monkeypatch.setattr(retrieval, "_all", (lambda f: lambda jobs, at_once: calls.append(at_once) or f(jobs, at_once))(
        retrieval._all))
    with KnowledgeBase(pg_url, embedder=embedder) as kb:
        kb.add(docs)
        derived = kb.indexes.current()
        assert derived.remote
        one_by_one = dataclasses.replace(derived, remote=False)
        for query in ("mercury rivers fish", "narcotraficantes cupos valle", "Lima extorsión", "¿Quién controla "
                      "el VRAEM?", "zzzz"):
            qvec = embedder.encode([query], kind="query")[0]
            companion = kb.companion.encode([query], kind="query")[0] if kb.companion else None
            got = retrieval.rank(query, 20, "hybrid", derived, None, None, kb.fusion, qvec=qvec,
                                 languages=kb.store.chunk_languages, companion_qvec=companion)
            want = retrieval.rank(query, 20, "hybrid", one_by_one, None, None, kb.fusion, qvec=qvec,
                                  languages=kb.store.chunk_languages, companion_qvec=companion)
            assert got.ids.tolist() == want.ids.tolist() and len(got.ids)
            assert np.allclose(got.scores, want.scores) and got.keyword == want.keyword
    # each search: its sides gathered, then the union scored — at once on the server, in turn in process
    assert calls == [True, True, False, False] * 5


def test_keyword_scores_match_bm25s(tmp_path, pg_url, docs, embedder):
    """BM25 in SQL gives the scores bm25s gives the embedded backend (same terms, same formula)."""
    with KnowledgeBase(tmp_path / "ix", embedder=embedder) as local, \
            KnowledgeBase(pg_url, embedder=embedder) as shared:
        local.add(docs)
        shared.add(docs)
        for query in ("mercury rivers fish", "narcotraficantes cupos valle", "Lima extorsión"):
            a = local.retrieve(query, k=5, mode="keyword")
            b = shared.retrieve(query, k=5, mode="keyword")
            assert [p.text for p in a] == [p.text for p in b]
            assert np.allclose([p.keyword_score for p in a], [p.keyword_score for p in b], rtol=1e-4)


def test_bulk_load_builds_the_indexes_once_and_ranks_alike(tmp_path, pg_url, docs, embedder):
    """A copy into an empty database goes through `bulk_load` (indexes dropped, rebuilt at the end): the same
    indexes exist afterwards and keyword search ranks as bm25s does."""
    import psycopg

    src = tmp_path / "src"
    with KnowledgeBase(src, embedder=embedder) as kb:
        kb.add(docs)
        want = [(p.text, round(p.keyword_score, 4)) for p in kb.retrieve("mercury rivers fish", k=5, mode="keyword")]
    assert main(["copy", str(src), pg_url]) == 0
    with psycopg.connect(pg_url) as conn:
        names = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename IN "
                                            "('chunks', 'chunk_terms')")}
        constraints = {r[0] for r in conn.execute("SELECT conname FROM pg_constraint WHERE conrelid = "
                                                  "'chunk_terms'::regclass")}
        constraints |= {r[0] for r in conn.execute("SELECT conname FROM pg_constraint WHERE conrelid = "
                                                   "'chunk_bags'::regclass")}
        dfs = conn.execute("SELECT count(*) FROM term_df d WHERE df != (SELECT count(*) FROM chunk_terms t "
                           "WHERE t.term = d.term)").fetchone()[0]
        unbagged = conn.execute("SELECT count(*) FROM chunks c WHERE NOT EXISTS "
                                "(SELECT 1 FROM chunk_bags g WHERE g.chunk_id = c.id)").fetchone()[0]
    assert {"chunks_embedding_hnsw", "chunk_terms_pkey", "chunk_terms_chunk", "chunk_terms_impact"} <= names
    assert {"chunk_terms_pkey", "chunk_terms_chunk_id_fkey", "chunk_bags_pkey", "chunk_bags_chunk_id_fkey"} \
        <= constraints and dfs == 0 and unbagged == 0
    with KnowledgeBase(pg_url, embedder=embedder) as kb:
        got = [(p.text, round(p.keyword_score, 4)) for p in kb.retrieve("mercury rivers fish", k=5, mode="keyword")]
        assert [t for t, _ in got] == [t for t, _ in want]
        assert np.allclose([s for _, s in got], [s for _, s in want], rtol=1e-3)
        doc = kb.documents()[0]
        kb.remove(doc.id)
    with psycopg.connect(pg_url) as conn:  # removing a document takes its terms off the document frequencies
        assert conn.execute("SELECT count(*) FROM term_df d WHERE df != (SELECT count(*) FROM chunk_terms t "
                            "WHERE t.term = d.term)").fetchone()[0] == 0


def test_keyword_past_the_exact_limit_rescores_exactly(pg_url, docs, embedder, monkeypatch):
    """When a query term is in more chunks than `POSTINGS`, only its best postings are read; the chunks found
    still get their exact BM25 score, and the best one is found."""
    from peru_qa.pgstore import PgKeyword
    from peru_qa.retrieval import query_tokens

    with KnowledgeBase(pg_url, embedder=embedder) as kb:
        kb.add(docs)
        exact = kb.retrieve("mercury rivers fish", k=3, mode="keyword")
        assert kb.indexes.current().keyword.scores(query_tokens("mercury rivers fish")).max_df > 1  # path taken
        monkeypatch.setattr(PgKeyword, "ALONE", (1, 10, 1))
        approx = kb.retrieve("mercury rivers fish", k=3, mode="keyword")
    assert approx and approx[0].chunk_id == exact[0].chunk_id
    scores = {p.chunk_id: p.keyword_score for p in exact}
    assert all(abs(p.keyword_score - scores[p.chunk_id]) < 1e-4 for p in approx if p.chunk_id in scores)


def test_keyword_search_alone_reads_deeper_than_in_hybrid(pg_url, docs, embedder, monkeypatch):
    """In keyword mode nothing makes up for a chunk the approximate search misses, so it reads `ALONE`'s deeper
    postings and pool; hybrid keeps the shallower setting."""
    from peru_qa.pgstore import PgKeyword

    with KnowledgeBase(pg_url, embedder=embedder) as kb:
        kb.add(docs)
        monkeypatch.setattr(PgKeyword, "POSTINGS", 1)
        monkeypatch.setattr(PgKeyword, "ALONE", (2, 7, 1))
        seen: list[int] = []
        run = PgKeyword._run

        def spy(self, sql, scores, **params):
            seen.append(params.get("postings"))
            return run(self, sql, scores, **params)

        monkeypatch.setattr(PgKeyword, "_run", spy)
        assert kb.retrieve("mercury rivers fish", k=3, mode="keyword")
        alone, seen[:] = list(seen), []
        assert kb.retrieve("mercury rivers fish", k=3, mode="hybrid")
    assert 2 in alone and 1 not in alone
    assert 1 in seen and 2 not in seen


def test_copy_embedded_to_postgres_and_back(tmp_path, pg_url, docs, embedder, capsys):
    from helpers import CountingEmbedder

    src = tmp_path / "src"
    with KnowledgeBase(src, embedder=embedder) as kb:
        kb.add(docs)
        original = {d.source: d for d in kb.documents()}
        hits = [(p.source, p.text) for p in kb.retrieve("Operation Mercurio La Pampa", k=3)]
        _, vectors = kb.store.all_vectors(embedder.dim)
    assert main(["copy", str(src), pg_url]) == 0
    assert main(["copy", pg_url, str(tmp_path / "back")]) == 0
    assert "0 documents copied" in (capsys.readouterr(), main(["copy", str(src), pg_url]),
                                    capsys.readouterr().out)[2]
    counting = CountingEmbedder(embedder)
    for where in (pg_url, tmp_path / "back"):
        with KnowledgeBase(where, embedder=counting) as kb:
            assert {d.source: (d.content_hash, d.n_chunks, d.metadata) for d in kb.documents()} == \
                {s: (d.content_hash, d.n_chunks, d.metadata) for s, d in original.items()}
            assert [(p.source, p.text) for p in kb.retrieve("Operation Mercurio La Pampa", k=3)] == hits
            _, copied = kb.store.all_vectors(embedder.dim)
            assert np.array_equal(np.sort(copied, axis=0), np.sort(vectors, axis=0))
    assert counting.passages == 0  # copied, not re-embedded


WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[3])
    from helpers import HashEmbedder
    from peru_qa import KnowledgeBase
    with KnowledgeBase(sys.argv[1], embedder=HashEmbedder()) as kb:
        report = kb.add(sys.argv[2])
    sys.exit(0 if report.ok else 1)
""")


def test_concurrent_writers_from_two_processes(tmp_path, pg_url):
    """Two processes adding different documents to one new database at once: all land, none twice."""
    from pathlib import Path

    folders = []
    for w in ("a", "b"):
        folder = tmp_path / w
        folder.mkdir()
        for i in range(8):
            (folder / f"{w}{i}.md").write_text(
                f"# Note {w}{i}\n\n" + " ".join(f"Report {w}{i}-{j}: traders paid extortion fees." for j in range(30)),
                encoding="utf-8")
        folders.append(folder)
    here = str(Path(__file__).parent)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, pg_url, str(f), here]) for f in folders]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    from helpers import HashEmbedder

    with KnowledgeBase(pg_url, embedder=HashEmbedder()) as kb:
        docs = kb.documents()
        assert sorted(d.title for d in docs) == sorted(f"Note {w}{i}" for w in "ab" for i in range(8))
        assert kb.stats()["chunks"] == sum(d.n_chunks for d in docs)
        assert not kb.check(repair=False).problems


def test_server_restart_during_use(tmp_path, docs, embedder):
    """A search while the server is down is one clear error; after it returns, the same handle works again."""
    from peru_qa import pgserver

    folder = tmp_path / "own-pg"
    try:
        server = pgserver.start(folder)
    except PeruQAError as exc:
        pytest.skip(f"cannot start a second server: {exc}")
    try:
        with KnowledgeBase(server.url, embedder=embedder) as kb:
            kb.add(docs / "mining.txt")
            assert kb.retrieve("mercury", k=1)
            pgserver.stop(folder)
            with pytest.raises(PeruQAError, match="unavailable"):
                kb.retrieve("mercury", k=1)
            pgserver.start(folder, port=server.port)
            assert kb.retrieve("mercury", k=1)[0].source.endswith("mining.txt")
    finally:
        pgserver.stop(folder)


def test_eval_beir_set_in_a_database(tmp_path, pg_url, embedder):
    """`peru-qa eval DIR --index postgresql://…` indexes the corpus there once and scores as the embedded path."""
    from test_evaluation import write_beir

    from peru_qa.evaluation import evaluate

    folder = write_beir(tmp_path / "tiny")
    embedded = evaluate(folder, mode="hybrid", cache_dir=tmp_path / "cache", embedder=embedder)
    first = evaluate(folder, mode="hybrid", index=pg_url, embedder=embedder)
    again = evaluate(folder, mode="keyword", index=pg_url, embedder=embedder)
    assert not first.index.cached and again.index.cached
    assert first.index.documents == embedded.index.documents
    assert abs(first.metrics["ndcg@10"] - embedded.metrics["ndcg@10"]) < 1e-6
    assert again.metrics["recall@100"] == 1.0


def test_postgres_command_starts_and_stops_a_server(tmp_path, capsys):
    folder = str(tmp_path / "pg")
    assert main(["postgres", "start", "--dir", folder]) == 0
    try:
        url = capsys.readouterr().out.strip()
        assert url.startswith("postgresql://") and url.endswith("/peru_qa")
        with KnowledgeBase(url, create=True) as kb:
            assert kb.stats()["documents"] == 0
        assert main(["postgres", "status", "--dir", folder]) == 0
        assert capsys.readouterr().out.strip() == url
    finally:
        assert main(["postgres", "stop", "--dir", folder]) == 0
    assert main(["postgres", "status", "--dir", folder]) == 1


def test_search_keeps_answering_during_a_long_add(tmp_path, location):
    """While another process adds many documents, searches keep answering and never see half a document: every
    hit belongs to a document that is fully listed with its chunks."""
    import time
    from pathlib import Path

    from helpers import HashEmbedder

    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(30):
        (folder / f"m{i}.md").write_text(
            f"# Ledger {i}\n\n" + "\n\n".join(f"Entry {i}-{j}: the clan paid extortion fees in Trujillo. " * 6
                                               for j in range(25)), encoding="utf-8")
    with KnowledgeBase(location, embedder=HashEmbedder()) as kb:
        kb.add(folder / "m0.md")
    here = str(Path(__file__).parent)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, location, str(folder), here])
    searches, slowest, seen = 0, 0.0, set()
    try:
        with KnowledgeBase(location, embedder=HashEmbedder()) as kb:
            while writer.poll() is None:
                started = time.perf_counter()
                hits = kb.retrieve("extortion fees in Trujillo", k=50, mode="keyword")
                slowest = max(slowest, time.perf_counter() - started)
                searches += 1
                assert hits
                for doc_id in {h.doc_id for h in hits} - seen:
                    record = kb.store.document(doc_id)
                    assert record is not None, "a chunk of a document that is not listed yet"
                    chunks, _ = kb.store.document_chunks(doc_id)
                    assert len(chunks) == record.n_chunks, "half a document"
                    seen.add(doc_id)
    finally:
        assert writer.wait(timeout=300) == 0
    assert searches >= 5 and slowest < 5.0
    with KnowledgeBase(location, embedder=HashEmbedder()) as kb:
        assert kb.stats()["documents"] == 30


def test_a_page_added_from_one_machine_is_shown_on_another(tmp_path, pg_url, embedder, monkeypatch):
    """A shared database keeps the files it indexed: a chat server whose machine never had the PDF still shows
    the cited page as an image and offers the file; removing the document removes the file."""
    pytest.importorskip("pypdfium2")
    import psycopg
    from test_viewer import QUOTE, make_pdf

    from peru_qa.viewer import Viewer

    pdf = make_pdf(tmp_path / "ocelot.pdf", [["The Ocelot report"], ["Smuggling methods", QUOTE]])
    with KnowledgeBase(pg_url, embedder=embedder) as kb:
        assert kb.add(pdf).ok
    pdf.unlink()  # the adding machine's copy is gone; another machine opens the same database
    monkeypatch.setenv("PERU_QA_CACHE", str(tmp_path / "other-machine-cache"))
    with KnowledgeBase(pg_url, embedder=embedder) as kb:
        doc = kb.documents()[0]
        viewer = Viewer(kb)
        local = viewer.original(doc.id)
        assert local is not None and local.read_bytes()[:5] == b"%PDF-"
        assert str(local).startswith(str(tmp_path / "other-machine-cache"))
        view = viewer.view(doc.id, 2, [QUOTE])
        assert view.image is not None and view.boxes
        kb.remove(doc.id)
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM originals").fetchone()[0] == 0


def test_chat_upload_answer_and_citation_on_both_backends(location, docs, embedder):
    """The chat's service on either backend: the upload tab indexes files, a question is answered from them,
    and its citation opens in the viewer; a second chat server on the same index sees the upload."""
    from peru_qa.export import Turn
    from peru_qa.ui import ChatService

    with KnowledgeBase(location, embedder=embedder) as kb, KnowledgeBase(location, embedder=embedder) as other:
        service = ChatService(kb)
        try:
            outcomes = list(service.add_files([str(docs / "mining.txt"), str(docs / "vraem.md")]))
            assert outcomes[-1].done and sum("added" in line for line in outcomes[-1].lines) == 2
            answer = kb.ask("What did Operation Mercurio do?", llm=False)
            assert not answer.abstained and any(c.source.endswith("mining.txt") for c in answer.citations)
            view, _, message = service.open_citation([Turn(answer)], "0:1")
            assert view is not None and not message and view.file_name == "mining.txt"
            assert {d.title for d in other.documents()} == {d.title for d in kb.documents()}
        finally:
            service.close()


def test_rebuild_with_another_model_on_both_backends(filled, monkeypatch):
    """`rebuild --model M` re-embeds from the stored text into vectors of another size; the index then opens
    with M only (a database re-types its vector column and rebuilds its HNSW index)."""
    from helpers import HashEmbedder

    import peru_qa.kb as kbmod
    from peru_qa.errors import ModelMismatchError

    other = HashEmbedder()
    other.name = "other-model"
    monkeypatch.setattr(kbmod, "get_embedder", lambda name: other)
    with KnowledgeBase(filled) as kb:
        result = kb.rebuild(model="other-model")
        assert result["model"] == "other-model" and result["re_embedded"] == len(QA_DOCS)
        assert kb.stats()["dimension"] == other.dim == 64
        assert kb.retrieve("mercury rivers Madre de Dios", k=1)[0].source.endswith("mining.txt")
        assert kb.check(repair=False).ok
    monkeypatch.undo()
    with pytest.raises(ModelMismatchError):
        KnowledgeBase(filled, model="all-MiniLM-L6-v2")
    if filled.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(filled) as conn:
            typed = conn.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE "
                                 "attrelid = 'chunks'::regclass AND attname = 'embedding'").fetchone()[0]
            hnsw = conn.execute("SELECT count(*) FROM pg_indexes WHERE indexname = 'chunks_embedding_hnsw'"
                                ).fetchone()[0]
        assert typed == "vector(64)" and hnsw == 1


@pytest.mark.postgres
def test_local_server_gets_a_page_cache_sized_to_the_machine(pg_url, monkeypatch):
    """`peru-qa postgres start` (and the tests' server) sets shared_buffers to a quarter of the memory up to 2GB,
    not PostgreSQL's 128MB; PERU_QA_PG_SHARED_BUFFERS overrides it."""
    import psycopg

    from peru_qa import pgserver

    with psycopg.connect(pg_url) as conn:
        shown = conn.execute("SHOW shared_buffers").fetchone()[0]
    want = pgserver.shared_buffers()
    assert int(want.removesuffix("MB")) >= 128
    assert shown == (f"{int(want.removesuffix('MB')) // 1024}GB" if int(want.removesuffix("MB")) % 1024 == 0
                     else want)
    monkeypatch.setenv("PERU_QA_PG_SHARED_BUFFERS", "256MB")
    assert pgserver.shared_buffers() == "256MB"


def test_hnsw_build_settings_are_read_when_the_index_is_built(pg_url, docs, embedder, monkeypatch):
    """PERU_QA_PG_HNSW_M / _EF_CONSTRUCTION reach the HNSW index (large collections need a denser graph)."""
    import psycopg

    monkeypatch.setenv("PERU_QA_PG_HNSW_M", "24")
    monkeypatch.setenv("PERU_QA_PG_HNSW_EF_CONSTRUCTION", "100")
    with KnowledgeBase(pg_url, embedder=embedder) as kb:
        assert kb.add(docs).ok
    with psycopg.connect(pg_url) as conn:
        options = conn.execute("SELECT reloptions FROM pg_class WHERE relname = 'chunks_embedding_hnsw'").fetchone()[0]
    assert sorted(options) == ["ef_construction=100", "m=24"]
