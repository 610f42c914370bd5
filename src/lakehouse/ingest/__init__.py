"""Landing zone -> bronze Delta tables (append-only, quarantine, ingest log).

Public surface: :func:`ingest` and its report types, the bronze contracts as ingest applies them
(:func:`sources`, from the dbt project's source declarations),
and the errors it raises.
"""

from lakehouse.ingest.bronze import INGEST_LOG_TABLE, QUARANTINE_TABLE, Bronze
from lakehouse.ingest.errors import IngestError, SchemaMismatchError, UnreadableFileError
from lakehouse.ingest.pipeline import FileResult, IngestProgress, IngestReport, discover, ingest
from lakehouse.ingest.rejects import REASON_CODES
from lakehouse.ingest.schemas import SourceSpec, source_for_table, sources

__all__ = [
    "INGEST_LOG_TABLE",
    "QUARANTINE_TABLE",
    "REASON_CODES",
    "Bronze",
    "FileResult",
    "IngestError",
    "IngestProgress",
    "IngestReport",
    "SchemaMismatchError",
    "SourceSpec",
    "UnreadableFileError",
    "discover",
    "ingest",
    "source_for_table",
    "sources",
]
