"""The CLI: one line per file, JSON output, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from peru_qa.cli import main


@pytest.fixture
def docs(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.md").write_text("# Extorsión en Trujillo\n\nLos extorsionadores atacan a los transportistas.\n")
    (folder / "b.txt").write_text("Illegal gold mining in Pataz is linked to tunnel attacks.")
    return folder


def test_add_search_list_stats_remove(tmp_path, docs, capsys, embedder):
    index = str(tmp_path / "idx")
    assert main(["add", str(docs), "--index", index]) == 0
    out = capsys.readouterr().out.splitlines()
    assert sorted(out) == [f"added: {docs / 'a.md'} (1 chunks)", f"added: {docs / 'b.txt'} (1 chunks)"]

    assert main(["search", "gold mining tunnels", "--index", index, "--k", "2", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert {"text", "title", "source", "page", "score", "chunk_id", "doc_id"} <= set(hits[0])
    assert hits[0]["source"].endswith("b.txt")

    assert main(["list", "--index", index, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {d["title"] for d in listed} == {"Extorsión en Trujillo", "b"}

    assert main(["stats", "--index", index, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["documents"] == 2

    assert main(["remove", "b.txt", "--index", index]) == 0
    assert "removed: b" in capsys.readouterr().out
    assert main(["search", "gold mining tunnels", "--index", index, "--json"]) == 0
    assert all(not h["source"].endswith("b.txt") for h in json.loads(capsys.readouterr().out))

    assert main(["rebuild", "--index", index]) == 0
    assert main(["check", "--index", index]) == 0
    assert "ok: 1 documents" in capsys.readouterr().out


def test_failed_file_gives_nonzero_exit_and_one_line(tmp_path, docs, capsys, embedder):
    bad = tmp_path / "image.gif"
    bad.write_bytes(b"GIF89a")
    code = main(["add", str(docs / "a.md"), str(bad), "--index", str(tmp_path / "idx")])
    assert code == 1
    out = capsys.readouterr().out
    assert f"failed: {bad} (unsupported file type '.gif'" in out
    assert f"added: {docs / 'a.md'}" in out


def test_errors_are_one_line_without_traceback(tmp_path):
    from peru_qa import KnowledgeBase

    KnowledgeBase(tmp_path / "i").close()
    run = subprocess.run([sys.executable, "-m", "peru_qa.cli", "search", "  ", "--index", str(tmp_path / "i")],
                         capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr.strip() == "peru-qa: error: empty query: type a question or some keywords"
    run = subprocess.run([sys.executable, "-m", "peru_qa.cli", "list", "--index", str(tmp_path / "missing")],
                         capture_output=True, text=True)
    assert run.returncode == 2 and "Traceback" not in run.stderr and "no index at" in run.stderr
    run = subprocess.run([sys.executable, "-m", "peru_qa.cli", "search", "coca", "--index", str(tmp_path / "nope")],
                         capture_output=True, text=True)
    assert run.returncode == 2 and "no index at" in run.stderr and not (tmp_path / "nope").exists()


@pytest.fixture
def dated_index(tmp_path, embedder):
    """Three documents on the same topic, two of them dated by their metadata ("checked"), one undated."""
    from peru_qa import KnowledgeBase

    folder = tmp_path / "dated"
    folder.mkdir()
    texts = {"old.md": "# Coca in 2012\n\nCoca crops in the VRAEM covered many hectares in the old survey.\n",
             "new.md": "# Coca in 2024\n\nCoca crops in the VRAEM covered many hectares in the new survey.\n",
             "nodate.md": "# Coca undated\n\nCoca crops in the VRAEM covered many hectares in an undated survey.\n",
             "es.md": "# Coca en el VRAEM\n\nLos cultivos de coca en el VRAEM cubrían muchas hectáreas.\n"}
    for name, text in texts.items():
        (folder / name).write_text(text, encoding="utf-8")
    index = tmp_path / "idx"
    with KnowledgeBase(index, embedder=embedder) as kb:
        assert kb.add([folder]).ok
        ids = {Path(d.source).name: d.id for d in kb.documents()}
        with kb.store.transaction() as db:  # what a "Checked:" line in the document would have stored
            db.execute("UPDATE documents SET metadata=? WHERE id=?", ('{"checked": "2013-02"}', ids["old.md"]))
            db.execute("UPDATE documents SET metadata=? WHERE id=?", ('{"checked": "2024-11"}', ids["new.md"]))
            db.execute("UPDATE documents SET metadata=? WHERE id=?", ('{"checked": "2024-10"}', ids["es.md"]))
    return index, ids


def _sources(capsys) -> set[str]:
    return {Path(h["source"]).name for h in json.loads(capsys.readouterr().out)}


def test_search_filters_by_document_language_and_date(dated_index, capsys):
    index, ids = dated_index
    base = ["search", "coca crops VRAEM hectares", "--index", str(index), "--json", "-k", "10"]
    assert main(base) == 0 and _sources(capsys) == {"old.md", "new.md", "nodate.md", "es.md"}
    assert main(base + ["--from", "2024"]) == 0 and _sources(capsys) == {"new.md", "es.md"}
    assert main(base + ["--to", "2020-12"]) == 0 and _sources(capsys) == {"old.md"}
    assert main(base + ["--from", "2024-11-01", "--to", "2024-11-30"]) == 0 and _sources(capsys) == {"new.md"}
    assert main(base + ["--from", "2024", "--lang", "en"]) == 0 and _sources(capsys) == {"new.md"}
    # documents by file name or id, repeatable
    assert main(base + ["--doc", "nodate.md", "--doc", ids["old.md"]]) == 0
    assert _sources(capsys) == {"nodate.md", "old.md"}


def test_ask_says_which_filters_were_on(dated_index, capsys):
    index, ids = dated_index
    assert main(["ask", "How many hectares of coca were in the VRAEM?", "--index", str(index), "--doc", "old.md",
                 "--no-llm"]) == 0
    out = capsys.readouterr().out
    assert "(searched only document: Coca in 2012)" in out
    assert "old.md" in out and "new.md" not in out
    assert main(["ask", "How many hectares of coca were in the VRAEM?", "--index", str(index), "--from", "2024-11",
                 "--json", "--no-llm"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["filters"] == {"date_from": "2024-11", "date_field": "checked"}
    assert {Path(c["source"]).name for c in data["citations"]} <= {"new.md"}


def test_bad_filters_are_one_line_errors(dated_index):
    index, _ = dated_index
    run = subprocess.run([sys.executable, "-m", "peru_qa.cli", "search", "coca", "--index", str(index), "--from",
                          "last year"], capture_output=True, text=True)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "date from 'last year' is not a date: use YYYY, YYYY-MM or YYYY-MM-DD" in run.stderr


def test_filters_in_the_library_api(dated_index):
    from peru_qa import Filters, KnowledgeBase

    index, ids = dated_index
    with KnowledgeBase(index) as kb:
        hits = kb.retrieve("coca hectares", k=10, filters={"date_from": "2013", "date_to": "2013"})
        assert {h.doc_id for h in hits} == {ids["old.md"]}
        answer = kb.ask("How many hectares of coca were in the VRAEM?", llm=False,
                        filters=Filters(doc_ids=[ids["new.md"]]))
        assert answer.citations and {p.doc_id for p in answer.citations} == {ids["new.md"]}
    assert Filters(date_from="2024").date_matches("2024-11") and not Filters(date_to="2023").date_matches("2024-01")
    assert not Filters(date_from="2000").date_matches(None)  # an undated document is not in a date range
    assert Filters.coerce({"from": "", "language": "es"}) == Filters(languages=["es"])
