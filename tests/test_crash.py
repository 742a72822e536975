"""Crash safety: `peru-qa add` killed with SIGKILL at random moments never corrupts or loses anything."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from peru_qa import KnowledgeBase
from peru_qa.cli import main

TRIALS = 20
DOCS_PER_TRIAL = 4
TOPICS = ["coca", "extortion", "mining", "logging", "ports", "prisons", "laundering", "rondas"]


def _write_docs(folder: Path, trial: int) -> dict[str, str]:
    """Documents whose text carries a unique marker word, so each can be found by keyword."""
    folder.mkdir(parents=True)
    markers = {}
    for d in range(DOCS_PER_TRIAL):
        marker = f"zq{trial:02d}x{d}"
        topic = TOPICS[(trial + d) % len(TOPICS)]
        body = " ".join(
            f"Report {marker} paragraph {i} describes {topic} networks in region {i % 9}, the police response "
            f"and the figures published in year {2000 + i % 25}." for i in range(60))
        path = folder / f"doc{d}.md"
        path.write_text(f"# {topic.title()} report {marker}\n\n{body}\n", encoding="utf-8")
        markers[str(path.resolve())] = marker
    return markers


def _run_and_kill(folder: Path, index: Path, after_lines: int, delay: float) -> list[str]:
    """Start `peru-qa add`, wait for `after_lines` result lines (0: from the start), then `delay` s, SIGKILL."""
    env = dict(os.environ, PERU_QA_EMBED_BATCH="1")  # commit each document as soon as it is embedded
    proc = subprocess.Popen([sys.executable, "-m", "peru_qa.cli", "add", str(folder), "--index", str(index)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    lines: list[str] = []
    seen = threading.Condition()

    def read() -> None:
        for line in proc.stdout:
            with seen:
                lines.append(line.rstrip("\n"))
                seen.notify_all()
        with seen:
            seen.notify_all()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    with seen:
        seen.wait_for(lambda: len(lines) >= after_lines or proc.poll() is not None, timeout=120)
    time.sleep(delay)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    reader.join(timeout=5)
    return lines


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing(tmp_path, embedder, capsys):
    rng = random.Random(20261126)
    index = tmp_path / "idx"
    expected_present: set[str] = set()
    mid_batch = 0
    for trial in range(TRIALS):
        folder = tmp_path / f"trial{trial:02d}"
        markers = _write_docs(folder, trial)
        # A third of the kills at any moment (model loading, reading, embedding), a third between commits,
        # a third around the last commit (while the search files are rewritten).
        phase = trial % 3
        if phase == 0:
            lines = _run_and_kill(folder, index, 0, rng.uniform(0.3, 8.0))
        elif phase == 1:
            lines = _run_and_kill(folder, index, 1, rng.uniform(0.0, 0.6))
        else:
            lines = _run_and_kill(folder, index, DOCS_PER_TRIAL, rng.uniform(0.0, 0.15))
        completed = {line.split(": ", 1)[1].split(" (")[0] for line in lines if line.startswith("added: ")}
        completed = {str(Path(p).resolve()) for p in completed}

        assert main(["check", "--index", str(index)]) == 0, f"trial {trial}: check failed"
        assert main(["check", "--index", str(index), "--no-repair"]) == 0, f"trial {trial}: still damaged"
        capsys.readouterr()
        with KnowledgeBase(index) as kb:
            present = {d.source for d in kb.documents()}
            here = present & set(markers)
            assert completed <= here, f"trial {trial}: reported added but missing: {completed - here}"
            assert len(here - completed) <= 1, f"trial {trial}: more than the one in-flight document landed"
            assert expected_present <= present, f"trial {trial}: earlier documents lost"
            for source in here:
                hits = kb.retrieve(markers[source], k=3, mode="keyword")
                assert hits and hits[0].source == source
                doc = kb.store.document_by_source(source)
                dense = kb.retrieve("networks and police response", k=100, mode="dense",
                                    filters={"doc_id": doc.id})
                assert len(dense) == doc.n_chunks
            mid_batch += 0 < len(here) < DOCS_PER_TRIAL
            expected_present |= here
    assert mid_batch >= 3, f"only {mid_batch} trials were killed between two commits"
