"""Landing zone -> bronze Delta tables (append-only, quarantine, ingest log).

Public surface: :func:`ingest` and its report types, the bronze contracts in ``SOURCES``,
and the errors it raises.
"""

from lakehouse.ingest.bronze import INGEST_LOG_TABLE, QUARANTINE_TABLE, Bronze
from lakehouse.ingest.errors import IngestError, SchemaMismatchError, UnreadableFileError
from lakehouse.ingest.pipeline import FileResult, IngestProgress, IngestReport, discover, ingest
from lakehouse.ingest.rejects import REASON_CODES
from lakehouse.ingest.schemas import EVENT_TYPES, SOURCES, SOURCES_BY_TABLE

__all__ = [
    "EVENT_TYPES",
    "INGEST_LOG_TABLE",
    "QUARANTINE_TABLE",
    "REASON_CODES",
    "SOURCES",
    "SOURCES_BY_TABLE",
    "Bronze",
    "FileResult",
    "IngestError",
    "IngestProgress",
    "IngestReport",
    "SchemaMismatchError",
    "UnreadableFileError",
    "discover",
    "ingest",
]
