"""Fit the extractive reader's sentence ranker: logistic regression (scikit-learn) over the features the reader
computes per sentence (`peru_qa.reader.RANK_FEATURES`), labelled by whether the sentence holds a gold answer.

Training data: the dump of benchmarks/reader_dump.py — XQuAD ids of the dev half that are *not* in
benchmarks/reader.py's former 150-question sample (all four directions) and the dev half of
tests/data/answers.jsonl; the test halves are never read. Questions whose passages hold no gold answer teach
nothing about ordering and are left out.

    PYTHONPATH=src .venv/bin/python benchmarks/reader_dump.py --out /tmp/dump.jsonl --xquad-n 400
    PYTHONPATH=src .venv/bin/python benchmarks/fit_reader.py /tmp/dump.jsonl [--write]

Prints grouped 5-fold cross-validated top-1 / top-3 hit rates (a question counts when its best-ranked sentence
holds a gold answer) for the hand-set score and for the fitted ranker, per set and direction; `--write` stores
the weights fitted on everything in src/peru_qa/ranker.json (readable JSON: feature names, weights, bias).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from peru_qa.config import E5_MODEL  # noqa: E402
from peru_qa.reader import RANK_FEATURES, RANKER_FILE  # noqa: E402


def load(path: Path) -> list[dict]:
    rows = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            if row.get("golds") and row["sentences"] and any(s["label"] for s in row["sentences"]):
                rows.append(row)
    return rows


def group_of(row: dict) -> str:
    return row.get("direction") or ("domain-cross" if row.get("cross") else "domain")


def top_hits(rows: list[dict], scores: list[np.ndarray], k: int) -> dict[str, float]:
    hits: dict[str, list[bool]] = defaultdict(list)
    for row, score in zip(rows, scores):
        order = np.argsort(-score, kind="stable")[:k]
        hit = any(row["sentences"][i]["label"] for i in order)
        hits[group_of(row)].append(hit)
        hits["all"].append(hit)
    return {g: round(float(np.mean(v)), 3) for g, v in sorted(hits.items())}


def fit(rows: list[dict], c: float, domain_weight: float = 1.0):
    from sklearn.linear_model import LogisticRegression

    x = np.array([s["features"] for r in rows for s in r["sentences"]], dtype=np.float64)
    y = np.array([s["label"] for r in rows for s in r["sentences"]], dtype=bool)
    # Each question weighs the same, however many sentences its passages have; in-domain questions (few, but
    # what users ask) weigh `domain_weight` times an XQuAD one.
    w = np.array([(domain_weight if r["set"] == "domain" else 1.0) / len(r["sentences"])
                  for r in rows for _ in r["sentences"]])
    model = LogisticRegression(C=c, max_iter=2000)
    model.fit(x, y, sample_weight=w * len(rows))
    return model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dump", type=Path)
    parser.add_argument("--c", type=float, default=1.0, help="inverse L2 strength")
    parser.add_argument("--domain-weight", type=float, default=1.0, help="weight of an in-domain question")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--write", action="store_true", help=f"write the fitted weights to {RANKER_FILE}")
    args = parser.parse_args()

    rows = load(args.dump)
    if any(len(s["features"]) != len(RANK_FEATURES) for r in rows for s in r["sentences"]):
        print("the dump's features do not match RANK_FEATURES: re-run reader_dump.py", file=sys.stderr)
        return 2
    print(f"{len(rows)} questions with a gold answer in their passages, "
          f"{sum(len(r['sentences']) for r in rows)} sentences")
    folds = np.arange(len(rows)) % args.folds
    np.random.default_rng(0).shuffle(folds)
    learned: list[np.ndarray] = [np.zeros(0)] * len(rows)
    for f in range(args.folds):
        train = [r for r, g in zip(rows, folds) if g != f]
        model = fit(train, args.c, args.domain_weight)
        for i in np.flatnonzero(folds == f):
            x = np.array([s["features"] for s in rows[i]["sentences"]])
            learned[i] = x @ model.coef_[0] + model.intercept_[0]
    hand = [np.array([s["score"] for s in r["sentences"]]) for r in rows]
    for k in (1, 3):
        print(f"top-{k} hand-set score: {top_hits(rows, hand, k)}")
        print(f"top-{k} fitted (CV)   : {top_hits(rows, learned, k)}")

    model = fit(rows, args.c, args.domain_weight)
    for name, weight in sorted(zip(RANK_FEATURES, model.coef_[0]), key=lambda t: -abs(t[1])):
        print(f"  {name:18s} {weight:+.3f}")
    if args.write:
        stored = json.loads(RANKER_FILE.read_text(encoding="utf-8")) if RANKER_FILE.exists() else {}
        stored[E5_MODEL] = {
            "features": list(RANK_FEATURES),
            "weights": [round(float(v), 6) for v in model.coef_[0]],
            "bias": round(float(model.intercept_[0]), 6),
            "fitted": f"benchmarks/fit_reader.py, C={args.c}, domain weight {args.domain_weight}, "
                      f"{len(rows)} dev questions (XQuAD dev ids outside reader.py's sample, 4 directions; "
                      "answers.jsonl dev)",
        }
        RANKER_FILE.write_text(json.dumps(stored, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {RANKER_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
