"""Several processes on one index: writers queue on a lock, readers keep reading, nothing is lost."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

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
    kb.retrieve("warm-up", k=1)  # the model loads first: the window counts searches, not start-up (slow under load)
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


# Each worker creates, round after round, a new index together with the others: all of them wait for a "go" file
# so that they open the index at the same moment (the race is in creating the database, not in loading a model).
CREATOR = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[4])
    from helpers import HashEmbedder
    from peru_qa import KnowledgeBase
    base, worker, rounds = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    for r in range(rounds):
        (base / f"ready-{r}-{worker}").touch()
        while not (base / f"go-{r}").exists():
            time.sleep(0.002)
        try:
            with KnowledgeBase(base / f"ix-{r}", embedder=HashEmbedder()) as kb:
                report = kb.add([base / "docs" / f"{worker}-{r}.txt"])
            print(r, report.summary(), flush=True)
        except Exception as exc:
            print(r, "ERROR", type(exc).__name__, exc, flush=True)
""")


def test_writers_creating_a_new_index_together_all_land(tmp_path):
    """Regression: two `add` processes on an index folder that did not exist yet; one failed with "database is
    locked" (switching the new database to WAL) and its documents were lost."""
    workers, rounds = 4, 20
    (tmp_path / "docs").mkdir()
    for w in range(workers):
        for r in range(rounds):
            (tmp_path / "docs" / f"{w}-{r}.txt").write_text(
                f"Field report {w}-{r}: traders in district {w} paid extortion fees in round {r}.", encoding="utf-8")
    procs = [subprocess.Popen([sys.executable, "-c", CREATOR, str(tmp_path), str(w), str(rounds),
                               str(Path(__file__).parent)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for w in range(workers)]
    try:
        for r in range(rounds):
            deadline = time.monotonic() + 60
            while sum((tmp_path / f"ready-{r}-{w}").exists() for w in range(workers)) < workers:
                assert all(p.poll() is None for p in procs), "a writer process died"
                assert time.monotonic() < deadline, f"writers never got ready for round {r}"
                time.sleep(0.002)
            (tmp_path / f"go-{r}").touch()
        outputs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for (out, err), proc in zip(outputs, procs):
        assert proc.returncode == 0, err
        assert "ERROR" not in out, out + err
        assert out.count("1 added") == rounds, out + err
    from helpers import HashEmbedder

    for r in range(rounds):
        with KnowledgeBase(tmp_path / f"ix-{r}", embedder=HashEmbedder()) as kb:
            sources = sorted(Path(d.source).name for d in kb.documents())
            assert sources == sorted(f"{w}-{r}.txt" for w in range(workers)), f"round {r}: {sources}"
            assert kb.check(repair=False).ok


def test_counting_tokens_leaves_the_encoders_tokenizer_alone(embedder):
    """Chunking counts tokens (no padding, no truncation) while another thread may be encoding a batch: the
    model's own tokenizer must keep its padding and truncation, or that batch comes out ragged (a chat question
    failed so while an upload's words were being embedded) or longer than the model's window."""
    backend = embedder._model.tokenizer.backend_tokenizer
    embedder.encode(["one", "two words", "three words here", "and four words here", "five " * 5, "six " * 6])
    before = (backend.padding, backend.truncation)
    assert before[0] is not None and before[1] is not None
    embedder.count_tokens(["one", "two words"])
    embedder.token_spans("three words here")
    assert (backend.padding, backend.truncation) == before
