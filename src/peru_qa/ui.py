"""The web chat: cited answers, a sources panel and an "Add documents" tab (Gradio 6).

The model and the index are opened once, by `ChatService`; every request reuses them. Uploads are
indexed by a second KnowledgeBase on the same folder, in one worker thread, so that chat requests keep
being answered from the last published index meanwhile (the reader picks the new index up by itself).
Every piece of document text shown in the page goes through `html.escape`: the Chatbot and HTML
components render HTML, and a document must never be able to run script in the page.
"""

from __future__ import annotations

import html
import os
import queue
import re
import shutil
import threading
import unicodedata
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .answer import Answer, SentenceCache, stream
from .config import SUPPORTED_SUFFIXES, env_float
from .kb import FileResult, KnowledgeBase
from .llm import LLMClient
from .loaders import file_hash
from .retrieval import Passage

EXAMPLES = [
    "¿Qué grupos controlan el narcotráfico en el VRAEM?",
    "¿Qué es la Operación Mercurio?",
    "How does extortion affect public transport in Lima?",
    "What is the REINFO registry?",
]
UPLOAD_TYPES = [s for s in SUPPORTED_SUFFIXES if s not in (".markdown", ".htm")] + [".markdown", ".htm"]
MAX_NAME_CHARS = 120

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


def sources_html(answer: Answer | None) -> str:
    """The numbered sources of an answer, each expandable to its passage with the quoted sentences marked."""
    if answer is None or not answer.citations:
        return "<div class='pqa-sources'><p class='pqa-note'>Sources appear here.</p></div>"
    heading = ("Closest passages (not an answer)" if answer.language == "en" else "Pasajes más cercanos (no es una "
               "respuesta)") if answer.abstained else ("Sources" if answer.language == "en" else "Fuentes")
    quoted = _quoted_sentences(answer)
    parts = [f"<div class='pqa-sources'><h4>{html.escape(heading)}</h4>"]
    for n, passage in enumerate(answer.citations, 1):
        label = "" if answer.abstained else f"[{n}] "
        body = _highlight(passage.text, quoted.get(n, []))
        parts.append(
            f"<details><summary><b>{label}{html.escape(passage.title)}</b>{html.escape(_where(passage))}"
            f"{' · ' + html.escape(passage.section) if passage.section and passage.section != passage.title else ''}"
            f" <span class='pqa-file'>· {html.escape(Path(passage.source).name)}</span></summary>"
            f"<blockquote>{body}</blockquote></details>")
    parts.append("</div>")
    return "".join(parts)


def _quoted_sentences(answer: Answer) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    if answer.mode != "extractive" or answer.abstained:
        return out
    for sentence, n in re.findall(r"(.+?) \[(\d+)\](?: |$)", answer.text):
        out.setdefault(int(n), []).append(sentence.strip())
    return out


def _highlight(text: str, sentences: list[str]) -> str:
    """Escape `text`, wrapping the quoted sentences in <mark> (escaping each piece on its own)."""
    spans = sorted((i, i + len(s)) for s in sentences if (i := text.find(s)) >= 0)
    out, pos = [], 0
    for start, end in spans:
        if start < pos:
            continue
        out += [html.escape(text[pos:start]), "<mark>", html.escape(text[start:end]), "</mark>"]
        pos = end
    out.append(html.escape(text[pos:]))
    return "".join(out)


def answer_markdown(answer: Answer, text: str | None = None) -> str:
    body = _md_escape(answer.text if text is None else text)
    for note in (answer.caveat, answer.notice):
        if note:
            body += f"\n\n*{_md_escape(note)}*"
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
        self.uploads = kb.path / "uploads"
        self._writer: KnowledgeBase | None = None
        self._writer_lock = threading.Lock()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="peru-qa-index")
        _ = kb.embedder  # load the model now, not on the first question

    # --- chat ------------------------------------------------------------------------------------
    def answer_stream(self, question: str, history: list | None) -> Iterator[tuple[str, Answer | None]]:
        """(markdown so far, final Answer or None) pairs; extractive answers arrive sentence by sentence."""
        for event in stream(self.kb, question, history, llm=self.llm or False, cache=self.cache):
            if isinstance(event, Answer):
                yield answer_markdown(event), event
            elif self.llm is not None:
                yield _md_escape(event), None
            else:
                pieces = re.findall(r".+? \[\d+\](?= |$)", event) or [event]
                for i in range(1, len(pieces)):
                    yield _md_escape(" ".join(pieces[:i])), None

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
                self._writer = KnowledgeBase(self.kb.path, embedder=self.kb.embedder)
            return self._writer

    def documents_html(self) -> str:
        docs = self.kb.documents()
        if not docs:
            return "<div class='pqa-docs'><p>No documents indexed yet.</p></div>"
        rows = "".join(
            f"<tr><td>{html.escape(d.title)}</td><td>{html.escape(Path(d.source).name)}</td><td>{d.language}</td>"
            f"<td>{d.n_pages if d.paged else '—'}</td><td>{d.n_chunks}</td><td><code>{d.id}</code></td></tr>"
            for d in docs)
        return ("<div class='pqa-docs'><table><tr><th>Title</th><th>File</th><th>Lang.</th><th>Pages</th>"
                f"<th>Passages</th><th>Id</th></tr>{rows}</table></div>")

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
                return self.writer().add(staged, progress=progress)
            finally:
                events.put(("end", None))

        future = self._worker.submit(run)
        while True:
            kind, value = events.get()
            if kind == "end":
                break
            yield UploadOutcome(lines + [f"… {value}"], False)
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
        yield UploadOutcome(lines, True)

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
        if self._writer is not None:
            self._writer.close()


def _result_line(result: FileResult) -> str:
    name = Path(result.path).name
    if result.status in ("added", "replaced"):
        detail = f"{result.chunks} passages" + (f", {result.pages} pages" if result.pages > 1 else "")
        return f"{result.status}: {name} — {result.title} ({detail})"
    return f"{result.status}: {name}" + (f" ({result.reason})" if result.reason else "")


def build_app(service: ChatService):
    """The Gradio Blocks app (not launched)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home: this machine may be offline
    # Gradio's queue trips pandas deprecation warnings on every request: not the user's concern.
    warnings.filterwarnings("ignore", module=r"gradio(\.|$)")
    import gradio as gr

    with gr.Blocks(title="peru-qa", analytics_enabled=False) as demo:
        gr.Markdown("## peru-qa — organized crime in Peru, answered from the documents")
        summary = gr.Markdown(service.summary())
        with gr.Tab("Chat"):
            gr.Markdown(
                "Answers come **only from the indexed documents**: every sentence is quoted from a source and "
                "followed by its number [n]. When the documents do not answer, peru-qa says so. · "
                "*Las respuestas salen solo de los documentos indexados.*", elem_classes=["pqa-note"])
            with gr.Row():
                with gr.Column(scale=3):
                    chatbot = gr.Chatbot(label="Chat", height=460, sanitize_html=True, allow_tags=False,
                                         elem_id="pqa-chat")
                    with gr.Row():
                        box = gr.Textbox(placeholder="Ask in Spanish or English · Pregunte en español o inglés",
                                         show_label=False, scale=5, elem_id="pqa-question")
                        send = gr.Button("Ask", variant="primary", scale=1, elem_id="pqa-ask")
                    gr.Examples(EXAMPLES, inputs=[box], label="Examples · Ejemplos")
                    clear = gr.Button("New conversation", size="sm")
                with gr.Column(scale=2):
                    sources = gr.HTML(sources_html(None), elem_id="pqa-sources")
        with gr.Tab("Add documents"):
            gr.Markdown(f"PDF, TXT, Markdown, HTML or DOCX, up to {max_upload_mb():g} MB each. New documents can be "
                        "asked about as soon as they are indexed; the chat keeps answering meanwhile.")
            files = gr.File(file_count="multiple", file_types=UPLOAD_TYPES, type="filepath", label="Documents",
                            elem_id="pqa-files")
            add = gr.Button("Add to the index", variant="primary", elem_id="pqa-add")
            results = gr.Textbox(label="Results", lines=6, interactive=False, elem_id="pqa-results")
            gr.Markdown("### Indexed documents")
            docs = gr.HTML(service.documents_html(), elem_id="pqa-docs")
            with gr.Row():
                choice = gr.Dropdown(choices=service.document_choices(), label="Document", scale=4)
                remove = gr.Button("Remove from the index", variant="stop", scale=1)

        def respond(message: str, history: list):
            history = list(history or [])
            message = (message or "").strip()
            if not message:
                yield "", history, gr.skip()
                return
            earlier = list(history)
            history = history + [{"role": "user", "content": _md_escape(message)},
                                 {"role": "assistant", "content": "…"}]
            yield "", history, gr.skip()
            for text, final in service.answer_stream(message, _plain_history(earlier)):
                history[-1] = {"role": "assistant", "content": text}
                yield "", history, sources_html(final) if final is not None else gr.skip()

        def upload(paths: list[str] | None):
            if not paths:
                yield "Choose one or more files first.", gr.skip(), gr.skip(), gr.skip()
                return
            for outcome in service.add_files(paths):
                if outcome.done:
                    yield ("\n".join(outcome.lines), service.documents_html(),
                           gr.update(choices=service.document_choices()), service.summary())
                else:
                    yield "\n".join(outcome.lines), gr.skip(), gr.skip(), gr.skip()

        def drop(doc_id: str | None):
            try:
                line = service.remove(doc_id or "")
            except Exception as exc:
                line = f"failed: {exc}"
            return line, service.documents_html(), gr.update(choices=service.document_choices(), value=None), \
                service.summary()

        box.submit(respond, [box, chatbot], [box, chatbot, sources], api_name="chat", concurrency_limit=4)
        send.click(respond, [box, chatbot], [box, chatbot, sources], api_visibility="private", concurrency_limit=4)
        clear.click(lambda: ([], sources_html(None)), None, [chatbot, sources], api_visibility="private")
        add.click(upload, [files], [results, docs, choice, summary], api_name="add_documents")
        remove.click(drop, [choice], [results, docs, choice, summary], api_name="remove_document")
        demo.load(lambda: (service.summary(), service.documents_html(),
                           gr.update(choices=service.document_choices())), None, [summary, docs, choice],
                  api_visibility="private")

        def ask_api(question: str, history: list | None = None) -> dict:
            """JSON answer: text, abstained, citations (for scripts)."""
            events = list(service.answer_stream(question, history or []))
            final = events[-1][1] if events else None
            return final.to_dict() if final is not None else {}

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
    demo = build_app(service)
    demo.queue(default_concurrency_limit=1)
    demo.launch(server_name=host, server_port=port, auth=auth_from_env(), show_error=True, quiet=quiet,
                prevent_thread_lock=prevent_thread_lock, css=CSS, ssr_mode=False,
                max_file_size=f"{max_upload_mb():g}mb", footer_links=[])
    return demo, service


__all__ = ["ChatService", "build_app", "launch", "sanitize_filename", "sources_html", "EXAMPLES"]
