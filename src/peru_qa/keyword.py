"""BM25 keyword search over pre-analysed chunk terms (bm25s: sparse arrays + JSON on disk)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import bm25s
import numpy as np

#: Lucene BM25 parameters; k1/b as Anserini's BEIR runs use.
BM25_PARAMS = {"k1": 0.9, "b": 0.4, "method": "lucene"}


class KeywordIndex:
    def __init__(self, chunk_ids: np.ndarray, retriever: bm25s.BM25 | None):
        self.chunk_ids = chunk_ids.astype(np.int64)
        self.retriever = retriever

    def __len__(self) -> int:
        return len(self.chunk_ids)

    @classmethod
    def build(cls, chunk_ids: np.ndarray, terms: list[list[str]]) -> KeywordIndex:
        if len(chunk_ids) == 0:
            return cls(np.zeros(0, np.int64), None)
        logging.getLogger("bm25s").setLevel(logging.ERROR)
        retriever = bm25s.BM25(**BM25_PARAMS)
        retriever.index(terms, show_progress=False)
        return cls(np.asarray(chunk_ids), retriever)

    def scores(self, tokens: list[str]) -> np.ndarray | None:
        """BM25 score of every chunk, aligned with `chunk_ids`; None when no query term is indexed."""
        if self.retriever is None or not tokens:
            return None
        ids = self.retriever.get_tokens_ids(tokens)
        if not ids:
            return None
        return self.retriever.get_scores_from_ids(ids)

    def share(self, token: str) -> float:
        """Share of chunks that contain `token` (0 when it is not indexed)."""
        if self.retriever is None or not len(self.chunk_ids):
            return 0.0
        i = self.retriever.vocab_dict.get(token)
        if i is None:
            return 0.0
        indptr = self.retriever.scores["indptr"]
        end = indptr[i + 1] if i + 1 < len(indptr) else len(self.retriever.scores["indices"])
        return float(end - indptr[i]) / len(self.chunk_ids)

    def lookup(self, scores: np.ndarray | None, ids: np.ndarray) -> np.ndarray:
        """Scores (from `scores()`) of the given chunk ids; 0 for ids not in this index."""
        ids = np.asarray(ids, dtype=np.int64)
        if scores is None or len(self.chunk_ids) == 0 or len(ids) == 0:
            return np.zeros(len(ids), np.float32)
        order = getattr(self, "_order", None)
        if order is None:
            order = self._order = np.argsort(self.chunk_ids, kind="stable")
        pos = np.clip(np.searchsorted(self.chunk_ids, ids, sorter=order), 0, len(order) - 1)
        rows = order[pos]
        found = self.chunk_ids[rows] == ids
        return np.where(found, scores[rows], 0.0).astype(np.float32)

    def search(self, tokens: list[str], k: int, allowed: np.ndarray | None = None,
               scores: np.ndarray | None = None, alone: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (chunk ids, BM25 scores) with a positive score; `allowed` restricts to those ids.
        `scores` may pass in what `scores(tokens)` returned, to avoid computing it twice. Always exact, so `alone`
        (the keyword search is the whole ranking) changes nothing here."""
        if self.retriever is None or not tokens or k <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        scores = self.scores(tokens) if scores is None else scores
        if scores is None:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        if allowed is not None:
            scores = np.where(np.isin(self.chunk_ids, allowed), scores, 0.0)
        # Select among the chunks that hold a query term only: at 1M chunks a partition of the whole score array
        # was 40% of a hybrid retrieve (benchmarks/RESULTS.md "Scale").
        positive = np.flatnonzero(scores > 0)
        k = min(k, len(positive))
        if k == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        top = positive[np.argpartition(-scores[positive], k - 1)[:k]] if k < len(positive) else positive
        top = top[np.argsort(-scores[top], kind="stable")]
        return self.chunk_ids[top], scores[top].astype(np.float32)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "chunk_ids.npy", self.chunk_ids, allow_pickle=False)
        if self.retriever is not None:
            self.retriever.save(str(folder), show_progress=False)
        (folder / "keyword.json").write_text(json.dumps({"params": BM25_PARAMS, "chunks": len(self)}))

    @classmethod
    def load(cls, folder: Path) -> KeywordIndex:
        chunk_ids = np.load(folder / "chunk_ids.npy", allow_pickle=False)
        if len(chunk_ids) == 0:
            return cls(chunk_ids, None)
        logging.getLogger("bm25s").setLevel(logging.ERROR)
        # Memory-mapped: the score arrays (~300 MB at 1M chunks) stay in the page cache, shared between processes,
        # and only the postings a query reads become resident (benchmarks/RESULTS.md "Scale"). A newer generation
        # is written to a new folder, so a mapped file is never rewritten under a reader.
        retriever = bm25s.BM25.load(str(folder), show_progress=False, verbosity=0, mmap=True)
        return cls(chunk_ids, retriever)
