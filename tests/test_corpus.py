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


# --- key events: every brief must tell the same date ---------------------------------------------------

KEY_EVENTS = ROOT / "tests" / "data" / "key_events.json"
_EN_MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
_ES_MONTHS = "enero|febrero|marzo|abril|mayo|junio|julio|agosto|septiembre|setiembre|octubre|noviembre|diciembre"
_MONTH_NUMBER = {name.lower(): i + 1 for months in (_EN_MONTHS, _ES_MONTHS.replace("|setiembre", ""))
                 for i, name in enumerate(months.split("|"))} | {"setiembre": 9}
_YEAR = r"(?:19|20)\d{2}"
# One date expression: a timeline entry "2024 (26 September)", "16 March 2025", "16 de marzo de 2025",
# "March 2025", "marzo de 2025", or a bare year that is not part of a decree number such as 002-2024-PCM.
_DATE = re.compile(
    rf"(?P<ty>{_YEAR}) \((?:(?:early|mid-|late) )?(?:(?P<td>\d{{1,2}})(?:[–-]\d{{1,2}})? )?(?P<tm>{_EN_MONTHS})\)"
    rf"|(?:(?P<ed>\d{{1,2}}) )?(?P<em>{_EN_MONTHS}),? (?P<ey>{_YEAR})\b"
    rf"|(?:(?P<sd>\d{{1,2}}) de )?(?P<sm>{_ES_MONTHS}) (?:de |del )?(?P<sy>{_YEAR})\b"
    rf"|(?<![\d/-])(?P<y>{_YEAR})(?![\d/-])",
    re.I,
)


def _dates(clause: str) -> list[tuple[int, int, tuple[int, int | None, int | None]]]:
    """(start, end, (year, month, day)) of every date expression in a clause."""
    found = []
    for m in _DATE.finditer(clause):
        g = m.groupdict()
        year = g["ty"] or g["ey"] or g["sy"] or g["y"]
        month = g["tm"] or g["em"] or g["sm"]
        day = g["td"] or g["ed"] or g["sd"]
        found.append((m.start(), m.end(), (int(year), _MONTH_NUMBER[month.lower()] if month else None,
                                           int(day) if day else None)))
    return found


def _clauses(text: str) -> list[str]:
    """Sentences and ';'-clauses; PDF line wraps are joined, list items and paragraphs stay apart."""
    text = re.sub(r"\n(?!\s*(?:- |\n))", " ", text)
    parts: list[str] = []
    for line in text.split("\n"):
        parts.extend(re.split(r"(?<=[.;])\s+(?=[\"“¿¡(A-ZÁÉÍÓÚÑ0-9])|;\s+", line))
    return [p.strip() for p in parts if p.strip()]


def _parse_canonical(value: str) -> tuple[int, int | None, int | None]:
    parts = [int(x) for x in value.split("-")]
    return (parts[0], parts[1] if len(parts) > 1 else None, parts[2] if len(parts) > 2 else None)


def _agrees(stated: tuple, canonical: tuple) -> bool:
    """Same date at the precision both give: 'February 2024' agrees with 2024-02-12, not with 2023."""
    return all(s is None or c is None or s == c for s, c in zip(stated, canonical))


def _key_events() -> list[dict]:
    return json.loads(KEY_EVENTS.read_text(encoding="utf-8"))["events"]


def key_event_statements(texts: dict[str, str], events: list[dict]) -> dict[str, list[tuple[str, tuple, str]]]:
    """{event id: [(document, stated (y, m, d), clause)]} for every clause that names the event and a date.

    A clause names an event when it matches the event's subject and act patterns from the table; the
    date bound to it is the date expression nearest to the act match.
    """
    compiled = [(e["id"], re.compile(e["subject"], re.I), re.compile(e["act"], re.I)) for e in events]
    found: dict[str, list[tuple[str, tuple, str]]] = {e["id"]: [] for e in events}
    for name, text in texts.items():
        for clause in _clauses(text):
            dates = None
            for event_id, subject, act in compiled:
                hit = act.search(clause)
                if not hit or not subject.search(clause):
                    continue
                dates = dates if dates is not None else _dates(clause)
                if not dates:
                    continue
                nearest = min(dates, key=lambda d: max(0, d[0] - hit.end(), hit.start() - d[1]))
                found[event_id].append((name, nearest[2], clause))
    return found


def key_event_disagreements(texts: dict[str, str], events: list[dict]) -> list[str]:
    """One line per event whose briefs state a date that differs from the table's (and so from each other)."""
    problems = []
    statements = key_event_statements(texts, events)
    for event in events:
        canonical = _parse_canonical(event["date"])
        rows = statements[event["id"]]
        wrong = [(doc, stated, clause) for doc, stated, clause in rows if not _agrees(stated, canonical)]
        if wrong:
            told = "; ".join(f"{doc} says {_fmt(stated)}: {clause[:140]!r}" for doc, stated, clause in rows)
            problems.append(f"{event['id']} ({event['date']}): briefs disagree -> {told}")
    return problems


def _fmt(date: tuple) -> str:
    return "-".join(f"{x:02d}" if i else str(x) for i, x in enumerate(date) if x is not None)


def _document_texts() -> dict[str, str]:
    from peru_qa.loaders import load

    return {p.name: "\n\n".join(page.text for page in load(p).pages) for p in _files()}


def test_key_event_table_is_well_formed():
    events = _key_events()
    assert len({e["id"] for e in events}) == len(events) >= 10
    for event in events:
        _parse_canonical(event["date"])
        re.compile(event["subject"])
        re.compile(event["act"])
        assert event.get("checked_against"), f"{event['id']}: say where its date was checked"


def test_briefs_agree_on_key_event_dates():
    texts = _document_texts()
    events = _key_events()
    problems = key_event_disagreements(texts, events)
    assert not problems, "\n".join(problems)
    # A pattern that matches nothing guards nothing: every event is dated in at least two documents.
    statements = key_event_statements(texts, events)
    lonely = [e["id"] for e in events if len({doc for doc, _, _ in statements[e["id"]]}) < 2]
    assert not lonely, f"key events dated in fewer than two documents (dead or stale patterns): {lonely}"


def test_key_event_check_flags_two_briefs_that_disagree():
    events = [e for e in _key_events() if e["id"] == "pataz-emergency-begins"]
    agree = {
        "a.md": "Pataz has been under a state of emergency since 2023.",
        "b.md": "La provincia de Pataz está bajo estado de emergencia desde fines de 2023.",
        "c.pdf": "- 2023: Pataz is placed under a police-led state\nof emergency over illegal mining.",
    }
    assert key_event_disagreements(agree, events) == []
    assert len(key_event_statements(agree, events)["pataz-emergency-begins"]) == 3
    disagree = dict(agree, **{"d.md": "In February 2024 the province of Pataz was placed under emergency."})
    problems = key_event_disagreements(disagree, events)
    assert len(problems) == 1 and "d.md says 2024-02" in problems[0]
    # A decree number is not a date, and a clause with no date states none.
    assert key_event_statements({"e.md": "Pataz remains under emergency (DS 016-2026-PCM)."}, events) == {
        "pataz-emergency-begins": []}


def test_every_brief_states_when_it_was_checked():
    """The 'Checked:' / 'Revisado:' header reaches the document metadata, also from a PDF's first page."""
    from peru_qa.loaders import load

    month = re.compile(r"20\d{2}-(0[1-9]|1[0-2])")
    missing = [p.name for p in _files() if not month.fullmatch(load(p).metadata.get("checked", ""))]
    assert not missing, f"no 'Checked: <Month YYYY>' line in the header of: {missing}"


def test_search_results_carry_the_checked_date(default_kb):
    """The chat shows when a brief was checked next to its citation: the date travels with every passage."""
    hits = default_kb.retrieve("estado de emergencia en Pataz", k=8)
    assert hits and any(h.page is not None for h in default_kb.retrieve("Pataz timeline 2024", k=10))
    for hit in hits:
        assert re.fullmatch(r"20\d{2}-\d{2}", hit.metadata.get("checked", "")), (hit.source, hit.metadata)


@pytest.mark.parametrize(("text", "expected"), [
    ("- 2025 (early May): bodies found", [(2025, 5, None)]),
    ("- 2025 (26–27 November): sentences", [(2025, 11, 26)]),
    ("El 4 de mayo de 2025 y en setiembre de 2023", [(2025, 5, 4), (2023, 9, None)]),
    ("On 16 March 2025, and in October 2024", [(2025, 3, 16), (2024, 10, None)]),
    ("desde fines de 2023 (Decreto Supremo 002-2024-PCM)", [(2023, None, None)]),
])
def test_date_expressions_in_briefs(text, expected):
    """Timeline entries, Spanish and English dates are read; decree numbers are not dates."""
    assert [d[2] for d in _dates(text)] == expected
