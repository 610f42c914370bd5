"""Bronze Delta tables: idempotent appends, the quarantine table and the ingest log.

Each file's rows reach up to three tables (its bronze table, ``_quarantine``, ``_ingest_log``)
in three Delta commits. Every commit carries a Delta application transaction
(``txn`` action) keyed by the file's batch id, so a run that died between two commits is
completed by the next run without writing anything twice; ``_ingest_log`` is written last
and is what marks a file as ingested. See docs/decisions/0002-bronze-ingest-commits.md.
"""

from __future__ import annotations

from typing import NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError

from lakehouse.contracts import INGEST_LOG, INGESTED, QUARANTINE
from lakehouse.ingest.errors import ConcurrentWriteError, LakeWriteError, SchemaMismatchError
from lakehouse.ingest.schemas import INGEST_LOG_SCHEMA, QUARANTINE_SCHEMA, SourceSpec
from lakehouse.layout import bronze_uri
from lakehouse.storage import (
    delta_exists,
    describe_storage_error,
    open_delta,
    read_delta,
    storage_options,
)

QUARANTINE_TABLE = QUARANTINE
INGEST_LOG_TABLE = INGEST_LOG
_APP_ID = "lakehouse-ingest"
_BATCH_KEY = "lakehouse.batch_id"
_VERSIONED_ATTEMPTS = 50  # lost races before a versioned append gives up


class Bronze:
    """The bronze layer of one lake: ``<lake>/bronze/<table>``."""

    def __init__(self, lake_uri: str) -> None:
        self.lake_uri = lake_uri
        self._open: dict[str, DeltaTable] = {}

    def _table(self, table: str) -> DeltaTable | None:
        """The table at its latest version (kept open: opening costs a log replay)."""
        if table in self._open:
            self._open[table].update_incremental()
            return self._open[table]
        uri = self.uri(table)
        if not delta_exists(uri):
            return None
        self._open[table] = open_delta(uri)
        return self._open[table]

    def uri(self, table: str) -> str:
        return bronze_uri(self.lake_uri, table)

    # ------------------------------------------------------------ reads

    def check_schema(self, spec: SourceSpec) -> None:
        """Refuse to append to a bronze table whose schema contradicts the contract (a
        required column missing, a column of another type). A table from before an optional
        column was declared gets it (Delta's add column; its older rows have none); columns
        the contract does not declare are the ones schema evolution added, and stay."""
        uri = self.uri(spec.table)
        if not delta_exists(uri):
            return
        actual = pa.schema(open_delta(uri).schema().to_arrow())
        problems = _schema_differences(spec, actual)
        if problems:
            raise SchemaMismatchError(
                f"bronze table {uri} does not match the {spec.table} contract: "
                + "; ".join(problems)
                + ". Migrate or move that table aside before ingesting into it."
            )
        missing = [c for c in spec.columns if c.name not in actual.names]
        if missing:
            from deltalake import Field

            table = self._table(spec.table)
            assert table is not None
            table.alter.add_columns(
                [Field(c.name, _DELTA_TYPES[_logical(c.type)], nullable=True) for c in missing]
            )
            self._open.pop(spec.table, None)

    def columns(self, table: str) -> list[str]:
        """The columns of a bronze table now (none when it does not exist yet)."""
        found = self._table(table)
        return [] if found is None else list(found.schema().to_arrow().names)

    def upgrade_log(self) -> None:
        """A log written before a column of its schema existed (``log_version``,
        ``new_columns``) gets it (Delta's add column; its older rows have none, and only a
        ``--full-refresh`` of the models reads them)."""
        log = self._table(INGEST_LOG_TABLE)
        if log is None:
            return
        names = log.schema().to_arrow().names
        missing = [f for f in INGEST_LOG_SCHEMA if f.name not in names]
        if not missing:
            return
        from deltalake import Field

        log.alter.add_columns(
            [Field(f.name, _DELTA_TYPES[_logical(f.type)], nullable=True) for f in missing]
        )
        self._open.pop(INGEST_LOG_TABLE, None)

    def ingested_files(self) -> dict[str, str]:
        """content sha256 -> source file, for every file already ingested."""
        uri = self.uri(INGEST_LOG_TABLE)
        if not delta_exists(uri):
            return {}
        log = read_delta(uri, columns=["content_sha256", "source_file", "status"])
        log = log.filter(pc.equal(log.column("status"), INGESTED))
        return dict(
            zip(
                log.column("content_sha256").to_pylist(),
                log.column("source_file").to_pylist(),
                strict=True,
            )
        )

    def distinct_values(self, table: str, column: str) -> pa.Array | None:
        """Distinct values of a column, or None when the table does not exist yet."""
        uri = self.uri(table)
        if not delta_exists(uri):
            return None
        return pc.unique(read_delta(uri, columns=[column]).column(column).combine_chunks())

    # ------------------------------------------------------------ writes

    def committed_version(self, table: str, batch_id: str) -> int | None:
        """The Delta version that holds this batch, or None when it was never committed."""
        existing = self._table(table)
        return None if existing is None else _batch_version(existing, batch_id)

    def append(
        self,
        table: str,
        data: pa.Table | pa.RecordBatchReader,
        batch_id: str,
        *,
        version_column: str | None = None,
        evolve: bool = False,
    ) -> int:
        """Append once per batch id; returns the Delta version holding the batch (see
        :meth:`commit`, which also says whether this call committed it)."""
        return self.commit(
            table, data, batch_id, version_column=version_column, evolve=evolve
        ).version

    def commit(
        self,
        table: str,
        data: pa.Table | pa.RecordBatchReader,
        batch_id: str,
        *,
        version_column: str | None = None,
        evolve: bool = False,
    ) -> Committed:
        """Append once per batch id: the Delta version holding the batch, and whether this
        call committed it (False: it was there already, or another run committed it first).

        Safe against a second ingest of the same files running at the same time: the append
        is committed on the very snapshot in which the batch was looked for, so if the other
        run commits the batch first, Delta's conflict check on the ``txn`` refuses this
        commit; the batch is then found where the other run put it. A missing table is first
        created empty, so that even the first append commits on a snapshot.

        With ``version_column`` (a table, not a stream), every row carries the very version
        that holds it: the commit is made on a snapshot at version N with no commit retries,
        so it lands as N + 1 or not at all, and a lost race is tried again on the newer
        snapshot instead of failing.
        """
        for _ in range(_VERSIONED_ATTEMPTS if version_column else 1):
            snapshot = self._table(table) or self._create(table, data.schema)
            done = _batch_version(snapshot, batch_id)
            if done is not None:
                return Committed(done, ours=False)
            rows, version = data, snapshot.version() + 1  # the version this commit takes
            if version_column is not None:
                assert isinstance(data, pa.Table), "a versioned append is of a table"
                stamp = pa.array([version] * data.num_rows, pa.int64())
                rows = data.set_column(
                    data.schema.get_field_index(version_column), version_column, stamp
                )
            try:
                write_deltalake(
                    snapshot,
                    rows,
                    mode="append",
                    # evolve: columns the rows add join the table in this same commit, and
                    # columns they lack are null (Delta's schema merge)
                    schema_mode="merge" if evolve else None,
                    storage_options=storage_options() or None,
                    commit_properties=CommitProperties(
                        custom_metadata={_BATCH_KEY: batch_id},
                        app_transactions=[Transaction(app_id=_app_id(batch_id), version=1)],
                        max_commit_retries=0 if version_column else None,
                    ),
                )
            except CommitFailedError as error:
                self._open.pop(table, None)
                done = self.committed_version(table, batch_id)
                if done is not None:  # a concurrent ingest landed this very file
                    return Committed(done, ours=False)
                if version_column is not None:  # another writer took N + 1: try on N + 1
                    continue
                raise ConcurrentWriteError(
                    f"{self.uri(table)}: another writer committed to the table at the same "
                    f"time ({error}); nothing of this file was committed, run the ingest again"
                ) from error
            except (DeltaError, OSError) as error:
                raise LakeWriteError(
                    f"cannot write {self.uri(table)}: {describe_storage_error(error)}; nothing "
                    "of this batch was committed (free space or fix permissions, then ingest "
                    "again)"
                ) from error
            if version_column is not None:  # no retries: it committed as exactly that version
                return Committed(version, ours=True)
            # the write moved the snapshot to its own commit (after any retries)
            return Committed(snapshot.version(), ours=True)
        raise ConcurrentWriteError(
            f"{self.uri(table)}: {_VERSIONED_ATTEMPTS} other writers committed to the table "
            "while this ingest tried to; nothing of this batch was committed, run it again"
        )

    def _create(self, table: str, schema: pa.Schema) -> DeltaTable:
        """An empty table with the batch's schema (a schema-only commit, no rows). Of two runs
        creating it at once, one wins version 0 and the other must not retry its create as
        version 1 (a second metadata commit would conflict with appends made on version 0):
        with no retries it fails, and uses the winner's table."""
        uri = self.uri(table)
        try:
            DeltaTable.create(
                uri,
                schema,
                mode="ignore",
                storage_options=storage_options() or None,
                commit_properties=CommitProperties(max_commit_retries=0),
            )
        except (CommitFailedError, DeltaError):
            if not delta_exists(uri):
                raise
        created = self._table(table)
        assert created is not None
        return created

    def append_quarantine(self, rows: pa.Table, batch_id: str) -> int:
        return self.append(QUARANTINE_TABLE, rows.cast(QUARANTINE_SCHEMA), batch_id)

    def append_log(self, rows: pa.Table, batch_id: str) -> Committed:
        """Log a batch: the log's Delta version that holds it, which each row also carries
        (``log_version``, see :meth:`commit`), and whether this call logged it. Staging
        follows these versions, so a batch logged late (a rerun finishing a crashed ingest
        days later) is new to it whatever any clock says."""
        if "log_version" not in rows.column_names:  # filled by the append as it commits
            rows = rows.append_column("log_version", pa.nulls(rows.num_rows, pa.int64()))
        return self.commit(
            INGEST_LOG_TABLE,
            rows.select(INGEST_LOG_SCHEMA.names).cast(INGEST_LOG_SCHEMA),
            batch_id,
            version_column="log_version",
        )


class Committed(NamedTuple):
    """Where a batch is (its Delta version), and whether this call put it there."""

    version: int
    ours: bool


def _app_id(batch_id: str) -> str:
    return f"{_APP_ID}:{batch_id}"


def _batch_version(snapshot: DeltaTable, batch_id: str) -> int | None:
    """The version holding the batch in this very snapshot, or None when it has no txn."""
    if snapshot.transaction_version(_app_id(batch_id)) is None:
        return None
    return _version_of_batch(snapshot, batch_id)


def _version_of_batch(table: DeltaTable, batch_id: str) -> int:
    for entry in table.history():
        if entry.get(_BATCH_KEY) == batch_id:
            return int(entry["version"])
    return table.version()


class Appended(NamedTuple):
    """What a bronze table's ingest commits after one version up to another added."""

    batches: set[str]  # the ingest batches, each named by its commit
    rows: int | None  # the rows, from each commit's own metrics (None: a commit has none)
    table_id: str  # the Delta table's id: a table replaced under the same path has another


def appended_since(table: DeltaTable, since: int, version: int) -> Appended | None:
    """The ingest batches (and their rows) that a bronze table's commits after ``since`` up to
    ``version`` added, from the Delta history (each ingest commit names its batch and counts
    its rows); None when a commit in that range is not an ingest append (a rewrite, a delete,
    a table replaced, a version gone), which makes every row new again."""
    if version < since:
        return None
    table_id = str(table.metadata().id)
    if version == since:
        return Appended(set(), 0, table_id)
    entries = {
        int(e["version"]): e
        for e in table.history(limit=max(table.version() - since, 1))
        if "version" in e
    }
    batches: set[str] = set()
    rows: int | None = 0
    for v in range(since + 1, version + 1):
        entry = entries.get(v)
        if entry is None:
            return None
        batch = entry.get(_BATCH_KEY)
        if batch:
            batches.add(str(batch))
            added = (entry.get("operationMetrics") or {}).get("num_added_rows")
            rows = rows + int(added) if rows is not None and isinstance(added, int) else None
        elif str(entry.get("operation", "")).upper() != "CREATE TABLE":
            return None
    return Appended(batches, rows, table_id)


def batches_committed(uri: str, since: int, version: int) -> set[str] | None:
    """The ingest batches a bronze table's commits after ``since`` up to ``version`` added
    (:func:`appended_since`); None when a commit in that range is not an ingest append. The
    gate's row checks and the night's dbt tests of a source read only these batches
    (lakehouse.quality.runner, macros/tests/night_scope.sql)."""
    if version < since:
        return None
    if version == since:
        return set()
    appended = appended_since(open_delta(uri), since, version)
    return None if appended is None else appended.batches


# Delta's names of the contract's types, for a column added to an existing table
_DELTA_TYPES = {
    "string": "string",
    "int64": "long",
    "bool": "boolean",
    "double": "double",
    "float": "float",
    "timestamp[us, tz=UTC]": "timestamp",
}


def _schema_differences(spec: SourceSpec, actual: pa.Schema) -> list[str]:
    """What contradicts the contract: a required column missing, a column of another type
    (a missing optional column is added, an undeclared one is evolution's)."""
    problems = []
    actual_types = {f.name: _logical(f.type) for f in actual}
    optional = {c.name for c in spec.columns if not c.required}
    for field in spec.bronze_schema:
        if field.name not in actual_types:
            if field.name not in optional:
                problems.append(f"column {field.name} is missing")
        elif actual_types[field.name] != _logical(field.type):
            expected_type = _logical(field.type)
            problems.append(
                f"column {field.name} is {actual_types[field.name]}, not {expected_type}"
            )
    return problems


def _logical(t: pa.DataType) -> str:
    """Type names as Delta round-trips them (string/large_string/string_view are one)."""
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_list_view(t):
        return f"list<{_logical(t.value_type)}>"
    if pa.types.is_timestamp(t):
        return f"timestamp[{t.unit}, tz={t.tz}]"
    return str(t)
