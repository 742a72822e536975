"""Several processes on one index: writers queue on a lock, readers keep reading, nothing is lost."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from filelock import FileLock

from peru_qa import KnowledgeBase
from peru_qa.cli import main


def _docs(folder, prefix: str, n: int) -> None:
    folder.mkdir()
    for i in range(n):
        (folder / f"{prefix}{i}.md").write_text(
            f"# {prefix} note {i}\n\n" + " ".join(
                f"Field note {prefix}{i}q{j}: traders in district {j} reported extortion calls and paid fees."
                for j in range(40)), encoding="utf-8")


READER = textwrap.dedent("""
    import sys, time
    from peru_qa import KnowledgeBase
    kb = KnowledgeBase(sys.argv[1])
    end = time.time() + float(sys.argv[2])
    queries = errors = 0
    seen = 0
    while time.time() < end:
        try:
            hits = kb.retrieve("extortion calls to traders", k=5)
            seen = max(seen, kb.stats()["documents"])
            queries += 1
        except Exception as exc:
            errors += 1
            print("ERROR", type(exc).__name__, exc, file=sys.stderr)
        time.sleep(0.05)
    print(queries, errors, seen)
""")


@pytest.mark.slow
def test_two_writers_and_a_reader(tmp_path, embedder):
    index = tmp_path / "idx"
    seed = tmp_path / "seed.txt"
    seed.write_text("A first note so that the index exists before the writers start.")
    with KnowledgeBase(index) as kb:
        kb.add([seed])
    _docs(tmp_path / "a", "alpha", 5)
    _docs(tmp_path / "b", "bravo", 5)
    env = dict(os.environ, PERU_QA_EMBED_BATCH="4")
    reader = subprocess.Popen([sys.executable, "-c", READER, str(index), "25"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    writers = [subprocess.Popen([sys.executable, "-m", "peru_qa.cli", "add", str(tmp_path / name),
                                 "--index", str(index)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env) for name in ("a", "b")]
    for writer in writers:
        out, err = writer.communicate(timeout=300)
        assert writer.returncode == 0, err
        assert out.count("added: ") == 5
    out, err = reader.communicate(timeout=120)
    queries, errors, seen = map(int, out.split())
    assert errors == 0, err
    assert queries > 20
    with KnowledgeBase(index) as kb:
        assert kb.stats()["documents"] == 11
        for prefix in ("alpha", "bravo"):
            for i in range(5):
                hits = kb.retrieve(f"{prefix}{i}q7", k=1, mode="keyword")
                assert hits and hits[0].title == f"{prefix} note {i}"
        report = kb.check(repair=False)
        assert report.ok, report.problems


def test_waiting_writer_says_so_and_gives_up(tmp_path, embedder):
    index = tmp_path / "idx"
    with KnowledgeBase(index) as kb:
        (tmp_path / "first.txt").write_text("Prison extortion calls are traced by the police.")
        kb.add([tmp_path / "first.txt"])
        before = kb.stats()
    (tmp_path / "second.txt").write_text("Another note about illegal gold in Pataz.")
    env = dict(os.environ, PERU_QA_LOCK_TIMEOUT="2")
    with FileLock(str(index / ".lock")):
        run = subprocess.run([sys.executable, "-m", "peru_qa.cli", "add", str(tmp_path / "second.txt"),
                              "--index", str(index)], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 2
    assert f"waiting for another process writing to {index}" in run.stderr
    assert "locked by another peru-qa process" in run.stderr and "gave up after 2 s" in run.stderr
    assert "Traceback" not in run.stderr
    with KnowledgeBase(index) as kb:
        after = kb.stats()
        assert (after["documents"], after["chunks"]) == (before["documents"], before["chunks"])
        assert kb.check(repair=False).ok


def test_open_knowledge_base_sees_documents_added_by_another_process(tmp_path, embedder, capsys):
    index = tmp_path / "idx"
    (tmp_path / "one.txt").write_text("Coca growers in the Putumayo basin sell leaf to traffickers.")
    kb = KnowledgeBase(index)
    kb.add([tmp_path / "one.txt"])
    assert kb.retrieve("cocaine seizures at the port of Chimbote", k=1)[0].source.endswith("one.txt")
    (tmp_path / "two.txt").write_text("Police seized cocaine hidden in fish meal at the port of Chimbote.")
    run = subprocess.run([sys.executable, "-m", "peru_qa.cli", "add", str(tmp_path / "two.txt"),
                          "--index", str(index)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert kb.retrieve("cocaine seizures at the port of Chimbote", k=1)[0].source.endswith("two.txt")
    assert main(["remove", "two.txt", "--index", str(index)]) == 0
    assert kb.retrieve("cocaine seizures at the port of Chimbote", k=1)[0].source.endswith("one.txt")
    kb.close()
