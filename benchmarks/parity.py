"""Both storage backends on the real corpus (issue 30): the app's default set (documents/, as
`KnowledgeBase.sync_folder` indexes it) in an index folder and, copied with `peru-qa copy` (the same chunks and
vectors), in PostgreSQL; every question of tests/data/answers.jsonl (both languages) asked of both, through the
Python API (`kb.retrieve` in the three modes, `kb.ask`), the CLI (`peru-qa search --json`, `peru-qa ask`) and the
chat's `/ask` endpoint, without and with filters (the evidence's language; three documents).

    PYTHONPATH=src .venv/bin/python benchmarks/parity.py                  # every question (~30 min on 2 cores)
    PYTHONPATH=src .venv/bin/python benchmarks/parity.py --limit 40 --cli 10 --chat 10 --no-direct   # a quick look

Figures (targets): calls that raised (0); top-1 document identical (≥ 95 %); top-5 document sets' Jaccard
(≥ 0.9 on average); the answer's opening sentence identical (≥ 90 %). `--direct` (default) also indexes
documents/ straight into a second database with `peru-qa add documents --index URL` (README.md, which the
app leaves out, removed after) and compares its retrieval with the folder's. Starts its own throwaway PostgreSQL
(peru_qa.pgserver) unless given `--url`; saves everything to benchmarks/out/parity.json.

tests/test_parity.py runs a CI-sized subset of the same functions."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import shutil
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = ROOT / "documents"
ANSWERS = ROOT / "tests" / "data" / "answers.jsonl"
OUT = ROOT / "benchmarks" / "out"
MODES = ("hybrid", "dense", "keyword")
#: "none", the evidence's language, three documents (the expected one and two others)
FILTERS = ("none", "language", "documents")
TARGETS = {"exceptions": 0, "top1_identical": 0.95, "top5_jaccard": 0.90, "opening_identical": 0.90}
BACKENDS = ("embedded", "postgres")


@dataclass(frozen=True)
class Question:
    id: str
    text: str
    lang: str
    #: the language of the passage that answers it: es, en, "both" (the question's own for out-of-domain ones)
    evidence_lang: str
    #: file names of the documents that answer it (none for out-of-domain questions)
    documents: tuple[str, ...]


def load_questions(path: Path = ANSWERS, limit: int | None = None) -> list[Question]:
    """The questions, or `limit` of them: half Spanish, half English, evenly spread over the file (so over the
    documents and kinds of question)."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    questions = [Question(r["id"], r["question"], r["lang"], r.get("evidence_lang") or r["lang"],
                          tuple(r.get("documents") or ())) for r in rows]
    if limit is None or limit >= len(questions):
        return questions
    by_lang = {lang: [q for q in questions if q.lang == lang] for lang in ("es", "en")}
    picked = _spread(by_lang["es"], (limit + 1) // 2) + _spread(by_lang["en"], limit // 2)
    return sorted(picked, key=lambda q: q.id)


def _spread(items: list, n: int) -> list:
    return [items[(i * len(items)) // n] for i in range(min(n, len(items)))]


def corpus_names(documents: Path = DOCUMENTS) -> list[str]:
    """The files the app indexes from documents/ (`sync_folder` leaves README.md out)."""
    return sorted(p.name for p in documents.iterdir() if p.is_file() and p.name != "README.md"
                  and not p.name.startswith("."))


def filter_spec(question: Question, variant: str, names: Sequence[str]) -> dict | None:
    """The filter of one variant, naming documents by file name (each backend resolves them to its ids)."""
    if variant == "none":
        return None
    if variant == "language":  # evidence in both languages: the question's own
        return {"language": question.evidence_lang if question.evidence_lang in ("es", "en") else question.lang}
    if variant == "documents":
        chosen = [d for d in question.documents[:1] if d in names]
        start = zlib.crc32(question.id.encode())
        step = 0
        while len(chosen) < 3:
            name = names[(start + 7 * step) % len(names)]
            step += 1
            if name not in chosen:
                chosen.append(name)
        return {"documents": chosen}
    raise ValueError(variant)


def resolved(kb, spec: dict | None) -> dict | None:
    """`spec` as KnowledgeBase filters: file names become this index's document ids."""
    if spec is None or "documents" not in spec:
        return spec
    return {"doc_id": [kb.find_document(name).id for name in spec["documents"]]}


def cli_flags(spec: dict | None) -> list[str]:
    if spec is None:
        return []
    if "language" in spec:
        return ["--lang", spec["language"]]
    return [flag for name in spec["documents"] for flag in ("--doc", name)]


def opening_sentence(text: str) -> str:
    """The answer's first line or sentence, citation marks included (what a reader sees first)."""
    first = text.strip().split("\n", 1)[0].strip()
    return re.split(r"(?<=[.!?])\s+(?=\S)", first, maxsplit=1)[0]


def doc_name(source: str) -> str:
    return Path(source).name


def jaccard(a: Iterable[str], b: Iterable[str]) -> float:
    a, b = set(a), set(b)
    return 1.0 if not a and not b else len(a & b) / len(a | b)


# --- records and figures ------------------------------------------------------------------------------------------

@dataclass
class Record:
    """One question asked of both backends through one surface."""

    surface: str  # api.search | api.ask | cli.search | cli.ask | chat.ask | direct.search
    qid: str
    lang: str
    mode: str
    filter: str
    #: backend → "ExceptionType: message" of a call that raised (or a CLI's non-zero exit)
    errors: dict[str, str] = field(default_factory=dict)
    #: backend → top-5 document names (searches) or [opening sentence, first cited document] (answers)
    got: dict[str, list[str]] = field(default_factory=dict)

    @property
    def compared(self) -> bool:
        return not self.errors and len(self.got) == 2

    @property
    def is_answer(self) -> bool:
        return self.surface.endswith(".ask")

    def sides(self) -> tuple[list[str], list[str]]:
        a, b = self.got.values()
        return a, b


def figures(records: Sequence[Record]) -> dict:
    """The four parity figures of some records (searches give top-1 and Jaccard, answers the opening sentence)."""
    searches = [r for r in records if r.compared and not r.is_answer]
    answers = [r for r in records if r.compared and r.is_answer]
    out: dict = {"calls": sum(2 for _ in records), "exceptions": sum(len(r.errors) for r in records)}
    if searches:
        out["searches"] = len(searches)
        out["top1_identical"] = round(sum(r.sides()[0][:1] == r.sides()[1][:1] for r in searches) / len(searches), 4)
        out["top5_jaccard"] = round(sum(jaccard(*r.sides()) for r in searches) / len(searches), 4)
    if answers:
        out["answers"] = len(answers)
        out["opening_identical"] = round(sum(r.sides()[0][0] == r.sides()[1][0] for r in answers) / len(answers), 4)
        out["first_citation_identical"] = round(
            sum(r.sides()[0][1:] == r.sides()[1][1:] for r in answers) / len(answers), 4)
    return out


def missed_targets(fig: dict) -> list[str]:
    """What misses its target (empty: all met)."""
    misses = []
    if fig["exceptions"] > TARGETS["exceptions"]:
        misses.append(f"{fig['exceptions']} exceptions")
    for key in ("top1_identical", "top5_jaccard", "opening_identical"):
        if key in fig and fig[key] < TARGETS[key]:
            misses.append(f"{key} {fig[key]} < {TARGETS[key]}")
    return misses


def report(records: Sequence[Record]) -> dict:
    """Figures overall, per surface, and per mode × filter of the API searches; the exceptions and differences."""
    surfaces = sorted({r.surface for r in records})
    by_surface = {s: figures([r for r in records if r.surface == s]) for s in surfaces}
    breakdown = {f"{mode}/{variant}": figures([r for r in records if r.surface == "api.search" and r.mode == mode
                                               and r.filter == variant])
                 for mode in MODES for variant in FILTERS
                 if any(r.surface == "api.search" and r.mode == mode and r.filter == variant for r in records)}
    by_lang = {lang: figures([r for r in records if r.lang == lang and not r.surface.startswith("direct")])
               for lang in ("es", "en")}
    main = [r for r in records if not r.surface.startswith("direct")]
    errors = [asdict(r) for r in records if r.errors]
    differing = [asdict(r) for r in records if r.compared and r.sides()[0][:1] != r.sides()[1][:1]]
    return {"overall": figures(main), "targets": TARGETS, "misses": missed_targets(figures(main)),
            "surfaces": by_surface, "api_search_by_mode_filter": breakdown, "by_question_language": by_lang,
            "exceptions": errors[:200], "differences": differing[:200]}


# --- asking both backends -----------------------------------------------------------------------------------------

def _both(record: Record, call: Callable[[str], list[str]], backends: Sequence[str] = BACKENDS) -> Record:
    for backend in backends:
        try:
            record.got[backend] = call(backend)
        except Exception as exc:  # noqa: BLE001 - an exception is a figure here
            record.errors[backend] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
    return record


def _search(kb, text: str, k: int, spec: dict | None, mode: str) -> list[str]:
    return [doc_name(p.source) for p in kb.retrieve(text, k=k, filters=resolved(kb, spec), mode=mode)]


def api_search(kbs: dict, questions: Iterable[Question], modes: Sequence[str] = MODES,
               variants: Sequence[str] = FILTERS, k: int = 5, surface: str = "api.search") -> list[Record]:
    """`kb.retrieve` of every question in every mode and filter, on each backend: the top-k documents."""
    names = corpus_names()
    out = []
    for q in questions:
        for mode in modes:
            for variant in variants:
                spec = filter_spec(q, variant, names)
                out.append(_both(Record(surface, q.id, q.lang, mode, variant),
                                 lambda b, q=q, spec=spec, mode=mode: _search(kbs[b], q.text, k, spec, mode),
                                 tuple(kbs)))
    return out


def _answer_summary(text: str, citations: Sequence) -> list[str]:
    first = citations[0] if citations else None
    source = (first.get("source") if isinstance(first, dict) else getattr(first, "source", None)) if first else None
    return [opening_sentence(text), doc_name(source) if source else ""]


def rotating(questions: Sequence[Question]) -> Iterator[tuple[Question, str]]:
    """Each question with one filter variant, in turn: answers are dearer than searches."""
    for n, q in enumerate(questions):
        yield q, FILTERS[n % len(FILTERS)]


def api_ask(kbs: dict, questions: Sequence[Question]) -> list[Record]:
    """`kb.ask` (extractive reader) of every question, on each backend: opening sentence and first citation."""
    names = corpus_names()
    out = []
    for q, variant in rotating(questions):
        spec = filter_spec(q, variant, names)

        def ask(backend: str, q: Question = q, spec: dict | None = spec) -> list[str]:
            answer = kbs[backend].ask(q.text, llm=False, filters=resolved(kbs[backend], spec))
            return _answer_summary(answer.text, answer.citations)

        out.append(_both(Record("api.ask", q.id, q.lang, "hybrid", variant), ask))
    return out


def run_cli(argv: list[str]) -> str:
    """`peru-qa ARGV` in this process: its standard output; a non-zero exit raises with its last error line."""
    from peru_qa.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse refusing the arguments
            code = exc.code if isinstance(exc.code, int) else 2
    if code != 0:
        lines = [line for line in err.getvalue().splitlines() if line.strip()]
        raise RuntimeError(f"exit {code}: {lines[-1] if lines else ''}")
    return out.getvalue()


def cli_search(locations: dict[str, str], questions: Sequence[Question], k: int = 5) -> list[Record]:
    """`peru-qa search Q --json --index LOC` in each mode, the filter rotating over the questions."""
    names = corpus_names()
    out = []
    for q, variant in rotating(questions):
        flags = cli_flags(filter_spec(q, variant, names))
        for mode in MODES:
            argv = ["search", q.text, "--json", "--k", str(k), "--mode", mode, *flags]
            out.append(_both(Record("cli.search", q.id, q.lang, mode, variant), lambda b, argv=argv: [
                doc_name(h["source"]) for h in json.loads(run_cli([*argv, "--index", locations[b]]))]))
    return out


def cli_ask(locations: dict[str, str], questions: Sequence[Question]) -> list[Record]:
    """`peru-qa ask Q --no-llm --json --index LOC`, the filter rotating over the questions."""
    names = corpus_names()
    out = []
    for q, variant in rotating(questions):
        flags = cli_flags(filter_spec(q, variant, names))

        def ask(backend: str, q: Question = q, flags: list[str] = flags) -> list[str]:
            data = json.loads(run_cli(["ask", q.text, "--no-llm", "--json", "--index", locations[backend], *flags]))
            return _answer_summary(data["text"], data["citations"])

        out.append(_both(Record("cli.ask", q.id, q.lang, "hybrid", variant), ask))
    return out


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def chat_server(kb) -> Iterator[str]:
    """The chat app on a free loopback port over `kb` (no accounts, no LLM); yields its URL."""
    import os

    from peru_qa.ui import launch

    saved = {key: os.environ.pop(key, None) for key in ("PERU_QA_AUTH", "PERU_QA_LLM_URL")}
    try:
        port = free_port()
        demo, service = launch(kb, port=port, quiet=True, prevent_thread_lock=True)
    finally:
        for key, value in saved.items():
            if value is not None:
                os.environ[key] = value
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()
        service.close()


def chat_ask(urls: dict[str, str], kbs: dict, questions: Sequence[Question]) -> list[Record]:
    """The chat's `/ask` API (gradio_client) on each backend's app, the filter rotating over the questions."""
    from gradio_client import Client

    clients = {b: Client(url, verbose=False) for b, url in urls.items()}
    names = corpus_names()
    out = []
    for q, variant in rotating(questions):
        spec = filter_spec(q, variant, names)

        def ask(backend: str, q: Question = q, spec: dict | None = spec) -> list[str]:
            filters = resolved(kbs[backend], spec)
            data = (clients[backend].predict(q.text, filters=filters, api_name="/ask") if filters
                    else clients[backend].predict(q.text, api_name="/ask"))
            if not data or "text" not in data:
                raise RuntimeError(f"/ask returned {data!r}")
            return _answer_summary(data["text"], data["citations"])

        out.append(_both(Record("chat.ask", q.id, q.lang, "hybrid", variant), ask))
    return out


# --- building the two indexes ------------------------------------------------------------------------------------

def build_folder(folder: Path, embedder=None, documents: Path = DOCUMENTS) -> dict:
    """documents/ into an index folder exactly as the app does (`sync_folder`, README.md left out)."""
    from peru_qa import KnowledgeBase

    started = time.perf_counter()
    with KnowledgeBase(folder, embedder=embedder) as kb:
        result = kb.sync_folder(documents, progress=None)
        if not result.ok:
            raise RuntimeError(f"indexing {documents} failed: {result.summary()}")
        stats = kb.stats()
    return {"seconds": round(time.perf_counter() - started, 1), "documents": stats["documents"],
            "chunks": stats["chunks"]}


def copy_into(folder: Path, url: str) -> dict:
    """The folder index copied into the database (`peru-qa copy`: the same chunks and vectors)."""
    from peru_qa.transfer import copy_index

    started = time.perf_counter()
    copied = copy_index(folder, url)
    return {"seconds": round(time.perf_counter() - started, 1), "copied": copied.copied, "chunks": copied.chunks}


def add_directly(url: str, documents: Path = DOCUMENTS) -> dict:
    """`peru-qa add documents --index URL` as a user would run it, then README.md (which the app leaves out)
    removed, so that it holds the app's set."""
    started = time.perf_counter()
    run_cli(["add", str(documents), "--index", url])
    run_cli(["remove", "README.md", "--index", url])
    return {"seconds": round(time.perf_counter() - started, 1)}


def new_database(server_url: str, name: str) -> str:
    """A fresh database on the server of `server_url`; its URL."""
    import psycopg

    admin = server_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + "/" + name


# --- the benchmark -------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def timed(timings: dict, name: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = round(time.perf_counter() - started, 1)


def _print(fig: dict, label: str) -> None:
    parts = [f"{fig['exceptions']} exceptions / {fig['calls']} calls"]
    if "top1_identical" in fig:
        parts.append(f"top-1 identical {fig['top1_identical']:.1%} · top-5 Jaccard {fig['top5_jaccard']:.3f} "
                     f"({fig['searches']} searches)")
    if "opening_identical" in fig:
        parts.append(f"opening sentence identical {fig['opening_identical']:.1%} ({fig['answers']} answers)")
    print(f"{label:>24}: " + "; ".join(parts), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, help="questions asked through the API (default: all)")
    parser.add_argument("--cli", type=int, default=30, help="questions asked through the CLI (default 30)")
    parser.add_argument("--chat", type=int, default=60, help="questions asked through the chat's /ask (default 60)")
    parser.add_argument("--url", help="a PostgreSQL server URL to use instead of starting one")
    parser.add_argument("--index", help="an index folder of documents/ to reuse (built into a temp folder if absent)")
    parser.add_argument("--no-direct", dest="direct", action="store_false",
                        help="skip `peru-qa add documents --index URL` into a second database")
    parser.add_argument("--out", default=str(OUT / "parity.json"))
    args = parser.parse_args(argv)

    from peru_qa import KnowledgeBase, pgserver
    from peru_qa.config import DEFAULT_MODEL
    from peru_qa.embeddings import get_embedder

    scratch = Path(tempfile.mkdtemp(prefix="peru-qa-parity-"))
    server_folder = scratch / "pg"
    started = time.perf_counter()
    try:
        server_url = args.url or pgserver.start(server_folder).url
        embedder = get_embedder(DEFAULT_MODEL)  # the instance the CLI's KnowledgeBase gets too (one model loaded)
        folder = Path(args.index) if args.index else scratch / "index"
        setup = {"folder": build_folder(folder, embedder)}
        print(f"folder index: {setup['folder']}", flush=True)
        url = new_database(server_url, "peru_qa_parity")
        setup["copy"] = copy_into(folder, url)
        print(f"copied into PostgreSQL: {setup['copy']}", flush=True)
        questions = load_questions(limit=args.limit)
        records: list[Record] = []
        seconds: dict[str, float] = {}
        with KnowledgeBase(folder, embedder=embedder) as a, KnowledgeBase(url, embedder=embedder) as b:
            kbs = {"embedded": a, "postgres": b}
            with timed(seconds, "api.search"):
                records += api_search(kbs, questions)
            _print(figures(records), "API search")
            with timed(seconds, "api.ask"):
                records += api_ask(kbs, questions)
            _print(figures([r for r in records if r.surface == "api.ask"]), "API ask")
            locations = {"embedded": str(folder), "postgres": url}
            few = load_questions(limit=args.cli)
            with timed(seconds, "cli"):
                records += cli_search(locations, few) + cli_ask(locations, few)
            _print(figures([r for r in records if r.surface.startswith("cli")]), "CLI search + ask")
            with timed(seconds, "chat"), chat_server(a) as url_a, chat_server(b) as url_b:
                records += chat_ask({"embedded": url_a, "postgres": url_b}, kbs, load_questions(limit=args.chat))
            _print(figures([r for r in records if r.surface == "chat.ask"]), "chat /ask")
        if args.direct:
            direct = new_database(server_url, "peru_qa_parity_direct")
            setup["direct_add"] = add_directly(direct)
            with KnowledgeBase(folder, embedder=embedder) as a, KnowledgeBase(direct, embedder=embedder) as b:
                setup["direct_add"]["documents"] = len(b.documents())
                with timed(seconds, "direct.search"):
                    records += api_search({"embedded": a, "postgres": b}, questions, variants=("none",),
                                          surface="direct.search")
            _print(figures([r for r in records if r.surface == "direct.search"]), "direct add, search")
        setup["seconds"] = seconds
        print(f"seconds: {seconds}", flush=True)
        result = {"setup": setup, "questions": len(questions), "seconds": round(time.perf_counter() - started),
                  **report(records)}
        _print(result["overall"], "overall (copy)")
        print("targets met" if not result["misses"] else f"MISSED: {'; '.join(result['misses'])}")
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"saved {out}")
        return 0 if not result["misses"] else 1
    finally:
        if not args.url:
            pgserver.stop(server_folder)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
