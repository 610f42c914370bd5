"""Run the suites as one GX Checkpoint on the DuckDB datasource plugin: every metric is SQL that
DuckDB computes in the warehouse; Data Docs are built by the checkpoint's action.

Per suite there are up to two validation definitions: ``<suite>`` (expectations on the whole
table) and ``<suite>.new_rows`` (row-by-row expectations on the rows loaded since the last
run that passed that table: ``_loaded_at`` of a model, ``_ingested_at`` of a bronze table,
past the high-water mark kept in the previous result). Bronze tables are read at the Delta
versions the build that made the validated models pinned.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import duckdb
import great_expectations as gx
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.base import ProgressBarsConfig

from lakehouse.layout import bronze_uri
from lakehouse.quality.gx_duckdb import DuckDBDatasource  # registers add_duckdb
from lakehouse.quality.parameters import Parameters
from lakehouse.quality.record import GateRecord
from lakehouse.quality.suites import BLOCKING, Expectation, Suite, gx_suite
from lakehouse.sql import identifier
from lakehouse.sql import string as sql_string
from lakehouse.storage import open_delta
from lakehouse.warehouse import model_build
from lakehouse.warehouse.duckdb_env import connect, extension_dir, session_sql

EXAMPLES = 5
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": EXAMPLES}
DATA_DOCS = "data_docs"
NEW_ROWS_COLUMN = {"model": "_loaded_at", "bronze": "_ingested_at"}


@dataclass
class ExpectationResult:
    table: str
    type: str
    name: str
    kwargs: dict[str, Any]  # with the suite parameters' values filled in
    parameters: dict[str, str]  # kwarg -> the suite parameter it came from
    severity: str
    rows: str  # "new": the rows loaded since the last passing run; "all": the whole table
    success: bool
    expected: str
    element_count: int
    unexpected_count: int
    unexpected_percent: float | None
    observed_value: Any
    examples: list[Any]
    error: str | None
    notes: str


@dataclass
class TableReport:
    table: str
    relation: str
    rows: int
    new_rows: int | None  # rows the row-by-row checks read; None when they read all
    versions: dict[str, Any]
    results: list[ExpectationResult]
    seconds: float
    checked_through: str | None = None  # high-water mark of the new-rows column, when passed


@dataclass
class RunReport:
    run_id: str
    started_at: str
    as_of: str
    env: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    tables: list[TableReport] = field(default_factory=list)
    data_docs: str | None = None

    def _failed(self, severity: str) -> list[ExpectationResult]:
        return [
            r for t in self.tables for r in t.results if not r.success and r.severity == severity
        ]

    @property
    def blocking_failures(self) -> list[ExpectationResult]:
        return self._failed(BLOCKING)

    @property
    def warnings(self) -> list[ExpectationResult]:
        return self._failed("warning")

    @property
    def infos(self) -> list[ExpectationResult]:
        return self._failed("info")

    @property
    def passed(self) -> bool:
        return not self.blocking_failures


@dataclass
class _Target:
    """What one suite validates, learned before GX runs."""

    suite: Suite
    relation_sql: str  # a table name or a parenthesised query
    kind: str  # "model" or "bronze"
    versions: dict[str, Any]
    rows: int = 0
    new_rows: int | None = None
    new_rows_sql: str | None = None
    high_water: str | None = None
    error: str | None = None


def run_suites(
    warehouse: Path,
    suites: list[Suite],
    *,
    lake: str,
    project: Path,
    parameters: Parameters,
    as_of: datetime | None = None,
    previous: GateRecord | None = None,
    all_rows: bool = False,
    data_docs: Path | None = None,
) -> RunReport:
    """Validate ``suites``; with ``data_docs``, build GX's Data Docs site there."""
    as_of = as_of or datetime.now(UTC)
    report = RunReport(
        uuid.uuid4().hex[:12],
        datetime.now(UTC).isoformat(),
        as_of.isoformat(),
        env=parameters.env,
        parameters=dict(parameters.values),
    )
    con = connect(warehouse, project, lake=lake)
    try:
        pins = _bronze_pins(con, suites)
        targets = [_target(con, s, lake, pins, previous, all_rows) for s in suites]
    finally:
        con.close()
    started = datetime.now(UTC)
    with _gx_on_duckdb(warehouse, project, lake) as (context, source):
        outcomes = _validate(context, source, targets, parameters, as_of, data_docs, report.run_id)
    seconds = round((datetime.now(UTC) - started).total_seconds(), 3)
    for target in targets:
        results = outcomes.get(target.suite.name, [])
        passed = all(r.success or r.severity != BLOCKING for r in results)
        checked = target.high_water if passed else _previous_mark(previous, target.suite.name)
        report.tables.append(
            TableReport(
                target.suite.name,
                target.suite.relation,
                target.rows,
                target.new_rows,
                target.versions,
                results,
                round(seconds / max(len(targets), 1), 3),
                checked,
            )
        )
    if data_docs is not None:
        report.data_docs = str(data_docs / "index.html")
    return report


# ---------------------------------------------------------------- what each suite reads


def _bronze_pins(con: duckdb.DuckDBPyConnection, suites: list[Suite]) -> dict[str, Any]:
    """The bronze versions the newest build of the validated models read (all models of a
    build read the same pins); none when no model suite runs or dbt did not pin."""
    builds = []
    for suite in suites:
        if suite.reads_bronze:
            continue
        try:
            build = model_build(con, suite.relation)
        except duckdb.Error:
            build = None
        if build is not None:
            builds.append(build)
    for build in builds:
        if build.pinned:
            return {"dbt_invocation_id": build.invocation_id, **build.bronze_versions}
    return {}


def _target(
    con: duckdb.DuckDBPyConnection,
    suite: Suite,
    lake: str,
    pins: dict[str, Any],
    previous: GateRecord | None,
    all_rows: bool,
) -> _Target:
    table = suite.reads_bronze
    if table:
        uri = bronze_uri(lake, table)
        try:
            version = pins.get(table)
            pinned = version is not None
            if not pinned:
                version = open_delta(uri).version()
        except Exception as exc:  # a missing table: deltalake raises its own errors
            return _Target(suite, "", "bronze", {}, error=f"cannot read {suite.relation}: {exc}")
        sql = f"(select * from delta_scan({sql_string(uri)}, version => {int(version)}))"
        versions: dict[str, Any] = {"delta_version": int(version), "pinned": pinned}
        if pinned:
            versions["pinned_by"] = pins["dbt_invocation_id"]
        target = _Target(suite, sql, "bronze", versions)
    else:
        build = None
        with contextlib.suppress(duckdb.Error):  # a warehouse dbt never finished: no lineage
            build = model_build(con, suite.relation)
        versions = (
            {"dbt_invocation_id": build.invocation_id, "bronze_versions": build.bronze_versions}
            if build
            else {}
        )
        target = _Target(suite, identifier(suite.relation), "model", versions)
    column = NEW_ROWS_COLUMN[target.kind]
    try:
        names = [
            d[0] for d in con.execute(f"select * from {target.relation_sql} limit 0").description
        ]
        has_column = column in names
        select = f"count(*), max({identifier(column)})" if has_column else "count(*), null"
        rows, high = con.execute(f"select {select} from {target.relation_sql}").fetchone()
    except duckdb.Error as exc:
        target.error = f"cannot read {suite.relation}: {str(exc).splitlines()[0]}"
        return target
    target.rows = int(rows)
    target.high_water = high.isoformat() if high is not None else None
    mark = None if all_rows else _previous_mark(previous, suite.name)
    if has_column and mark is not None:
        target.new_rows_sql = (
            f"(select * from {target.relation_sql} "
            f"where {identifier(column)} > timestamptz {sql_string(mark)})"
        )
        target.new_rows = int(
            con.execute(f"select count(*) from {target.new_rows_sql}").fetchone()[0]
        )
    return target


def _previous_mark(previous: GateRecord | None, table: str) -> str | None:
    if previous is None or table not in previous.tables:
        return None
    return previous.tables[table].checked_through


# ---------------------------------------------------------------- the checkpoint


@contextlib.contextmanager
def _gx_on_duckdb(
    warehouse: Path, project: Path, lake: str
) -> Iterator[tuple[Any, DuckDBDatasource]]:
    """An ephemeral GX context with the warehouse as its DuckDB datasource, closed after."""
    # GX's own chatter (one module sets INFO on its logger) stays out of the job's output
    for name in ("great_expectations", "great_expectations.data_context.types.base"):
        logging.getLogger(name).setLevel(logging.ERROR)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    source = context.data_sources.add_duckdb(
        "warehouse",
        connection_string=f"duckdb:///{Path(warehouse).resolve()}",
        read_only=True,
        extension_directory=str(extension_dir(project)),
        init_sql=session_sql(lake),
    )
    try:
        yield context, source
    finally:  # DuckDB keeps the file open (and its configuration fixed) while a connection lives
        source.get_execution_engine().close()
        source.get_engine().dispose()


def _validate(
    context: Any,
    source: DuckDBDatasource,
    targets: list[_Target],
    parameters: Parameters,
    as_of: datetime,
    data_docs: Path | None,
    run_name: str,
) -> dict[str, list[ExpectationResult]]:
    results: dict[str, list[ExpectationResult]] = {}
    definitions = []
    placed: dict[str, tuple[_Target, Expectation]] = {}  # GX expectation id -> ours
    for target in targets:
        suite = target.suite
        results[suite.name] = [_broken(suite, e) for e in suite.expectations if e.error]
        if target.error:
            results[suite.name].append(_unreadable(suite, target.error))
            continue
        parts = {
            "all": [e for e in suite.expectations if e.gx and e.rows == "all"],
            "new": [e for e in suite.expectations if e.gx and e.rows == "new"],
        }
        for rows, expectations in parts.items():
            if not expectations:
                continue
            name = suite.name if rows == "all" else f"{suite.name}.new_rows"
            query = (target.new_rows_sql if rows == "new" else None) or target.relation_sql
            if query and query.startswith("("):
                asset = source.add_query_asset(name, query=query[1:-1])
            else:
                asset = source.add_table_asset(name, table_name=suite.relation)
            batch = asset.add_batch_definition_whole_table("whole")
            gx_suite_ = context.suites.add(gx_suite(name, expectations))
            for built, ours in zip(gx_suite_.expectations, expectations, strict=True):
                placed[str(built.id)] = (target, ours)
            definitions.append(
                context.validation_definitions.add(
                    gx.ValidationDefinition(name=name, data=batch, suite=gx_suite_)
                )
            )
    if not definitions:
        return results
    if data_docs is not None:
        building = data_docs.with_name(f".{data_docs.name}.building")
        shutil.rmtree(building, ignore_errors=True)
        context.add_data_docs_site(
            site_name="lakehouse",
            site_config={
                "class_name": "SiteBuilder",
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(building),
                },
            },
        )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name="lakehouse_gate",
            validation_definitions=definitions,
            result_format=RESULT_FORMAT,
        )
    )
    run = checkpoint.run(  # Data Docs name the run as result.json does
        expectation_parameters={**parameters.values, "as_of": as_of.isoformat()},
        run_id=RunIdentifier(run_name=run_name),
    )
    ordered: dict[str, list[tuple[int, ExpectationResult]]] = {}
    for validation in run.run_results.values():
        for result in validation.results:
            target, ours = placed[str(result.expectation_config.id)]
            ordered.setdefault(target.suite.name, []).append(
                (ours.index, _result(target, ours, result))
            )
    for name, found in ordered.items():  # in the suite file's order
        results[name] += [r for _, r in sorted(found, key=lambda pair: pair[0])]
    if data_docs is not None:
        # once for the whole run: GX's UpdateDataDocsAction rebuilds the site per validation
        context.build_data_docs(site_names=["lakehouse"])
        _replace_folder(data_docs.with_name(f".{data_docs.name}.building"), data_docs)
    return results


def _replace_folder(new: Path, old: Path) -> None:
    """Swap in the freshly built site: the old one stays whole until the rename."""
    retired = old.with_name(f".{old.name}.old")
    shutil.rmtree(retired, ignore_errors=True)
    if old.exists():
        old.rename(retired)
    new.rename(old)
    shutil.rmtree(retired, ignore_errors=True)


# ---------------------------------------------------------------- results


def _result(target: _Target, ours: Expectation, result: Any) -> ExpectationResult:
    data = dict(result.result or {})
    kwargs = {
        k: _plain(v)
        for k, v in result.expectation_config.kwargs.items()
        if k not in ("batch_id", "result_format")
    }
    error = _error(result)
    unexpected = int(data.get("unexpected_count") or 0)
    observed = _plain(data.get("observed_value"))
    if ours.type == "unexpected_rows_expectation" and isinstance(observed, int):
        unexpected = observed
    return ExpectationResult(
        table=target.suite.name,
        type=ours.type,
        name=ours.name,
        kwargs=kwargs,
        parameters=ours.parameters,
        severity=ours.severity,
        rows=ours.rows if target.new_rows_sql else "all",
        success=bool(result.success) and error is None,
        expected=expected_text(ours.type, kwargs),
        element_count=int(data.get("element_count") or 0),
        unexpected_count=unexpected,
        unexpected_percent=_plain(data.get("unexpected_percent")),
        observed_value=observed,
        examples=[_plain(v) for v in (data.get("partial_unexpected_list") or [])[:EXAMPLES]],
        error=error,
        notes=ours.notes,
    )


def _error(result: Any) -> str | None:
    info = result.exception_info or {}
    infos = [info] if "raised_exception" in info else list(info.values())
    for item in infos:
        if isinstance(item, dict) and item.get("raised_exception"):
            message = str(item.get("exception_message") or "could not evaluate")
            return " ".join(message.split())[:400]
    return None


def _broken(suite: Suite, e: Expectation) -> ExpectationResult:
    return _failure(suite, e.type, e.name, e.kwargs, e.severity, e.error or "", e.notes)


def _unreadable(suite: Suite, error: str) -> ExpectationResult:
    return _failure(
        suite,
        "table_is_readable",
        "table_is_readable",
        {},
        BLOCKING,
        error,
        "the table must exist and be readable",
    )


def _failure(
    suite: Suite, kind: str, name: str, kwargs: dict, severity: str, error: str, notes: str
) -> ExpectationResult:
    return ExpectationResult(
        table=suite.name,
        type=kind,
        name=name,
        kwargs=kwargs,
        parameters={},
        severity=severity,
        rows="all",
        success=False,
        expected=expected_text(kind, kwargs),
        element_count=0,
        unexpected_count=0,
        unexpected_percent=None,
        observed_value=None,
        examples=[],
        error=error,
        notes=notes,
    )


def expected_text(kind: str, kwargs: dict[str, Any]) -> str:
    """What the expectation asks for, in words a reader compares with the observed value."""
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    mostly = kwargs.get("mostly")
    share = f" (at least {_number(mostly * 100)}% of rows)" if mostly not in (None, 1) else ""
    if kind == "expect_column_max_to_be_recent":
        return f"at most {_number(kwargs.get('max_age_hours'))} h old"
    if kind == "expect_column_value_share_to_be_between":
        return f"share of {kwargs.get('value')!r}: {_range(low, high)}"
    if low is not None or high is not None:
        return _range(low, high) + share
    if "value_set" in kwargs:
        values = list(kwargs["value_set"])
        return f"in {values[:8]}{' …' if len(values) > 8 else ''}" + share
    if kind == "expect_column_values_to_not_be_null":
        return "no nulls" + share
    if kind in ("expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique"):
        return "no duplicates"
    if kind == "expect_column_pair_values_a_to_be_greater_than_b":
        return f"{kwargs.get('column_A')} > {kwargs.get('column_B')}"
    if kind == "expect_table_row_count_to_equal_other_table":
        return f"as many rows as {kwargs.get('other_table_name')}"
    if kind == "unexpected_rows_expectation":
        return "0 rows: " + str(kwargs.get("description") or "unexpected rows")
    if "column_list" in kwargs or "column_set" in kwargs:
        columns = list(kwargs.get("column_list") or kwargs.get("column_set") or [])
        return (
            f"{len(columns)} columns: {', '.join(map(str, columns[:6]))}{' …' * (len(columns) > 6)}"
        )
    if kind == "table_is_readable":
        return "a readable table"
    return ""


def _range(low: Any, high: Any) -> str:
    if low is not None and high is not None:
        return f"{_number(low)} … {_number(high)}" if low != high else f"= {_number(low)}"
    return f"≥ {_number(low)}" if low is not None else f"≤ {_number(high)}"


def _number(value: Any) -> str:
    """Whole numbers as they are (with thousands separators), others to 4 significant digits."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _plain(value: Any) -> Any:
    """JSON-friendly: numpy scalars, timestamps and tuples to plain values."""
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "item") and not isinstance(value, list | tuple | dict):
        try:
            return value.item()
        except (ValueError, AttributeError):
            return str(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, float) and value != value:  # NaN
        return None
    if value is not None and not isinstance(value, str | int | float | bool):
        return str(value)
    return value
