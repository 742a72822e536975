"""Quality parity of the PostgreSQL backend with the embedded one (issue 15): the same index, copied into
PostgreSQL with `peru-qa copy` (same chunks, same vectors), ranked by both backends; nDCG@10 side by side.

    PYTHONPATH=src .venv/bin/python benchmarks/pg_parity.py                 # XQuAD es + en
    PYTHONPATH=src .venv/bin/python benchmarks/pg_parity.py --sets xquad_es xquad_en scifact gold

Starts its own throwaway PostgreSQL (peru_qa.pgserver) and stops it at the end. The embedded indexes are the eval
cache's (PERU_QA_CACHE or ~/.cache/peru-qa/eval; built on first use). Figures: benchmarks/RESULTS.md,
"PostgreSQL backend (issue 15)"."""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import psycopg

from peru_qa import KnowledgeBase, pgserver
from peru_qa.evaluation import load_beir, load_gold, open_index, run_queries, score_run
from peru_qa.transfer import copy_index

ROOT = Path(__file__).resolve().parents[1]
SHARED = next((p / "shared" / "eval" for p in (ROOT.parent, ROOT.parent.parent) if (p / "shared").is_dir()),
              ROOT.parent / "shared" / "eval")
SETS = {"xquad_es": ("xquad_es", "test"), "xquad_en": ("xquad_es", "test_en"), "scifact": ("scifact", "test")}
MODES = ("hybrid", "dense", "keyword")


def _database(server: pgserver.Server, name: str) -> str:
    admin = server.url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return server.url.rsplit("/", 1)[0] + "/" + name


def _pair(name: str, server: pgserver.Server, scratch: Path):
    """(embedded kb, postgres kb, evalset, key function) for one set."""
    if name == "gold":
        evalset = load_gold(ROOT / "tests" / "gold")
        folder = scratch / "gold-index"
        with KnowledgeBase(folder) as kb:
            kb.add(ROOT / "documents", exclude=("README.md",))
        key = lambda source: Path(source).name  # noqa: E731
        embedded = KnowledgeBase(folder, create=False)
    else:
        folder_name, split = SETS[name]
        evalset = load_beir(SHARED / folder_name, split)
        embedded, _ = open_index(evalset)
        key = str
    url = _database(server, f"parity_{name}")
    started = time.perf_counter()
    copy_index(embedded.location, url)
    print(f"{name}: copied {embedded.stats()['chunks']} chunks into PostgreSQL in {time.perf_counter() - started:.0f}s")
    return embedded, KnowledgeBase(url), evalset, key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=["xquad_es", "xquad_en"], choices=[*SETS, "gold"])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="peru-qa-parity-"))
    server = pgserver.start(scratch / "pg")
    rows = ["| set | mode | nDCG@10 embedded | nDCG@10 PostgreSQL | Δ | query time embedded | query time PostgreSQL |",
            "|---|---|---|---|---|---|---|"]
    try:
        for name in args.sets:
            embedded, shared, evalset, key = _pair(name, server, scratch)
            with embedded, shared:
                for mode in args.modes:
                    run_e, sec_e = run_queries(embedded, evalset, mode, key)
                    run_p, sec_p = run_queries(shared, evalset, mode, key)
                    a = score_run(run_e, evalset.qrels)["ndcg@10"]
                    b = score_run(run_p, evalset.qrels)["ndcg@10"]
                    n = len(evalset.qrels)
                    rows.append(f"| {name} ({n} q) | {mode} | {a:.4f} | {b:.4f} | {b - a:+.4f} | "
                                f"{1000 * sec_e / n:.1f} ms/q | {1000 * sec_p / n:.1f} ms/q |")
                    print(rows[-1], flush=True)
    finally:
        pgserver.stop(scratch / "pg")
        shutil.rmtree(scratch, ignore_errors=True)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
