"""The derived search indexes of one open index (FAISS vectors + bm25s keyword arrays), by generation.

SQLite is the source of truth; every committed change bumps its `generation`. The derived indexes for a
generation are built from SQLite (reusing the previous vectors where they can), written to their own folder, and
the manifest is pointed at them last (`Store.save_derived`). Searches keep using the indexes they hold until a
newer set is swapped in, so a long add never stops a search; another process's writes are picked up by
comparing the manifest's stamp and the database's generation on each search.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from .keyword import KeywordIndex
from .store import Derived, Store
from .vectors import VectorIndex


class DerivedIndexes:
    """Which derived indexes this process searches, and how they are brought up to the database's state."""

    def __init__(self, store: Store, info: Callable[[], dict]):
        """`info` gives the model facts written to the manifest ({"model": ..., "dimension": ...})."""
        self.store = store
        self._info = info
        self._derived: Derived | None = None
        self._stamp = -1
        self._lock = threading.RLock()

    def publish(self) -> None:
        """Bring the derived files up to SQLite's state and point the manifest at them."""
        with self.store.writer():
            self.publish_locked()

    def publish_locked(self) -> None:
        """(Caller holds the writer lock.) Searches go on with the old indexes until the new ones are swapped in."""
        generation = self.store.generation
        with self._lock:
            previous = self._derived
        if self.store.manifest().get("generation") == generation:
            current = previous if previous is not None and previous.generation == generation else None
            current = current or self.store.load_derived()
            if current is not None:
                self.swap(current)
                return
        derived = self.build(previous or self.store.load_derived(current_only=False))
        self.save(derived)

    def save(self, derived: Derived) -> None:
        """(Caller holds the writer lock.) Write `derived` as the index's current set and search it from now on."""
        self.store.save_derived(derived, self._info())
        self.swap(derived)

    def swap(self, derived: Derived) -> None:
        with self._lock:
            self._derived, self._stamp = derived, self.store.manifest_stamp()

    def build(self, previous: Derived | None = None) -> Derived:
        """Derived indexes for the database as it is now (empty ones before the first document)."""
        dim = int(self.store.meta("dimension") or 0)
        if dim:
            return self.store.build_derived(dim, previous)
        return Derived(self.store.generation, VectorIndex(1), KeywordIndex.build(np.zeros(0, np.int64), []))

    def stored(self) -> Derived | None:
        """The derived files as the manifest points to them; None when missing, damaged or stale (`check`)."""
        return self.store.load_derived()

    def current(self) -> Derived:
        """Derived indexes for searching; picks up other processes' writes without a restart."""
        with self._lock:
            derived, known = self._derived, self._stamp
        if derived is not None and self.store.manifest_stamp() == known and \
                derived.generation == self.store.generation:
            return derived
        loaded = self.store.load_derived()
        if loaded is not None:
            self.swap(loaded)
            return loaded
        # Stale or damaged on disk: rebuild from SQLite if nobody is writing, else keep what we have.
        if self.store.try_lock():
            try:
                self.publish_locked()
            finally:
                self.store.unlock()
        elif derived is None:
            with self._lock:
                self._derived = self.build()
        with self._lock:
            return self._derived


__all__ = ["DerivedIndexes", "Derived"]
