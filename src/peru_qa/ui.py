"""The web chat: cited answers, a sources panel and an "Add documents" tab (Gradio 6).

The model and the index are opened once, by `ChatService`; every request reuses them. Its handler methods take
and return plain data (`ChatUpdate`, `ViewerUpdate`, ...); `build_app` is the page's layout and wires each event to
one of them. The page is served before the index is up to date: `startup.Startup` loads the model, syncs
documents/ and reads the reader's sentences in the background while the chat answers from what is indexed and a
banner shows the progress. Uploads are indexed by a second KnowledgeBase on the same folder, in one worker thread,
so that chat requests keep being answered from the last published index meanwhile (the reader picks the new index
up by itself).
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
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from . import answer as answer_module
from .answer import Answer, SentenceCache, prepare, stream
from .auth import Accounts, PermissionDenied, accounts_from_env, actor, can, require
from .config import SUPPORTED_SUFFIXES, env_float
from .entity_view import entity_panel, name_spans, network_svg, timeline_svg
from .errors import PeruQAError
from .export import Turn, citation_text, conversation_json, conversation_markdown, quoted_sentences
from .export import answer_markdown as export_answer_markdown
from .kb import FileResult, KnowledgeBase
from .llm import LLMClient
from .loaders import file_hash
from .records import Entity, Filters, Passage
from .startup import Startup, Status
from .viewer import PageView, Viewer, highlight_html, view_html

EXAMPLES = [
    "¿Qué grupos controlan el narcotráfico en el VRAEM?",
    "¿Qué es la Operación Mercurio?",
    "How does extortion affect public transport in Lima?",
    "What is the REINFO registry?",
]
UPLOAD_TYPES = [s for s in SUPPORTED_SUFFIXES if s not in (".markdown", ".htm")] + [".markdown", ".htm"]
MAX_NAME_CHARS = 120
#: Audit log entries shown in the Library tab (all of them: `peru-qa log`).
AUDIT_ROWS = 200
#: Chat answers computed at once (the chat box and the send button share them). Questions that arrive together
#: share one pass of the query encoder, so more at once is faster under load (benchmarks/RESULTS.md).
CHAT_CONCURRENCY = int(os.environ.get("PERU_QA_CHAT_CONCURRENCY", "8"))
#: Entities offered by the "Mentioning" filter (the most mentioned first; typing in it searches them).
ENTITY_CHOICES = 2000
#: Passages whose names are remembered (finding them again costs the extractor's time on every answer).
NAME_CACHE = 4096

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
a.pqa-entity { color: inherit !important; text-decoration: underline dotted !important; cursor: pointer;
  padding: 0 !important; margin: 0 !important; background: none !important; border: 0 !important;
  display: inline !important; font: inherit !important; }
.pqa-names { font-size: 0.85em; margin: 2px 0; }
.pqa-entity-box .entity-panel ul { margin: 2px 0 6px 18px; }
.pqa-entity-box svg { max-width: 100%; height: auto; }
#pqa-entity-network svg { max-height: 420px; }
"""


def max_upload_mb() -> float:
    return env_float("PERU_QA_MAX_UPLOAD_MB", 50.0)


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


def sources_html(answer: Answer | None, turn: int | None = None,
                 names: dict[int, list[tuple[int, int, str]]] | None = None) -> str:
    """The numbered sources of an answer, each expandable to its passage with the quoted sentences marked,
    with "Open in page" (the viewer; needs the answer's `turn` in the conversation) and "Copy citation".

    `names`: per source number, the (start, end, entity name) of the people, organizations and places in its
    passage (`ChatService.passage_names`): each becomes a link that opens the entity panel in the question's
    language, and the names are listed under the source's title."""
    if answer is None or not answer.citations:
        return "<div class='pqa-sources'><p class='pqa-note'>Sources appear here.</p></div>"
    heading = ("Closest passages (not an answer)" if answer.language == "en" else "Pasajes más cercanos (no es una "
               "respuesta)") if answer.abstained else ("Sources" if answer.language == "en" else "Fuentes")
    quoted = quoted_sentences(answer)
    parts = [f"<div class='pqa-sources'><h4>{html.escape(heading)}</h4>"]
    for n, passage in enumerate(answer.citations, 1):
        label = "" if answer.abstained else f"[{n}] "
        found = (names or {}).get(n, [])
        body = _highlight(passage.text, quoted.get(n, []), found, answer.language)
        actions = f"<button class='pqa-copy' data-pqa-copy='{html.escape(citation_text(passage, quoted.get(n)))}'" \
                  ">Copy citation</button>"
        if turn is not None:
            actions = f"<button class='pqa-open' data-pqa-open='{turn}:{n}'>Open in page</button> " + actions
        parts.append(
            f"<details><summary><b>{label}{html.escape(passage.title)}</b>{html.escape(_where(passage))}"
            f"{' · ' + html.escape(passage.section) if passage.section and passage.section != passage.title else ''}"
            f" <span class='pqa-file'>· {html.escape(Path(passage.source).name)}{html.escape(_provenance(passage))}"
            "</span></summary>"
            f"<div class='pqa-actions'>{actions}</div>{_names_line(found, answer.language)}"
            f"<blockquote>{body}</blockquote></details>")
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


def _highlight(text: str, sentences: list[str], names: list[tuple[int, int, str]] | None = None,
               language: str = "en") -> str:
    """Escape `text`, wrapping the quoted sentences in <mark> (escaping each piece on its own) and each name of
    `names` (start, end, entity) in a link to its entity panel (a name across a mark's edge stays plain)."""
    spans = sorted((i, i + len(s)) for s in sentences if (i := text.find(s)) >= 0)
    if not names:
        return highlight_html(text, spans)
    marks, pos = [], 0
    for start, end in spans:  # as highlight_html: overlapping quotes keep the first
        if start >= pos:
            marks.append((start, end))
            pos = end
    links, end = [], 0
    for a, b, name in sorted(names):  # each name outside every mark or inside one; names never overlap
        if a >= end and all(b <= s or a >= e or s <= a and b <= e for s, e in marks):
            links.append((a, b, name))
            end = b
    edges = sorted({0, len(text), *(x for s, e in marks for x in (s, e)), *(x for a, b, _ in links for x in (a, b))})
    out = []
    for left, right in zip(edges, edges[1:]):
        piece = html.escape(text[left:right])
        if any(s == left for s, _ in marks):
            out.append("<mark>")
        link = next((name for a, b, name in links if a <= left and right <= b), None)
        if link is not None and any(a == left for a, _, _ in links):
            out.append(_entity_link(link, language, open_only=True))
        out.append(piece)
        if link is not None and any(b == right for _, b, _ in links):
            out.append("</a>")
        if any(e == right for _, e in marks):
            out.append("</mark>")
    return "".join(out)


def _entity_link(name: str, language: str, text: str | None = None, open_only: bool = False) -> str:
    """A link that opens `name`'s entity panel in `language` (the page's script reads its data attribute)."""
    ref = html.escape(f"{'es' if language == 'es' else 'en'}:{name}")
    start = f"<a class='pqa-entity' href='#' data-pqa-entity='{ref}' title='{html.escape(name)}'>"
    return start if open_only else f"{start}{html.escape(name if text is None else text)}</a>"


def _names_line(names: list[tuple[int, int, str]], language: str) -> str:
    """'Names: Lima · Callao': the entities of one source passage, each a link to its panel."""
    unique = list(dict.fromkeys(name for _, _, name in names))
    if not unique:
        return ""
    lead = "Nombres" if language == "es" else "Names"
    return f"<div class='pqa-names'>{lead}: {' · '.join(_entity_link(n, language) for n in unique)}</div>"


_MARKER = re.compile(r" \[(\d+)\](?=\s|$)")  # a line (language note, conflict) may follow


def answer_markdown(answer: Answer, text: str | None = None, turn: int | None = None, filters_text: str = "") -> str:
    """The answer for the Chatbot: escaped once; each [n] a link that opens the viewer (with `turn`). The short
    answer an extractive answer opens with keeps its bold value; a quote's hard line breaks (PDF lines) are shown
    joined, as in the answer's text."""
    raw = answer.text if text is None else text
    n_sources = len(answer.citations)
    pieces, pos = [], 0
    if answer.mode == "extractive":
        raw = re.sub(r"(?<!\n)[ \t]*\n(?!\n)[ \t]*", " ", raw)
        bold = re.match(r"\*\*(.+?)\*\*", answer.short or "")
        if bold and raw.startswith(answer.short):
            pieces.append(f"**{_md_escape(bold.group(1))}**")
            pos = bold.end()
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
    #: A file's outcome just became final: the Library should be shown again (its document is listed now).
    settled: bool = False


# --- what the handlers return: plain data, turned into Gradio updates by `build_app` -------------------------

@dataclass
class ChatUpdate:
    """One step of answering in the chat: the question box, the Chatbot's messages, the conversation (turns as
    data) and the sources panel (None: leave it as it is)."""

    box: str
    chat: list[dict]
    turns: list[Turn]
    sources: str | None = None


@dataclass
class ViewerUpdate:
    """The evidence viewer after opening a citation or turning a page."""

    html: str
    state: dict | None
    #: The original file to offer for download; `keep_download`: the same document stays open, leave the button
    #: (Gradio copies and hashes the file each time it is set).
    download: str | None = None
    keep_download: bool = False
    can_prev: bool = False
    can_next: bool = False
    #: Opened from the Library tab: switch to the chat tab, where the viewer is.
    to_chat: bool = False


@dataclass
class LibraryView:
    """The Library tab's list, the documents to choose from (remove, "Search only in…") and the index summary."""

    docs_html: str
    choices: list[tuple[str, str]]
    summary: str
    #: the "Mentioning" filter's choices: ("name · type · mentions", name)
    entities: list[tuple[str, str]] | None = None


@dataclass
class UploadUpdate:
    """The "Add documents" results so far; `library` when the Library should be shown again (None: unchanged)."""

    results: str
    library: LibraryView | None = None


@dataclass
class EntityUpdate:
    """The entity panel after a click on a name: its HTML (documents and pages, who and what appear with it),
    the co-mention network and the timeline pictures (SVG; empty when there is no such entity), in the
    question's language."""

    html: str
    network: str
    timeline: str
    language: str = "en"
    found: bool = False


@dataclass
class RemovalPrompt:
    """The Library's "remove?" confirmation: shown or not, its question (None: leave it) and a message."""

    show: bool
    question: str | None
    message: str


def questions_asked(chat: list | None, turns: list[Turn] | None) -> tuple[list[Turn], list[str]]:
    """The conversation still shown and its questions, for reading a follow-up: the turns kept as data, not the
    displayed (escaped) Markdown. An empty chat is a new conversation (after "New conversation", or an API caller
    sending no history), whatever an earlier exchange left in the session."""
    turns = list(turns or []) if chat else []
    return turns, [turn.answer.question for turn in turns]


class ChatService:
    """Everything the app needs, opened once: the index, the model, the LLM client, the upload worker; and the
    page's handlers, as methods on plain data, so that they are tested without Gradio.

    `accounts` (PERU_QA_AUTH) decide who may add and remove documents; without them everyone may, as `local`.
    `startup`: the background work bringing the index up to date (questions wait for its model, answers say how
    far its indexing is)."""

    def __init__(self, kb: KnowledgeBase, llm: LLMClient | None = None, accounts: Accounts | None = None,
                 startup: Startup | None = None):
        self.kb = kb
        self.llm = llm
        self.accounts = accounts
        #: The start-up work running in the background (syncing documents/, reading sentences), if any.
        self.startup = startup
        # The reader's sentence cache `answer.prepare` fills too (the start-up work and uploads run it while the
        # chat answers): one store connection per index, so that their writes never time out on each other's.
        self.cache: SentenceCache = answer_module._SHARED_CACHE
        self.viewer = Viewer(kb)
        self.uploads = kb.path / "uploads"
        self._writer: KnowledgeBase | None = None
        self._writer_lock = threading.Lock()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="peru-qa-index")
        self._prefetcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="peru-qa-render")
        self._files = tempfile.TemporaryDirectory(prefix="peru-qa-files-")
        self._entity_lock = threading.Lock()
        self._entity_cache: tuple[tuple, list[Entity], dict[str, str]] | None = None
        #: names found in passages, by (language, text): the same passages are cited again and again
        self._spans: OrderedDict[tuple[str, str], list] = OrderedDict()
        self._spans_lock = threading.Lock()
        if startup is None:
            _ = kb.embedder  # load the model now, not on the first question (with a startup, it loads it)

    # --- chat ------------------------------------------------------------------------------------
    def answer_stream(self, question: str, history: list | None, filters: Filters | None = None,
                      turn: int | None = None) -> Iterator[tuple[str, Answer | None]]:
        """(markdown so far, final Answer or None) pairs; extractive answers arrive sentence by sentence.

        With `turn` (the answer's place in the conversation) the final text's [n] open the viewer."""
        note = self.describe(filters)
        self._wait_for_model()
        for event in stream(self.kb, question, history, llm=self.llm or False, cache=self.cache, filters=filters):
            if isinstance(event, Answer):
                if note and event.abstained and not event.citations:  # not "the index is empty": the filters are
                    event.text = (f"Ningún documento indexado cumple los filtros ({note}): amplíelos."
                                  if event.language == "es" else
                                  f"No indexed document matches the filters ({note}): widen them.")
                else:
                    self._while_indexing(event)
                self.prefetch(event)
                text = answer_markdown(event, turn=turn, filters_text=note)
                yield (self.link_names(text, event) if turn is not None else text), event
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
        name_spans("Sendero Luminoso opera en el VRAEM.", "es")  # the name extractor's model loads once

    def _wait_for_model(self) -> None:
        """A question or an upload arriving while the start-up work loads the model waits for it (the banner says
        so) rather than loading a second copy."""
        if self.startup is not None:
            self.startup.wait_for_model()

    def status(self) -> Status | None:
        """The background start-up work's state, or None when there is none (its page banner, answers' notice)."""
        return self.startup.status() if self.startup is not None else None

    def status_line(self) -> str:
        """The banner above the chat: how far the background indexing is ("" when there is nothing to say)."""
        status = self.status()
        return f"*{_md_escape(status.line())}*" if status is not None and status.line() else ""

    @property
    def busy(self) -> bool:
        """Start-up work still runs: the page refreshes its banner until it is done."""
        status = self.status()
        return status is not None and status.busy

    def _while_indexing(self, answer: Answer) -> None:
        """An answer given while documents are still being indexed says so: which part of the documents it could
        use, or, with nothing indexed yet, that they are coming (not "the index has no documents")."""
        status = self.status()
        if status is None or not status.indexing:
            return
        if answer.abstained and not answer.citations:
            answer.text = status.empty_text(answer.language)
            return
        line = status.notice(answer.language)
        answer.notice = f"{answer.notice} {line}".strip() if answer.notice else line

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

    # --- people, organizations and places (issue 33) ---------------------------------------------------
    def entities(self) -> tuple[list[Entity], dict[str, str]]:
        """`kb.entities()` (most mentioned first) and, for every name and alias, its merge key → the entity's
        name; read again when the documents change (kept only once the start-up work, which may still be
        reading names, is done)."""
        from .entities import entity_key

        version = tuple((d.id, d.content_hash) for d in self.kb.documents())
        with self._entity_lock:
            cached = self._entity_cache
            if cached is not None and cached[0] == version:
                return cached[1], cached[2]
            try:
                found = self.kb.entities()
            except Exception:  # noqa: BLE001 - names are links on top of the answer: never a reason to fail it
                logging.getLogger(__name__).exception("listing the index's entities failed")
                return [], {}
            known: dict[str, str] = {}
            for e in found:
                for form in (e.key, e.name, *e.aliases):
                    known.setdefault(entity_key(form) if form != e.key else form, e.name)
            if not self.busy:
                self._entity_cache = (version, found, known)
            return found, known

    def entity_choices(self) -> list[tuple[str, str]]:
        """The "Mentioning" filter's choices: ("name · type · mentions", name), the most mentioned first."""
        return [(f"{e.name} · {e.type} · {e.mentions}", e.name) for e in self.entities()[0][:ENTITY_CHOICES]]

    def names_in(self, text: str, language: str) -> list[tuple[int, int, str]]:
        """(start, end, entity name) of the names in `text` that the index knows (any alias, either language),
        each with the entity's name as the index has it (what its panel opens)."""
        from .entities import entity_key

        if not text.strip():
            return []
        known = self.entities()[1]
        found = []
        for start, end, name, _type in self._name_spans(text, language):
            entity = known.get(entity_key(name)) or known.get(entity_key(text[start:end]))
            if entity is not None:
                found.append((start, end, entity))
        return found

    def _name_spans(self, text: str, language: str) -> list[tuple[int, int, str, str]]:
        """`name_spans`, remembered for the last few thousand texts (≈10 ms per passage otherwise)."""
        key = (language, text)
        with self._spans_lock:
            if key in self._spans:
                self._spans.move_to_end(key)
                return self._spans[key]
        try:
            spans = name_spans(text, language)
        except Exception:  # noqa: BLE001 - as above: the text is shown without links
            logging.getLogger(__name__).exception("finding names in a text failed")
            return []
        with self._spans_lock:
            self._spans[key] = spans
            while len(self._spans) > NAME_CACHE:
                self._spans.popitem(last=False)
        return spans

    def passage_names(self, answer: Answer) -> dict[int, list[tuple[int, int, str]]]:
        """The names in each cited passage (source number → spans), for the sources panel's links."""
        return {n: spans for n, p in enumerate(answer.citations, 1) if (spans := self.names_in(p.text, p.language))}

    def link_names(self, markdown: str, answer: Answer) -> str:
        """The answer's Markdown (from `answer_markdown`) with each name the index knows made a link that opens
        its entity panel in the answer's language; citation links and the text's escaping are left as they are."""
        names = self.names_in(answer.text, answer.language)
        if not names:
            return markdown
        surfaces: dict[str, str] = {}
        for start, end, entity in names:
            surface = " ".join(answer.text[start:end].split())
            surfaces.setdefault(surface, entity)
        pattern = "|".join(
            r"\s+".join(re.escape(_md_escape(word)) for word in surface.split())
            for surface in sorted(surfaces, key=len, reverse=True))
        folded = {" ".join(_md_escape(k).split()): v for k, v in surfaces.items()}
        language = "es" if answer.language == "es" else "en"
        name_re = re.compile(rf"(?<![\w\\])(?:{pattern})(?!\w)")

        def link(m: re.Match) -> str:
            entity = folded.get(" ".join(m.group(0).split()))
            if entity is None:
                return m.group(0)
            return f"[{m.group(0)}](#pqa-entity-{language}-{quote(entity, safe='')})"

        # existing links ([\[n\]](#pqa-cite-…)) are kept whole; names are linked in the text between them
        pieces = re.split(r"(\[[^\]]*?(?:\\\][^\]]*?)*\]\([^)\s]*\))", markdown)
        return "".join(piece if i % 2 else name_re.sub(link, piece) for i, piece in enumerate(pieces))

    def open_entity(self, ref: str) -> EntityUpdate:
        """A click on a name: "<language>:<name>" (from its link; a "|stamp" after it is ignored) → the entity
        panel, its network and its timeline in that language; a name no document mentions says so."""
        ref = (ref or "").split("|")[0]
        language, _, name = ref.partition(":")
        if language not in ("es", "en"):  # a bare name: English
            language, name = "en", ref
        name = name.strip()
        try:
            detail = self.kb.entity(name) if name else None
        except PeruQAError:
            detail = None
        if detail is None:
            message = (f"Ningún documento indexado menciona «{name}»." if language == "es" else
                       f"No indexed document mentions “{name}”.") if name else (
                "Elija un nombre." if language == "es" else "Choose a name.")
            return EntityUpdate(f"<p class='entity-none'>{html.escape(message)}</p>", "", "", language, False)
        heads = _ENTITY_HEADS[language]
        return EntityUpdate(entity_panel(detail, language, links=True),
                            f"<h4>{html.escape(heads[0])}</h4>{network_svg(detail, language)}",
                            f"<h4>{html.escape(heads[1])}</h4>{timeline_svg(detail, language)}", language, True)

    # --- evidence viewer --------------------------------------------------------------------------
    def open_citation(self, turns: list[Turn], ref: str) -> tuple[PageView | None, dict | None, str]:
        """The view for "turn:n" (citation n of the turn-th answer) or "doc:<id>" (a document's first page).

        Returns (view, viewer state for previous/next, message when there is nothing to show)."""
        ref = (ref or "").split("|")[0].strip()
        if ref.startswith("doc:"):  # "doc:<id>", or "doc:<id>@<page>" (a document in an entity panel)
            doc_id, _, page = ref[4:].partition("@")
            return self.move({"doc_id": doc_id, "page": int(page) if page.isdigit() else None, "section": 0,
                              "quotes": []}, 0)
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
        record = self.kb.document(state["doc_id"])
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
        self._wait_for_model()
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

    def check(self, user: str | None, action: str) -> None:
        """PermissionDenied, saying why, unless the logged-in `user` may do `action` (auth.require)."""
        require(self.accounts, user, action)

    def may(self, user: str | None, action: str) -> bool:
        """Whether the logged-in `user` may do `action` (auth.can): what the page shows them."""
        return can(self.accounts, user, action)

    def audit_html(self, limit: int = AUDIT_ROWS) -> str:
        """The audit log's latest entries (time, user, action, file), newest first, for the Library tab."""
        entries = self.kb.log(limit)
        if not entries:
            return "<div class='pqa-docs'><p>No documents added, replaced or removed yet.</p></div>"
        rows = "".join(
            f"<tr><td>{html.escape(e.time.replace('T', ' ')[:19])}</td><td>{html.escape(e.user)}</td>"
            f"<td>{html.escape(e.action)}</td><td>{html.escape(Path(e.file).name)}</td>"
            f"<td>{html.escape(e.title)}</td></tr>" for e in entries)
        return ("<div class='pqa-docs'><table><tr><th>Time (UTC)</th><th>User</th><th>Action</th><th>File</th>"
                f"<th>Title</th></tr>{rows}</table></div>")

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

    def add_files(self, paths: list[str], user: str | None = None) -> Iterator[UploadOutcome]:
        """Index uploaded files in the worker thread, yielding progress and per-file result lines. `user` is the
        logged-in user (None without accounts); one who may not add gets PermissionDenied before anything is
        staged."""
        self.check(user, "add")
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
                return self.writer().add(staged, progress=progress, user=actor(user),
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
            yield UploadOutcome(lines + finished + ([f"… {status}"] if status and status != "done" else []), False,
                                settled=kind == "result")
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

    def remove(self, doc_id: str, user: str | None = None) -> str:
        """Remove a document for `user` (None without accounts); PermissionDenied when they may not."""
        self.check(user, "remove")
        if not doc_id:
            return "Choose a document to remove."
        doc = self._worker.submit(lambda: self.writer().remove(doc_id, user=actor(user))).result()
        source = Path(doc.source)
        if source.parent == self.uploads.resolve():
            source.unlink(missing_ok=True)
        return f"removed: {doc.title} ({doc.id})"

    # --- the page's handlers: plain data in and out; `build_app` wires them to the widgets -----------------
    def respond(self, message: str, chat: list | None, turns: list[Turn] | None, doc_ids: list | None = None,
                languages: list | None = None, since: str = "", until: str = "",
                mentioning: list | None = None) -> Iterator[ChatUpdate]:
        """A chat question: shown at once with "…", then its answer, the sources panel and the conversation with
        the new turn. The filter widgets' values narrow the search (`mentioning`: only documents that mention
        one of these entities); a malformed date is said in the chat. Names in the answer and its sources link
        to their entity panels."""
        chat = list(chat or [])
        turns, asked = questions_asked(chat, turns)
        message = (message or "").strip()
        if not message:
            yield ChatUpdate("", chat, turns)
            return
        try:
            filters = _filters(doc_ids, languages, since, until, mentioning)
        except PeruQAError as exc:
            yield ChatUpdate(message, chat + [{"role": "assistant", "content": _md_escape(str(exc))}], turns)
            return
        chat = chat + [{"role": "user", "content": _md_escape(message)}, {"role": "assistant", "content": "…"}]
        yield ChatUpdate("", chat, turns)
        turn = len(turns)
        for text, final in self.answer_stream(message, asked, filters, turn=turn):
            chat = chat[:-1] + [{"role": "assistant", "content": text}]
            if final is None:
                yield ChatUpdate("", chat, turns)
            else:
                turns = turns + [Turn(final, filters, self.describe(filters))]
                yield ChatUpdate("", chat, turns, sources_html(final, turn, self.passage_names(final)))

    def ask_json(self, question: str, history: list | None = None, filters: dict | None = None) -> dict:
        """The /ask API: the answer as JSON (text, abstained, citations, filters) for scripts."""
        filt = Filters.coerce(filters or None)
        events = list(self.answer_stream(question, history or [], filt))
        final = events[-1][1] if events else None
        if final is None:
            return {}
        return final.to_dict() | {"filters": filt.to_dict() if filt else {}}

    def open_ref(self, ref: str, turns: list[Turn] | None, shown: dict | None = None) -> ViewerUpdate:
        """A click on [n], "Open in page" ("turn:n") or a Library row's "Open" ("doc:<id>"); `shown` is the
        viewer's state before (the download button stays when the same document stays open)."""
        view, state, message = self.open_citation(turns or [], ref)
        return self._viewer_update(view, state, message, shown, to_chat=(ref or "").startswith("doc:"))

    def turn_page(self, state: dict | None, step: int) -> ViewerUpdate:
        """Previous (-1) / next (+1) page or section of the document in the viewer."""
        view, new_state, message = self.move(state, step)
        return self._viewer_update(view, new_state, message, state)

    def _viewer_update(self, view: PageView | None, state: dict | None, message: str, shown: dict | None,
                       to_chat: bool = False) -> ViewerUpdate:
        keep = view is not None and bool(shown) and shown.get("doc_id") == view.doc_id
        original = None if keep or view is None else self.original_copy(view.doc_id)
        return ViewerUpdate(view_html(view, message), state, original, keep,
                            can_prev=view is not None and not view.at_start,
                            can_next=view is not None and not view.at_end, to_chat=to_chat)

    def library(self) -> LibraryView:
        """The Library tab, the document choices and the summary as they are now."""
        return LibraryView(self.documents_html(), self.document_choices(), self.summary(), self.entity_choices())

    def upload(self, paths: list[str] | None, user: str | None = None) -> Iterator[UploadUpdate]:
        """"Add to the index": the result lines as files finish, with the Library shown again as soon as a file's
        outcome is final (so that a file said to be added is listed) and at the end. PermissionDenied for a user
        who may not add."""
        self.check(user, "add")
        if not paths:
            yield UploadUpdate("Choose one or more files first.")
            return
        for outcome in self.add_files(paths, user):
            yield UploadUpdate("\n".join(outcome.lines),
                               self.library() if outcome.done or outcome.settled else None)

    def ask_removal(self, doc_id: str | None, user: str | None = None) -> RemovalPrompt:
        """"Remove from the index…": the confirmation question naming the document. PermissionDenied for a user
        who may not remove."""
        self.check(user, "remove")
        if not doc_id:
            return RemovalPrompt(False, None, "Choose a document to remove.")
        record = self.kb.document(doc_id)
        if record is None:
            return RemovalPrompt(False, None, "That document is not in the index any more.")
        return RemovalPrompt(True, f"Remove **{_md_escape(record.title)}** ({_md_escape(Path(record.source).name)}, "
                             f"{record.n_chunks} passages) from the index?", "")

    def confirm_removal(self, doc_id: str | None, user: str | None = None) -> tuple[str, LibraryView]:
        """"Yes, remove it": the result line and the Library after it. PermissionDenied for a user who may not."""
        self.check(user, "remove")
        try:
            line = self.remove(doc_id or "", user)
        except Exception as exc:  # noqa: BLE001 - said in the result box (the document was removed meanwhile, ...)
            line = f"failed: {exc}"
        return line, self.library()

    def close(self) -> None:
        self._worker.shutdown(wait=True)
        self._prefetcher.shutdown(wait=True)
        self._files.cleanup()
        if self._writer is not None:
            self._writer.close()


#: The entity panel's picture headings: (network, timeline) per language.
_ENTITY_HEADS = {"en": ("Who and what appear with it", "Dated mentions, per year"),
                 "es": ("Quién y qué aparecen con él", "Menciones fechadas, por año")}


def _result_line(result: FileResult) -> str:
    name = Path(result.path).name
    if result.status in ("added", "replaced"):
        detail = f"{result.chunks} passages" + (f", {result.pages} pages" if result.pages > 1 else "")
        return f"{result.status}: {name} — {result.title} ({detail})"
    return f"{result.status}: {name}" + (f" ({result.reason})" if result.reason else "")


#: Installed on page load: [n] links in answers and "Open"/"Copy citation" buttons work by event delegation
#: (the chat and sources are re-rendered on every answer); a click hands "turn:n" or "doc:<id>" to the server
#: through a hidden textbox and button. A name's link (in an answer: #pqa-entity-<language>-<name>; in the
#: sources: data-pqa-entity="<language>:<name>") hands "<language>:<name>" to the entity panel the same way.
JS = r"""
() => {
  if (window.__pqaInstalled) return;
  window.__pqaInstalled = true;
  const open = (ref, to) => {
    const where = to || 'open';
    const box = document.querySelector(`#pqa-${where}-ref textarea, #pqa-${where}-ref input`);
    const button = document.querySelector(`#pqa-${where}-btn`);
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
    const named = event.target.closest('a[href*="#pqa-entity-"]');
    if (named) {
      const m = named.getAttribute('href').match(/#pqa-entity-(en|es)-(.+)$/);
      event.preventDefault(); event.stopPropagation();
      if (m) open(m[1] + ':' + decodeURIComponent(m[2]), 'entity');
      return;
    }
    const entity = event.target.closest('[data-pqa-entity]');
    if (entity) { event.preventDefault(); event.stopPropagation(); open(entity.dataset.pqaEntity, 'entity'); return; }
    const opener = event.target.closest('[data-pqa-open]');
    if (opener) { event.preventDefault(); event.stopPropagation(); open(opener.dataset.pqaOpen); return; }
    const copier = event.target.closest('[data-pqa-copy]');
    if (copier) { event.preventDefault(); event.stopPropagation(); copy(copier.dataset.pqaCopy, copier); }
  }, true);
}
"""


def _filters(docs: list[str] | None, languages: list[str] | None, date_from: str | None,
             date_to: str | None, mentioning: list[str] | None = None) -> Filters | None:
    """The chat's filter widgets as Filters (None when nothing is narrowed)."""
    filters = Filters(doc_ids=list(docs) if docs else None, languages=list(languages) if languages else None,
                      date_from=(date_from or "").strip() or None, date_to=(date_to or "").strip() or None,
                      entities=list(mentioning) if mentioning else None)
    return None if filters.empty else filters


# --- from the handlers' plain data to Gradio updates (gradio is imported by build_app, before these run) --------

def chat_outputs_of(update: ChatUpdate) -> tuple:
    """(question box, chat, sources, turns); sources left alone while the answer is not final."""
    import gradio as gr

    return update.box, update.chat, gr.skip() if update.sources is None else update.sources, update.turns


def viewer_outputs_of(update: ViewerUpdate) -> tuple:
    """(viewer, viewer state, download button, previous, next)."""
    import gradio as gr

    download = gr.skip() if update.keep_download else gr.update(value=update.download,
                                                                 visible=update.download is not None)
    return (update.html, update.state, download, gr.update(interactive=update.can_prev),
            gr.update(interactive=update.can_next))


def library_outputs_of(library: LibraryView | None) -> tuple:
    """(Library list, remove choice, "Search only in" documents, summary, "Mentioning" entities); all left
    alone for None."""
    import gradio as gr

    if library is None:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
    return (library.docs_html, gr.update(choices=library.choices, value=None), gr.update(choices=library.choices),
            library.summary, gr.skip() if library.entities is None else gr.update(choices=library.entities))


def entity_outputs_of(update: EntityUpdate) -> tuple:
    """(entity box shown, panel, network, timeline)."""
    import gradio as gr

    return gr.update(visible=True), update.html, update.network, update.timeline


def build_app(service: ChatService):
    """The Gradio Blocks app (not launched): the layout, and each widget's event wired to a `ChatService` handler
    (which takes and returns plain data; the functions here only turn it into Gradio updates)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home: this machine may be offline
    # Gradio's queue trips pandas deprecation warnings on every request: not the user's concern.
    warnings.filterwarnings("ignore", module=r"gradio(\.|$)")
    import gradio as gr

    # With accounts, what changes documents starts hidden and `permitted` shows it on load to those who may (Gradio
    # 6 keeps the button of a tab hidden after the page rendered; a tab shown later does appear).
    anyone_may_change = service.may(None, "add")
    with gr.Blocks(title="peru-qa", analytics_enabled=False) as demo:
        gr.Markdown("## peru-qa — organized crime in Peru, answered from the documents")
        summary = gr.Markdown(service.summary())
        status = gr.Markdown(service.status_line(), elem_id="pqa-status")
        ticker = gr.Timer(1.0, active=service.busy)
        known_documents = gr.State(-1)  # documents listed by this page: the Library is refreshed when it changes
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
                            mention_filter = gr.Dropdown(choices=service.entity_choices(), multiselect=True,
                                                         filterable=True, value=[],
                                                         label="Mentioning · Que mencionen (people, groups, "
                                                               "places · personas, grupos, lugares)",
                                                         elem_id="pqa-filter-entities")
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
                        with gr.Column(visible=False, elem_id="pqa-entity-box",
                                       elem_classes=["pqa-entity-box"]) as entity_box:
                            with gr.Row():
                                gr.Markdown("**People, groups, places · Personas, grupos, lugares**")
                                close_entity = gr.Button("Close · Cerrar", size="sm", scale=0,
                                                         elem_id="pqa-entity-close")
                            entity_html = gr.HTML("", elem_id="pqa-entity")
                            entity_network = gr.HTML("", elem_id="pqa-entity-network")
                            entity_timeline = gr.HTML("", elem_id="pqa-entity-timeline")
                        viewer = gr.HTML(view_html(None), elem_id="pqa-viewer")
                        with gr.Row():
                            prev_page = gr.Button("◀ Previous", size="sm", interactive=False, elem_id="pqa-prev")
                            next_page = gr.Button("Next ▶", size="sm", interactive=False, elem_id="pqa-next")
                            original = gr.DownloadButton("Download original", size="sm", visible=False,
                                                         elem_id="pqa-original")
                        sources = gr.HTML(sources_html(None), elem_id="pqa-sources")
                open_ref = gr.Textbox(visible="hidden", elem_id="pqa-open-ref")
                open_btn = gr.Button("open", visible="hidden", elem_id="pqa-open-btn")
                entity_ref = gr.Textbox(visible="hidden", elem_id="pqa-entity-ref")
                entity_btn = gr.Button("entity", visible="hidden", elem_id="pqa-entity-btn")
            with gr.Tab("Library", id="library"):
                gr.Markdown("Every indexed document. **Open** shows it in the viewer of the Chat tab.")
                docs = gr.HTML(service.documents_html(), elem_id="pqa-docs")
                with gr.Row(visible=anyone_may_change) as remove_row:
                    choice = gr.Dropdown(choices=service.document_choices(), label="Document", scale=4,
                                         filterable=True, elem_id="pqa-remove-choice")
                    remove = gr.Button("Remove from the index…", variant="stop", scale=1, elem_id="pqa-remove")
                with gr.Row(visible=False) as confirm_row:
                    confirm_text = gr.Markdown(elem_id="pqa-confirm-text")
                    confirm = gr.Button("Yes, remove it", variant="stop", elem_id="pqa-confirm")
                    cancel = gr.Button("Cancel", elem_id="pqa-cancel")
                removed = gr.Textbox(label="Result", lines=1, interactive=False, elem_id="pqa-removed")
                gr.Markdown("**Changes** (audit log, newest first): who added, replaced or removed which file, "
                            "and when.")
                audit = gr.HTML(service.audit_html(), elem_id="pqa-audit")
            with gr.Tab("Add documents", id="add", visible=anyone_may_change) as add_tab:
                gr.Markdown(f"PDF, TXT, Markdown, HTML or DOCX, up to {max_upload_mb():g} MB each. New documents can "
                            "be asked about as soon as they are indexed; the chat keeps answering meanwhile.")
                files = gr.File(file_count="multiple", file_types=UPLOAD_TYPES, type="filepath", label="Documents",
                                elem_id="pqa-files")
                add = gr.Button("Add to the index", variant="primary", elem_id="pqa-add")
                results = gr.Textbox(label="Results", lines=6, interactive=False, elem_id="pqa-results")

        def as_user(handler):
            """Gradio hands the request (with its logged-in user) to a parameter annotated gr.Request, read with
            typing.get_type_hints: this module's annotations are strings, and `gr` is imported in this function,
            not at module level, so the string 'gr.Request' would not resolve; the class itself does."""
            handler.__annotations__["request"] = gr.Request
            return handler

        def user_of(request) -> str | None:
            return getattr(request, "username", None) or None

        def refused(exc: PermissionDenied) -> Exception:
            """A user whose role does not allow an action gets the reason as an error, in the page and through the
            API alike (the handlers are the API endpoints)."""
            return gr.Error(str(exc), title="Not allowed", print_exception=False)

        # --- handlers -----------------------------------------------------------------------------------------
        def respond(message: str, chat: list, conversation: list, doc_ids: list, languages: list, since: str,
                    until: str, mentioning: list):
            for update in service.respond(message, chat, conversation, doc_ids, languages, since, until,
                                          mentioning):
                yield chat_outputs_of(update)

        def respond_from_url(message: str, chat: list, conversation: list, doc_ids: list, languages: list,
                             since: str, until: str, mentioning: list):
            if not (message or "").strip():  # no ?q=: leave the chat alone (the user may be typing already)
                yield gr.skip(), gr.skip(), gr.skip(), gr.skip()
                return
            yield from respond(message, chat, conversation, doc_ids, languages, since, until, mentioning)

        def open_citation(ref: str, conversation: list, shown: dict | None):
            update = service.open_ref(ref, conversation, shown)
            return (*viewer_outputs_of(update), gr.Tabs(selected="chat") if update.to_chat else gr.skip())

        def export_conversation(conversation: list):
            paths = service.export_files(conversation or [])
            return gr.update(value=paths or None, visible=bool(paths))

        @as_user
        def upload(paths: list[str] | None, request: gr.Request):
            try:
                for update in service.upload(paths, user_of(request)):
                    yield update.results, *library_outputs_of(update.library)
            except PermissionDenied as exc:
                raise refused(exc) from None

        @as_user
        def ask_removal(doc_id: str | None, request: gr.Request):
            try:
                prompt = service.ask_removal(doc_id, user_of(request))
            except PermissionDenied as exc:
                raise refused(exc) from None
            return (gr.update(visible=prompt.show), gr.skip() if prompt.question is None else prompt.question,
                    prompt.message)

        @as_user
        def drop(doc_id: str | None, request: gr.Request):
            try:
                line, library = service.confirm_removal(doc_id, user_of(request))
            except PermissionDenied as exc:
                raise refused(exc) from None
            return (line, gr.update(visible=False), *library_outputs_of(library))

        @as_user
        def permitted(request: gr.Request):
            """What this user may do is all they see: a reader gets no Remove and no Add documents tab (the
            handlers refuse them anyway); the audit log as it is now."""
            user = user_of(request)
            return (gr.update(visible=service.may(user, "remove")), gr.update(visible=service.may(user, "add")),
                    service.audit_html())

        def on_load(question: str | None):
            """Library widgets and the banner as they are now; a `?q=` in the URL (read by the browser) goes in
            the box, then is asked."""
            library = service.library()
            return (*library_outputs_of(library), len(library.choices), service.status_line(),
                    gr.Timer(active=service.busy), (question or "").strip()[:1000] or gr.skip())

        def tick(known: int):
            """While the start-up work runs: the banner, and the Library when documents were added meanwhile;
            the timer stops once the work is done."""
            busy = service.busy
            count = len(service.kb.documents())
            library = service.library() if count != known or not busy else None
            return (service.status_line(), gr.Timer(active=busy), count, *library_outputs_of(library))

        # --- wiring -------------------------------------------------------------------------------------------
        chat_inputs = [box, chatbot, turns, doc_filter, lang_filter, date_from, date_to, mention_filter]
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
        prev_page.click(lambda st: viewer_outputs_of(service.turn_page(st, -1)), [view_state], viewer_parts,
                        api_visibility="private", queue=False, concurrency_limit=None)
        next_page.click(lambda st: viewer_outputs_of(service.turn_page(st, 1)), [view_state], viewer_parts,
                        api_visibility="private", queue=False, concurrency_limit=None)
        # A name's panel: a few store queries (≤ 200 ms at 100k chunks), so it skips the queue as the viewer does.
        entity_btn.click(lambda ref: entity_outputs_of(service.open_entity(ref)), [entity_ref],
                         [entity_box, entity_html, entity_network, entity_timeline], api_visibility="private",
                         queue=False, concurrency_limit=None)
        close_entity.click(lambda: gr.update(visible=False), None, [entity_box], api_visibility="private",
                           queue=False)
        export.click(export_conversation, [turns], [exported], api_visibility="private")
        library_outputs = [docs, choice, doc_filter, summary, mention_filter]
        add.click(upload, [files], [results, *library_outputs], api_name="add_documents").then(
            service.audit_html, None, [audit], api_visibility="private")
        remove.click(ask_removal, [choice], [confirm_row, confirm_text, removed], api_visibility="private")
        cancel.click(lambda: gr.update(visible=False), None, [confirm_row], api_visibility="private")
        confirm.click(drop, [choice], [removed, confirm_row, *library_outputs], api_name="remove_document").then(
            service.audit_html, None, [audit], api_visibility="private")
        # The banner's refresh skips the queue: it must not wait behind answers, and takes milliseconds.
        ticker.tick(tick, [known_documents], [status, ticker, known_documents, *library_outputs],
                    api_visibility="private", queue=False, concurrency_limit=None)
        demo.load(permitted, None, [remove_row, add_tab, audit], api_visibility="private", queue=False)
        read_q = "(x) => new URLSearchParams(window.location.search).get('q') || ''"
        demo.load(on_load, [box], [*library_outputs, known_documents, status, ticker, box], js=read_q,
                  api_visibility="private").then(respond_from_url, chat_inputs, chat_outputs,
                                                 api_visibility="private")
        gr.api(service.ask_json, api_name="ask", concurrency_limit=4)
    return demo


def launch(kb: KnowledgeBase, host: str = "127.0.0.1", port: int = 7860, *, quiet: bool = False,
           prevent_thread_lock: bool = False, startup: Startup | None = None, warm: bool = True):
    """Start the app on host:port (accounts from PERU_QA_AUTH: `auth`); returns the Blocks (and service) when not
    blocking.

    `startup` (not started yet) brings the index up to date in the background while the page is served; the
    warm-up question per language then runs in it too, once the documents are in. Without it, the warm-up runs
    before serving (`warm=False` skips it)."""
    accounts = accounts_from_env()  # a malformed PERU_QA_AUTH fails here, before anything is served
    service = ChatService(kb, LLMClient.from_env(), accounts=accounts, startup=startup)
    if startup is not None:
        startup.warm = service.warm_up if warm else None
    elif warm:
        service.warm_up()
    demo = build_app(service)
    demo.queue(default_concurrency_limit=1)
    demo.launch(server_name=host, server_port=port, auth=accounts.login if accounts else None, show_error=True,
                quiet=quiet, prevent_thread_lock=True, css=CSS, js=JS, ssr_mode=False,
                max_file_size=f"{max_upload_mb():g}mb", footer_links=[])
    if startup is not None:  # once the page is served: on 2 busy cores the work would slow the launch down
        startup.start()
    if not prevent_thread_lock:
        demo.block_thread()
    return demo, service


__all__ = ["ChatService", "ChatUpdate", "EntityUpdate", "LibraryView", "RemovalPrompt", "UploadUpdate", "ViewerUpdate",
           "build_app", "launch", "questions_asked", "sanitize_filename", "sources_html", "EXAMPLES"]
