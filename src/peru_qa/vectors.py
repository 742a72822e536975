"""Dense vectors in FAISS, keyed by chunk id: exact inner product on normalized vectors, or from
`ann_min_vectors()` chunks on an IVF index (approximate: probes a fixed share of its lists).

Why IVF and these numbers (benchmarks/scale.py, benchmarks/RESULTS.md "Scale"): at 100k chunks exact search took
42 ms at p95, 43% of a hybrid retrieve (97 ms, loaded machine), and it grows linearly with the collection; IVF with
4·√n lists probing 2.5% of them kept recall@10 0.99 of exact at 0.4 ms p50 / 8.6 ms p95. HNSW (M=32) reached
only 0.89 recall at efSearch 128 on the same vectors, took 2.5x longer to build, needs ~17% more memory, and
cannot remove a vector, which every replaced or removed document needs."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from .config import env_float

# Searches are one query at a time: a single thread is fastest, and idle OpenMP threads spinning on a busy
# 2-core machine cost 30x (measured: 32 ms instead of 1 ms at 10k vectors while indexing ran).
faiss.omp_set_num_threads(1)

#: Share of the IVF lists probed per query, and the least number probed (recall@10 0.9915 of exact at 100k with
#: 32 of 1264 lists, 0.97 with 16: benchmarks/RESULTS.md "Scale"). A share, not a count, keeps recall as n grows.
PROBE_SHARE = 0.025
MIN_PROBES = 16
#: A filtered search over at most this many allowed chunks is done exactly (an IVF probe could miss them all).
EXACT_FILTER_MAX = 50_000


def ann_min_vectors() -> int:
    """From this many vectors on, a new or rebuilt index is approximate (PERU_QA_ANN_MIN_VECTORS, default 100k)."""
    return max(1, int(env_float("PERU_QA_ANN_MIN_VECTORS", 100_000)))


class VectorIndex:
    def __init__(self, dim: int, index: faiss.Index | None = None):
        self.dim = dim
        self.index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self._ivf = faiss.try_extract_index_ivf(self.index)
        self._ids: np.ndarray | None = None  # its ids, gathered once per change (see `ids`)

    @classmethod
    def build(cls, dim: int, ids: np.ndarray, vectors: np.ndarray) -> VectorIndex:
        """An index of these vectors: exact below `ann_min_vectors()`, IVF from there on."""
        if len(ids) < ann_min_vectors():
            out = cls(dim)
            out.add(ids, vectors)
            return out
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        nlist = max(1, min(int(4 * np.sqrt(len(ids))), len(ids) // 39))  # faiss wants >= 39 points per list
        ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(0).choice(len(ids), min(len(ids), 64 * nlist), replace=False)
        ivf.train(vectors[np.sort(sample)])
        ivf.nprobe = min(nlist, max(MIN_PROBES, int(np.ceil(PROBE_SHARE * nlist))))
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # stored vectors by chunk id (exact fusion scores)
        out = cls(dim, ivf)
        out.add(ids, vectors)
        return out

    @property
    def approximate(self) -> bool:
        return self._ivf is not None

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def copy(self) -> VectorIndex:
        return VectorIndex(self.dim, faiss.clone_index(self.index))

    def ids(self) -> np.ndarray:
        """The chunk ids held, gathered once per change (the companion side asks on every English question)."""
        if self._ids is None and self._ivf is None:
            self._ids = faiss.vector_to_array(self.index.id_map).astype(np.int64)
        if self._ids is None:
            lists = self._ivf.invlists
            parts = [faiss.rev_swig_ptr(lists.get_ids(n), lists.list_size(n)).copy()
                     for n in range(self._ivf.nlist) if lists.list_size(n)]
            self._ids = np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)
        return self._ids

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of these chunk ids (exact scores for candidates the other retriever found)."""
        return self.index.reconstruct_batch(np.ascontiguousarray(ids, dtype=np.int64))

    def similarity(self, query: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Cosine of `query` with these chunks' vectors (the dense score of the other retrievers' candidates); NaN
        for an id this index does not hold (a chunk in another language for the companion, or one removed since),
        as `pgstore.PgVectors.similarity` gives: fusion fills those in, it never looks them up."""
        ids = np.asarray(ids, dtype=np.int64)
        out = np.full(len(ids), np.nan, dtype=np.float64)
        held = np.isin(ids, self.ids())
        if held.any():
            out[held] = self.vectors(ids[held]) @ np.asarray(query, dtype=np.float32).ravel()
        return out

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self._ids = None
            self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids.astype(np.int64))

    def remove(self, ids: np.ndarray) -> None:
        if not len(ids):
            return
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        self._ids = None
        if self._ivf is None:
            self.index.remove_ids(faiss.IDSelectorBatch(ids))
        else:  # the IVF's id → vector table only removes by an explicit array
            self.index.remove_ids(faiss.IDSelectorArray(len(ids), faiss.swig_ptr(ids)))

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (chunk ids, cosine scores); `allowed` restricts to those chunk ids."""
        if len(self) == 0 or k <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        query = query.reshape(1, -1).astype(np.float32)
        params = None
        if allowed is not None:
            if len(allowed) == 0:
                return np.zeros(0, np.int64), np.zeros(0, np.float32)
            if self._ivf is not None and len(allowed) <= EXACT_FILTER_MAX:
                return self._exact_among(query[0], k, allowed)
            selector = faiss.IDSelectorBatch(allowed.astype(np.int64))
            params = (faiss.SearchParameters(sel=selector) if self._ivf is None else
                      faiss.SearchParametersIVF(sel=selector, nprobe=self._ivf.nprobe))
        scores, ids = self.index.search(query, min(k, len(self)), params=params)
        keep = ids[0] >= 0
        return ids[0][keep], scores[0][keep]

    def _exact_among(self, query: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        have = np.intersect1d(allowed.astype(np.int64), self.ids(), assume_unique=False)
        if not len(have):
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        scores = self.vectors(have) @ query
        top = np.argsort(-scores, kind="stable")[:k]
        return have[top], scores[top].astype(np.float32)

    def save(self, path: Path) -> None:
        faiss.write_index(self.index, str(path))

    @classmethod
    def load(cls, path: Path) -> VectorIndex:
        index = faiss.read_index(str(path))
        return cls(index.d, index)
