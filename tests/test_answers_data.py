"""The in-domain answer set (tests/data/answers.jsonl) stays well-formed, balanced and true to documents/.

The set is the yardstick of benchmarks/reader.py: when a brief in documents/ changes, a fact string that no longer
appears in its listed documents (or a "cross-lingual" fact that now also appears in the question's language) fails
here, so the set is corrected instead of silently measuring the wrong thing.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "answers.jsonl"
DOCUMENTS = ROOT / "documents"

KINDS = {"answerable", "near_miss", "out_of_domain"}
TYPES = {"quantity", "date", "person", "organisation", "place", "definition", "reason"}
LANGS = {"en", "es"}
SPLITS = ("dev", "test")
FIELDS = {"id", "question", "lang", "kind", "answerable", "type", "facts", "documents", "evidence_lang",
          "cross_lingual", "low_overlap", "split"}

# Minimum counts for the whole set (issue 12, item 5); each split must hold at least half of each.
MINIMUM = {"total": 150, "answerable": 100, "low_overlap": 20, "quantity_date_person": 30, "near_miss": 50,
           "out_of_domain": 15}


def _rows() -> list[dict]:
    with DATA.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


ROWS = _rows()
ANSWERABLE = [row for row in ROWS if row["kind"] == "answerable"]


def _fold(text: str) -> str:
    """Case and whitespace only: facts are quoted verbatim from the documents."""
    return re.sub(r"\s+", " ", text).strip().lower()


@cache
def _document_text(name: str) -> str:
    from peru_qa.loaders import load

    return _fold(" ".join(page.text for page in load(DOCUMENTS / name).pages))


def _corpus() -> list[str]:
    return sorted(p.name for p in DOCUMENTS.iterdir() if p.name[:3] in ("en-", "es-"))


def _counts(rows: list[dict]) -> dict[str, int]:
    answerable = [r for r in rows if r["kind"] == "answerable"]
    return {
        "total": len(rows),
        "answerable": len(answerable),
        "cross_lingual": sum(r["cross_lingual"] for r in answerable),
        "low_overlap": sum(r["low_overlap"] for r in answerable),
        "quantity_date_person": sum(r["type"] in ("quantity", "date", "person") for r in answerable),
        "near_miss": sum(r["kind"] == "near_miss" for r in rows),
        "out_of_domain": sum(r["kind"] == "out_of_domain" for r in rows),
    }


def test_every_row_has_the_schema():
    ids = [row["id"] for row in ROWS]
    assert len(ids) == len(set(ids)), "duplicate ids"
    questions = [row["question"].strip().lower() for row in ROWS]
    assert len(questions) == len(set(questions)), "duplicate questions"
    corpus = set(_corpus())
    for row in ROWS:
        where = row.get("id")
        assert FIELDS <= set(row), f"{where}: missing {FIELDS - set(row)}"
        assert row["lang"] in LANGS and row["kind"] in KINDS and row["type"] in TYPES, where
        assert row["split"] in SPLITS, where
        assert row["answerable"] is (row["kind"] == "answerable"), where
        assert isinstance(row["low_overlap"], bool) and isinstance(row["cross_lingual"], bool), where
        assert row["question"].strip().endswith("?"), f"{where}: not a question"
        assert set(row["documents"]) <= corpus, f"{where}: unknown documents {set(row['documents']) - corpus}"
        if row["kind"] == "answerable":
            assert row["facts"] and all(isinstance(f, str) and f.strip() for f in row["facts"]), where
            assert row["documents"], f"{where}: answerable without evidence documents"
            langs = {name[:2] for name in row["documents"]}
            expected = "both" if len(langs) == 2 else next(iter(langs))
            assert row["evidence_lang"] == expected, f"{where}: evidence_lang disagrees with documents"
            assert row["cross_lingual"] is (expected not in (row["lang"], "both")), where
            if row.get("conflict"):
                assert len(row["facts"]) >= 2, f"{where}: a conflict lists each source's value"
        else:
            assert row["facts"] == [] and row["evidence_lang"] is None, where
            assert not row["cross_lingual"] and not row["low_overlap"] and not row.get("conflict"), where
        if row["kind"] == "near_miss":
            assert row.get("lacks", "").strip(), f"{where}: a near miss names what the sources lack"
            assert row["documents"], f"{where}: a near miss names the documents that cover its topic"
        if row["kind"] == "out_of_domain":
            assert row["documents"] == [], where


def test_whole_set_meets_the_minimum_counts():
    counts = _counts(ROWS)
    for name, minimum in MINIMUM.items():
        assert counts[name] >= minimum, f"{name}: {counts[name]} < {minimum}"
    assert counts["cross_lingual"] * 3 >= counts["answerable"], "fewer than a third of answerable are cross-lingual"
    assert sum(r.get("conflict", False) for r in ANSWERABLE) >= 1


@pytest.mark.parametrize("split", SPLITS)
def test_each_split_holds_half_of_every_minimum(split):
    counts = _counts([row for row in ROWS if row["split"] == split])
    for name, minimum in MINIMUM.items():
        assert counts[name] >= math.ceil(minimum / 2), f"{split} {name}: {counts[name]}"
    assert counts["cross_lingual"] * 3 >= counts["answerable"], f"{split}: cross-lingual share under a third"
    for lang in LANGS:
        assert any(r["lang"] == lang and r["cross_lingual"] for r in ROWS if r["split"] == split), (split, lang)


def test_split_is_stratified_by_kind_language_and_cross_linguality():
    for key in (lambda r: (r["kind"], r["lang"]), lambda r: (r["kind"], r["lang"], r["cross_lingual"]),
                lambda r: (r["kind"], r["type"])):
        dev = Counter(key(r) for r in ROWS if r["split"] == "dev")
        test = Counter(key(r) for r in ROWS if r["split"] == "test")
        for stratum in set(dev) | set(test):
            assert abs(dev[stratum] - test[stratum]) <= 2, f"unbalanced {stratum}: {dev[stratum]}/{test[stratum]}"


@pytest.mark.parametrize("row", ANSWERABLE, ids=[row["id"] for row in ANSWERABLE])
def test_every_fact_is_quoted_from_a_listed_document(row):
    texts = [_document_text(name) for name in row["documents"]]
    for fact in row["facts"]:
        assert any(_fold(fact) in text for text in texts), (
            f"{row['id']}: fact {fact!r} is not in {row['documents']} (a document changed, or the fact is misquoted)")


CROSS = [row for row in ANSWERABLE if row["cross_lingual"]]


@pytest.mark.parametrize("row", CROSS, ids=[row["id"] for row in CROSS])
def test_cross_lingual_facts_are_absent_from_the_questions_language(row):
    same_language = [name for name in _corpus() if name.startswith(row["lang"] + "-")]
    for name in same_language:
        text = _document_text(name)
        stated = [fact for fact in row["facts"] if _fold(fact) in text]
        assert not stated, f"{row['id']}: {stated} also in {name}, so the question is not cross-lingual any more"
