"""Shared fixtures: the real model loads once per session; data folders point at temp dirs."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(autouse=True)
def _isolated_data(tmp_path_factory, monkeypatch):
    """No test touches the checkout's index/ or documents/ unless it asks for them explicitly."""
    root = tmp_path_factory.mktemp("data")
    monkeypatch.setenv("PERU_QA_INDEX", str(root / "index"))
    monkeypatch.setenv("PERU_QA_DOCUMENTS", str(root / "documents"))
    monkeypatch.delenv("PERU_QA_MODEL", raising=False)
    monkeypatch.delenv("PERU_QA_LLM_URL", raising=False)


@pytest.fixture(scope="session")
def embedder():
    from peru_qa.embeddings import get_embedder

    return get_embedder()


@pytest.fixture
def kb(tmp_path, embedder):
    from peru_qa import KnowledgeBase

    with KnowledgeBase(tmp_path / "index") as knowledge_base:
        yield knowledge_base


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test when the shared data is not beside the checkout."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not available: {path}")
    return path
