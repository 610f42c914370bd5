"""The bronze contract: one explicit schema per landing source, and the ingestion columns.

Landing files are parsed against these specs, never by inference, so a file that drifts
is quarantined or refused instead of silently changing a table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property

import pyarrow as pa

from lakehouse.contracts import DATA_TABLES, EMBEDDING_DIM, EVENT_TYPES

TIMESTAMP = pa.timestamp("us", tz="UTC")
# the instants a landing timestamp may name, [from, until): the app did not exist before
# the Unix epoch, and the upper bound keeps every value a date any tool can hold (the
# ingest clock's own future check refuses later values long before it)
VALID_TIMESTAMPS = (datetime(1970, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC))


# Schema evolution (decision 0001): a field of a landing file that its contract does not
# declare is added to the bronze table as a nullable string column (its JSON text; a CSV or
# Parquet value as text), in the same commit as the file's rows: nothing is dropped
# silently, and no later type guess can clash. A field lands so only with a plain name;
# other names are listed as not landed. A file that would add more than MAX_NEW_COLUMNS is
# refused (that is a new contract, not drift).
NEW_COLUMN = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
NEW_COLUMN_TYPE = pa.string()
MAX_NEW_COLUMNS = 32


@dataclass(frozen=True)
class Column:
    """A source column: its bronze type, whether it must be present, its size bound."""

    name: str
    type: pa.DataType
    required: bool = True
    max_length: int | None = None
    fixed_size: int | None = None
    references: str | None = None

    @property
    def is_timestamp(self) -> bool:
        return pa.types.is_timestamp(self.type)


@dataclass(frozen=True)
class SourceSpec:
    """One landing source and the bronze Delta table it lands in."""

    table: str
    landing_dir: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    formats: tuple[str, ...]
    order: int
    accepted_values: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    @property
    def source_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.type) for c in self.columns])

    @property
    def bronze_schema(self) -> pa.Schema:
        return pa.schema(list(self.source_schema) + list(INGESTION_COLUMNS))

    def landed_schema(self, new_columns: list[str]) -> pa.Schema:
        """The bronze schema with a file's new columns (strings) after the contract's."""
        added = [pa.field(name, NEW_COLUMN_TYPE) for name in new_columns]
        return pa.schema(list(self.source_schema) + added + list(INGESTION_COLUMNS))

    @cached_property
    def _taken_names(self) -> frozenset[str]:
        """The bronze columns' names in lower case (DuckDB and Spark ignore case)."""
        return frozenset(n.lower() for n in self.bronze_schema.names)

    def new_column_problem(self, name: str) -> str | None:
        """Why a field the contract does not declare cannot become a column (None: it can)."""
        if not NEW_COLUMN.fullmatch(name):
            return "not a plain name (a letter, then letters, digits or _; 64 at most)"
        if name.lower() in self._taken_names:
            return "differs from a contract column only in case"
        return None


INGESTION_COLUMNS = (
    pa.field("_source_file", pa.string()),
    pa.field("_source_line", pa.int64()),
    pa.field("_batch_id", pa.string()),
    pa.field("_ingested_at", TIMESTAMP),
)

USERS = SourceSpec(
    table="users",
    landing_dir="users",
    columns=(
        Column("user_id", pa.int64()),
        Column("signup_at", TIMESTAMP),
        Column("country", pa.string(), required=False, max_length=8),
        Column("email", pa.string(), required=False, max_length=254),
        Column("display_name", pa.string(), required=False, max_length=128),
        Column("birth_year", pa.int64(), required=False),
        Column("is_verified", pa.bool_(), required=False),
    ),
    key=("user_id",),
    formats=(".csv", ".csv.gz"),
    order=0,
)

PHOTOS = SourceSpec(
    table="photos",
    landing_dir="photos",
    columns=(
        Column("photo_id", pa.int64()),
        Column("owner_id", pa.int64()),
        Column("posted_at", TIMESTAMP),
        Column("caption", pa.string(), required=False, max_length=2200),
        Column("width", pa.int64()),
        Column("height", pa.int64()),
        Column("camera", pa.string(), required=False, max_length=64),
        Column("lang", pa.string(), required=False, max_length=8),
        # when the owner last edited the record (a correction re-sends it whole); absent on
        # a new photo. The latest edit of a photo wins in staging (stg_app__photos).
        Column("updated_at", TIMESTAMP, required=False),
    ),
    key=("photo_id",),
    formats=(".jsonl", ".jsonl.gz", ".json", ".ndjson"),
    order=1,
)

PHOTO_EMBEDDINGS = SourceSpec(
    table="photo_embeddings",
    landing_dir="embeddings",
    columns=(
        Column("photo_id", pa.int64()),
        Column("model_version", pa.string(), max_length=64),
        Column("embedding", pa.list_(pa.float32()), fixed_size=EMBEDDING_DIM),
    ),
    key=("photo_id", "model_version"),
    formats=(".parquet",),
    order=2,
)

EVENTS = SourceSpec(
    table="events",
    landing_dir="events",
    columns=(
        Column("event_id", pa.string(), max_length=64),
        Column("event_type", pa.string(), max_length=32),
        Column("ts", TIMESTAMP),
        Column("user_id", pa.int64()),
        Column("photo_id", pa.int64(), references="photos.photo_id"),
        Column("session_id", pa.string(), required=False, max_length=64),
        Column("device", pa.string(), required=False, max_length=32),
        Column("dwell_ms", pa.int64(), required=False),
        Column("comment_text", pa.string(), required=False, max_length=2200),
    ),
    key=("event_id",),
    formats=(".jsonl", ".jsonl.gz", ".json", ".ndjson"),
    order=3,
    accepted_values={"event_type": EVENT_TYPES},
)

SOURCES: tuple[SourceSpec, ...] = (USERS, PHOTOS, PHOTO_EMBEDDINGS, EVENTS)
assert tuple(s.table for s in SOURCES) == DATA_TABLES, "one spec per bronze data table"
SOURCES_BY_DIR = {s.landing_dir: s for s in SOURCES}
SOURCES_BY_TABLE = {s.table: s for s in SOURCES}

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("table", pa.string()),
        pa.field("source_file", pa.string()),
        pa.field("line_number", pa.int64()),
        pa.field("reason_code", pa.string()),
        pa.field("column", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("raw", pa.string()),
        pa.field("_batch_id", pa.string()),
        pa.field("_ingested_at", TIMESTAMP),
    ]
)

INGEST_LOG_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string()),
        pa.field("batch_id", pa.string()),
        pa.field("table", pa.string()),
        pa.field("source_file", pa.string()),
        pa.field("content_sha256", pa.string()),
        pa.field("bytes", pa.int64()),
        pa.field("status", pa.string()),
        pa.field("rows_read", pa.int64()),
        pa.field("rows_landed", pa.int64()),
        pa.field("rows_quarantined", pa.int64()),
        pa.field("rows_duplicate", pa.int64()),
        pa.field("delta_version", pa.int64()),
        pa.field("error", pa.string()),
        pa.field("started_at", TIMESTAMP),
        pa.field("finished_at", TIMESTAMP),
        # the _ingest_log's own Delta version that holds this row: the batch's place in the
        # order the log committed, an identity staging's cursor follows (never a clock)
        pa.field("log_version", pa.int64()),
        # columns this file added to its bronze table (schema evolution), comma-separated
        pa.field("new_columns", pa.string()),
    ]
)
