"""Measure the shipped cross-encoder reader (src/peru_qa/reader_ce.safetensors, through peru_qa.cross_encoder) on
the held-out fifth of the reader dump's dev questions (benchmarks/train_reader.py's `held_out`; the ranker refitted
on the other four fifths, as in training): top-1 / top-3 (the best sentence holds a gold answer) when the ranker's
best N sentences are re-ranked by ranker + w × cross-encoder, for N in 4/6/8 and several w, per precision (fp32,
bf16, int8), with the time to score one question's N candidates and how often a precision's top-1 agrees with
fp32's. `--write N W` stores the chosen N and w in src/peru_qa/reader_ce.json.

    OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python benchmarks/cross_encoder_eval.py /tmp/dump.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from fit_reader import fit, group_of, load  # noqa: E402
from train_reader import DOMAIN_WEIGHT, held_out, key_of  # noqa: E402

TOPS = (4, 6, 8)
WEIGHTS = (0.5, 1.0, 2.0, 3.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dump", type=Path)
    parser.add_argument("--precisions", default="int8,fp32,bf16")
    parser.add_argument("--no-timing", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--write", nargs=2, metavar=("N", "W"), help="store top N and weight W in reader_ce.json")
    args = parser.parse_args()

    import torch

    from peru_qa.cross_encoder import CONFIG_FILE, CrossEncoder

    if args.write:
        config = json.loads(CONFIG_FILE.read_text(encoding="utf-8"))
        config["top"], config["weight"] = int(args.write[0]), float(args.write[1])
        CONFIG_FILE.write_text(json.dumps(config, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote top {config['top']}, weight {config['weight']} to {CONFIG_FILE}")
        return 0
    torch.set_num_threads(args.threads)
    rows = load(args.dump)
    held = held_out(rows)
    train = [r for r in rows if key_of(r) not in held]
    test = [r for r in rows if key_of(r) in held]
    ranker = fit(train, 1.0, DOMAIN_WEIGHT)
    coef, bias = ranker.coef_[0], float(ranker.intercept_[0])
    print(f"{len(test)} held-out questions ({sum(r['set'] == 'domain' for r in test)} in-domain)")
    top1: dict[str, list[int]] = {}
    reference = ""
    for precision in args.precisions.split(","):
        encoder = CrossEncoder(precision)
        encoder.score("warm up", ["a sentence", "another sentence"])
        scored = []
        for row in test:
            ranks = np.array([s["features"] for s in row["sentences"]]) @ coef + bias
            order = np.argsort(-ranks, kind="stable")[:max(TOPS)]
            readings = encoder.score(row["question"], [row["sentences"][i]["text"] for i in order])
            scored.append((row, ranks, order, readings))
        timing = []
        for top in () if args.no_timing else TOPS:  # one question's N candidates in one batch, 60 held-out questions
            seconds = []
            for row, _, order, _ in scored[:60]:
                started = time.perf_counter()
                encoder.score(row["question"], [row["sentences"][i]["text"] for i in order[:top]])
                seconds.append(time.perf_counter() - started)
            p50, p95 = 1000 * np.median(seconds), 1000 * np.percentile(seconds, 95)
            timing.append(f"N={top} p50 {p50:.0f} ms, p95 {p95:.0f} ms")
        print(f"\n## {precision}: " + "; ".join(timing))
        for top in TOPS:
            for weight in (0.0, *WEIGHTS, None):
                hits: dict[str, list[bool]] = defaultdict(list)
                firsts = []
                for row, ranks, order, readings in scored:
                    chosen = order[:top]
                    combined = ranks.copy()
                    combined[chosen] = 1000 + (readings[:len(chosen)] if weight is None
                                               else ranks[chosen] + weight * readings[:len(chosen)])
                    best = np.argsort(-combined, kind="stable")
                    firsts.append(int(best[0]))
                    for group in (group_of(row), "all", "in-domain" if row["set"] == "domain" else "xquad"):
                        hits[f"{group} top-1"].append(row["sentences"][best[0]]["label"])
                        hits[f"{group} top-3"].append(any(row["sentences"][i]["label"] for i in best[:3]))
                label = "ranker" if weight == 0.0 else "CE alone" if weight is None else f"ranker + {weight} x CE"
                agree = ""
                key = f"{top}/{weight}"
                if key not in top1:
                    top1[key] = firsts
                    reference = precision
                else:
                    agree = f" agree with {reference} {np.mean(np.array(firsts) == np.array(top1[key])):.3f}"
                summary = {k: round(float(np.mean(v)), 3) for k, v in sorted(hits.items())}
                print(f"N={top} {label:18s}{agree} {json.dumps(summary)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
