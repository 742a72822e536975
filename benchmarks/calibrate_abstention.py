"""Calibrate the extractive reader (reader.CALIBRATIONS) on DEV questions only, and show what it reads.

    .venv/bin/python benchmarks/calibrate_abstention.py [--index DIR] [--model NAME] [--split dev] [--grid]

Questions: the dev split of tests/data/answers.jsonl (answerable, including paraphrased and cross-lingual ones,
against in-domain near misses and out-of-domain questions) plus the out-of-domain questions of
tests/data/answerability.jsonl. Retrieval runs once per question; every setting on the grid then re-reads the
same passages (sentence vectors are cached), so the grid is cheap.

It prints, for the shipped setting of the index's model and (with --grid) for the best setting on the grid:
fact in the answer, fact in its first statement, abstained (answerable questions; also cross-lingual alone),
near misses answered plainly (no abstention, no caveat) and out-of-domain abstained. Matching is
benchmarks/reader.py's (folds case, accents and thousands separators). The objective favours answering
answerable questions with the fact first, then near-miss abstention; out-of-domain questions must all abstain.

For a model whose calibration has a `relevance_floor` (the default e5), abstention is decided by relevance (see
reader.Calibration; its floor comes from benchmarks/reader_dump.py's dev dump) and the support threshold tuned
here only decides the caveat: read "abstained" below as "answered with a caveat or abstained".
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from peru_qa import KnowledgeBase  # noqa: E402
from peru_qa import reader as R  # noqa: E402
from peru_qa.answer import RETRIEVE_K, unmatched_names  # noqa: E402
from peru_qa.conversation import rewrite_query  # noqa: E402
from peru_qa.sentences import SentenceCache  # noqa: E402

# benchmarks/reader.py's matching (folds case, accents, thousands separators), imported after peru_qa: that
# script puts its own checkout's src/ first on sys.path.
_bench = importlib.import_module("reader")
contains, first_statement = _bench.contains, _bench.first_statement


def load(path: Path, split: str) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if r.get("split", split) == split]


def read_all(kb: KnowledgeBase, asked: list[tuple[dict, list]], cache: SentenceCache) -> list[tuple]:
    """(row, answer as if answerable, support) per question: abstention is then a threshold on support."""
    reader = R.ExtractiveReader(kb, cache)
    out = []
    for row, passages in asked:
        found = reader.evidence(row["question"], passages, query=rewrite_query(row["question"], None))
        support, found.threshold = found.support, -1e9
        answer = reader.compose(found) if passages else None
        caveat = bool(answer and unmatched_names(kb, row["question"], answer.citations, answer.language))
        out.append((row, answer, support, caveat))
    return out


def metrics(read: list[tuple], threshold: float) -> dict:
    groups: dict[str, list[bool]] = {k: [] for k in (
        "answer", "first", "abstained", "xl answer", "xl abstained", "near plain", "ood abstained")}
    misses = []
    for row, answer, support, caveat in read:
        abstained = answer is None or support < threshold
        text = "" if abstained else answer.text
        if row["kind"] == "answerable":
            hit = contains(text, row["facts"])
            groups["answer"].append(hit)
            groups["first"].append(contains(first_statement(text), row["facts"]))
            groups["abstained"].append(abstained)
            if row.get("cross_lingual"):
                groups["xl answer"].append(hit)
                groups["xl abstained"].append(abstained)
            if not hit:
                misses.append((row, text or "(abstained)", support))
        elif row["kind"] == "near_miss":
            groups["near plain"].append(not abstained and not caveat)
        else:
            groups["ood abstained"].append(abstained)
    out = {k: round(sum(v) / len(v), 3) if v else None for k, v in groups.items()}
    out["_misses"] = misses
    return out


def objective(m: dict) -> float:
    if m["ood abstained"] is not None and m["ood abstained"] < 1.0:
        return -1.0
    return m["answer"] + m["first"] - m["abstained"] - 0.5 * max(0.0, m["near plain"] - 0.2)


def best_threshold(read: list[tuple]) -> tuple[float, float, dict]:
    """(objective, threshold, metrics): the middle of the widest run of best thresholds."""
    grid = sorted({round(s, 3) for _, _, s, _ in read} | {0.0})
    scored = [(objective(metrics(read, t)), t) for t in grid]
    top = max(o for o, _ in scored)
    run, best_run = [], []
    for o, t in scored:
        run = run + [t] if o == top else []
        best_run = run if len(run) > len(best_run) else best_run
    threshold = best_run[len(best_run) // 2]
    return top, threshold, metrics(read, threshold)


def show(m: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in m.items() if k[0] != "_")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", help="index folder of documents/ (default: a temporary one)")
    parser.add_argument("--model", help="embedding model for a new index (default: the index's own)")
    parser.add_argument("--data", default=str(ROOT / "tests" / "data" / "answers.jsonl"))
    parser.add_argument("--split", default="dev")
    parser.add_argument("--grid", action="store_true", help="search the grid (dev only)")
    parser.add_argument("--misses", type=int, default=0, help="print up to N answerable questions missed")
    args = parser.parse_args()
    rows = load(Path(args.data), args.split)
    extra = [dict(r, kind="out_of_domain") for r in load(ROOT / "tests" / "data" / "answerability.jsonl", args.split)
             if not r["answerable"]]
    with tempfile.TemporaryDirectory() as tmp:
        kb = KnowledgeBase(args.index or Path(tmp) / "index", model=args.model)
        kb.sync_folder(ROOT / "documents")
        asked = [(row, kb.retrieve(rewrite_query(row["question"], None), k=RETRIEVE_K)) for row in rows + extra]
        cache = SentenceCache(size=100_000)
        shipped = R.calibration_for(kb.model_name)
        print(f"model {kb.model_name}; {args.split}: {sum(r['kind'] == 'answerable' for r in rows)} answerable, "
              f"{sum(r['kind'] == 'near_miss' for r in rows)} near misses, "
              f"{sum(r['kind'] == 'out_of_domain' for r in rows) + len(extra)} out-of-domain")
        read = read_all(kb, asked, cache)
        shipped_metrics = metrics(read, shipped.threshold)
        print(f"shipped {shipped}:\n  {show(shipped_metrics)}")
        for row, text, support in shipped_metrics["_misses"][:args.misses]:
            print(f"  miss ({support:.3f}) {row['question']} {row['facts']}\n     -> {text[:240]!r}")
        score, threshold, m = best_threshold(read)
        print(f"best threshold for the shipped weights: {threshold} (objective {score:.3f}); {show(m)}")
        if args.grid:
            best = (objective(shipped_metrics), shipped, shipped_metrics)
            for weight, bonus, cross, shift, missing in itertools.product(
                    (0.7, 0.8, 0.9), (0.05, 0.1), (0.8, 1.0), (0.02, 0.04), (0.2,)):
                R.CALIBRATIONS[kb.model_name] = replace(shipped, dense_weight=weight, kind_bonus=bonus,
                                                        cross_lexical=cross, cross_dense=shift, missing_number=missing)
                score, threshold, m = best_threshold(read_all(kb, asked, cache))
                setting = replace(R.CALIBRATIONS[kb.model_name], threshold=threshold)
                print(f"  {setting}: objective {score:.3f}; {show(m)}", flush=True)
                if score > best[0]:
                    best = (score, setting, m)
            print(f"best on the grid: {best[1]}\n  {show(best[2])}")
            # An earlier, wider grid (weights 0.4/0.55/0.7, bonus 0.1/0.2, cross 0.5/0.8, shift 0/0.02, missing
            # 0.1/0.2) pointed here: higher dense weights won throughout (benchmarks/RESULTS.md).
        kb.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
