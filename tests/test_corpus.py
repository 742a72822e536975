"""The shipped corpus: structure rules, and retrieval of the gold questions from the default index."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = ROOT / "documents"
GOLD = ROOT / "tests" / "gold" / "questions.jsonl"


def _gold() -> list[dict]:
    return [json.loads(line) for line in GOLD.read_text(encoding="utf-8").splitlines() if line.strip()]


def _files() -> list[Path]:
    return sorted(p for p in DOCUMENTS.iterdir() if p.name != "README.md" and not p.name.startswith("."))


@pytest.fixture(scope="module")
def default_kb(tmp_path_factory, embedder):
    """The default index as `open_default()` builds it from documents/, in a temp folder."""
    import os

    from peru_qa import open_default

    old = {k: os.environ.get(k) for k in ("PERU_QA_INDEX", "PERU_QA_DOCUMENTS")}
    os.environ["PERU_QA_INDEX"] = str(tmp_path_factory.mktemp("default") / "index")
    os.environ["PERU_QA_DOCUMENTS"] = str(DOCUMENTS)
    try:
        kb = open_default()
        yield kb
        kb.close()
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_corpus_shape():
    files = _files()
    assert len(files) >= 20
    readme = (DOCUMENTS / "README.md").read_text(encoding="utf-8")
    for path in files:
        assert f"| {path.name} |" in readme, f"{path.name} missing from documents/README.md"
    sources = {p.stem: p for p in (ROOT / "corpus" / "pdf-sources").glob("*.md")}
    assert len([p for p in files if p.suffix == ".pdf"]) >= 2
    for path in files:
        text = path.read_text(encoding="utf-8") if path.suffix == ".md" else sources[path.stem].read_text("utf-8")
        words = len(re.findall(r"\w+", text))
        assert 600 <= words <= 2100, f"{path.name}: {words} words"
        assert re.search(r"^## (Sources|Fuentes)\s*$", text, re.M), f"{path.name} has no Sources section"
        assert re.search(r"^\*(Written|Redactado):", text, re.M), f"{path.name} is not dated"


def test_default_index_languages_and_pages(default_kb):
    docs = default_kb.documents()
    assert len(docs) == len(_files())
    spanish = [d for d in docs if d.language == "es"]
    assert len(spanish) * 3 >= len(docs)
    pdfs = [d for d in docs if d.paged]
    assert pdfs and all(d.n_pages >= 3 for d in pdfs)
    names = {Path(d.source).name: d.language for d in docs}
    for name, language in names.items():
        assert language == name[:2], f"{name} detected as {language}"


def test_gold_questions_find_their_document_in_top5(default_kb):
    gold = _gold()
    assert len(gold) >= 40 and sum(q["lang"] == "es" for q in gold) * 2 >= len(gold)
    misses = []
    for q in gold:
        hits = default_kb.retrieve(q["question"], k=20)
        top_docs: list[str] = []
        for hit in hits:
            name = Path(hit.source).name
            if name not in top_docs:
                top_docs.append(name)
        if not set(q["documents"]) & set(top_docs[:5]):
            misses.append((q["id"], q["question"], top_docs[:5]))
    accuracy = 1 - len(misses) / len(gold)
    assert accuracy >= 0.9, f"top-5 document accuracy {accuracy:.2f}; misses: {misses}"


def test_pdf_citation_has_page_and_quotes_page_text(default_kb):
    hits = default_kb.retrieve("timeline of organized crime and the state response", k=10)
    paged = [h for h in hits if h.page is not None]
    assert paged
    hit = paged[0]
    assert default_kb.page_text(hit.doc_id, hit.page)[hit.start : hit.end] == hit.text
