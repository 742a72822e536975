"""How soon `python app.py` serves its page, and how soon it answers from every document (issue 32's targets).

    PERU_QA_INDEX=/tmp/fresh-idx .venv/bin/python benchmarks/serve_startup.py          # empty index: fresh clone
    .venv/bin/python benchmarks/serve_startup.py --index /tmp/ix                       # an index built by `add`

Starts the app in a subprocess, then reports the seconds from the start until the page answers HTTP 200
("served"), until the index holds `--documents` documents (read from its SQLite file; default: every supported
file of documents/, or whatever the index holds with --index) and until the first /ask after that returns a cited
answer ("first full answer"), with `uptime`'s load before and after. The app is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _documents(index: Path) -> int:
    try:
        with sqlite3.connect(f"file:{index / 'peru_qa.sqlite'}?mode=ro", uri=True, timeout=5) as db:
            return db.execute("SELECT count(*) FROM documents").fetchone()[0]
    except sqlite3.Error:
        return 0


def _served(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", help="serve this index (`--index` of app.py); default: PERU_QA_INDEX / index/")
    parser.add_argument("--port", type=int, default=7861)
    parser.add_argument("--documents", type=int, help="documents the full index holds (default: see above)")
    parser.add_argument("--question", default="¿Qué grupos controlan el narcotráfico en el VRAEM?")
    parser.add_argument("--limit", type=float, default=1800, help="give up after this many seconds")
    args = parser.parse_args()

    from peru_qa.config import SUPPORTED_SUFFIXES, default_documents_path, default_index_location

    index = Path(args.index or default_index_location())
    expected = args.documents
    if expected is None:
        if args.index:
            expected = _documents(index)
        else:
            expected = sum(1 for p in default_documents_path().rglob("*") if p.is_file()
                           and p.suffix.lower() in SUPPORTED_SUFFIXES and p.name != "README.md")
    url = f"http://127.0.0.1:{args.port}/"
    command = [sys.executable, str(ROOT / "app.py"), "--port", str(args.port)]
    if args.index:
        command += ["--index", args.index]
    figures: dict = {"load_before": _load(), "index": str(index), "documents": expected}
    start = time.monotonic()
    app = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           env={**os.environ})
    try:
        while not _served(url):
            if app.poll() is not None or time.monotonic() - start > args.limit:
                raise SystemExit(f"the app did not serve (exit code {app.poll()})")
            time.sleep(0.2)  # a measurement's sampling interval, not a synchronisation
        figures["served_s"] = round(time.monotonic() - start, 1)
        while _documents(index) < expected:
            if time.monotonic() - start > args.limit:
                raise SystemExit("the index did not fill up in time")
            time.sleep(0.5)
        figures["indexed_s"] = round(time.monotonic() - start, 1)
        from gradio_client import Client

        client = Client(url, verbose=False)
        while True:
            data = client.predict(args.question, api_name="/ask")
            partial = any(word in data.get("notice", "") for word in ("Indexing", "Indexando"))
            if data.get("citations") and not data.get("abstained") and not partial:
                break
            if time.monotonic() - start > args.limit:
                raise SystemExit("no full answer in time")
        figures["first_full_answer_s"] = round(time.monotonic() - start, 1)
        figures["answer"] = data["text"][:200]
    finally:
        app.terminate()
        app.wait(30)
    figures["load_after"] = _load()
    print(json.dumps(figures, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
