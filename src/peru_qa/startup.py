"""The chat's start-up work, done in the background so that the page is served as soon as the model is loaded.

Syncing documents/ into the index, adding the companion vectors an older index lacks and reading the reader's
sentences take from seconds to minutes; the chat answers meanwhile from what is already indexed (a search picks
up each newly committed generation by itself, see `derived.DerivedIndexes.current`) and says how far the work
is. The work writes through a second `KnowledgeBase` handle on the same index, sharing the loaded model, so
that it never shares a database connection with the chat's requests.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from .kb import KnowledgeBase
from .progress import progress_bar

log = logging.getLogger(__name__)

#: Phases, in the order they run ("model" loads the embedding model: questions wait for it; "starting" checks a
#: documents folder for changes, "preparing" starts the work on an index without one). "ready" and "failed" are
#: final.
PHASES = ("model", "starting", "preparing", "documents", "companion", "warming", "sentences", "ready", "failed")
_BARS = {"documents": ("file", "indexing"), "companion": ("chunk", "adding English vectors"),
         "sentences": ("chunk", "reading sentences")}


@dataclass(frozen=True)
class Status:
    """A snapshot of the start-up work, as plain data: what the page's banner and the answers' notice say."""

    phase: str = "model"
    #: Whether a documents folder is synced (the "checking" step then says so; answers meanwhile say so too).
    syncing: bool = True
    done: int = 0
    total: int = 0
    current: str = ""
    #: Documents in the index now: what answers are drawn from.
    indexed: int = 0
    error: str = ""

    @property
    def busy(self) -> bool:
        return self.phase not in ("ready", "failed")

    @property
    def indexing(self) -> bool:
        """Documents are still being added: answers may miss what is not indexed yet."""
        return self.phase in ("starting", "documents") or (self.phase == "model" and self.syncing)

    def line(self) -> str:
        """One line for the page's banner (empty once everything is ready)."""
        if self.phase == "model":
            return "Loading the search model (about 20 s on a laptop); questions are answered as soon as it is in."
        if self.phase == "starting":
            return "Checking the documents for changes…"
        if self.phase == "preparing":
            return f"Preparing the index for answers. Answers use the {self.indexed} indexed documents."
        if self.phase == "documents":
            now = f" (now: {self.current})" if self.current and self.current != "done" else ""
            left = max(self.total - self.done, 0)
            return (f"Indexing {self.done} of {self.total} documents{now}: answers use the {self.indexed} indexed "
                    f"so far. Left: {left} documents, then the reader's sentences.")
        if self.phase == "companion":
            return (f"Adding English vectors to the index: {self.done} of {self.total} passages. Answers use the "
                    f"{self.indexed} documents meanwhile.")
        if self.phase == "warming":
            return f"Loading the reader. Answers use the {self.indexed} indexed documents."
        if self.phase == "sentences":
            return (f"Reading sentences for the reader: {self.done} of {self.total}. All {self.indexed} documents "
                    "are indexed and answered; the first answers may take a little longer.")
        if self.phase == "failed":
            return (f"Background indexing stopped: {self.error}. Answers use the {self.indexed} documents indexed "
                    "(restart the app to try again).")
        return ""

    def notice(self, language: str) -> str:
        """The line an answer carries while documents are still being indexed ("" otherwise)."""
        if not self.indexing:
            return ""
        if self.total == 0:
            return ("Se están revisando los documentos: la respuesta usa los ya indexados." if language == "es"
                    else "The documents are being checked: this answer uses those already indexed.")
        if language == "es":
            return (f"Indexando {self.done} de {self.total} documentos: las respuestas usan los {self.indexed} "
                    "indexados hasta ahora.")
        return f"Indexing {self.done} of {self.total} documents: answers use the {self.indexed} indexed so far."

    def empty_text(self, language: str) -> str:
        """Instead of "the index has no documents" while the first ones are still being indexed."""
        if language == "es":
            return (f"Los documentos aún se están indexando ({self.indexed} de {self.total or '…'} hasta ahora): "
                    "vuelva a preguntar en un momento.")
        return (f"The documents are still being indexed ({self.indexed} of {self.total or '…'} so far): ask again "
                "in a moment.")


class Startup:
    """Brings `kb`'s index up to date in a background thread (see the module's docstring).

    `documents`: a folder mirrored into the index (documents/ for the default index; None for `--index`).
    `warm`: called once the documents are in (the chat answers a question per language, so that what loads
    lazily loads before users' questions). `answers`: also read the reader's sentences. `terminal`: draw the
    progress bars on stderr as `peru-qa add` does."""

    def __init__(self, kb: KnowledgeBase, documents: str | Path | None = None, *, answers: bool = True,
                 warm: Callable[[], None] | None = None, terminal: bool = True):
        self.kb = kb
        self.documents = Path(documents) if documents is not None else None
        self.answers = answers
        self.warm = warm
        self.terminal = terminal
        self._status = Status(syncing=documents is not None)
        #: Set once the embedding model is loaded (or failed to): questions and uploads wait for it.
        self.model_ready = threading.Event()
        self._lock = threading.Lock()
        self._bar: Callable[[int, int, str], None] | None = None
        self._thread = threading.Thread(target=self._run, name="peru-qa-startup", daemon=True)
        self._finished = threading.Event()

    def start(self) -> Startup:
        self._thread.start()
        return self

    def status(self) -> Status:
        """The current state, with the number of documents the chat's handle sees now."""
        with self._lock:
            status = self._status
        try:
            indexed = len(self.kb.documents())
        except Exception:  # noqa: BLE001 - a database that is down: say what we knew
            indexed = status.indexed
        return replace(status, indexed=indexed)

    def wait_for_model(self, timeout: float | None = None) -> bool:
        """Block until the embedding model is loaded (a question or an upload needs it; loading it twice at once
        would cost twice the time and memory). Not started: nothing to wait for, the caller loads it."""
        if self._thread.ident is None:
            return True
        return self.model_ready.wait(timeout)

    def wait(self, timeout: float | None = None) -> Status:
        """Block until the work is done (tests, `peru-qa serve` on exit); returns the final status."""
        self._finished.wait(timeout)
        return self.status()

    # --- the work ----------------------------------------------------------------------------------
    def _say(self, line: str) -> None:
        """One line on the terminal (where `peru-qa serve` runs), as the progress bars are."""
        if self.terminal:
            print(line, file=sys.stderr, flush=True)

    def _set(self, **changes) -> None:
        with self._lock:
            self._status = replace(self._status, **changes)

    def _phase(self, name: str) -> None:
        self._set(phase=name, done=0, total=0, current="")
        unit_desc = _BARS.get(name)
        self._bar = progress_bar(*unit_desc) if unit_desc and self.terminal else None

    def _progress(self, done: int, total: int, what: str) -> None:
        with self._lock:  # the sentences phase reports sentences, then words: each count as it comes
            self._status = replace(self._status, done=min(done, total), total=total, current=what)
        if self._bar is not None:
            self._bar(done, total, what)

    def _run(self) -> None:
        from . import bring_up_to_date

        writer: KnowledgeBase | None = None
        try:
            try:
                _ = self.kb.embedder  # loaded here, after the page is served, not before
            finally:
                self.model_ready.set()
            self._phase("starting" if self.documents is not None else "preparing")
            writer = KnowledgeBase(self.kb.location, embedder=self.kb.embedder)
            bring_up_to_date(writer, self.documents, self._progress, phase=self._phase)
            if self.warm is not None:
                self._phase("warming")
                self.warm()
            if self.answers:
                self._phase("sentences")
                from . import prepare_answers

                prepare_answers(writer, self._progress)
            self._phase("ready")
            self._say(f"peru-qa: index up to date ({self.status().indexed} documents)")
        except Exception as exc:  # noqa: BLE001 - the chat keeps answering from what is indexed
            log.exception("background indexing failed")
            self._set(phase="failed", error=str(exc) or type(exc).__name__)
            self._say(f"peru-qa: {self.status().line()}")
        finally:
            self.model_ready.set()
            if writer is not None:
                writer.close()
            self._finished.set()


__all__ = ["Startup", "Status", "PHASES"]
