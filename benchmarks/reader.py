"""Reader evaluation: does the answer state the asked fact, in both languages and across them?

    .venv/bin/python benchmarks/reader.py [--split dev|test|all] [--json] [--directions en-en,es-es,es-en,en-es]
                                          [--n N] [--model NAME] [--sets xquad,domain] [--failures N]

Two sets, both through the public API (`kb.ask(question, llm=False)`, extractive answers):

* XQuAD (../shared/eval/xquad_es or --xquad; skipped when absent). For each direction question→evidence
  (en-en, es-es, es-en, en-es) a KnowledgeBase holds the 240 paragraphs of the evidence language (the evaluation
  index cache is reused, see `peru_qa.evaluation.open_index`); the same question ids are asked in every direction,
  all 1,190 by default (`--n N`: a sample of N, fixed seed); dev = ids whose sha256 is even (as in
  benchmarks/tune_fusion.py), test = the others (585 per direction). Until stop 28 the default was a sample of 150
  (75 per half): a share near 0.85 then has a binomial standard error of ±4 points, against ±1.5 on a whole half.
  The dev half includes the ids the sentence ranker is fitted on (benchmarks/reader_dump.py), so its figures are
  optimistic; no fitting reads the test half. Gold answers are those of the evidence language (the reader quotes
  the evidence verbatim).
* In-domain: tests/data/answers.jsonl over the default index of documents/ (`peru_qa.open_default()`).

Per split it reports the share of answers that contain a gold answer / fact string ("answer"), that contain it in
the first cited statement ("first": the text up to the first [n] marker), that abstained, the "oracle" share (a
gold answer occurs in the text of a cited passage: when "answer" is low and "oracle" high, reading failed, not
retrieval), the share answered plainly (no abstention, no caveat) and the latency of `kb.ask` (p50/p95). Near
misses: share answered plainly (the lower the better);
out-of-domain: share abstained. Short-answer line (issue 31): among the questions the reader reads as asking for
a number, date, name or place (and answers), the share whose answer opens with a short line ("short shown") and
the share of those lines that contain a gold answer ("short gold"); "first" then reads the opening quote, after
the line. Matching folds case, accents and whitespace and ignores thousands separators
("2,126" = "2.126" = "2126"); a gold string must not be glued to a longer word or number ("308" is not in "1308").
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import statistics
import sys
import time
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

XQUAD = ROOT.parent / "shared" / "eval" / "xquad_es"
ANSWERS = ROOT / "tests" / "data" / "answers.jsonl"
DIRECTIONS = ("en-en", "es-es", "es-en", "en-es")
SEED = 12
_MARKER = re.compile(r"\[\d+\]")
_THOUSANDS = re.compile(r"(?<=\d)[.,\u00a0\u202f ](?=\d{3}(?!\d))")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


# --- matching ----------------------------------------------------------------------------------------
def fold(text: str) -> str:
    """Lowercase, accents stripped, whitespace collapsed, thousands separators dropped."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    text = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    text = re.sub(r"\s+", " ", text).strip()
    previous = None
    while previous != text:  # "1,234,567" needs one pass per group
        previous, text = text, _THOUSANDS.sub("", text)
    return text


def contains(text: str, golds: list[str]) -> bool:
    """Whether any gold string occurs in `text`, not as part of a longer word or number."""
    haystack = fold(text)
    for gold in golds:
        needle = fold(gold)
        if not needle:
            continue
        pattern = re.escape(needle)
        if needle[0].isalnum():
            pattern = r"(?<![\w])" + pattern
        if needle[-1].isalnum():
            pattern += r"(?![\w])"
        if re.search(pattern, haystack):
            return True
    return False


def first_statement(text: str) -> str:
    """The first cited statement: the text up to the first [n] marker (else the first sentence)."""
    marker = _MARKER.search(text)
    if marker:
        return text[:marker.start()]
    return _SENTENCE_END.split(text.strip(), maxsplit=1)[0]


# --- asking --------------------------------------------------------------------------------------------
@dataclass
class Asked:
    """What one question got back, reduced to what the metrics need."""

    text: str
    abstained: bool
    caveat: str
    citations: list[str]
    seconds: float
    #: The short-answer line the text opens with ('' if none) and what the reader read the question to ask for.
    short: str = ""
    asks: str = "other"


def ask(kb, question: str) -> Asked:
    """`kb.ask(question, llm=False)`, or `peru_qa.answer.ask` if the method is gone (the reader is being rebuilt)."""
    started = time.perf_counter()
    if hasattr(kb, "ask"):
        answer = kb.ask(question, llm=False)
    else:
        from peru_qa.answer import ask as answer_ask

        answer = answer_ask(kb, question, llm=False)
    seconds = time.perf_counter() - started
    caveat = getattr(answer, "caveat", "") or ""
    return Asked(answer.text or "", bool(answer.abstained), caveat,
                 [getattr(p, "text", "") or "" for p in (answer.citations or [])], seconds,
                 getattr(answer, "short", "") or "", getattr(answer, "asks", "other") or "other")


#: Kinds of question that get a short-answer line (peru_qa.short_answer.SHORT_KINDS).
SHORT_KINDS = ("quantity", "date", "who", "place")


def quoted(got: Asked) -> str:
    """The answer's text without its short-answer line: "first" measures the opening quote."""
    if got.short and got.text.startswith(got.short):
        return got.text[len(got.short):].lstrip()
    return got.text


# --- scoring -------------------------------------------------------------------------------------------
@dataclass
class Score:
    """Shares over one group of questions (None when the group is empty)."""

    n: int = 0
    answer: float | None = None
    first: float | None = None
    abstained: float | None = None
    oracle: float | None = None
    plain: float | None = None
    p50: float | None = None
    p95: float | None = None
    #: Questions read as asking for a number, date, name or place; the share whose answer opens with a short
    #: line; the share of those lines that hold a gold answer.
    short_n: int = 0
    short_shown: float | None = None
    short_gold: float | None = None
    failures: list[dict] = field(default_factory=list)


def _share(flags: list[bool]) -> float | None:
    return round(sum(flags) / len(flags), 3) if flags else None


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 3)
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1], 3)


def score(items: list[tuple[dict, Asked]], answerable: bool) -> Score:
    """items: (question row with 'golds' and 'question', what came back)."""
    out = Score(n=len(items))
    if not items:
        return out
    seconds = [got.seconds for _, got in items]
    out.p50, out.p95 = _percentile(seconds, 50), _percentile(seconds, 95)
    out.abstained = _share([got.abstained for _, got in items])
    if answerable:
        hits = [contains(got.text, row["golds"]) for row, got in items]
        out.answer = _share(hits)
        out.first = _share([contains(first_statement(quoted(got)), row["golds"]) for row, got in items])
        kinds = [(row, got) for row, got in items if got.asks in SHORT_KINDS and not got.abstained]
        out.short_n = len(kinds)
        out.short_shown = _share([bool(got.short) for _, got in kinds])
        out.short_gold = _share([contains(got.short, row["golds"]) for row, got in kinds if got.short])
        out.oracle = _share([any(contains(c, row["golds"]) for c in got.citations) for row, got in items])
        # The same "plain" as for near misses (answered, no caveat): here, the higher the better.
        out.plain = _share([not got.abstained and not got.caveat for _, got in items])
        out.failures = [{"question": row["question"], "expected": row["golds"], "answer": got.text,
                         "abstained": got.abstained, "oracle": any(contains(c, row["golds"]) for c in got.citations)}
                        for (row, got), hit in zip(items, hits) if not hit]
    else:
        plain = [not got.abstained and not got.caveat for _, got in items]
        out.plain = _share(plain)
        out.failures = [{"question": row["question"], "answer": got.text, "caveat": got.caveat,
                         "abstained": got.abstained} for (row, got), p in zip(items, plain)
                        if (p if row.get("kind") == "near_miss" else not got.abstained)]
    return out


def is_dev(qid: str) -> bool:
    return int(hashlib.sha256(qid.encode()).hexdigest(), 16) % 2 == 0


def _splits(choice: str) -> list[str]:
    return ["dev", "test"] if choice == "all" else [choice]


def warm_up(kb, question: str) -> None:
    """One untimed question first, so model loading and first-use caches do not land in the latency figures."""
    ask(kb, question)


def _progress(label: str, done: int, total: int) -> None:
    if done == total or done % 25 == 0:
        print(f"  {label}: {done}/{total}", file=sys.stderr, flush=True)


# --- XQuAD ---------------------------------------------------------------------------------------------
def _read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def run_xquad(folder: Path, directions: list[str], n: int, model: str | None, splits: list[str]) -> dict:
    from peru_qa.answer import prepare
    from peru_qa.evaluation import load_beir, open_index

    queries = {lang: {str(q["_id"]): q for q in _read_jsonl(folder / f"queries{suffix}.jsonl")}
               for lang, suffix in (("es", ""), ("en", "_en"))}
    shared = sorted(set(queries["es"]) & set(queries["en"]))
    sample = random.Random(SEED).sample(shared, min(n, len(shared))) if n > 0 else shared
    wanted = [q for q in sample if ("dev" if is_dev(q) else "test") in splits]
    results: dict[str, dict] = {}
    for direction in directions:
        question_lang, evidence_lang = direction.split("-")
        evalset = load_beir(folder, "test" if evidence_lang == "es" else "test_en")
        kb, info = open_index(evalset, model=model)
        prepare(kb)  # as the chat does at start: sentences and words are embedded once, not per question
        print(f"XQuAD {direction}: index of {info.documents} {evidence_lang} paragraphs "
              f"({'cached' if info.cached else 'built'}, {info.seconds:.0f} s), {len(wanted)} questions",
              file=sys.stderr, flush=True)
        asked: dict[str, list] = {split: [] for split in splits}
        warm_up(kb, queries[question_lang][shared[0]]["text"])
        for done, qid in enumerate(wanted, 1):
            row = {"question": queries[question_lang][qid]["text"],
                   "golds": list(queries[evidence_lang][qid]["metadata"]["answers"])}
            asked["dev" if is_dev(qid) else "test"].append((row, ask(kb, row["question"])))
            _progress(direction, done, len(wanted))
        results[direction] = {split: score(items, answerable=True) for split, items in asked.items()}
        results[direction]["model"] = kb.model_name
        kb.close()
    return results


# --- in-domain -----------------------------------------------------------------------------------------
GROUPS = {
    "answerable": lambda r: r["kind"] == "answerable",
    "same-language": lambda r: r["kind"] == "answerable" and not r["cross_lingual"],
    "cross-lingual": lambda r: r["kind"] == "answerable" and r["cross_lingual"],
    "low-overlap": lambda r: r["kind"] == "answerable" and r["low_overlap"],
    "en questions": lambda r: r["kind"] == "answerable" and r["lang"] == "en",
    "es questions": lambda r: r["kind"] == "answerable" and r["lang"] == "es",
    "near misses": lambda r: r["kind"] == "near_miss",
    "out-of-domain": lambda r: r["kind"] == "out_of_domain",
}


def run_domain(model: str | None, splits: list[str]) -> dict:
    from peru_qa import open_default

    rows = [r for r in _read_jsonl(ANSWERS) if r["split"] in splits]
    kb = open_default(model=model, answers=True)
    print(f"in-domain: {len(rows)} questions over the default index ({kb.model_name})", file=sys.stderr, flush=True)
    asked = []
    warm_up(kb, "What is the VRAEM?")
    for done, row in enumerate(rows, 1):
        asked.append((dict(row, golds=row["facts"]), ask(kb, row["question"])))
        _progress("in-domain", done, len(rows))
    results: dict[str, dict] = {"model": kb.model_name}
    kb.close()
    for split in splits:
        results[split] = {}
        for name, keep in GROUPS.items():
            items = [(row, got) for row, got in asked if row["split"] == split and keep(row)]
            results[split][name] = score(items, answerable=name not in ("near misses", "out-of-domain"))
        conflicts = [(row, got) for row, got in asked if row["split"] == split and row.get("conflict")]
        results[split]["conflicts: every value stated"] = sum(
            all(contains(got.text, [fact]) for fact in row["facts"]) for row, got in conflicts), len(conflicts)
    return results


# --- report --------------------------------------------------------------------------------------------
def _fmt(value) -> str:
    return "–" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)


def _line(label: str, s: Score) -> str:
    return (f"| {label} | {s.n} | {_fmt(s.answer)} | {_fmt(s.first)} | {_fmt(s.abstained)} | {_fmt(s.oracle)} | "
            f"{_fmt(s.plain)} | {_fmt(s.p50)} | {_fmt(s.p95)} | {s.short_n} | {_fmt(s.short_shown)} | "
            f"{_fmt(s.short_gold)} |")


HEADER = ("| set | n | answer | first | abstained | oracle | plain | p50 s | p95 s | n short kinds | short shown "
          "| short gold |\n|---|---|---|---|---|---|---|---|---|---|---|---|")


def report(xquad: dict | None, domain: dict | None, splits: list[str]) -> str:
    lines = []
    for split in splits:
        lines += [f"### {split}", "", HEADER]
        for direction, result in (xquad or {}).items():
            lines.append(_line(f"XQuAD {direction}", result[split]))
        if domain:
            for name, s in domain[split].items():
                if isinstance(s, Score):
                    lines.append(_line(f"in-domain {name}", s))
            stated, total = domain[split]["conflicts: every value stated"]
            lines += ["", f"Conflicting figures: every value stated in {stated} of {total}."]
        lines.append("")
    return "\n".join(lines)


def _jsonable(obj, keep_failures: bool):
    if isinstance(obj, Score):
        data = asdict(obj)
        if not keep_failures:
            data.pop("failures")
        return data
    if isinstance(obj, dict):
        return {k: _jsonable(v, keep_failures) for k, v in obj.items()}
    return obj


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=("dev", "test", "all"), default="all")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--directions", default=",".join(DIRECTIONS), help="XQuAD directions, e.g. es-en,en-es")
    parser.add_argument("--n", type=int, default=0,
                        help="XQuAD questions per direction before the split (default 0: every id, 1,190)")
    parser.add_argument("--model", help="embedding model (default: the configured default)")
    parser.add_argument("--sets", default="xquad,domain", help="xquad, domain or both")
    parser.add_argument("--failures", type=int, default=0, help="print up to N failures per group")
    parser.add_argument("--save", type=Path, help="also write the figures and all failures as JSON to this file")
    parser.add_argument("--xquad", type=Path, default=XQUAD, help=f"XQuAD folder (default: {XQUAD})")
    args = parser.parse_args()
    splits = _splits(args.split)
    directions = [d.strip() for d in args.directions.split(",") if d.strip()]
    bad = [d for d in directions if d not in DIRECTIONS]
    if bad:
        parser.error(f"unknown direction {bad[0]!r}; choose from {', '.join(DIRECTIONS)}")
    sets = {s.strip() for s in args.sets.split(",")}
    xquad = domain = None
    if "xquad" in sets:
        if args.xquad.is_dir():
            xquad = run_xquad(args.xquad, directions, args.n, args.model, splits)
        else:
            print(f"XQuAD skipped: {args.xquad} not found (--xquad)", file=sys.stderr)
    if "domain" in sets:
        domain = run_domain(args.model, splits)
    if args.save:
        args.save.write_text(json.dumps({"xquad": _jsonable(xquad, True), "domain": _jsonable(domain, True),
                                         "splits": splits, "n": args.n or "all", "seed": SEED}, ensure_ascii=False,
                                        indent=1))
    if args.json:
        print(json.dumps({"xquad": _jsonable(xquad, args.failures > 0), "domain": _jsonable(domain, args.failures > 0),
                          "splits": splits, "n": args.n or "all", "seed": SEED}, ensure_ascii=False, indent=1))
        return 0
    models = {r.get("model") for r in (xquad or {}).values()} | ({domain["model"]} if domain else set())
    print(f"model: {', '.join(sorted(m for m in models if m))}\n")
    print(report(xquad, domain, splits))
    if args.failures:
        for split in splits:
            groups = [(f"XQuAD {d}", r[split]) for d, r in (xquad or {}).items()]
            groups += [(f"in-domain {k}", v) for k, v in (domain or {}).get(split, {}).items()
                       if isinstance(v, Score) and k in ("answerable", "near misses", "out-of-domain")]
            for label, s in groups:
                for failure in s.failures[:args.failures]:
                    extra = ""
                    if "expected" in failure:
                        extra = f"  (expected {failure['expected']}, oracle {failure['oracle']})"
                    elif failure.get("caveat"):
                        extra = f"  (caveat: {failure['caveat']})"
                    print(f"[{split}] {label}: {failure['question']}\n    -> {failure['answer'][:300]!r}{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
