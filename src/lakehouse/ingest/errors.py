"""Errors a user can act on: each names the file (and column) and what to do next."""

from __future__ import annotations


class IngestError(Exception):
    """Base class for ingestion failures printed once at the CLI edge."""


class UnreadableFileError(IngestError):
    """A landing file that cannot be read at all: wrong format, wrong encoding, empty."""

    def __init__(self, path: str, why: str) -> None:
        super().__init__(f"{path}: {why}")
        self.path = path
        self.why = why


class SchemaMismatchError(IngestError):
    """A file or an existing bronze table whose columns disagree with the bronze contract."""


class ConcurrentWriteError(IngestError):
    """Another writer changed a bronze table in a way that conflicts with this commit."""


class LakeWriteError(IngestError):
    """The lake itself cannot be written (disk full, permissions): stops the whole run."""
