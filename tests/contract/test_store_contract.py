"""The storage contract: what every `IndexStore` backend does, written once (`StoreContract`) and run once per backend
(txtai's `Common` pattern): an index folder (`TestEmbeddedStore`) and a PostgreSQL database (`TestPostgresStore`).

Store-level behaviours (add, replace, remove, filters, chunk rows, companion vectors, reopen, bad input) are driven
through `peru_qa.backends.open_backend` with small synthetic vectors, so that they exercise the store alone; behaviours
about adding files go through `KnowledgeBase(location, embedder=embedder)` with the real model. A behaviour that only
one backend has (FAISS files, a manifest, a server to restart) stays out of the base class."""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:  # helpers.py and conftest.py live one folder up
    sys.path.insert(0, str(TESTS))

from helpers import CountingEmbedder, HashEmbedder, make_pdf  # noqa: E402

from peru_qa import KnowledgeBase, ModelMismatchError  # noqa: E402
from peru_qa.backends import IndexStore, open_backend  # noqa: E402
from peru_qa.errors import EmptyQueryError, PeruQAError  # noqa: E402
from peru_qa.records import ChunkRow, DocumentRecord, Filters  # noqa: E402

#: Dimensions of the synthetic vectors written at the store level (small: the store must not care).
DIM = 8
COMPANION_DIM = 4


# --- synthetic documents for store-level tests -------------------------------------------------------------------

@dataclass
class Doc:
    """One document as `IndexStore.write_document` takes it."""

    record: DocumentRecord
    pages: list[tuple[int, str, list, dict]]
    chunks: list[ChunkRow]
    vectors: np.ndarray
    companion: np.ndarray | None = None

    def write(self, store: IndexStore, replace_ids: tuple[str, ...] = ()) -> None:
        store.write_document(self.record, self.pages, self.chunks, self.vectors, replace_ids=replace_ids,
                             companion=self.companion)


def _unit(rows: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def make_doc(name: str, *, version: int = 1, language: str = "en", n_chunks: int = 3, paged: bool = False,
             metadata: dict | None = None, doc_id: str | None = None, companion: bool = False,
             page_metadata: dict | None = None) -> Doc:
    """A document whose chunks are slices of its stored page texts (offsets point into them, as ingest writes)."""
    word = {"en": "report", "es": "informe"}.get(language, "note")
    n_pages = 2 if paged else 1
    texts = {p: " ".join(f"{word} {name} v{version} page {p} part {i}." for i in range(n_chunks))
             for p in range(1, n_pages + 1)}
    pages = [(p, text, [[0, f"{name} section {p}"]], dict(page_metadata or {}) if p == n_pages else {})
             for p, text in texts.items()]
    chunks: list[ChunkRow] = []
    for i in range(n_chunks):
        page = 1 + (i % n_pages)
        piece = f"{word} {name} v{version} page {page} part {i}."
        start = texts[page].index(piece)
        chunks.append(ChunkRow(page, f"{name} section {page}", start, start + len(piece), piece,
                               [word, name, f"v{version}", "part", str(i)]))
    record = DocumentRecord(
        id=doc_id or f"id-{name}", source=f"/docs/{name}.md", title=f"{name.title()} report", language=language,
        content_hash=f"hash-{name}-{version}", paged=paged, n_pages=n_pages, n_chunks=n_chunks, file_size=100 + version,
        file_mtime=1_700_000_000.5 + version, added_at="2026-12-01T00:00:00+00:00", notes="", metadata=metadata or {})
    seed = sum(map(ord, name)) * 10 + version
    return Doc(record, pages, chunks, _unit(n_chunks, DIM, seed),
               _unit(n_chunks, COMPANION_DIM, seed + 5) if companion else None)


def prepare(store: IndexStore) -> None:
    """Record the model facts the first write of a real index records (`ingest.record_model`)."""
    with store.transaction():
        store.set_meta("model", "contract-model")
        store.set_meta("dimension", str(DIM))
        store.set_meta("companion", "contract-companion")
        store.set_meta("companion_dimension", str(COMPANION_DIM))


def ids_by_doc(store: IndexStore) -> dict[str, list[int]]:
    """Each document's chunk ids, in id order (what `chunk_ids_where` must agree with)."""
    rows = store.chunk_rows([int(i) for i in store.chunk_ids()])
    out: dict[str, list[int]] = {}
    for cid in sorted(rows):
        out.setdefault(rows[cid]["doc_id"], []).append(int(cid))
    return out


def snapshot(store: IndexStore) -> dict:
    """Everything a reader can see of a store (to show that a refused write changed none of it)."""
    ids, vectors = store.all_vectors(DIM)
    term_ids, terms = store.all_terms()
    return {"documents": store.documents(), "counts": store.counts(), "ids": ids.tolist(),
            "vectors": vectors.tolist(), "terms": (term_ids.tolist(), terms), "generation": store.generation,
            "pages": {d.id: store.pages(d.id) for d in store.documents()},
            "companion": store.companion_ids().tolist(), "problems": store.integrity_problems()}


WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[3])
    from helpers import HashEmbedder
    from peru_qa import KnowledgeBase
    with KnowledgeBase(sys.argv[1], embedder=HashEmbedder()) as kb:
        report = kb.add(sys.argv[2])
    sys.exit(0 if report.ok else 1)
""")

EN = "Coca cultivation in the VRAEM expanded while eradication teams focused on the Huallaga valley."
ES = "Los transportistas de Lima pagan cupos diarios a bandas de extorsionadores que amenazan a los choferes."
FILLER = [
    "The museum opened a new exhibition of colonial paintings in Cusco last spring.",
    "El festival de cine de Lima presentó películas de jóvenes directores peruanos.",
    "Potato varieties from the Andes are stored in a national seed bank.",
]

#: Malformed writes: (document change, what the error must name). Each is refused whole.
BAD_INPUT = {
    "wrong dimension": r"(?i)dimension",
    "fewer vectors than chunks": r"(?i)vector",
    "NaN vector": r"(?i)nan|finite",
    "duplicate source": r"(?i)source",
    "missing title": r"(?i)title",
    "metadata not JSON": r"(?i)json",
}


def _bad(case: str, good: Doc) -> Doc:
    doc = make_doc("intruder")
    if case == "wrong dimension":
        return replace(doc, vectors=_unit(len(doc.chunks), DIM + 3, 1))
    if case == "fewer vectors than chunks":
        return replace(doc, vectors=doc.vectors[:1])
    if case == "NaN vector":
        vectors = doc.vectors.copy()
        vectors[1, :] = np.nan
        return replace(doc, vectors=vectors)
    if case == "duplicate source":  # another document's source, without replacing it
        return replace(doc, record=replace(doc.record, source=good.record.source))
    if case == "missing title":
        return replace(doc, record=replace(doc.record, title=None))
    if case == "metadata not JSON":
        return replace(doc, record=replace(doc.record, metadata={"checked": object()}))
    raise AssertionError(case)


def _wait_for(outcomes: queue.Queue, kind: str, seen: list, timeout: float = 120.0):
    """The next outcome of `kind` a searching thread reports (every outcome is kept in `seen`)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {kind!r} outcome within {timeout:.0f} s; seen {[k for k, _ in seen]}")
        try:
            got = outcomes.get(timeout=left)
        except queue.Empty:
            continue
        seen.append(got)
        if got[0] == kind:
            return got[1]


class StoreContract:
    """What every storage backend does. Subclasses give `location` (a new, empty index) and may give
    `restartable` (an index on a server this test may stop and start)."""

    @pytest.fixture
    def location(self) -> str:
        raise NotImplementedError

    @pytest.fixture
    def store(self, location):
        store, _ = open_backend(location)
        prepare(store)
        yield store
        store.close()

    @pytest.fixture
    def kb(self, location, embedder):
        with KnowledgeBase(location, embedder=embedder) as knowledge_base:
            yield knowledge_base

    @pytest.fixture
    def corpus(self, tmp_path) -> Path:
        folder = tmp_path / "docs"
        folder.mkdir()
        (folder / "coca.md").write_text(f"# Coca report\n\n{EN}\n", encoding="utf-8")
        (folder / "extorsion.txt").write_text(ES, encoding="utf-8")
        for i, text in enumerate(FILLER):
            (folder / f"filler{i}.txt").write_text(text, encoding="utf-8")
        return folder

    # --- add ----------------------------------------------------------------------------------------------------
    def test_write_document_is_listed_found_and_read_back(self, store):
        doc = make_doc("alpha", metadata={"checked": "2024-11"}, page_metadata={"ocr": True, "confidence": 91.5},
                       paged=True)
        before = store.generation
        doc.write(store)
        assert store.generation > before
        assert store.documents() == [doc.record]
        assert store.counts() == (1, 3)
        assert store.document(doc.record.id) == doc.record
        assert store.document_by_source(doc.record.source) == doc.record
        assert store.document_by_hash(doc.record.content_hash) == doc.record
        assert store.document("nope") is None and store.document_by_source("/nowhere.md") is None
        assert store.document_by_hash("nope") is None
        assert store.pages(doc.record.id) == [(n, text, [tuple(s) for s in sections], meta)
                                              for n, text, sections, meta in doc.pages]
        assert store.page_text(doc.record.id, 2) == doc.pages[1][1] and store.page_text(doc.record.id, 9) == ""
        chunks, vectors = store.document_chunks(doc.record.id)
        assert chunks == doc.chunks
        assert np.array_equal(vectors, doc.vectors)  # bit for bit: a copy between backends keeps its vectors
        ids, matrix = store.all_vectors(DIM)
        assert ids.dtype == np.int64 and list(ids) == sorted(ids) and np.array_equal(matrix, doc.vectors)
        assert list(store.chunk_ids()) == list(ids)
        term_ids, terms = store.all_terms()
        assert list(term_ids) == list(ids) and terms == [c.terms for c in doc.chunks]
        assert store.integrity_problems() == ([], 0)

    def test_documents_are_listed_by_title_then_source(self, store):
        docs = [make_doc("zeta"), make_doc("Beta"), make_doc("alpha")]
        for doc in docs:
            doc.write(store)
        assert [d.title for d in store.documents()] == ["Alpha report", "Beta report", "Zeta report"]
        assert store.counts() == (3, 9)

    # --- replace ------------------------------------------------------------------------------------------------
    def test_replace_ids_swaps_the_old_version_out_in_one_write(self, store):
        old, other = make_doc("alpha", n_chunks=3), make_doc("beta")
        old.write(store)
        other.write(store)
        old_ids = ids_by_doc(store)[old.record.id]
        new = make_doc("alpha", version=2, n_chunks=2)  # same source and id, new content (what ingest writes)
        new.write(store, replace_ids=(old.record.id,))
        assert store.documents() == [new.record, other.record]
        assert store.counts() == (2, 5)
        assert store.document_by_hash(old.record.content_hash) is None
        assert store.document_by_source(new.record.source) == new.record
        assert not set(old_ids) & set(store.chunk_ids().tolist())
        assert store.chunk_rows(old_ids) == {}
        chunks, vectors = store.document_chunks(new.record.id)
        assert chunks == new.chunks and np.array_equal(vectors, new.vectors)
        assert store.pages(new.record.id)[0][1] == new.pages[0][1]
        _, terms = store.all_terms()
        assert not any("v1" in t and "alpha" in t for t in terms)
        # replaced under another id (a copy from another index keeps the source index's id)
        again = make_doc("alpha", version=3, doc_id="id-from-elsewhere")
        again.write(store, replace_ids=(new.record.id,))
        assert [d.id for d in store.documents()] == ["id-from-elsewhere", other.record.id]
        assert store.document(new.record.id) is None and store.pages(new.record.id) == []
        assert store.integrity_problems() == ([], 0)

    # --- remove -------------------------------------------------------------------------------------------------
    def test_delete_documents_forgets_them_everywhere(self, store):
        gone, kept = make_doc("alpha", language="es", companion=False), make_doc("beta", companion=True)
        gone.write(store)
        kept.write(store)
        by_doc = ids_by_doc(store)
        gone_ids, kept_ids = by_doc[gone.record.id], by_doc[kept.record.id]
        before = store.generation
        store.delete_documents([gone.record.id])
        assert store.generation > before
        assert store.documents() == [kept.record] and store.counts() == (1, 3)
        assert store.document(gone.record.id) is None and store.document_by_source(gone.record.source) is None
        assert store.document_by_hash(gone.record.content_hash) is None
        assert store.pages(gone.record.id) == [] and store.page_text(gone.record.id, 1) == ""
        assert store.chunk_ids().tolist() == kept_ids
        assert store.chunk_rows(gone_ids + kept_ids).keys() == set(kept_ids)
        assert len(store.chunk_ids_where(Filters(doc_ids=[gone.record.id]))) == 0
        assert len(store.chunk_ids_where(Filters(languages=["es"]))) == 0
        assert store.chunk_languages(np.asarray(gone_ids + kept_ids[:1])) == [""] * len(gone_ids) + ["en"]
        assert set(store.chunk_sources()) == set(kept_ids)
        chunks, vectors = store.document_chunks(gone.record.id)
        assert chunks == [] and len(vectors) == 0
        term_ids, _ = store.all_terms()
        assert term_ids.tolist() == kept_ids
        assert store.integrity_problems() == ([], 0)
        store.delete_documents([kept.record.id])
        assert store.documents() == [] and store.counts() == (0, 0) and len(store.companion_ids()) == 0

    # --- filters ------------------------------------------------------------------------------------------------
    def test_chunk_ids_where_filters_documents_languages_and_dates(self, store):
        a = make_doc("alpha", metadata={"checked": "2024-11"})
        b = make_doc("beta", language="es", metadata={"checked": "2025-03"})
        c = make_doc("gamma", metadata={"reviewed": "2023-05"})
        for doc in (a, b, c):
            doc.write(store)
        ids = ids_by_doc(store)
        A, B, C = (ids[d.record.id] for d in (a, b, c))

        def where(**kw) -> list[int]:
            found = store.chunk_ids_where(Filters(**kw))
            assert isinstance(found, np.ndarray) and found.dtype == np.int64
            return sorted(found.tolist())

        assert where() == sorted(A + B + C)
        assert where(doc_ids=[a.record.id]) == A
        assert where(doc_ids=[a.record.id, c.record.id]) == sorted(A + C)
        assert where(doc_ids=["no-such-document"]) == []
        assert where(languages=["es"]) == B and where(languages=["en"]) == sorted(A + C)
        assert where(languages=["en", "es"]) == sorted(A + B + C) and where(languages=["fr"]) == []
        assert where(date_from="2024", date_to="2024") == A
        assert where(date_from="2025-01") == B
        assert where(date_to="2024-12-31") == A  # compared at the common precision (month)
        assert where(date_from="2024-11-15", date_to="2024-11-15") == A
        assert where(date_from="2026") == []
        assert where(languages=["en"], date_from="2024") == A  # gamma has no "checked": left out
        assert where(doc_ids=[b.record.id], languages=["en"]) == []
        assert where(date_from="2023", date_field="reviewed") == C

    # --- chunk rows ---------------------------------------------------------------------------------------------
    def test_chunk_rows_carry_what_a_passage_shows(self, store):
        pdf = make_doc("alpha", paged=True, n_chunks=4, metadata={"checked": "2024-11"},
                       page_metadata={"ocr": True, "confidence": 88.0})
        note = make_doc("beta", language="es")
        pdf.write(store)
        note.write(store)
        ids = ids_by_doc(store)
        wanted = ids[pdf.record.id] + ids[note.record.id]
        rows = store.chunk_rows(wanted + [10**9])
        assert set(rows) == set(wanted)  # an unknown id is simply absent
        for doc in (pdf, note):
            for cid, chunk in zip(ids[doc.record.id], doc.chunks):
                row = rows[cid]
                assert (row["text"], row["doc_id"], row["title"], row["source"], row["language"]) == (
                    chunk.text, doc.record.id, doc.record.title, doc.record.source, doc.record.language)
                assert (row["page"], row["section"], row["start"], row["end"]) == (
                    chunk.page, chunk.section, chunk.start, chunk.end)
                assert bool(row["paged"]) is doc.record.paged
                assert json.loads(row["doc_metadata"]) == doc.record.metadata
                assert json.loads(row["page_metadata"]) == doc.pages[chunk.page - 1][3]
                assert store.page_text(doc.record.id, row["page"])[row["start"]:row["end"]] == row["text"]
        assert any(json.loads(rows[c]["page_metadata"]) == {"ocr": True, "confidence": 88.0}
                   for c in ids[pdf.record.id])
        assert store.chunk_rows([]) == {}
        probe = np.asarray([ids[note.record.id][0], 10**9, ids[pdf.record.id][0]], dtype=np.int64)
        assert store.chunk_languages(probe) == ["es", "", "en"]
        assert store.chunk_languages(np.zeros(0, np.int64)) == []
        sources = store.chunk_sources()
        assert list(sources) == sorted(wanted)
        assert {sources[c] for c in ids[pdf.record.id]} == {pdf.record.source}

    # --- companion vectors --------------------------------------------------------------------------------------
    def test_companion_vectors_are_written_read_and_filled_in(self, store):
        en = make_doc("alpha", companion=True)
        es = make_doc("beta", language="es")
        en.write(store)
        es.write(store)
        ids = ids_by_doc(store)
        assert store.companion_ids().tolist() == ids[en.record.id]
        got_ids, matrix = store.companion_vectors(None, COMPANION_DIM)
        assert got_ids.tolist() == ids[en.record.id] and np.array_equal(matrix, en.companion)
        some = [ids[en.record.id][2], ids[es.record.id][0], ids[en.record.id][0]]
        got_ids, matrix = store.companion_vectors(np.asarray(some), COMPANION_DIM)
        order = np.argsort(got_ids)
        assert sorted(got_ids.tolist()) == [ids[en.record.id][0], ids[en.record.id][2]]  # es holds none
        assert np.array_equal(matrix[order], en.companion[[0, 2]])
        assert store.chunks_lacking_companion("en") == []
        late = make_doc("gamma")  # an English document written before the index had a companion
        late.write(store)
        late_ids = ids_by_doc(store)[late.record.id]
        lacking = store.chunks_lacking_companion("en")
        assert [tuple(x) for x in lacking] == [(cid, late.record.title, c.section, c.text)
                                               for cid, c in zip(late_ids, late.chunks)]
        assert [x[0] for x in store.chunks_lacking_companion("es")] == ids[es.record.id]
        filled = _unit(len(late_ids), COMPANION_DIM, 77)
        before = store.generation
        store.set_companion(np.asarray(late_ids), filled)
        assert store.generation > before
        assert store.chunks_lacking_companion("en") == []
        got_ids, matrix = store.companion_vectors(np.asarray(late_ids), COMPANION_DIM)
        assert got_ids.tolist() == late_ids and np.array_equal(matrix, filled)
        assert store.companion_ids().tolist() == sorted(ids[en.record.id] + late_ids)

    # --- reopen -------------------------------------------------------------------------------------------------
    def test_reopen_keeps_documents_chunk_ids_vectors_and_meta(self, location, store):
        docs = [make_doc("alpha", companion=True, metadata={"checked": "2025-01"}), make_doc("beta", language="es")]
        for doc in docs:
            doc.write(store)
        store.set_meta("note", "kept")
        before = snapshot(store)
        meta = {k: store.meta(k) for k in ("model", "dimension", "companion", "companion_dimension", "note")}
        store.close()
        again, indexes = open_backend(location, create=False)
        try:
            assert snapshot(again) == before
            assert {k: again.meta(k) for k in meta} == meta
            assert again.meta("absent", "fallback") == "fallback"
            for doc in docs:
                chunks, vectors = again.document_chunks(doc.record.id)
                assert chunks == doc.chunks and np.array_equal(vectors, doc.vectors)
            # its search indexes open on what was stored: each stored vector finds its own chunk first
            derived = indexes(lambda: {"model": "contract-model", "dimension": DIM}).current()
            ids, vectors = again.all_vectors(DIM)
            assert len(derived.vectors) == len(ids)
            for cid, vector in zip(ids, vectors):
                assert int(derived.vectors.search(vector, 1)[0][0]) == int(cid)
        finally:
            again.close()

    def test_open_without_create_refuses_a_location_without_an_index(self, location):
        with pytest.raises(PeruQAError, match="no .*index"):
            open_backend(location, create=False)

    # --- concurrent writers -------------------------------------------------------------------------------------
    def test_concurrent_writers_from_two_processes(self, tmp_path, location):
        """Two processes adding different files to one new index at once: all land, none twice."""
        folders = []
        for w in ("a", "b"):
            folder = tmp_path / w
            folder.mkdir()
            for i in range(8):
                body = " ".join(f"Report {w}{i}-{j}: traders paid extortion fees." for j in range(30))
                (folder / f"{w}{i}.md").write_text(f"# Note {w}{i}\n\n{body}", encoding="utf-8")
            folders.append(folder)
        procs = [subprocess.Popen([sys.executable, "-c", WRITER, location, str(f), str(TESTS)]) for f in folders]
        assert [p.wait(timeout=300) for p in procs] == [0, 0]
        with KnowledgeBase(location, embedder=HashEmbedder()) as kb:
            docs = kb.documents()
            assert sorted(d.title for d in docs) == sorted(f"Note {w}{i}" for w in "ab" for i in range(8))
            assert kb.stats()["chunks"] == sum(d.n_chunks for d in docs)
            assert len({d.source for d in docs}) == 16
            assert not kb.check(repair=False).problems
            for w, i in (("a", 3), ("b", 5)):
                assert kb.retrieve(f"Report {w}{i}-7", k=1, mode="keyword")[0].title == f"Note {w}{i}"

    # --- bad input ----------------------------------------------------------------------------------------------
    @pytest.mark.parametrize("case", sorted(BAD_INPUT))
    def test_bad_input_is_refused_clearly_and_nothing_stored_is_lost(self, store, case):
        good = make_doc("alpha", companion=True)
        good.write(store)
        make_doc("beta", language="es").write(store)
        before = snapshot(store)
        with pytest.raises(Exception) as refused:
            _bad(case, good).write(store)
        message = str(refused.value).strip().splitlines()[0] if str(refused.value).strip() else ""
        assert snapshot(store) == before, "a refused write changed what was stored"
        assert re.search(BAD_INPUT[case], message), f"unclear error for {case}: {type(refused.value).__name__}: " \
                                                    f"{message}"
        # still writable afterwards
        make_doc("gamma").write(store)
        assert store.counts() == (3, 9) and store.integrity_problems() == ([], 0)

    # --- the index going away and coming back mid-search ------------------------------------------------------
    def test_searching_while_the_index_is_reopened_and_written(self, location, tmp_path):
        """One handle keeps searching while another opens the index, adds a document and closes, three times: the
        searches never fail and end up seeing every document."""
        folder = tmp_path / "notes"
        folder.mkdir()
        (folder / "n0.md").write_text("# Note 0\n\nThe clan paid extortion fees in Trujillo.", encoding="utf-8")
        with KnowledgeBase(location, embedder=HashEmbedder()) as kb:
            assert kb.add(folder / "n0.md").ok
            outcomes: queue.Queue = queue.Queue()
            stop = threading.Event()

            def search() -> None:
                while not stop.is_set():
                    try:
                        hits = kb.retrieve("extortion fees Trujillo", k=10, mode="hybrid")
                        outcomes.put(("ok", {h.title for h in hits}))
                    except Exception as exc:  # noqa: BLE001 - reported to the test
                        outcomes.put(("error", exc))

            thread = threading.Thread(target=search, daemon=True)
            thread.start()
            seen: list = []
            try:
                _wait_for(outcomes, "ok", seen)
                for n in range(1, 4):
                    path = folder / f"n{n}.md"
                    path.write_text(f"# Note {n}\n\nThe clan paid extortion fees in Trujillo, ledger {n}.",
                                    encoding="utf-8")
                    with KnowledgeBase(location, embedder=HashEmbedder()) as other:
                        assert other.add(path).ok
                want = {f"Note {n}" for n in range(4)}
                while want - _wait_for(outcomes, "ok", seen):
                    pass
            finally:
                stop.set()
                thread.join(timeout=60)
            errors = [v for k, v in seen if k == "error"]
            assert not errors, errors[0]

    @pytest.fixture
    def restartable(self):
        """(location, stop, start) of an index on a server this test may stop and start."""
        pytest.skip("this backend has no server to restart (see test_searching_while_the_index_is_reopened_...)")

    def test_server_restart_mid_search(self, restartable, embedder, monkeypatch, tmp_path):
        """Searches running while the server stops fail with one clear error (no stray KeyError, no raw driver
        error); once it is back the same handle answers again."""
        location, stop_server, start_server = restartable
        (tmp_path / "mining.txt").write_text(
            "Illegal gold miners in Madre de Dios use mercury, and the mercury poisons the rivers and the fish.",
            encoding="utf-8")
        monkeypatch.setenv("PERU_QA_PG_TIMEOUT", "3")
        with KnowledgeBase(location, embedder=embedder) as kb:
            assert kb.add(tmp_path / "mining.txt").ok
            outcomes: queue.Queue = queue.Queue()
            stop = threading.Event()

            def search() -> None:
                while not stop.is_set():
                    for mode in ("hybrid", "dense", "keyword"):
                        try:
                            outcomes.put(("ok", kb.retrieve("mercury poisons the rivers", k=1, mode=mode)[0].source))
                        except Exception as exc:  # noqa: BLE001 - reported to the test
                            outcomes.put(("error", exc))

            thread = threading.Thread(target=search, daemon=True)
            thread.start()
            seen: list = []
            try:
                _wait_for(outcomes, "ok", seen)
                stop_server()
                _wait_for(outcomes, "error", seen)
                start_server()
                assert _wait_for(outcomes, "ok", seen).endswith("mining.txt")
                after = len(seen)
                for _ in range(3):  # and keeps answering in every mode
                    assert _wait_for(outcomes, "ok", seen).endswith("mining.txt")
            finally:
                stop.set()
                thread.join(timeout=60)
            errors = [v for k, v in seen if k == "error"]
            assert errors and all(isinstance(e, PeruQAError) and "unavailable" in str(e) for e in errors), \
                [f"{type(e).__name__}: {e}" for e in errors]
            assert all(k == "ok" for k, _ in seen[after:after + 3])
            assert kb.retrieve("mercury", k=1)[0].source.endswith("mining.txt")

    # --- adding files through KnowledgeBase (moved from tests/test_store.py) -------------------------------------
    def test_add_reports_each_file_and_search_finds_it(self, kb, corpus):
        report = kb.add([corpus])
        assert report.ok and report.count("added") == 5
        hits = kb.retrieve("coca eradication in the VRAEM", k=3)
        assert hits[0].title == "Coca report" and "VRAEM" in hits[0].text
        stats = kb.stats()
        assert stats["documents"] == 5 and stats["model"] == "multilingual-e5-small" and stats["dimension"] == 384

    def test_readd_unchanged_embeds_nothing_and_modify_replaces(self, location, embedder, corpus):
        counting = CountingEmbedder(embedder)
        with KnowledgeBase(location, embedder=counting) as kb:
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

    def test_same_content_under_two_names_is_unchanged(self, kb, tmp_path):
        a = tmp_path / "a.txt"
        a.write_text(EN)
        b = tmp_path / "b.txt"
        b.write_text(EN)
        report = kb.add([a, b])
        assert [r.status for r in report.results] == ["added", "unchanged"]
        assert "same content as 'a.txt'" in report.results[1].reason
        assert kb.stats()["documents"] == 1

    def test_remove_takes_document_out_of_dense_and_keyword(self, kb, corpus):
        kb.add([corpus])
        doc = kb.find_document("extorsion.txt")
        kb.remove(doc.id)
        for mode in ("dense", "keyword", "hybrid"):
            assert all(h.doc_id != doc.id for h in kb.retrieve("cupos extorsionadores choferes", k=5, mode=mode))
        assert kb.stats()["documents"] == 4

    def test_reopen_gives_same_results(self, location, embedder, corpus):
        with KnowledgeBase(location, embedder=embedder) as kb:
            kb.add([corpus])
            before = [(h.chunk_id, round(h.score, 5)) for h in kb.retrieve("extortion of bus drivers", k=5)]
        with KnowledgeBase(location, embedder=embedder) as kb:
            after = [(h.chunk_id, round(h.score, 5)) for h in kb.retrieve("extortion of bus drivers", k=5)]
        assert before == after

    def test_model_mismatch_is_a_clear_error(self, location, embedder, corpus):
        with KnowledgeBase(location, embedder=embedder) as kb:
            kb.add([corpus / "coca.md"])
        with pytest.raises(ModelMismatchError, match="peru-qa rebuild"):
            KnowledgeBase(location, model="intfloat/multilingual-e5-small")

    def test_failed_write_leaves_last_good_state(self, kb, corpus, monkeypatch):
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

    def test_empty_query_is_an_error(self, kb):
        with pytest.raises(EmptyQueryError):
            kb.retrieve("   ")

    def test_filters_by_language_and_document(self, kb, corpus):
        kb.add([corpus])
        es = kb.retrieve("coca extortion", k=10, filters={"language": "es"})
        assert es and all(h.language == "es" for h in es)
        doc = kb.find_document("coca.md")
        only = kb.retrieve("anything about festivals", k=10, filters={"doc_id": doc.id})
        assert only and all(h.doc_id == doc.id for h in only)

    def test_pdf_passages_carry_page_numbers(self, kb, tmp_path):
        pdf = make_pdf(tmp_path / "r.pdf", ["Intro page about many things.",
                                             "The port of Paita ships frozen fish and, police say, cocaine."],
                       title="Ports")
        kb.add([pdf])
        hit = kb.retrieve("Paita cocaine shipments", k=1)[0]
        assert hit.page == 2 and hit.title == "Ports"
        assert kb.page_text(hit.doc_id, hit.page)[hit.start : hit.end] == hit.text

    def test_rebuild_with_another_model_reembeds_from_stored_text(self, location, corpus, embedder, monkeypatch):
        """Re-embedding needs no original files: chunks are re-cut from stored page text."""
        with KnowledgeBase(location, embedder=embedder) as kb:
            kb.add([corpus])
        for f in corpus.iterdir():
            f.unlink()
        import peru_qa.kb as kbmod

        renamed = CountingEmbedder(embedder)
        renamed.name = "other-model"
        monkeypatch.setattr(kbmod, "get_embedder", lambda name: renamed)
        with KnowledgeBase(location) as kb:
            result = kb.rebuild(model="other-model")
            assert result["model"] == "other-model" and result["re_embedded"] >= 5
            assert kb.retrieve("bus drivers extortion fees", k=1)[0].language == "es"
            assert kb.check().ok
        with pytest.raises(ModelMismatchError):
            KnowledgeBase(location, model="all-MiniLM-L6-v2")

    def test_rank_and_chunk_sources_give_evaluation_the_ranking_retrieve_uses(self, kb, corpus):
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

    def test_check_reports_a_chunk_count_that_does_not_match_and_does_not_hide_it(self, kb, corpus):
        kb.add([corpus])
        assert kb.check(repair=False).ok
        with kb.store.transaction() as db:
            db.execute("UPDATE documents SET n_chunks = n_chunks + 1 WHERE id = (SELECT MIN(id) FROM documents)")
        report = kb.check()
        assert not report.ok
        assert report.problems == ["1 documents have a chunk count that does not match their chunks"]


class TestEmbeddedStore(StoreContract):
    """An index folder: SQLite + FAISS + bm25s files."""

    @pytest.fixture
    def location(self, tmp_path) -> str:
        return str(tmp_path / "index")


@pytest.mark.postgres
class TestPostgresStore(StoreContract):
    """A PostgreSQL + pgvector database (a fresh one on the session's throwaway server)."""

    @pytest.fixture
    def location(self, pg_url) -> str:
        return pg_url

    @pytest.fixture
    def restartable(self, tmp_path):
        """A server of this test's own (the session's is shared), stopped and started on its port."""
        from peru_qa import pgserver

        folder = tmp_path / "own-pg"
        try:
            server = pgserver.start(folder)
        except PeruQAError as exc:
            pytest.skip(f"cannot start a second server: {exc}")
        try:
            yield server.url, lambda: pgserver.stop(folder), lambda: pgserver.start(folder, port=server.port)
        finally:
            pgserver.stop(folder)
