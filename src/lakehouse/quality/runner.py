"""Run the suites as one GX Checkpoint on the DuckDB datasource plugin: every metric is SQL that
DuckDB computes in the warehouse; Data Docs are built by the checkpoint's action.

Per suite there are up to two validation definitions: ``<suite>`` (expectations on the whole
table) and ``<suite>.new_rows`` (row-by-row expectations on the rows not yet validated: a
model's rows written by builds after the last passing run, by their ``_build_seq``; a bronze
table's rows of the batches committed in Delta versions after the one the last passing run
read). Cursors are identities (build numbers, Delta versions), never clocks, and move only
when the whole run passes. Bronze tables are read at the Delta versions the build that made
the validated models pinned. A model that can be exported is also bound by its content's
fingerprint: a change made outside dbt since the last pass makes every row new again.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lakehouse.quality.gxsetup  # noqa: F401  (first: GX without pyspark, analytics off)

import duckdb
import great_expectations as gx
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.base import ProgressBarsConfig

from lakehouse.ingest.bronze import Appended, appended_since
from lakehouse.layout import bronze_uri
from lakehouse.quality.datadocs import serve_offline
from lakehouse.quality.gx_duckdb import DuckDBDatasource  # registers add_duckdb
from lakehouse.quality.numbers import format_value
from lakehouse.quality.parameters import Parameters
from lakehouse.quality.record import DBT_TESTS, GateRecord
from lakehouse.quality.suites import BLOCKING, Expectation, Suite, gx_suite
from lakehouse.quality.totals import ROW_COUNT, RunningTotals
from lakehouse.sql import identifier
from lakehouse.sql import string as sql_string
from lakehouse.storage import open_delta
from lakehouse.warehouse import (
    BuildLineage,
    TestVerdict,
    built_fingerprint,
    fingerprint,
    fingerprint_chain,
    latest_build_seq,
    model_build,
    model_meta,
    test_verdict,
)
from lakehouse.warehouse.duckdb_env import connect, extension_dir, session_sql

EXAMPLES = 5
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": EXAMPLES}
DATA_DOCS = "data_docs"
SOURCE_TESTS = "source:"  # how macros/lineage.sql records a bronze source's tests
BUILD_SEQ = "_build_seq"  # the build number each model row carries (macros/incremental.sql)


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
    # what this run validated (build_seq, delta_version, fingerprint), kept as the next run's
    # cursor when the whole run passed; the previous cursor otherwise
    cursor: dict[str, Any] | None = None
    changed_outside_dbt: bool = False  # the content differs from what builds left: all rows
    # a bronze table's whole-table metrics served from running totals: the Delta version
    # they were kept at and the metrics (lakehouse.quality.totals); None: read whole
    running_totals: dict[str, Any] | None = None


@dataclass
class RunReport:
    run_id: str
    started_at: str
    as_of: str
    env: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    tables: list[TableReport] = field(default_factory=list)
    data_docs: str | None = None
    seconds: float = 0.0  # the checkpoint: one run over every table, so no time per table

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
    kind: str  # "model" (a table asset) or "bronze" (a query asset over a Delta version)
    versions: dict[str, Any]
    query: str | None = None  # the bronze table's scan; None for a model's table
    rows: int = 0
    new_rows: int | None = None
    new_rows_query: str | None = None
    cursor: dict[str, Any] | None = None
    changed_outside_dbt: bool = False
    error: str | None = None
    # a model's dbt data tests as its build left them: dbt owns the structural rules (not
    # null, unique, relationships, accepted values), and the gate passes no model they fail
    dbt_tests: TestVerdict | None = None
    # an exported model whose content is not what its last build left: its tests' verdict
    # is about other content
    changed_since_build: bool = False
    # a bronze table's whole-table metrics: kept at the cursor's version and appended since
    totals: RunningTotals | None = None
    totals_since: int | None = None  # the Delta version the kept totals are of
    table_id: str | None = None  # the Delta table's id, kept with the totals

    @property
    def relation_sql(self) -> str:
        """What SQL reads: the model's table, or the bronze scan as a subquery."""
        return f"({self.query})" if self.query else identifier(self.suite.relation)


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
        builds = {s.name: _model_build(con, s) for s in suites if not s.reads_bronze}
        # models that declare meta.export in their dbt YAML: their verdict is bound to a
        # fingerprint, and bronze is read as the build that made them read it (after a failed
        # or partial build, models of one warehouse may come from several builds)
        exported = {
            s.name for s in suites if not s.reads_bronze and _exportable(project, s.relation)
        }
        pins = _bronze_pins([*(builds[n] for n in exported), *builds.values()])
        targets = [
            _target(con, s, lake, s.name in exported, builds.get(s.name), pins, previous, all_rows)
            for s in suites
        ]
    finally:
        con.close()
    started = datetime.now(UTC)
    with _gx_on_duckdb(warehouse, project, lake) as (context, source):
        outcomes = _validate(
            context,
            source,
            targets,
            parameters,
            as_of,
            data_docs,
            run_identifier(report),
            project,
        )
    report.seconds = round((datetime.now(UTC) - started).total_seconds(), 3)
    passed = all(
        r.success or r.severity != BLOCKING
        for target in targets
        for r in outcomes.get(target.suite.name, [])
    )
    for target in targets:
        # a blocked run validates nothing: every table keeps the cursor of the last pass
        cursor = _with_totals(target) if passed else _previous_cursor(previous, target.suite.name)
        report.tables.append(
            TableReport(
                target.suite.name,
                target.suite.relation,
                target.rows,
                target.new_rows,
                target.versions,
                outcomes.get(target.suite.name, []),
                cursor,
                target.changed_outside_dbt,
                {"since_delta_version": target.totals_since, "served": target.totals.served}
                if target.totals is not None and target.totals.served
                else None,
            )
        )
    if data_docs is not None:
        report.data_docs = str(data_docs / "index.html")
    return report


# ---------------------------------------------------------------- what each suite reads


def _model_build(con: duckdb.DuckDBPyConnection, suite: Suite) -> BuildLineage | None:
    """The dbt invocation that last built the suite's model, or None (a warehouse dbt never
    finished a build into: no lineage tables)."""
    try:
        return model_build(con, suite.relation)
    except duckdb.Error:
        return None


def _bronze_pins(builds: Iterable[BuildLineage | None]) -> dict[str, Any]:
    """The bronze versions the build of the first validated model that pinned them read (all
    models of one build read the same pins); none when no model suite runs or dbt did not
    pin."""
    for build in builds:
        if build is not None and build.pinned:
            return {"dbt_invocation_id": build.invocation_id, **build.bronze_versions}
    return {}


def _target(
    con: duckdb.DuckDBPyConnection,
    suite: Suite,
    lake: str,
    exported: bool,
    build: BuildLineage | None,
    pins: dict[str, Any],
    previous: GateRecord | None,
    all_rows: bool,
) -> _Target:
    table = suite.reads_bronze
    mark = None if all_rows else _previous_cursor(previous, suite.name)
    newer: str | None = None  # SQL selecting the rows not validated yet; None: every row
    if table:
        uri = bronze_uri(lake, table)
        try:
            delta = open_delta(uri)
            version = pins.get(table)
            pinned = version is not None
            version = int(version) if pinned else delta.version()
            table_id = str(delta.metadata().id)
            since = mark.get("delta_version") if mark else None
            appended = appended_since(delta, since, version) if since is not None else None
        except Exception as exc:  # a missing table: deltalake raises its own errors
            return _Target(suite, "bronze", {}, error=f"cannot read {suite.relation}: {exc}")
        versions: dict[str, Any] = {"delta_version": version, "pinned": pinned}
        if pinned:
            versions["pinned_by"] = pins["dbt_invocation_id"]
        query = f"select * from delta_scan({sql_string(uri)}, version => {version})"
        target = _Target(suite, "bronze", versions, query, cursor={"delta_version": version})
        target.table_id = table_id
        if pinned:  # the source's dbt tests, as the build that pinned this version ran them
            target.dbt_tests = test_verdict(
                con,
                SOURCE_TESTS + table,
                pins["dbt_invocation_id"],
                bronze_version=(table, version),
            )
        if appended is not None:
            ids = ", ".join(sql_string(b) for b in sorted(appended.batches))
            newer = f"_batch_id in ({ids})" if appended.batches else "false"
            if _totals_from(target, mark, appended, newer, con):
                return target
    else:
        versions = (
            {"dbt_invocation_id": build.invocation_id, "bronze_versions": build.bronze_versions}
            if build
            else {}
        )
        target = _Target(suite, "model", versions)
        if build is not None:
            target.dbt_tests = test_verdict(con, suite.relation, build.invocation_id)
    relation = target.relation_sql
    try:
        if target.kind == "model":
            newer = _model_cursor(con, target, exported, mark)
        counts = ["count(*)", f"count(*) filter (where {newer})" if newer else "null"]
        # one scan: the rows, and the rows the last passing run did not validate
        rows, new = con.execute(f"select {', '.join(counts)} from {relation}").fetchone()
    except duckdb.Error as exc:
        target.error = f"cannot read {suite.relation}: {str(exc).splitlines()[0]}"
        target.cursor = None
        return target
    target.rows = int(rows)
    if new is not None:
        target.new_rows = int(new)
        target.new_rows_query = f"select * from {relation} where {newer}"
    return target


def _model_cursor(
    con: duckdb.DuckDBPyConnection, target: _Target, exported: bool, mark: dict[str, Any] | None
) -> str | None:
    """Set the model's cursor (the latest build number; the content's fingerprint for a model
    that can be exported) and return the SQL for its rows not validated yet (None: all)."""
    model = target.suite.relation
    columns = [d[0] for d in con.execute(f"select * from {identifier(model)} limit 0").description]
    target.cursor = {"build_seq": latest_build_seq(con)}
    if exported:
        now = fingerprint(con, identifier(model))
        target.cursor["fingerprint"] = now
        # the content dbt's tests ran on: what the last build that wrote the table left
        built = built_fingerprint(con, model)
        target.changed_since_build = built is not None and built != now
        if target.changed_since_build or (
            mark is not None and not _unchanged_since(con, model, mark, now)
        ):
            target.changed_outside_dbt = True
            return None
    since = mark.get("build_seq") if mark else None
    if since is None or BUILD_SEQ not in columns:
        return None
    return f"{identifier(BUILD_SEQ)} > {int(since)}"


def _exportable(project: Path, model: str) -> bool:
    """A model that declares ``meta.export`` in its dbt YAML."""
    return bool((model_meta(project, model) or {}).get("export"))


def _unchanged_since(
    con: duckdb.DuckDBPyConnection, model: str, mark: dict[str, Any], now: str
) -> bool:
    """Whether only dbt builds changed the model since the last pass: the fingerprints each
    build recorded before and after writing it chain from the content that run passed to
    the content now. A change outside dbt (an edit, a restore) breaks the chain."""
    expected, since = mark.get("fingerprint"), mark.get("build_seq")
    if expected is None or since is None:
        return False
    for step in fingerprint_chain(con, model, int(since)):
        if step.phase == "before" and step.fingerprint != expected:
            return False
        if step.phase == "after":
            expected = step.fingerprint
    return expected == now


def _totals_from(
    target: _Target,
    mark: dict[str, Any] | None,
    appended: Appended,
    newer: str,
    con: duckdb.DuckDBPyConnection,
) -> bool:
    """Set up a bronze table's running totals from the last pass's (lakehouse.quality.totals)
    and count its rows from them; False when they cannot be used and the whole table is
    read: none kept, another table under the path, or the rows appended since not being
    exactly those its ingest commits added (``appended.rows``)."""
    kept = (mark or {}).get("totals")
    if (
        not kept
        or kept.get("table_id") != appended.table_id
        or type(kept.get("values", {}).get(ROW_COUNT)) is not int
        or appended.rows is None
    ):
        return False
    new_rows_query = f"select * from {target.relation_sql} where {newer}"
    try:
        (new,) = con.execute(f"select count(*) from ({new_rows_query})").fetchone()
    except duckdb.Error:
        return False
    if new != appended.rows:
        return False
    target.rows = int(kept["values"][ROW_COUNT]) + int(new)
    target.new_rows = int(new)
    target.new_rows_query = new_rows_query
    target.totals = RunningTotals(new_rows_query, kept=dict(kept["values"]))
    target.totals_since = int(mark["delta_version"])  # type: ignore[index]
    return True


def _with_totals(target: _Target) -> dict[str, Any] | None:
    """The cursor a passing run keeps: with a bronze table's totals at the version read."""
    if target.cursor is None or target.kind != "bronze" or target.table_id is None:
        return target.cursor
    totals = target.totals.now if target.totals is not None else {}
    values = {**totals, ROW_COUNT: target.rows}
    return {**target.cursor, "totals": {"table_id": target.table_id, "values": values}}


def _previous_cursor(previous: GateRecord | None, table: str) -> dict[str, Any] | None:
    if previous is None or table not in previous.tables:
        return None
    return previous.tables[table].cursor


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


def run_identifier(report: RunReport) -> RunIdentifier:
    """GX's name for the run: our run id and the time it started (a clock for people).

    The time is given, never left to GX: without it GX parses the run name as a date, and a
    random hex id such as ``6a4777003921`` overflows dateutil (about one run in 3,000 crashed).
    """
    return RunIdentifier(run_name=report.run_id, run_time=datetime.fromisoformat(report.started_at))


def _validate(
    context: Any,
    source: DuckDBDatasource,
    targets: list[_Target],
    parameters: Parameters,
    as_of: datetime,
    data_docs: Path | None,
    run_id: RunIdentifier,
    project: Path,
) -> dict[str, list[ExpectationResult]]:
    # per suite: (index in the suite file, result), sorted into the file's order at the end
    found: dict[str, list[tuple[int, ExpectationResult]]] = {}
    definitions = []
    placed: dict[str, tuple[_Target, Expectation]] = {}  # GX expectation id -> ours
    for target in targets:
        suite = target.suite
        found[suite.name] = [(e.index, _broken(suite, e)) for e in suite.expectations if e.error]
        if target.error:
            found[suite.name].append((-1, _unreadable(suite, target.error)))
            continue
        if target.dbt_tests is not None:
            found[suite.name].append((-1, _dbt_tests(target, target.dbt_tests)))
        parts = {
            "all": [e for e in suite.expectations if e.gx and e.rows == "all"],
            "new": [e for e in suite.expectations if e.gx and e.rows == "new"],
        }
        for rows, expectations in parts.items():
            if not expectations:
                continue
            name = suite.name if rows == "all" else f"{suite.name}.new_rows"
            query = (target.new_rows_query if rows == "new" else None) or target.query
            if query:
                asset = source.add_query_asset(name, query=query)
                if target.kind == "bronze" and rows == "all":  # whole-table metrics: totals
                    target.totals = target.totals or RunningTotals("")
                    engine = source.get_execution_engine()
                    engine.running_totals[f"{source.name}-{name}"] = target.totals
            else:
                asset = source.add_table_asset(name, table_name=suite.relation)
            batch = asset.add_batch_definition_whole_table("whole")
            gx_suite_ = context.suites.add(gx_suite(name, expectations, as_of))
            for built, ours in zip(gx_suite_.expectations, expectations, strict=True):
                placed[str(built.id)] = (target, ours)
            definitions.append(
                context.validation_definitions.add(
                    gx.ValidationDefinition(name=name, data=batch, suite=gx_suite_)
                )
            )
    if not definitions:
        return _in_file_order(found)
    building = data_docs.with_name(f".{data_docs.name}.building") if data_docs else None
    if building is not None:
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
        run_id=run_id,
    )
    for validation in run.run_results.values():
        for result in validation.results:
            target, ours = placed[str(result.expectation_config.id)]
            found[target.suite.name].append((ours.index, _result(target, ours, result)))
    if building is not None and data_docs is not None:
        # once for the whole run: GX's UpdateDataDocsAction rebuilds the site per validation
        context.build_data_docs(site_names=["lakehouse"])
        serve_offline(building, project)  # its scripts, styles and fonts from the site
        _replace_folder(building, data_docs)
    return _in_file_order(found)


def _in_file_order(
    found: dict[str, list[tuple[int, ExpectationResult]]],
) -> dict[str, list[ExpectationResult]]:
    return {
        name: [r for _, r in sorted(pairs, key=lambda pair: pair[0])]
        for name, pairs in found.items()
    }


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
        rows=ours.rows if target.new_rows_query else "all",
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


def _dbt_tests(target: _Target, verdict: TestVerdict) -> ExpectationResult:
    """A model's (or bronze source's) dbt data tests as one result: they are rules written
    for it (in its dbt YAML), so what the gate passes has passed them too. Content changed
    outside dbt since its build is not what they ran on: it fails until dbt builds it again."""
    problems = verdict.problems
    if target.changed_since_build:
        changed = (
            f"the table changed outside dbt after build {verdict.invocation_id}: its dbt "
            f"tests ran on other content; rebuild it (dbt build --select {target.suite.relation})"
        )
        problems = [changed, *problems]
    total = len(verdict.statuses)
    kwargs = {"invocation_id": verdict.invocation_id, "tests": total}
    return ExpectationResult(
        table=target.suite.name,
        type=DBT_TESTS,
        name=DBT_TESTS,
        kwargs=kwargs,
        parameters={},
        severity=BLOCKING,
        rows="all",
        success=not problems,
        expected=expected_text(DBT_TESTS, kwargs),
        element_count=total,
        unexpected_count=len(problems),
        unexpected_percent=None,
        observed_value=(
            f"{total - len(verdict.problems)} of {total} passed"
            + (f"; {'; '.join(problems[:EXAMPLES])}" if problems else "")
            + (" …" if len(problems) > EXAMPLES else "")
        ),
        examples=problems[:EXAMPLES],
        error=None,
        notes="the data tests in its dbt YAML, as run by the build that made or read it, or since",
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


# the unit of an observed value and of its bound, where the expectation has one
UNITS = {"expect_column_max_to_be_recent": " h old"}


def expected_text(kind: str, kwargs: dict[str, Any]) -> str:
    """What the expectation asks for, in words a reader compares with the observed value."""
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    mostly = kwargs.get("mostly")
    share = f" (at least {format_value(mostly * 100)}% of rows)" if mostly not in (None, 1) else ""
    if kind == "expect_column_max_to_be_recent":
        return f"at most {format_value(kwargs.get('max_age_hours'))}{UNITS[kind]}"
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
    if kind == DBT_TESTS:
        return f"all {kwargs.get('tests')} dbt tests of build {kwargs.get('invocation_id')} pass"
    return ""


def _range(low: Any, high: Any) -> str:
    if low is not None and high is not None:
        return (
            f"{format_value(low)} … {format_value(high)}"
            if low != high
            else f"= {format_value(low)}"
        )
    return f"≥ {format_value(low)}" if low is not None else f"≤ {format_value(high)}"


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
