"""The web chat: cited answers, a sources panel and an "Add documents" tab (Gradio 6).

The model and the index are opened once, by `ChatService`; every request reuses them. Uploads are
indexed by a second KnowledgeBase on the same folder, in one worker thread, so that chat requests keep
being answered from the last published index meanwhile (the reader picks the new index up by itself).
Every piece of document text shown in the page goes through `html.escape`: the Chatbot and HTML
components render HTML, and a document must never be able to run script in the page.
"""

from __future__ import annotations

import html
import logging
import os
import queue
import re
import shutil
import tempfile
import threading
import unicodedata
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .answer import Answer, SentenceCache, prepare, stream
from .config import SUPPORTED_SUFFIXES, env_float
from .errors import PeruQAError
from .export import Turn, citation_text, conversation_json, conversation_markdown, quoted_sentences
from .export import answer_markdown as export_answer_markdown
from .kb import FileResult, KnowledgeBase
from .llm import LLMClient
from .loaders import file_hash
from .retrieval import Filters, Passage
from .viewer import PageView, Viewer, highlight_html, view_html

EXAMPLES = [
    "¿Qué grupos controlan el narcotráfico en el VRAEM?",
    "¿Qué es la Operación Mercurio?",
    "How does extortion affect public transport in Lima?",
    "What is the REINFO registry?",
]
UPLOAD_TYPES = [s for s in SUPPORTED_SUFFIXES if s not in (".markdown", ".htm")] + [".markdown", ".htm"]
MAX_NAME_CHARS = 120
#: Chat answers computed at once (the chat box and the send button share them). Questions that arrive together
#: share one pass of the query encoder, so more at once is faster under load (benchmarks/RESULTS.md).
CHAT_CONCURRENCY = int(os.environ.get("PERU_QA_CHAT_CONCURRENCY", "8"))

CSS = """
.pqa-sources details { border: 1px solid var(--border-color-primary); border-radius: 6px; padding: 6px 10px;
  margin: 6px 0; }
.pqa-sources summary { cursor: pointer; }
.pqa-sources .pqa-file { color: var(--body-text-color-subdued); font-size: 0.85em; }
.pqa-sources blockquote { white-space: pre-wrap; margin: 6px 0 0 0; padding-left: 8px;
  border-left: 3px solid var(--border-color-accent); }
.pqa-sources mark { background: var(--color-accent-soft); }
.pqa-note { font-size: 0.9em; color: var(--body-text-color-subdued); }
.pqa-docs table { width: 100%; border-collapse: collapse; font-size: 0.9em; }
.pqa-docs td, .pqa-docs th { border-bottom: 1px solid var(--border-color-primary); padding: 4px 6px;
  text-align: left; }
.pqa-actions { margin: 4px 0; }
.pqa-open, .pqa-copy { font-size: 0.8em; border: 1px solid var(--border-color-primary); border-radius: 4px;
  padding: 1px 6px; margin-right: 4px; cursor: pointer; background: var(--background-fill-secondary); }
.pqa-viewer .pqa-vhead { margin-bottom: 4px; }
.pqa-viewer .pqa-file { color: var(--body-text-color-subdued); font-size: 0.85em; }
.pqa-viewer .pqa-vsection { font-weight: 600; margin: 4px 0; }
.pqa-pageimg { position: relative; width: 100%; border: 1px solid var(--border-color-primary); }
.pqa-pageimg img { display: block; width: 100%; height: auto; }
.pqa-box { position: absolute; background: rgba(255, 213, 0, 0.35); outline: 1px solid rgba(230, 160, 0, 0.9);
  pointer-events: none; }
.pqa-viewer pre.pqa-text { white-space: pre-wrap; font-family: inherit; font-size: 0.9em; max-height: 520px;
  overflow: auto; }
.pqa-viewer mark { background: #ffe066; color: #000; }
.pqa-viewer .pqa-quoted { margin: 6px 0; padding-left: 8px; border-left: 3px solid #e6a000; }
"""


def max_upload_mb() -> float:
    return env_float("PERU_QA_MAX_UPLOAD_MB", 50.0)


def auth_from_env() -> tuple[str, str] | None:
    """PERU_QA_AUTH=user:password turns on Gradio's login page."""
    value = os.environ.get("PERU_QA_AUTH", "")
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        from .errors import PeruQAError

        raise PeruQAError("PERU_QA_AUTH must look like user:password")
    return user, password


def sanitize_filename(name: str) -> str:
    """A safe file name from an uploaded one: no folders, NUL/control characters, leading dots or huge names."""
    name = unicodedata.normalize("NFC", str(name)).replace("\\", "/").split("/")[-1]
    name = "".join(ch for ch in name if ch.isprintable() and ch not in '<>:"|?*')
    name = re.sub(r"\s+", " ", name).strip().lstrip(".").strip()
    stem, suffix = os.path.splitext(name)
    suffix = suffix.lower()[:10]
    stem = stem[: MAX_NAME_CHARS - len(suffix)].strip() or "document"
    return stem + suffix


def _md_escape(text: str) -> str:
    """Document text as Markdown that the Chatbot shows literally, escaped exactly once.

    The Chatbot turns Markdown into HTML itself, so only the three characters that start HTML markup or
    entities become entities (`&`, `<`, `>`; quotes and apostrophes stay as they are: `html.escape(quote=True)`
    here showed "UNODC&#x27;s" in the chat), and Markdown syntax gets backslashes."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = re.sub(r"([\\`*_{}\[\]#|~!])", r"\\\1", text)
    # Line starts that Markdown reads as lists, headings or rules: "2012. …", "- …", "+ …", "=== "
    return re.sub(r"(?m)^(\s*)(\d+)([.)])|^(\s*)([-+=])", lambda m: (
        f"{m[1]}{m[2]}\\{m[3]}" if m[2] else f"{m[4]}\\{m[5]}"), text)


def _where(passage: Passage) -> str:
    """' · p. 4' for paged documents; nothing for formats without pages (the section and file still show)."""
    return f" · p. {passage.page}" if passage.page else ""


def sources_html(answer: Answer | None, turn: int | None = None) -> str:
    """The numbered sources of an answer, each expandable to its passage with the quoted sentences marked,
    with "Open in page" (the viewer; needs the answer's `turn` in the conversation) and "Copy citation"."""
    if answer is None or not answer.citations:
        return "<div class='pqa-sources'><p class='pqa-note'>Sources appear here.</p></div>"
    heading = ("Closest passages (not an answer)" if answer.language == "en" else "Pasajes más cercanos (no es una "
               "respuesta)") if answer.abstained else ("Sources" if answer.language == "en" else "Fuentes")
    quoted = quoted_sentences(answer)
    parts = [f"<div class='pqa-sources'><h4>{html.escape(heading)}</h4>"]
    for n, passage in enumerate(answer.citations, 1):
        label = "" if answer.abstained else f"[{n}] "
        body = _highlight(passage.text, quoted.get(n, []))
        actions = f"<button class='pqa-copy' data-pqa-copy='{html.escape(citation_text(passage, quoted.get(n)))}'" \
                  ">Copy citation</button>"
        if turn is not None:
            actions = f"<button class='pqa-open' data-pqa-open='{turn}:{n}'>Open in page</button> " + actions
        parts.append(
            f"<details><summary><b>{label}{html.escape(passage.title)}</b>{html.escape(_where(passage))}"
            f"{' · ' + html.escape(passage.section) if passage.section and passage.section != passage.title else ''}"
            f" <span class='pqa-file'>· {html.escape(Path(passage.source).name)}{html.escape(_provenance(passage))}"
            "</span></summary>"
            f"<div class='pqa-actions'>{actions}</div><blockquote>{body}</blockquote></details>")
    parts.append("</div>")
    return "".join(parts)


def _provenance(passage: Passage) -> str:
    """' · OCR 87% · checked 2026-12': text read from a scan (check it against the page image) and when the
    document's content was last checked (its "Checked:" line), shown next to each citation."""
    from .ocr import ocr_label

    bits = [ocr_label(passage.page_metadata)] if ocr_label(passage.page_metadata) else []
    if (passage.metadata or {}).get("checked"):
        bits.append(f"checked {passage.metadata['checked']}")
    return "".join(f" · {b}" for b in bits)


def _highlight(text: str, sentences: list[str]) -> str:
    """Escape `text`, wrapping the quoted sentences in <mark> (escaping each piece on its own)."""
    spans = sorted((i, i + len(s)) for s in sentences if (i := text.find(s)) >= 0)
    return highlight_html(text, spans)


_MARKER = re.compile(r" \[(\d+)\](?=\s|$)")  # a line (language note, conflict) may follow


def answer_markdown(answer: Answer, text: str | None = None, turn: int | None = None, filters_text: str = "") -> str:
    """The answer for the Chatbot: escaped once; each [n] a link that opens the viewer (with `turn`)."""
    raw = answer.text if text is None else text
    n_sources = len(answer.citations)
    pieces, pos = [], 0
    for m in _MARKER.finditer(raw):
        n = int(m.group(1))
        pieces.append(_md_escape(raw[pos:m.start()]))
        if turn is not None and 1 <= n <= n_sources and not answer.abstained:
            pieces.append(f" [\\[{n}\\]](#pqa-cite-{turn}-{n})")
        else:
            pieces.append(f" \\[{n}\\]")
        pos = m.end()
    pieces.append(_md_escape(raw[pos:]))
    body = "".join(pieces)
    for note in (answer.caveat, answer.notice):
        if note:
            body += f"\n\n*{_md_escape(note)}*"
    if filters_text:
        lead = "Solo se buscó en " if answer.language == "es" else "Searched only "
        body += f"\n\n*{_md_escape(lead + filters_text)}*"
    return body


@dataclass
class UploadOutcome:
    lines: list[str]
    done: bool


class ChatService:
    """Everything the app needs, opened once: the index, the model, the LLM client, the upload worker."""

    def __init__(self, kb: KnowledgeBase, llm: LLMClient | None = None):
        self.kb = kb
        self.llm = llm
        self.cache = SentenceCache()
        self.viewer = Viewer(kb)
        self.uploads = kb.path / "uploads"
        self._writer: KnowledgeBase | None = None
        self._writer_lock = threading.Lock()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="peru-qa-index")
        self._prefetcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="peru-qa-render")
        self._files = tempfile.TemporaryDirectory(prefix="peru-qa-files-")
        _ = kb.embedder  # load the model now, not on the first question

    # --- chat ------------------------------------------------------------------------------------
    def answer_stream(self, question: str, history: list | None, filters: Filters | None = None,
                      turn: int | None = None) -> Iterator[tuple[str, Answer | None]]:
        """(markdown so far, final Answer or None) pairs; extractive answers arrive sentence by sentence.

        With `turn` (the answer's place in the conversation) the final text's [n] open the viewer."""
        note = self.describe(filters)
        for event in stream(self.kb, question, history, llm=self.llm or False, cache=self.cache, filters=filters):
            if isinstance(event, Answer):
                if note and event.abstained and not event.citations:  # not "the index is empty": the filters are
                    event.text = (f"Ningún documento indexado cumple los filtros ({note}): amplíelos."
                                  if event.language == "es" else
                                  f"No indexed document matches the filters ({note}): widen them.")
                self.prefetch(event)
                yield answer_markdown(event, turn=turn, filters_text=note), event
            elif self.llm is not None:  # a language model's text as it arrives
                yield _md_escape(event), None
            # an extractive answer is ready whole in tens of milliseconds: sending it sentence by sentence only
            # multiplied the chat's updates (each re-sends the conversation) under load

    def warm_up(self) -> None:
        """Answer one question per language before serving: what loads lazily (language identification, date
        parsing, the encoder's kernels) then does so once, not while the first users' questions pile up (cold
        starts under 20 users took 5-7 s per answer; benchmarks/RESULTS.md, "Chat under load")."""
        for question in ("¿Qué grupos criminales operan en las regiones del país según estos informes?",
                         "Which criminal groups operate in the regions of the country according to these reports?"):
            for _ in stream(self.kb, question, None, llm=False, cache=self.cache):
                pass

    def describe(self, filters: Filters | None) -> str:
        if filters is None or filters.empty:
            return ""
        return filters.describe({d.id: d.title for d in self.kb.documents()} if filters.doc_ids else None)

    def prefetch(self, answer: Answer) -> None:
        """Render the cited PDF pages in the background, so that a click on [n] shows them at once."""
        targets = list(dict.fromkeys((p.doc_id, p.page) for p in answer.citations
                                     if p.page and p.source.lower().endswith(".pdf")))
        if targets:
            self._prefetcher.submit(self.viewer.prefetch, targets)

    # --- evidence viewer --------------------------------------------------------------------------
    def open_citation(self, turns: list[Turn], ref: str) -> tuple[PageView | None, dict | None, str]:
        """The view for "turn:n" (citation n of the turn-th answer) or "doc:<id>" (a document's first page).

        Returns (view, viewer state for previous/next, message when there is nothing to show)."""
        ref = (ref or "").split("|")[0].strip()
        if ref.startswith("doc:"):
            return self.move({"doc_id": ref[4:], "page": None, "section": 0, "quotes": []}, 0)
        try:
            turn, n = (int(x) for x in ref.split(":"))
            answer = turns[turn].answer
            passage = answer.citations[n - 1]
        except (ValueError, IndexError, TypeError, AttributeError):
            return None, None, "That citation is not in this conversation any more."
        quotes = quoted_sentences(answer).get(n) or [passage.text]
        try:
            view = self.viewer.view(passage.doc_id, passage.page, quotes, span=(passage.start, passage.end))
        except PeruQAError:
            return None, None, "This document is no longer in the index."
        state = {"doc_id": view.doc_id, "page": view.page, "section": view.section_index, "quotes": quotes}
        return view, state, ""

    def move(self, state: dict | None, step: int) -> tuple[PageView | None, dict | None, str]:
        """The page (or section) `step` away from the one in the viewer state; the quotes stay highlighted."""
        if not state:
            return None, None, ""
        page = state.get("page")
        section = state.get("section", 0)
        record = self.kb.store.document(state["doc_id"])
        if record is None:
            return None, None, "This document is no longer in the index."
        if record.paged:
            page = (page or 1) + step
        else:
            section = section + step
        view = self.viewer.view(record.id, page, state.get("quotes") or [], section=section)
        return view, {**state, "page": view.page, "section": view.section_index}, ""

    def original_copy(self, doc_id: str) -> str | None:
        """A copy of an indexed document's file for download (only ids of indexed documents are accepted)."""
        path = self.viewer.original(doc_id)
        if path is None:
            return None
        record = self.viewer.record(doc_id)
        folder = Path(self._files.name) / "originals" / record.content_hash[:16]
        target = folder / sanitize_filename(path.name)
        if not target.exists():
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        return str(target)

    def export_files(self, turns: list[Turn]) -> list[str]:
        """The conversation as Markdown and JSON, and the last answer as Markdown (files to download)."""
        if not turns:
            return []
        folder = Path(tempfile.mkdtemp(prefix="export-", dir=self._files.name))
        files = {"peru-qa-conversation.md": conversation_markdown(turns),
                 "peru-qa-conversation.json": conversation_json(turns),
                 "peru-qa-answer.md": export_answer_markdown(turns[-1])}
        for name, text in files.items():
            (folder / name).write_text(text, encoding="utf-8")
        return [str(folder / name) for name in files]

    def summary(self) -> str:
        stats = self.kb.stats()
        mode = f"language model `{self.llm.model}`" if self.llm else "extractive answers (no language model)"
        return (f"**Index:** {stats['documents']} documents · {stats['chunks']} passages · "
                f"model `{html.escape(stats['model'])}` · {mode}")

    # --- documents ---------------------------------------------------------------------------------
    def writer(self) -> KnowledgeBase:
        """A second handle on the same index for writing, sharing the loaded model."""
        with self._writer_lock:
            if self._writer is None:
                self._writer = KnowledgeBase(self.kb.location, embedder=self.kb.embedder)
            return self._writer

    def documents_html(self) -> str:
        docs = self.kb.documents()
        if not docs:
            return "<div class='pqa-docs'><p>No documents indexed yet.</p></div>"
        rows = "".join(
            f"<tr><td>{html.escape(d.title)}</td><td>{html.escape(Path(d.source).name)}</td><td>{d.language}</td>"
            f"<td>{d.n_pages if d.paged else '—'}</td><td>{d.n_chunks}</td><td>{html.escape(d.added_at[:10])}</td>"
            f"<td>{html.escape(str(d.metadata.get('checked') or '—'))}</td>"
            f"<td><button class='pqa-open' data-pqa-open='doc:{html.escape(d.id)}'>Open</button></td></tr>"
            for d in docs)
        return ("<div class='pqa-docs'><table><tr><th>Title</th><th>File</th><th>Lang.</th><th>Pages</th>"
                f"<th>Passages</th><th>Added</th><th>Checked</th><th></th></tr>{rows}</table></div>")

    def document_choices(self) -> list[tuple[str, str]]:
        return [(f"{d.title} ({Path(d.source).name})", d.id) for d in self.kb.documents()]

    def stage(self, path: str | Path) -> tuple[Path | None, FileResult | None]:
        """Check one uploaded temp file and copy it into <index>/uploads/; a failure is returned as a result."""
        src = Path(path)
        name = sanitize_filename(src.name)
        limit = max_upload_mb()
        if Path(name).suffix.lower() not in SUPPORTED_SUFFIXES:
            return None, FileResult(name, "failed", f"type {Path(name).suffix or '(none)'} not allowed "
                                    f"(allowed: {', '.join(SUPPORTED_SUFFIXES)})")
        try:
            size = src.stat().st_size
        except OSError as exc:
            return None, FileResult(name, "failed", f"upload not readable: {exc.strerror or exc}")
        if size > limit * 1024 * 1024:
            return None, FileResult(name, "failed", f"{size / 1048576:.1f} MB is over the {limit:g} MB limit "
                                    "(PERU_QA_MAX_UPLOAD_MB)")
        self.uploads.mkdir(parents=True, exist_ok=True)
        target = (self.uploads / name).resolve()
        if target.parent != self.uploads.resolve():  # belt and braces: never write outside uploads/
            return None, FileResult(name, "failed", "unsafe file name")
        if target.exists() and file_hash(target) == file_hash(src):
            return target, None  # same file again: kb.add reports it unchanged
        shutil.copyfile(src, target)
        return target, None

    def add_files(self, paths: list[str]) -> Iterator[UploadOutcome]:
        """Index uploaded files in the worker thread, yielding progress and per-file result lines."""
        events: queue.Queue = queue.Queue()
        lines: list[str] = []
        staged: list[Path] = []
        for path in paths:
            target, failure = self.stage(path)
            if failure:
                lines.append(_result_line(failure))
            elif target:
                staged.append(target)
        if not staged:
            yield UploadOutcome(lines or ["no files"], True)
            return

        def progress(done: int, total: int, what: str) -> None:
            events.put(("progress", f"indexing {min(done + 1, total)}/{total}: {what}" if done < total else "done"))

        def run():
            try:
                return self.writer().add(staged, progress=progress,
                                         on_result=lambda result: events.put(("result", _result_line(result))))
            finally:
                events.put(("end", None))

        future = self._worker.submit(run)
        finished: list[str] = []  # each file's line as soon as it is final, as the CLI prints them
        status = ""
        while True:
            kind, value = events.get()
            if kind == "end":
                break
            if kind == "result":
                finished.append(value)
            else:
                status = value
            yield UploadOutcome(lines + finished + ([f"… {status}"] if status and status != "done" else []), False)
        try:
            report = future.result()
        except Exception as exc:  # lock timeout, model mismatch: one line for every file
            lines += [f"failed: {p.name} ({exc})" for p in staged]
            yield UploadOutcome(lines, True)
            return
        for result in report.results:
            if result.status == "unchanged" and result.reason.startswith("same content") or result.failed:
                Path(result.path).unlink(missing_ok=True)  # keep uploads/ to what is indexed
            lines.append(_result_line(result))
        if any(r.status in ("added", "replaced") for r in report.results):
            # The reader's sentences of the new chunks, read next in the worker (after the library shows the
            # files), so that the first question about them does not pay for it.
            self._worker.submit(self._prepare_answers)
        yield UploadOutcome(lines, True)

    def _prepare_answers(self) -> None:
        try:
            prepare(self.writer())
        except Exception:  # noqa: BLE001 - best effort: a question reads what is missing itself
            logging.getLogger(__name__).exception("reading sentences of new documents failed")

    def remove(self, doc_id: str) -> str:
        if not doc_id:
            return "Choose a document to remove."
        doc = self._worker.submit(self.writer().remove, doc_id).result()
        source = Path(doc.source)
        if source.parent == self.uploads.resolve():
            source.unlink(missing_ok=True)
        return f"removed: {doc.title} ({doc.id})"

    def close(self) -> None:
        self._worker.shutdown(wait=True)
        self._prefetcher.shutdown(wait=True)
        self._files.cleanup()
        if self._writer is not None:
            self._writer.close()


def _result_line(result: FileResult) -> str:
    name = Path(result.path).name
    if result.status in ("added", "replaced"):
        detail = f"{result.chunks} passages" + (f", {result.pages} pages" if result.pages > 1 else "")
        return f"{result.status}: {name} — {result.title} ({detail})"
    return f"{result.status}: {name}" + (f" ({result.reason})" if result.reason else "")


#: Installed on page load: [n] links in answers and "Open"/"Copy citation" buttons work by event delegation
#: (the chat and sources are re-rendered on every answer); a click hands "turn:n" or "doc:<id>" to the server
#: through a hidden textbox and button.
JS = r"""
() => {
  if (window.__pqaInstalled) return;
  window.__pqaInstalled = true;
  const open = (ref) => {
    const box = document.querySelector('#pqa-open-ref textarea, #pqa-open-ref input');
    const button = document.querySelector('#pqa-open-btn');
    if (!box || !button) return;
    const setter = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(box), 'value').set;
    setter.call(box, ref + '|' + Date.now());
    box.dispatchEvent(new Event('input', {bubbles: true}));
    button.click();
  };
  const copy = async (text, el) => {
    try { await navigator.clipboard.writeText(text); }
    catch (e) {
      const area = document.createElement('textarea');
      area.value = text; document.body.appendChild(area); area.select();
      document.execCommand('copy'); area.remove();
    }
    el.dataset.pqaCopied = '1'; el.textContent = 'Copied';
    setTimeout(() => { el.textContent = 'Copy citation'; }, 2000);
  };
  document.addEventListener('click', (event) => {
    const link = event.target.closest('a[href*="#pqa-cite-"]');
    if (link) {
      const m = link.getAttribute('href').match(/#pqa-cite-(\d+)-(\d+)/);
      event.preventDefault(); event.stopPropagation();
      if (m) open(m[1] + ':' + m[2]);
      return;
    }
    const opener = event.target.closest('[data-pqa-open]');
    if (opener) { event.preventDefault(); event.stopPropagation(); open(opener.dataset.pqaOpen); return; }
    const copier = event.target.closest('[data-pqa-copy]');
    if (copier) { event.preventDefault(); event.stopPropagation(); copy(copier.dataset.pqaCopy, copier); }
  }, true);
}
"""


def _filters(docs: list[str] | None, languages: list[str] | None, date_from: str | None,
             date_to: str | None) -> Filters | None:
    """The chat's filter widgets as Filters (None when nothing is narrowed)."""
    filters = Filters(doc_ids=list(docs) if docs else None, languages=list(languages) if languages else None,
                      date_from=(date_from or "").strip() or None, date_to=(date_to or "").strip() or None)
    return None if filters.empty else filters


def build_app(service: ChatService):
    """The Gradio Blocks app (not launched)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home: this machine may be offline
    # Gradio's queue trips pandas deprecation warnings on every request: not the user's concern.
    warnings.filterwarnings("ignore", module=r"gradio(\.|$)")
    import gradio as gr

    def viewer_outputs(view: PageView | None, state: dict | None, message: str = "", shown: dict | None = None):
        """Viewer HTML, its state, the download button (left alone while the same document stays open: Gradio
        copies and hashes the file each time it is set), previous/next."""
        if view is not None and shown and shown.get("doc_id") == view.doc_id:
            download = gr.skip()
        else:
            original = service.original_copy(view.doc_id) if view is not None else None
            download = gr.update(value=original, visible=original is not None)
        return (view_html(view, message), state, download,
                gr.update(interactive=view is not None and not view.at_start),
                gr.update(interactive=view is not None and not view.at_end))

    with gr.Blocks(title="peru-qa", analytics_enabled=False) as demo:
        gr.Markdown("## peru-qa — organized crime in Peru, answered from the documents")
        summary = gr.Markdown(service.summary())
        turns = gr.State([])
        view_state = gr.State(None)
        with gr.Tabs() as tabs:
            with gr.Tab("Chat", id="chat"):
                gr.Markdown(
                    "Answers come **only from the indexed documents**: every sentence is quoted from a source and "
                    "followed by its number [n] — click it to see the passage in its page. When the documents do "
                    "not answer, peru-qa says so. · *Las respuestas salen solo de los documentos indexados.*",
                    elem_classes=["pqa-note"])
                with gr.Row():
                    with gr.Column(scale=3):
                        with gr.Accordion("Search only in… · Buscar solo en…", open=False, elem_id="pqa-filters"):
                            doc_filter = gr.Dropdown(choices=service.document_choices(), multiselect=True,
                                                     filterable=True, value=[], label="Documents",
                                                     elem_id="pqa-filter-docs")
                            with gr.Row():
                                lang_filter = gr.CheckboxGroup(["en", "es"], value=[], label="Language",
                                                               elem_id="pqa-filter-lang")
                                date_from = gr.Textbox(label="Checked from (YYYY[-MM])", value="", max_lines=1,
                                                       elem_id="pqa-filter-from")
                                date_to = gr.Textbox(label="to", value="", max_lines=1, elem_id="pqa-filter-to")
                        chatbot = gr.Chatbot(label="Chat", height=460, sanitize_html=True, allow_tags=False,
                                             elem_id="pqa-chat")
                        with gr.Row():
                            box = gr.Textbox(placeholder="Ask in Spanish or English · Pregunte en español o inglés",
                                             show_label=False, scale=5, elem_id="pqa-question")
                            send = gr.Button("Ask", variant="primary", scale=1, elem_id="pqa-ask")
                        gr.Examples(EXAMPLES, inputs=[box], label="Examples · Ejemplos")
                        with gr.Row():
                            clear = gr.Button("New conversation", size="sm")
                            export = gr.Button("Export (Markdown, JSON)", size="sm", elem_id="pqa-export-btn")
                        exported = gr.File(label="Export", file_count="multiple", interactive=False,
                                           visible=False, elem_id="pqa-export")
                    with gr.Column(scale=3):
                        viewer = gr.HTML(view_html(None), elem_id="pqa-viewer")
                        with gr.Row():
                            prev_page = gr.Button("◀ Previous", size="sm", interactive=False, elem_id="pqa-prev")
                            next_page = gr.Button("Next ▶", size="sm", interactive=False, elem_id="pqa-next")
                            original = gr.DownloadButton("Download original", size="sm", visible=False,
                                                         elem_id="pqa-original")
                        sources = gr.HTML(sources_html(None), elem_id="pqa-sources")
                open_ref = gr.Textbox(visible="hidden", elem_id="pqa-open-ref")
                open_btn = gr.Button("open", visible="hidden", elem_id="pqa-open-btn")
            with gr.Tab("Library", id="library"):
                gr.Markdown("Every indexed document. **Open** shows it in the viewer of the Chat tab.")
                docs = gr.HTML(service.documents_html(), elem_id="pqa-docs")
                with gr.Row():
                    choice = gr.Dropdown(choices=service.document_choices(), label="Document", scale=4,
                                         filterable=True, elem_id="pqa-remove-choice")
                    remove = gr.Button("Remove from the index…", variant="stop", scale=1, elem_id="pqa-remove")
                with gr.Row(visible=False) as confirm_row:
                    confirm_text = gr.Markdown(elem_id="pqa-confirm-text")
                    confirm = gr.Button("Yes, remove it", variant="stop", elem_id="pqa-confirm")
                    cancel = gr.Button("Cancel", elem_id="pqa-cancel")
                removed = gr.Textbox(label="Result", lines=1, interactive=False, elem_id="pqa-removed")
            with gr.Tab("Add documents", id="add"):
                gr.Markdown(f"PDF, TXT, Markdown, HTML or DOCX, up to {max_upload_mb():g} MB each. New documents can "
                            "be asked about as soon as they are indexed; the chat keeps answering meanwhile.")
                files = gr.File(file_count="multiple", file_types=UPLOAD_TYPES, type="filepath", label="Documents",
                                elem_id="pqa-files")
                add = gr.Button("Add to the index", variant="primary", elem_id="pqa-add")
                results = gr.Textbox(label="Results", lines=6, interactive=False, elem_id="pqa-results")

        def respond(message: str, history: list, conversation: list, doc_ids: list, languages: list,
                    since: str, until: str):
            history = list(history or [])
            conversation = list(conversation or [])
            message = (message or "").strip()
            if not message:
                yield "", history, gr.skip(), conversation
                return
            try:
                filters = _filters(doc_ids, languages, since, until)
            except PeruQAError as exc:
                yield message, history + [{"role": "assistant", "content": _md_escape(str(exc))}], gr.skip(), \
                    conversation
                return
            earlier = list(history)
            history = history + [{"role": "user", "content": _md_escape(message)},
                                 {"role": "assistant", "content": "…"}]
            yield "", history, gr.skip(), conversation
            turn = len(conversation)
            for text, final in service.answer_stream(message, _plain_history(earlier), filters, turn=turn):
                history[-1] = {"role": "assistant", "content": text}
                if final is not None:
                    conversation = conversation + [Turn(final, filters, service.describe(filters))]
                    yield "", history, sources_html(final, turn), conversation
                else:
                    yield "", history, gr.skip(), conversation

        def open_citation(ref: str, conversation: list, shown: dict | None):
            view, state, message = service.open_citation(conversation or [], ref)
            from_library = (ref or "").startswith("doc:")  # only then is the chat tab not already shown
            return (*viewer_outputs(view, state, message, shown), gr.Tabs(selected="chat") if from_library
                    else gr.skip())

        def move(state: dict | None, step: int):
            view, new_state, message = service.move(state, step)
            return viewer_outputs(view, new_state, message, state)

        def export_conversation(conversation: list):
            paths = service.export_files(conversation or [])
            return gr.update(value=paths or None, visible=bool(paths))

        def library_updates():
            choices = service.document_choices()
            return (service.documents_html(), gr.update(choices=choices, value=None),
                    gr.update(choices=choices), service.summary())

        def upload(paths: list[str] | None):
            if not paths:
                yield "Choose one or more files first.", gr.skip(), gr.skip(), gr.skip(), gr.skip()
                return
            for outcome in service.add_files(paths):
                if outcome.done:
                    yield ("\n".join(outcome.lines), *library_updates())
                else:
                    yield "\n".join(outcome.lines), gr.skip(), gr.skip(), gr.skip(), gr.skip()

        def ask_removal(doc_id: str | None):
            if not doc_id:
                return gr.update(visible=False), gr.skip(), "Choose a document to remove."
            record = service.kb.store.document(doc_id)
            if record is None:
                return gr.update(visible=False), gr.skip(), "That document is not in the index any more."
            return (gr.update(visible=True), f"Remove **{_md_escape(record.title)}** "
                    f"({_md_escape(Path(record.source).name)}, {record.n_chunks} passages) from the index?", "")

        def drop(doc_id: str | None):
            try:
                line = service.remove(doc_id or "")
            except Exception as exc:
                line = f"failed: {exc}"
            return (line, gr.update(visible=False), *library_updates())

        chat_inputs = [box, chatbot, turns, doc_filter, lang_filter, date_from, date_to]
        chat_outputs = [box, chatbot, sources, turns]
        box.submit(respond, chat_inputs, chat_outputs, api_name="chat", concurrency_limit=CHAT_CONCURRENCY,
                   concurrency_id="chat")
        send.click(respond, chat_inputs, chat_outputs, api_visibility="private", concurrency_limit=CHAT_CONCURRENCY,
                   concurrency_id="chat")
        clear.click(lambda: ([], sources_html(None), [], view_html(None), None, gr.update(visible=False)), None,
                    [chatbot, sources, turns, viewer, view_state, exported], api_visibility="private",
                    queue=False, concurrency_limit=None)  # instant: a question typed right after must not race it
        viewer_parts = [viewer, view_state, original, prev_page, next_page]
        # Opening evidence skips the queue (a direct request: no join + event stream round trips) and never waits
        # behind another user's click: it takes ~30 ms of server time once the page is rendered.
        open_btn.click(open_citation, [open_ref, turns, view_state], [*viewer_parts, tabs], api_visibility="private",
                       queue=False, concurrency_limit=None)
        prev_page.click(lambda st: move(st, -1), [view_state], viewer_parts, api_visibility="private", queue=False,
                        concurrency_limit=None)
        next_page.click(lambda st: move(st, 1), [view_state], viewer_parts, api_visibility="private", queue=False,
                        concurrency_limit=None)
        export.click(export_conversation, [turns], [exported], api_visibility="private")
        library_outputs = [docs, choice, doc_filter, summary]
        add.click(upload, [files], [results, *library_outputs], api_name="add_documents")
        remove.click(ask_removal, [choice], [confirm_row, confirm_text, removed], api_visibility="private")
        cancel.click(lambda: gr.update(visible=False), None, [confirm_row], api_visibility="private")
        confirm.click(drop, [choice], [removed, confirm_row, *library_outputs], api_name="remove_document")

        def on_load(question: str | None):
            """Library widgets refreshed; a `?q=` in the URL (read by the browser) goes in the box, then is asked."""
            question = (question or "").strip()
            return (*library_updates(), question[:1000] or gr.skip())

        def respond_from_url(message: str, history: list, conversation: list, doc_ids: list, languages: list,
                             since: str, until: str):
            if not (message or "").strip():  # no ?q=: leave the chat alone (the user may be typing already)
                yield gr.skip(), gr.skip(), gr.skip(), gr.skip()
                return
            yield from respond(message, history, conversation, doc_ids, languages, since, until)

        read_q = "(x) => new URLSearchParams(window.location.search).get('q') || ''"
        demo.load(on_load, [box], [*library_outputs, box], js=read_q, api_visibility="private").then(
            respond_from_url, chat_inputs, chat_outputs, api_visibility="private")

        def ask_api(question: str, history: list | None = None, filters: dict | None = None) -> dict:
            """JSON answer: text, abstained, citations (for scripts); `filters` as for KnowledgeBase.retrieve."""
            filt = Filters.coerce(filters or None)
            events = list(service.answer_stream(question, history or [], filt))
            final = events[-1][1] if events else None
            if final is None:
                return {}
            return final.to_dict() | {"filters": filt.to_dict() if filt else {}}

        gr.api(ask_api, api_name="ask", concurrency_limit=4)
    return demo


def _plain_history(history: list) -> list[str]:
    """Earlier user questions from the Chatbot's messages (their text was escaped for display)."""
    out = []
    for message in history:
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                content = " ".join(c.get("text", "") for c in content if isinstance(c, dict))
            if isinstance(content, str):
                out.append(html.unescape(re.sub(r"\\(.)", r"\1", content)))
    return out


def launch(kb: KnowledgeBase, host: str = "127.0.0.1", port: int = 7860, *, quiet: bool = False,
           prevent_thread_lock: bool = False):
    """Start the app on host:port (auth from PERU_QA_AUTH); returns the Blocks (and service) when not blocking."""
    service = ChatService(kb, LLMClient.from_env())
    service.warm_up()
    demo = build_app(service)
    demo.queue(default_concurrency_limit=1)
    demo.launch(server_name=host, server_port=port, auth=auth_from_env(), show_error=True, quiet=quiet,
                prevent_thread_lock=prevent_thread_lock, css=CSS, js=JS, ssr_mode=False,
                max_file_size=f"{max_upload_mb():g}mb", footer_links=[])
    return demo, service


__all__ = ["ChatService", "build_app", "launch", "sanitize_filename", "sources_html", "EXAMPLES"]
