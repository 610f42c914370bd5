"""The bronze contract as ingest applies it: one explicit schema per landing source, built from
the source's declaration in the dbt project's sources YAML (:mod:`lakehouse.contracts`), and
the ingestion columns.

Landing files are parsed against these specs, never by inference, so a file that drifts
is quarantined or refused instead of silently changing a table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache, cached_property
from pathlib import Path

import pyarrow as pa

from lakehouse.contracts import (
    ContractError,
    DeclaredColumn,
    DeclaredSource,
    bronze_sources,
    data_tables,
    vector_size,
)
from lakehouse.layout import project_dir

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
    def references(self) -> tuple[str, ...]:
        """The ``<table>.<column>`` keys this table's columns must exist in (the contract's
        relationships tests to another source)."""
        return tuple(dict.fromkeys(c.references for c in self.columns if c.references))

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

# the bronze (Arrow) type of each type a declaration may state, as dbt's YAML spells it
_TYPES: dict[str, pa.DataType] = {
    "bigint": pa.int64(),
    "varchar": pa.string(),
    "boolean": pa.bool_(),
    "timestamp with time zone": TIMESTAMP,
    "timestamptz": TIMESTAMP,
    "double": pa.float64(),
}


def _column(source: DeclaredSource, declared: DeclaredColumn) -> Column:
    size = vector_size(declared.data_type)  # float[N]: N float32 values
    kind = pa.list_(pa.float32()) if size else _TYPES.get(declared.data_type)
    if kind is None:
        raise ContractError(
            f"{source.path}: column {source.table}.{declared.name} has data_type "
            f"{declared.data_type!r}; bronze knows {', '.join(sorted(_TYPES))} and float[N]"
        )
    return Column(
        declared.name,
        kind,
        required=declared.required,
        max_length=declared.max_length,
        fixed_size=size,
        references=declared.references,
    )


@cache
def _specs(project: Path) -> tuple[SourceSpec, ...]:
    return tuple(
        SourceSpec(
            table=source.table,
            landing_dir=source.landing_dir,
            columns=tuple(_column(source, c) for c in source.columns),
            key=source.key,
            formats=source.formats,
            order=source.order,
            accepted_values={
                c.name: c.accepted_values for c in source.columns if c.accepted_values
            },
        )
        for source in bronze_sources(project)
    )


def sources(project: Path | None = None) -> tuple[SourceSpec, ...]:
    """Every landing source's spec, in ingest order, from the project's declarations."""
    return _specs((project or project_dir()).resolve())


def source_for_table(table: str, project: Path | None = None) -> SourceSpec:
    """The spec of bronze table ``table``; a :class:`ContractError` naming the declared
    ones when it is not declared."""
    found = next((s for s in sources(project) if s.table == table), None)
    if found is None:
        declared = ", ".join(data_tables(project))
        raise ContractError(f"no bronze table {table}: the sources YAML declares {declared}")
    return found


def source_for_dir(landing_dir: str, project: Path | None = None) -> SourceSpec | None:
    return next((s for s in sources(project) if s.landing_dir == landing_dir), None)


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
