"""Evidence viewer: time from a click on [n] to the rendered page, on the shipped corpus (target p95 <= 300 ms).

    .venv/bin/python benchmarks/viewer.py [--index DIR] [--browser]

Server side: every gold question (tests/gold/questions.jsonl) is answered; each citation of a PDF page is
opened the way the app does it (`ChatService.open_citation`: the page's text and quote spans, the PDFium
render, the quote's boxes, the viewer HTML). Measured twice: "cold" with an empty render cache (the first
click on a page nobody opened), and "as shipped", where the app pre-renders the cited PDF pages while the
answer is shown (`ChatService.prefetch`) so that the click finds the page rendered.
With --browser, headless Chromium asks each question through the app and times click → page image decoded.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def _line(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (f"{name}: n={len(ms)}, p50 {_pct(ms, 50):.0f} ms, p95 {_pct(ms, 95):.0f} ms, "
            f"max {max(ms):.0f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", help="index of documents/ (built in a temp folder when not given)")
    parser.add_argument("--browser", action="store_true", help="also time clicks in headless Chromium")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from peru_qa import KnowledgeBase
    from peru_qa.export import Turn
    from peru_qa.ui import ChatService
    from peru_qa.viewer import Viewer, view_html

    tmp = tempfile.TemporaryDirectory()
    index = Path(args.index) if args.index else Path(tmp.name) / "index"
    kb = KnowledgeBase(index)
    if not kb.documents():
        print("indexing documents/ …", file=sys.stderr)
        kb.sync_folder(ROOT / "documents")
    service = ChatService(kb)
    questions = [json.loads(line)["question"] for line in (ROOT / "tests/gold/questions.jsonl").open()]
    turns, refs = [], []
    for question in questions:
        answer = kb.ask(question, llm=False, cache=service.cache)
        for n, passage in enumerate(answer.citations, 1):
            if passage.page and passage.source.lower().endswith(".pdf"):
                refs.append((len(turns), n))
        turns.append(Turn(answer))
    print(f"{len(questions)} questions, {len(refs)} citations of PDF pages "
          f"({len({(turns[t].answer.citations[n - 1].doc_id, turns[t].answer.citations[n - 1].page) for t, n in refs})}"
          " distinct pages)")

    def open_all() -> list[float]:
        times = []
        for turn, n in refs:
            t0 = time.perf_counter()
            view, _, _ = service.open_citation(turns, f"{turn}:{n}")
            html = view_html(view)
            times.append(time.perf_counter() - t0)
            assert view is not None and view.image is not None and "pqa-pageimg" in html
        return times

    service.viewer = Viewer(kb)  # empty cache: every first click on a page renders it
    cold_first: list[float] = []
    seen = set()
    for (turn, n), elapsed in zip(refs, open_all()):
        p = turns[turn].answer.citations[n - 1]
        if (p.doc_id, p.page) not in seen:
            seen.add((p.doc_id, p.page))
            cold_first.append(elapsed)
    print(_line("cold (first open of each page, no prefetch)", cold_first))
    service.viewer = Viewer(kb)
    for turn in turns:  # what the app does when an answer is shown
        service.viewer.prefetch((p.doc_id, p.page) for p in turn.answer.citations
                                if p.page and p.source.lower().endswith(".pdf"))
    print(_line("as shipped (pages pre-rendered while the answer is read)", open_all()))
    if args.browser:
        _browser(kb, service, questions)
    service.close()
    kb.close()
    return 0


def _browser(kb, service, questions: list[str]) -> None:
    """Click [n] of PDF citations in Chromium; time until the page image is decoded in the viewer."""
    from urllib.parse import quote

    from playwright.sync_api import sync_playwright

    from peru_qa.ui import launch

    demo, app_service = launch(kb, port=7931, quiet=True, prevent_thread_lock=True)
    times: list[float] = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(120_000)
            for question in questions:
                answer = kb.ask(question, llm=False, cache=service.cache)
                numbers = [n for n, p in enumerate(answer.citations, 1)
                           if p.page and p.source.lower().endswith(".pdf")]
                if not numbers or answer.abstained:
                    continue
                page.goto("http://127.0.0.1:7931/?q=" + quote(question))
                page.locator("#pqa-sources h4").wait_for()
                page.wait_for_timeout(1500)  # the reader looks at the answer (the app pre-renders meanwhile)
                link = page.locator(f"#pqa-chat a[href$='-{numbers[0]}']").last
                page.evaluate("() => { window.__pqaShown = null; const v = document.querySelector('#pqa-viewer');"
                              "new MutationObserver(() => { const img = v.querySelector('.pqa-pageimg img');"
                              "if (img && !window.__pqaShown) img.decode().then(() => "
                              "{ window.__pqaShown = window.__pqaShown || performance.now(); }); })"
                              ".observe(v, {subtree: true, childList: true}); }")
                t0 = page.evaluate("() => performance.now()")
                link.click()
                page.wait_for_function("() => window.__pqaShown !== null")
                times.append((page.evaluate("() => window.__pqaShown") - t0) / 1000)
            browser.close()
    finally:
        demo.close()
        app_service.close()
    if times:
        print(_line("browser: click [n] → page image shown", times))


if __name__ == "__main__":
    sys.exit(main())
