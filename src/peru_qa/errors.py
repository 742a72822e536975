"""Errors a user can act on. Each message is one line that names the fix."""

from __future__ import annotations


class PeruQAError(Exception):
    """Base class: the CLI prints these as one line without a traceback."""


class UnsupportedFileType(PeruQAError):
    pass


class ExtractionError(PeruQAError):
    """A file could not be turned into text; the message is the reason shown per file."""


class EncryptedPDFError(ExtractionError):
    pass


class DocumentTooLarge(ExtractionError):
    pass


class ModelMismatchError(PeruQAError):
    pass


class ModelLoadError(PeruQAError):
    """The embedding model cannot be loaded: every file of a batch would fail, so the batch stops."""


class EmptyQueryError(PeruQAError, ValueError):
    pass


class IndexBusyError(PeruQAError):
    pass


class IndexCorruptError(PeruQAError):
    pass


class DocumentNotFound(PeruQAError, KeyError):
    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "document not found"


class BadFilterError(PeruQAError, ValueError):
    """A search filter that cannot be applied (unknown key, malformed date)."""


class BadDocumentError(PeruQAError, ValueError):
    """A document write a store refuses (vectors that do not fit, a source another document holds): nothing of it is
    written, and nothing already indexed is touched."""
