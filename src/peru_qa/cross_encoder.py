"""The cross-encoder reader: the default model's first layers read the question and a sentence together and score
how well the sentence answers it. The extractive reader (reader.py) re-ranks its fitted ranker's best sentences by
ranker + weight × this score.

What ships is a small adapter (`reader_ce.safetensors`: low-rank updates A, B of every linear layer of the first
`layers` layers of multilingual-e5-small and a linear head; `reader_ce.json`: its shape, how the reader uses it and
how it was trained, by benchmarks/train_reader.py). At load time the updates are merged into the base weights
(W + scale · B · A), so a score costs one plain BERT forward over all of a question's candidates, padded into one
batch. Loaded once per process (the first question that needs it) and shared by all threads; its forward pass
runs as a TorchScript trace, outside the GIL, as the embedder's question path does.

`PERU_QA_READER=ranker` turns it off (the fitted ranker alone orders sentences); `PERU_QA_READER_PRECISION`
picks fp32, bf16 or int8 (dynamic quantization of the linear layers); the default is benchmarks/RESULTS.md's
choice ("Cross-encoder reader (issue 31)").
"""

from __future__ import annotations

import json
import logging
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: The adapter and its configuration (benchmarks/train_reader.py writes both).
ADAPTER_FILE = Path(__file__).with_name("reader_ce.safetensors")
CONFIG_FILE = ADAPTER_FILE.with_suffix(".json")
#: LoRA scale (the adapters' output is multiplied by it in training; merged as W + SCALE · B · A).
SCALE = 2.0
#: Tokens of question + sentence read (longer pairs are cut at the end of the sentence).
MAX_LENGTH = 128
#: bfloat16 where the CPU computes it natively, else float32 (benchmarks/cross_encoder_eval.py, RESULTS.md
#: "Cross-encoder reader (issue 31)": on held-out dev questions bf16 picks the same best sentence as fp32 for
#: 99.7-100 %; int8 dynamic quantization loses most of the gain: ranker + 3 x CE top-1 0.812 in fp32 and
#: bf16, 0.712 in int8).
PRECISIONS = ("fp32", "bf16", "int8")


def default_precision() -> str:
    from .embeddings import _native_bf16

    return "bf16" if _native_bf16() else "fp32"

_log = logging.getLogger(__name__)


def enabled() -> bool:
    """Whether the reader uses the cross-encoder: the adapter ships and PERU_QA_READER does not say "ranker"."""
    choice = os.environ.get("PERU_QA_READER", "").strip().lower()
    if choice in ("ranker", "off", "0", "false", "no", "none"):
        return False
    return ADAPTER_FILE.is_file() and CONFIG_FILE.is_file()


def config() -> dict:
    return json.loads(CONFIG_FILE.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Use:
    """How the reader uses the scores: re-rank the ranker's best `top` sentences by rank + `weight` × score."""

    top: int
    weight: float


class CrossEncoder:
    """Scores question–sentence pairs (higher: the sentence answers the question)."""

    def __init__(self, precision: str | None = None, adapter: Path = ADAPTER_FILE, trace: bool = True):
        import torch
        from safetensors.torch import load_file
        from transformers import AutoTokenizer, BertModel
        from transformers.utils import logging as hf_logging

        from .e5convert import converted_model_path

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        cfg = json.loads(adapter.with_suffix(".json").read_text(encoding="utf-8"))
        self.precision = (precision or os.environ.get("PERU_QA_READER_PRECISION") or default_precision()).lower()
        if self.precision not in PRECISIONS:
            raise ValueError(f"PERU_QA_READER_PRECISION must be one of {', '.join(PRECISIONS)}")
        self.max_length = int(cfg.get("max_length", MAX_LENGTH))
        self.use = Use(int(cfg["top"]), float(cfg["weight"]))
        folder = converted_model_path()
        self._tokenizer = AutoTokenizer.from_pretrained(folder)
        bert = BertModel.from_pretrained(folder, num_hidden_layers=int(cfg["layers"]), add_pooling_layer=False)
        tensors = load_file(str(adapter))
        scale = float(cfg.get("scale", SCALE))
        with torch.no_grad():
            for i, layer in enumerate(bert.encoder.layer):
                for name in cfg["targets"]:
                    a = tensors[f"layer.{i}.{name}.lora_a"].float()
                    b = tensors[f"layer.{i}.{name}.lora_b"].float()
                    layer.get_submodule(name).weight += scale * (b @ a)
        head = torch.nn.Linear(bert.config.hidden_size, 1)
        with torch.no_grad():
            head.weight.copy_(tensors["head.weight"])
            head.bias.copy_(tensors["head.bias"])
        model = _scorer(bert, head).eval()
        if self.precision == "int8":
            with warnings.catch_warnings():  # torch's notice that dynamic quantization is moving to torchao
                warnings.simplefilter("ignore")
                model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        self._model = model
        self._traced = None
        if trace:
            self._traced = self._trace()

    def _trace(self):
        import torch

        sample = self._tokenizer(["query: a", "query: a longer question to pad the first"],
                                 ["passage: a", "passage: b"], padding=True, return_tensors="pt")
        try:
            with warnings.catch_warnings(), torch.inference_mode(), self._autocast():
                warnings.simplefilter("ignore")
                return torch.jit.trace(self._model, (sample["input_ids"], sample["attention_mask"]),
                                       strict=False, check_trace=False)
        except Exception as exc:  # noqa: BLE001 - a torch version that does not trace this: the plain path
            _log.info("cross-encoder runs without a trace: %s", exc)
            return None

    def _autocast(self):
        import contextlib

        import torch

        return torch.autocast("cpu", dtype=torch.bfloat16) if self.precision == "bf16" else contextlib.nullcontext()

    def score(self, question: str, sentences: list[str]) -> np.ndarray:
        """One score per sentence, all pairs in one padded batch."""
        import torch

        if not sentences:
            return np.zeros(0, dtype=np.float32)
        batch = self._tokenizer([f"query: {question}"] * len(sentences), [f"passage: {s}" for s in sentences],
                                padding=True, truncation="only_second", max_length=self.max_length,
                                return_tensors="pt")
        model = self._traced or self._model
        with torch.inference_mode(), self._autocast():
            out = model(batch["input_ids"], batch["attention_mask"])
        return out.float().numpy().astype(np.float32)


def _scorer(bert, head):
    """BERT → mean pooling → linear head, as one module (traced together)."""
    import torch

    class Scorer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert, self.head = bert, head

        def forward(self, input_ids, attention_mask):
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state.float()
            mask = attention_mask.unsqueeze(-1).float()
            return self.head((hidden * mask).sum(1) / mask.sum(1)).squeeze(-1)

    return Scorer()


_LOADED: dict[str, CrossEncoder | None] = {}
_LOCK = threading.Lock()


def get() -> CrossEncoder | None:
    """The process's cross-encoder (loaded on first use, shared across threads), or None when turned off or when
    it cannot load (the reader then orders by the ranker alone; the reason is logged once)."""
    if not enabled():
        return None
    precision = (os.environ.get("PERU_QA_READER_PRECISION") or default_precision()).lower()
    with _LOCK:
        if precision not in _LOADED:
            try:
                _LOADED[precision] = CrossEncoder(precision)
            except Exception as exc:  # noqa: BLE001 - a broken adapter must not break answering
                _log.warning("cross-encoder reader not loaded, using the ranker alone: %s", exc)
                _LOADED[precision] = None
        return _LOADED[precision]


__all__ = ["CrossEncoder", "Use", "enabled", "get", "config", "ADAPTER_FILE", "CONFIG_FILE"]
