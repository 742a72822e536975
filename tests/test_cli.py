"""The CLI: one line per file, JSON output, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

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
