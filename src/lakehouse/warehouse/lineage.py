"""Which dbt invocation built each model, and from which bronze versions: the one reader of
the bookkeeping tables dbt's hooks write (``macros/lineage.sql``, which declares their columns).

``lakehouse_dbt_runs``: one row per invocation when it starts (``record_run_start``), with
its build number (``build_seq``: one more than any before it). Invocations are ordered by that
number, never by their clocks: a build on a machine whose clock is behind is still the latest.
``lakehouse_bronze_reads``: one row per bronze table when it ends (``record_bronze_reads``),
with the Delta version pinned for the run (null when a plain ``dbt build`` read the latest).
``lakehouse_model_builds``: one row per model an invocation ran, with dbt's status
(``record_model_builds``).
``lakehouse_test_results``: one row per data test an invocation ran, with dbt's status and
failures, and a ``not run`` row per test of a model it built without testing it
(``record_model_builds``): the rules the built content must pass, read by :func:`test_verdict`.
``lakehouse_dbt_manifests``: the sha256 of the ``manifest.json`` an invocation of
``lakehouse build`` parsed (:func:`record_manifest`), so a later ``dbt test`` or ``dbt source
freshness`` rewriting ``target/`` does not change what the lineage names.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb

from lakehouse.sql import identifier

RUNS_TABLE = "lakehouse_dbt_runs"
READS_TABLE = "lakehouse_bronze_reads"
MODELS_TABLE = "lakehouse_model_builds"
MANIFESTS_TABLE = "lakehouse_dbt_manifests"
TESTS_TABLE = "lakehouse_test_results"
# dbt's statuses of a data test that let its model through: a warn-severity test may fail
PASSING_TESTS = ("pass", "warn")
FINGERPRINTS_TABLE = "lakehouse_model_fingerprints"


def _seq(con: duckdb.DuckDBPyConnection) -> str:
    """SQL for an invocation's place in the order they started (``t.invocation_id``): its
    build number; null for warehouses from before build numbers, whose rows then come in
    their clock's order."""
    if not _has_column(con, RUNS_TABLE, "build_seq"):
        return "cast(null as bigint)"
    return (
        f"(select max(build_seq) from {RUNS_TABLE} as runs "
        "where runs.invocation_id = t.invocation_id)"
    )


def _has_column(con: duckdb.DuckDBPyConnection, table: str, column: str) -> bool:
    """``table`` has ``column`` (lineage tables of older warehouses lack the newer ones)."""
    found = con.execute(
        "select count(*) from information_schema.columns where table_name = ? and column_name = ?",
        [table, column],
    ).fetchone()
    return bool(found and found[0])


@dataclass(frozen=True)
class BuildLineage:
    """A dbt invocation, what it read, the sha256 of the dbt manifest it parsed and the
    clock of the job that ran it (both None for a plain ``dbt build``, which records
    neither)."""

    invocation_id: str
    bronze_versions: dict[str, int | None]
    manifest_sha256: str | None = None
    as_of: datetime | None = None  # for people: the night this build served, never a cursor

    @property
    def pinned(self) -> bool:
        """Every bronze version is known (the build pinned them, as ``lakehouse build`` does)."""
        return all(v is not None for v in self.bronze_versions.values())


@dataclass(frozen=True)
class Invocation:
    invocation_id: str
    started_at: datetime
    build_seq: int | None = None


def latest_finished_build(con: duckdb.DuckDBPyConnection) -> BuildLineage | None:
    """The invocation that most recently recorded its bronze reads, or None when dbt never
    finished a build into this warehouse."""
    rows = _rows_if_table(
        con,
        READS_TABLE,
        f"select invocation_id, table_name, delta_version from {READS_TABLE} "
        f"where invocation_id = (select invocation_id from {READS_TABLE} as t "
        f"order by {_seq(con)} desc nulls last, recorded_at desc limit 1) order by table_name",
    )
    if not rows:
        return None
    return BuildLineage(rows[0][0], {table: version for _, table, version in rows})


def model_build(con: duckdb.DuckDBPyConnection, model: str) -> BuildLineage | None:
    """The invocation that last built ``model`` successfully, and what it read: the model's
    data in the warehouse is that invocation's, whatever failed or partial builds came
    after. None when no recorded build made it."""
    rows = _rows_if_table(
        con,
        MODELS_TABLE,
        f"select invocation_id from {MODELS_TABLE} as t where model = ? and status = 'success' "
        f"order by {_seq(con)} desc nulls last, recorded_at desc limit 1",
        [model],
    )
    if not rows:
        return None
    invocation = rows[0][0]
    reads = con.execute(
        f"select table_name, delta_version from {READS_TABLE} where invocation_id = ? "
        "order by table_name",
        [invocation],
    ).fetchall()
    as_of = "as_of" if _has_column(con, MANIFESTS_TABLE, "as_of") else "null"
    manifest = _rows_if_table(
        con,
        MANIFESTS_TABLE,
        f"select sha256, {as_of} from {MANIFESTS_TABLE} where invocation_id = ?",
        [invocation],
    )
    sha256, as_of_value = manifest[0] if manifest else (None, None)
    return BuildLineage(invocation, dict(reads), sha256, as_of_value)


@dataclass(frozen=True)
class TestVerdict:
    """The data tests written for a model as built by one invocation, each with its latest
    status since that build (``not run`` when none ran): the model may go on only when every
    one passed."""

    invocation_id: str
    statuses: dict[str, str]  # test name -> dbt's status
    failures: dict[str, int]  # test name -> failing rows, where dbt counted them

    @property
    def passed(self) -> bool:
        return all(status in PASSING_TESTS for status in self.statuses.values())

    @property
    def problems(self) -> list[str]:
        return [
            f"{name}: {status}"
            + (f" ({self.failures[name]} rows)" if self.failures.get(name) else "")
            for name, status in sorted(self.statuses.items())
            if status not in PASSING_TESTS
        ]


def test_verdict(
    con: duckdb.DuckDBPyConnection,
    model: str,
    invocation_id: str,
    *,
    bronze_version: tuple[str, int] | None = None,
) -> TestVerdict:
    """What became of each data test of ``model`` as invocation ``invocation_id`` built it:
    the tests that build's project wrote for it, and any test run on it since, each at its
    latest result from that build on (by build number: a later ``dbt test`` counts, an
    earlier one never does; a later test dbt skipped ran on nothing). A bronze source's
    tests (``bronze_version``: its table and the Delta version validated) count only from
    invocations that pinned that very version."""
    where, parameters = "t.model = ?", [model]
    if bronze_version is not None:
        table, version = bronze_version
        where += (
            f" and exists (select 1 from {READS_TABLE} as r where r.invocation_id = "
            "t.invocation_id and r.table_name = ? and r.delta_version = ?)"
        )
        parameters += [table, version]
    rows = _rows_if_table(
        con,
        TESTS_TABLE,
        f"select t.invocation_id, t.test_name, t.status, t.failures, {_seq(con)} as seq "
        f"from {TESTS_TABLE} as t where {where}",
        parameters,
    )
    built = _rows_if_table(  # the build's number (null in a warehouse from before them)
        con, RUNS_TABLE, f"select {_seq(con)} from (select ? as invocation_id) as t",
        [invocation_id],
    )  # fmt: skip
    built_seq = built[0][0] if built else None
    statuses: dict[str, str] = {}
    failures: dict[str, int] = {}
    latest: dict[str, int] = {}
    for invocation, name, status, failed, seq in rows:
        if invocation == invocation_id:  # the build's own: every test it was written with
            statuses.setdefault(name, status)
        elif seq is None or built_seq is None or seq < built_seq or status == "skipped":
            continue  # before the build, or a later test dbt skipped (it ran on nothing)
        if status == "not run":
            continue
        if name not in latest or (seq or 0) >= latest[name]:
            latest[name] = seq or 0
            statuses[name] = status
            if failed:
                failures[name] = int(failed)
            else:
                failures.pop(name, None)
    return TestVerdict(invocation_id, statuses, failures)


def built_fingerprint(con: duckdb.DuckDBPyConnection, model: str) -> str | None:
    """The fingerprint the last build that wrote ``model`` recorded after writing it: the
    content its dbt tests ran on (None: no build recorded one)."""
    rows = _rows_if_table(
        con,
        FINGERPRINTS_TABLE,
        f"select row_count, row_hash from {FINGERPRINTS_TABLE} where model = ? and "
        "phase = 'after' order by build_seq desc limit 1",
        [model],
    )
    return f"{int(rows[0][0])}:{int(rows[0][1])}" if rows else None


def record_manifest(
    con: duckdb.DuckDBPyConnection,
    invocation_id: str,
    sha256: str,
    as_of: datetime | None = None,
) -> None:
    """Remember the manifest an invocation parsed and the clock of the job that ran it
    (written after a build, when dbt has ended: the one lineage record dbt cannot make)."""
    con.execute(
        f"create table if not exists {MANIFESTS_TABLE} "
        "(invocation_id varchar, sha256 varchar, as_of timestamptz)"
    )
    # a warehouse from before the job's clock was recorded
    con.execute(f"alter table {MANIFESTS_TABLE} add column if not exists as_of timestamptz")
    con.execute(
        f"insert into {MANIFESTS_TABLE} (invocation_id, sha256, as_of) values (?, ?, ?)",
        [invocation_id, sha256, as_of],
    )


def latest_started(con: duckdb.DuckDBPyConnection) -> Invocation | None:
    """The invocation that started last (finished or not)."""
    rows = _rows_if_table(
        con,
        RUNS_TABLE,
        f"select invocation_id, started_at, {_seq(con)} as build_seq "
        f"from {RUNS_TABLE} as t order by build_seq desc nulls last, started_at desc limit 1",
    )
    return Invocation(*rows[0]) if rows else None


def _rows_if_table(
    con: duckdb.DuckDBPyConnection, table: str, sql: str, parameters: list | None = None
) -> list[tuple]:
    """The query's rows, or none when ``table`` does not exist (a warehouse dbt never built,
    or one whose first build was killed before its end hook)."""
    return con.execute(sql, parameters or []).fetchall() if _table_exists(con, table) else []


def _table_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    return bool(
        con.execute(
            "select count(*) from information_schema.tables where table_name = ?", [table]
        ).fetchone()[0]
    )


def rows_written_by(warehouse: str | Path, invocation_id: str) -> dict[str, tuple[int, int]]:
    """Per incremental model: (rows the invocation wrote, rows in all), from the
    ``_build_seq`` every incremental model keeps (macros/incremental.sql)."""
    written: dict[str, tuple[int, int]] = {}
    with duckdb.connect(str(warehouse), read_only=True) as con:
        seq = con.execute(
            f"select max(build_seq) from {RUNS_TABLE} where invocation_id = ?", [invocation_id]
        ).fetchone()[0]
        tables = [
            t
            for (t,) in con.execute(
                "select table_name from duckdb_columns() where column_name = '_build_seq' "
                "and schema_name = 'main' order by table_name"
            ).fetchall()
        ]
        for table in tables:
            new, total = con.execute(
                f"select count(*) filter (where _build_seq = ?), count(*) "
                f"from main.{identifier(table)}",
                [seq],
            ).fetchone()
            written[table] = (int(new), int(total))
    return written


def latest_build_seq(con: duckdb.DuckDBPyConnection) -> int | None:
    """The build number of the latest invocation that started (None: none recorded)."""
    rows = _rows_if_table(con, RUNS_TABLE, f"select max(build_seq) from {RUNS_TABLE}")
    return int(rows[0][0]) if rows and rows[0][0] is not None else None


# a table's content as one value: row count and an order-free sum of DuckDB's row hashes; the
# same SQL as macros/fingerprint.sql, which the builds record
_FINGERPRINT = "select count(*), coalesce(sum(hash(fingerprinted)), 0) from {} as fingerprinted"


def fingerprint(con: duckdb.DuckDBPyConnection, relation: str) -> str:
    """``rows:hash`` of a table (``relation`` is SQL: an identifier or a subquery)."""
    rows, total = con.execute(_FINGERPRINT.format(relation)).fetchone()
    return f"{int(rows)}:{int(total)}"


@dataclass(frozen=True)
class FingerprintStep:
    build_seq: int
    phase: str  # "before" or "after" the build wrote the table
    fingerprint: str


def fingerprint_chain(
    con: duckdb.DuckDBPyConnection, model: str, after_seq: int
) -> list[FingerprintStep]:
    """The fingerprints builds recorded for ``model`` after build ``after_seq``, in order."""
    rows = _rows_if_table(
        con,
        FINGERPRINTS_TABLE,
        f"select build_seq, phase, row_count, row_hash from {FINGERPRINTS_TABLE} "
        "where model = ? and build_seq > ? "
        "order by build_seq, case phase when 'before' then 0 else 1 end",
        [model, after_seq],
    )
    return [FingerprintStep(int(b), p, f"{int(n)}:{int(h)}") for b, p, n, h in rows]
