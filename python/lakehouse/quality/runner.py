"""Run the suites against the warehouse: stream rows in bounded chunks, aggregate in DuckDB."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import duckdb
import pandas as pd

from lakehouse.layout import bronze_uri
from lakehouse.quality.gx_engine import EXAMPLES, GXEngine, Outcome
from lakehouse.quality.suites import Expectation, Suite
from lakehouse.sql import string as sql_string
from lakehouse.storage import open_delta
from lakehouse.warehouse import model_build

DEFAULT_CHUNK_ROWS = 250_000
_BRONZE_PLACEHOLDER = re.compile(r"\{bronze:(\w+)\}")
SCHEMA_TYPES = {
    "expect_table_columns_to_match_set",
    "expect_table_columns_to_match_ordered_list",
    "expect_column_to_exist",
}


@dataclass
class ExpectationResult:
    table: str
    type: str
    kwargs: dict[str, Any]
    severity: str
    scope: str
    success: bool
    element_count: int
    unexpected_count: int
    unexpected_percent: float | None
    observed_value: Any
    examples: list[Any]
    error: str | None
    notes: str

    @property
    def name(self) -> str:
        detail = ",".join(
            str(self.kwargs[k]) for k in ("column", "column_A", "column_B") if k in self.kwargs
        )
        return f"{self.type}({detail})"


@dataclass
class TableReport:
    table: str
    relation: str
    rows: int
    versions: dict[str, Any]
    profile: dict[str, Any]
    results: list[ExpectationResult]
    seconds: float


@dataclass
class RunReport:
    run_id: str
    started_at: str
    as_of: str
    tables: list[TableReport] = field(default_factory=list)

    @property
    def blocking_failures(self) -> list[ExpectationResult]:
        return [
            r for t in self.tables for r in t.results if not r.success and r.severity == "blocking"
        ]

    @property
    def warnings(self) -> list[ExpectationResult]:
        return [
            r for t in self.tables for r in t.results if not r.success and r.severity == "warning"
        ]

    @property
    def passed(self) -> bool:
        return not self.blocking_failures


class _Merged:
    """One rows-scope expectation, summed over chunks."""

    def __init__(self, expectation: Expectation) -> None:
        self.expectation = expectation
        self.success = True
        self.element_count = self.unexpected_count = self.missing_count = 0
        self.examples: list[Any] = []
        self.error: str | None = None
        self.observed: Any = None

    def add(self, outcome: Outcome) -> None:
        self.success &= outcome.success
        self.element_count += outcome.element_count
        self.unexpected_count += outcome.unexpected_count
        self.missing_count += outcome.missing_count
        self.examples = (self.examples + outcome.examples)[:EXAMPLES]
        self.error = self.error or outcome.error
        self.observed = (
            outcome.observed_value if outcome.observed_value is not None else self.observed
        )

    def result(self, table: str) -> ExpectationResult:
        nonmissing = self.element_count - self.missing_count
        percent = 100.0 * self.unexpected_count / nonmissing if nonmissing else None
        mostly = self.expectation.kwargs.get("mostly")
        if mostly is not None and self.error is None and nonmissing:
            self.success = self.unexpected_count / nonmissing <= 1 - mostly
        e = self.expectation
        return ExpectationResult(
            table=table,
            type=e.type,
            kwargs=e.kwargs,
            severity=e.severity,
            scope=e.scope,
            success=self.success,
            element_count=self.element_count,
            unexpected_count=self.unexpected_count,
            unexpected_percent=percent,
            observed_value=self.observed,
            examples=self.examples,
            error=self.error,
            notes=e.notes,
        )


def run_suites(
    con: duckdb.DuckDBPyConnection,
    suites: list[Suite],
    *,
    lake: str,
    as_of: datetime | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> RunReport:
    as_of = as_of or datetime.now(UTC)
    report = RunReport(uuid.uuid4().hex[:12], datetime.now(UTC).isoformat(), as_of.isoformat())
    engine = GXEngine()
    for suite in suites:
        report.tables.append(_run_suite(con, engine, suite, lake, as_of, chunk_rows))
    return report


def _run_suite(
    con, engine: GXEngine, suite: Suite, lake: str, as_of: datetime, chunk_rows: int
) -> TableReport:
    started = datetime.now(UTC)
    relation = _render(suite.relation, lake, as_of)
    rows_expectations = [e for e in suite.expectations if e.scope == "rows"]
    schema_expectations = [e for e in rows_expectations if e.type in SCHEMA_TYPES]
    value_expectations = [e for e in rows_expectations if e.type not in SCHEMA_TYPES]
    merged = [_Merged(e) for e in schema_expectations + value_expectations]
    results: list[ExpectationResult] = []
    rows = 0
    derived = "".join(
        f", {_render(sql, lake, as_of)} as {name}" for name, sql in suite.derived_columns.items()
    )
    try:
        # schema checks need every column but no rows; value checks stream only their columns
        empty = con.execute(f"select *{derived} from {relation} limit 0").to_arrow_table()
        for slot, outcome in zip(
            merged[: len(schema_expectations)],
            engine.validate(empty.to_pandas(), [e.for_gx() for e in schema_expectations]),
            strict=True,
        ):
            slot.add(outcome)
        needed = sorted({c for e in value_expectations for c in _columns(e)})
        select = ", ".join(f'"{c}"' for c in needed if c not in suite.derived_columns)
        select = ", ".join(filter(None, [select, derived.lstrip(", ")])) or "1 as _row"
        reader = con.execute(f"select {select} from {relation}").to_arrow_reader(chunk_rows)
        for batch in reader:
            rows += batch.num_rows
            frame = batch.to_pandas()
            for slot, outcome in zip(
                merged[len(schema_expectations) :],
                engine.validate(frame, [e.for_gx() for e in value_expectations]),
                strict=True,
            ):
                slot.add(outcome)
        results += [m.result(suite.name) for m in merged]
        profile = _profile(con, suite, relation, lake, as_of)
    except duckdb.Error as exc:
        message = f"cannot read {suite.relation}: {str(exc).splitlines()[0]}"
        results.append(
            ExpectationResult(
                table=suite.name,
                type="table_is_readable",
                kwargs={},
                severity="blocking",
                scope="table",
                success=False,
                element_count=0,
                unexpected_count=0,
                unexpected_percent=None,
                observed_value=None,
                examples=[],
                error=message,
                notes="the table (and every column the suite reads) must exist",
            )
        )
        return TableReport(
            suite.name,
            suite.relation,
            rows,
            _versions(con, suite, lake),
            {},
            results,
            _seconds(started),
        )
    profile_expectations = [e for e in suite.expectations if e.scope == "profile"]
    if profile_expectations:
        frame = pd.DataFrame([profile])
        for e, outcome in zip(
            profile_expectations,
            engine.validate(frame, [x.for_gx() for x in profile_expectations]),
            strict=True,
        ):
            results.append(
                ExpectationResult(
                    table=suite.name,
                    type=e.type,
                    kwargs=e.kwargs,
                    severity=e.severity,
                    scope=e.scope,
                    success=outcome.success,
                    element_count=1,
                    unexpected_count=outcome.unexpected_count,
                    unexpected_percent=None,
                    observed_value=profile.get(e.kwargs.get("column")),
                    examples=outcome.examples,
                    error=outcome.error,
                    notes=e.notes,
                )
            )
    return TableReport(
        suite.name,
        suite.relation,
        rows,
        _versions(con, suite, lake),
        profile,
        results,
        _seconds(started),
    )


def _columns(expectation: Expectation) -> list[str]:
    return [
        expectation.kwargs[k] for k in ("column", "column_A", "column_B") if k in expectation.kwargs
    ]


def _profile(con, suite: Suite, relation: str, lake: str, as_of: datetime) -> dict[str, Any]:
    if not suite.profile:
        return {}
    select = ", ".join(
        f"{_render(sql, lake, as_of)} as {name}" for name, sql in suite.profile.items()
    )
    cursor = con.execute(f"select {select} from {relation}")
    names = [d[0] for d in cursor.description]
    values = cursor.fetchone() or ()
    return {n: _json_value(v) for n, v in zip(names, values, strict=True)}


def _versions(con, suite: Suite, lake: str) -> dict[str, Any]:
    """What was validated: the Delta version of a bronze table, or the dbt invocation that
    built a model and the bronze versions it read."""
    table = suite.reads_bronze
    if table:
        return {"delta_version": open_delta(bronze_uri(lake, table)).version()}
    try:
        build = model_build(con, suite.relation)
    except duckdb.Error:
        return {}
    if build is None:
        return {}
    return {"dbt_invocation_id": build.invocation_id, "bronze_versions": build.bronze_versions}


def _render(sql: str, lake: str, as_of: datetime) -> str:
    """``{bronze:<table>}`` becomes a scan of that bronze table, ``{as_of}`` the gate's time."""
    sql = _BRONZE_PLACEHOLDER.sub(
        lambda found: f"delta_scan({sql_string(bronze_uri(lake, found.group(1)))})", sql
    )
    return sql.replace("{as_of}", f"timestamptz '{as_of.isoformat()}'")


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):  # DuckDB DECIMAL arithmetic; JSON and GX want a number
        return float(value)
    return value


def _seconds(started: datetime) -> float:
    return round((datetime.now(UTC) - started).total_seconds(), 3)
